package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVersionFromCheckout builds credloop from this checkout with VCS
// stamping asked for and checks that --version and version print the
// "(devel)" module version and the same revision, time and modified flag
// as `go version -m` reads from the binary; in a git clone that revision
// must be the checkout's HEAD. (The go command does not stamp builds in a
// linked git worktree; then only the version line is checked.)
func TestVersionFromCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "credloop")
	if out, err := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	meta, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(meta), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.") {
			k, v, _ := strings.Cut(f[1], "=")
			settings[k] = v
		}
	}
	if rev := settings["vcs.revision"]; rev != "" {
		head, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("the binary names revision %s but git rev-parse HEAD fails: %v", rev, err)
		}
		if rev != strings.TrimSpace(string(head)) {
			t.Fatalf("binary stamped with %s, HEAD is %s", rev, head)
		}
	} else {
		t.Log("the go command did not stamp VCS information (linked worktree or -buildvcs=false); checking the version line only")
	}
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("credloop %s: %v\n%s", arg, err, out)
		}
		if first, _, _ := strings.Cut(string(out), "\n"); first != "credloop (devel)" {
			t.Errorf("credloop %s: first line %q, want %q", arg, first, "credloop (devel)")
		}
		for key, label := range map[string]string{"vcs.revision": "revision:", "vcs.time": "time:", "vcs.modified": "modified:"} {
			v, stamped := settings[key]
			has := strings.Contains(string(out), "\n"+label)
			switch {
			case stamped && !strings.Contains(string(out), "\n"+label+strings.Repeat(" ", 10-len(label))+v+"\n"):
				t.Errorf("credloop %s: want %s %s in\n%s", arg, label, v, out)
			case !stamped && has:
				t.Errorf("credloop %s: %s printed for an unstamped binary:\n%s", arg, label, out)
			}
		}
		if !strings.Contains(string(out), "\ngo:       go") {
			t.Errorf("credloop %s: no go version in\n%s", arg, out)
		}
	}
}
