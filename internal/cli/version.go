package cli

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

func init() {
	register(command{name: "version", summary: "print credloop's module version and the revision it was built from", run: runVersion})
}

const versionUsage = `
Usage: credloop version
       credloop --version

Print the module version credloop was built as, the VCS revision and
commit time it was built from, whether the working tree had uncommitted
changes, and the Go version. Built from a git checkout (go install
./cmd/credloop) the version is a pseudo-version naming the commit, with
+dirty for uncommitted changes, or "(devel)" when the go command recorded
no VCS information (-buildvcs=false); installed as
github.com/credloop/credloop/cmd/credloop@v1.2.3 it is v1.2.3.

Example:
  $ credloop --version
  credloop v0.0.0-20261207233649-59fbb2585ce1
  revision: 59fbb2585ce1...
  time:     2026-12-07T23:36:49Z
  modified: false
  go:       go1.26.8
`

func runVersion(_ context.Context, env *Env) error {
	fs := flagSet(env, "version", versionUsage)
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("version takes no arguments")
	}
	info, _ := debug.ReadBuildInfo() // nil when the binary has none
	writeVersion(env.Stdout, info)
	return nil
}

// writeVersion prints what info says about the build: the main module's
// version, then the vcs.revision, vcs.time and vcs.modified settings the
// go command stamps when it builds inside a repository, then the Go
// version. A nil info (a binary without build information) prints
// "unknown".
func writeVersion(w io.Writer, info *debug.BuildInfo) {
	if info == nil {
		fmt.Fprintln(w, "credloop unknown (no build information)")
		return
	}
	version := info.Main.Version
	if version == "" {
		version = "unknown"
	}
	fmt.Fprintf(w, "credloop %s\n", version)
	for _, key := range []struct{ setting, label string }{
		{"vcs.revision", "revision"},
		{"vcs.time", "time"},
		{"vcs.modified", "modified"},
	} {
		for _, s := range info.Settings {
			if s.Key == key.setting {
				fmt.Fprintf(w, "%-9s %s\n", key.label+":", s.Value)
			}
		}
	}
	if info.GoVersion != "" {
		fmt.Fprintf(w, "%-9s %s\n", "go:", info.GoVersion)
	}
}
