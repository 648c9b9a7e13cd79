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
// stamping asked for and checks that --version and version print the same
// module version, revision, time and modified flag as `go version -m`
// reads from the binary. In a git clone the revision must be the
// checkout's HEAD and the version a pseudo-version naming it (or
// "(devel)"); without VCS information (-buildvcs=false, or a linked git
// worktree, which the go command does not stamp) the version is "(devel)".
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
	version := ""
	for _, line := range strings.Split(string(meta), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/credloop/credloop" {
			version = f[2]
		}
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
		// A clean checkout gets a pseudo-version naming the commit, a
		// modified one the same with +dirty.
		if version != "(devel)" && !strings.Contains(version, rev[:12]) {
			t.Fatalf("module version %s does not name revision %s", version, rev)
		}
	} else {
		if version != "(devel)" {
			t.Fatalf("unstamped build has module version %q, want (devel)", version)
		}
		t.Log("the go command did not stamp VCS information (linked worktree or -buildvcs=false); checking the version line only")
	}
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("credloop %s: %v\n%s", arg, err, out)
		}
		if first, _, _ := strings.Cut(string(out), "\n"); first != "credloop "+version {
			t.Errorf("credloop %s: first line %q, want %q", arg, first, "credloop "+version)
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
