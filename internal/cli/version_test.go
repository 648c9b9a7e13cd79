package cli

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestWriteVersion(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{
			name: "checkout",
			info: &debug.BuildInfo{
				GoVersion: "go1.26.8",
				Main:      debug.Module{Path: "github.com/credloop/credloop", Version: "(devel)"},
				Settings: []debug.BuildSetting{
					{Key: "vcs", Value: "git"},
					{Key: "vcs.modified", Value: "true"},
					{Key: "vcs.time", Value: "2026-12-07T23:00:00Z"},
					{Key: "vcs.revision", Value: "8a94aed0c0ffee"},
				},
			},
			want: "credloop (devel)\nrevision: 8a94aed0c0ffee\ntime:     2026-12-07T23:00:00Z\nmodified: true\ngo:       go1.26.8\n",
		},
		{
			name: "module",
			info: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: "credloop v1.2.3\ngo:       go1.26.8\n",
		},
		{
			name: "empty",
			info: &debug.BuildInfo{},
			want: "credloop unknown\n",
		},
		{
			name: "none",
			want: "credloop unknown (no build information)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			writeVersion(&b, tt.info)
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// TestVersionCommand runs `credloop version` and `credloop --version` in
// this test binary, whose build information names the module.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut strings.Builder
		code := Run(context.Background(), &Env{Args: args, Stdout: &out, Stderr: &errOut})
		if code != 0 || !strings.HasPrefix(out.String(), "credloop ") || !strings.Contains(out.String(), "go:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
	var out, errOut strings.Builder
	if code := Run(context.Background(), &Env{Args: []string{"version", "extra"}, Stdout: &out, Stderr: &errOut}); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}
