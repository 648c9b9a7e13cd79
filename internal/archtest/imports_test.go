// Package archtest checks the layering of the module: which packages may
// import which.
package archtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/credloop/credloop"

// listedPackage is what the import rules look at in `go list -json`: a
// package's direct imports and everything it depends on, both without its
// tests (tests drive the tree end to end and may import anything).
type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// importRule is one layering rule; check returns a line per violation in p.
type importRule struct {
	name  string
	check func(p listedPackage) []string
}

// inModule reports whether path is a package of this module.
func inModule(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// under reports whether path is the module package rel or one below it.
func under(path, rel string) bool {
	return path == module+"/"+rel || strings.HasPrefix(path, module+"/"+rel+"/")
}

var importRules = []importRule{
	{
		// The firmware model, the CA and the hardware layer are leaves:
		// the devices, the cloud and the boards are built on them, never
		// the other way round.
		name: "internal/devicemodel, internal/fakeca and hil import nothing of the module",
		check: func(p listedPackage) []string {
			if !under(p.ImportPath, "internal/devicemodel") && !under(p.ImportPath, "internal/fakeca") && !under(p.ImportPath, "hil") {
				return nil
			}
			var bad []string
			for _, d := range p.Deps {
				if inModule(d) {
					bad = append(bad, p.ImportPath+" depends on "+d)
				}
			}
			return bad
		},
	},
	{
		// The cloud serves devices; it never contains one.
		name: "cloud/... never imports sim, hil or boards",
		check: func(p listedPackage) []string {
			if !under(p.ImportPath, "cloud") {
				return nil
			}
			var bad []string
			for _, d := range p.Deps {
				if under(d, "sim") || under(d, "hil") || under(d, "boards") {
					bad = append(bad, p.ImportPath+" depends on "+d)
				}
			}
			return bad
		},
	},
	{
		// The command line is the binary's; library code never reaches
		// into it.
		name: "nothing imports internal/cli except cmd/credloop",
		check: func(p listedPackage) []string {
			if p.ImportPath == module+"/cmd/credloop" || under(p.ImportPath, "internal/cli") {
				return nil
			}
			var bad []string
			for _, d := range p.Imports {
				if under(d, "internal/cli") {
					bad = append(bad, p.ImportPath+" imports "+d)
				}
			}
			return bad
		},
	},
}

// violations applies every rule to every package of the module in pkgs.
func violations(pkgs []listedPackage) []string {
	var bad []string
	for _, p := range pkgs {
		if !inModule(p.ImportPath) {
			continue
		}
		for _, r := range importRules {
			for _, v := range r.check(p) {
				bad = append(bad, r.name+": "+v)
			}
		}
	}
	return bad
}

// listModule runs `go list -json` over the module's packages.
func listModule(t *testing.T) []listedPackage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "list", "-json=ImportPath,Imports,Deps,Error", module+"/...")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			listedPackage
			Error *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p.listedPackage)
	}
	return pkgs
}

func TestImportRulesHoldInTheModule(t *testing.T) {
	pkgs := listModule(t)
	// The listing must cover the packages the rules are about, or the
	// test would pass on nothing.
	for _, want := range []string{"cloud", "cloud/registry", "internal/devicemodel", "internal/fakeca", "hil", "internal/cli", "cmd/credloop", "sim", "boards"} {
		if !slices.ContainsFunc(pkgs, func(p listedPackage) bool { return p.ImportPath == module+"/"+want }) {
			t.Fatalf("go list did not list %s/%s", module, want)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

func TestImportRulesCatchViolations(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	tests := []struct {
		name string
		pkgs []listedPackage
		want []string // substrings, one per expected violation
	}{
		{
			name: "layered tree",
			pkgs: []listedPackage{
				{ImportPath: m("internal/fakeca"), Imports: []string{"crypto/x509"}, Deps: []string{"crypto/x509"}},
				{ImportPath: m("hil"), Deps: []string{"go.bug.st/serial"}},
				{ImportPath: m("cloud"), Imports: []string{m("cloud/registry")}, Deps: []string{m("cloud/registry"), m("internal/fakeca")}},
				{ImportPath: m("sim"), Deps: []string{m("internal/devicemodel")}},
				{ImportPath: m("cmd/credloop"), Imports: []string{m("internal/cli")}, Deps: []string{m("internal/cli"), m("cloud"), m("sim")}},
				{ImportPath: "example.com/other", Imports: []string{m("internal/cli")}},
			},
		},
		{
			name: "devicemodel imports the registry",
			pkgs: []listedPackage{{ImportPath: m("internal/devicemodel"), Imports: []string{m("cloud/registry")}, Deps: []string{m("cloud/registry")}}},
			want: []string{"internal/devicemodel depends on " + m("cloud/registry")},
		},
		{
			name: "fakeca depends on the module through a dependency",
			pkgs: []listedPackage{{ImportPath: m("internal/fakeca"), Imports: []string{"example.com/x"}, Deps: []string{"example.com/x", m("internal/est")}}},
			want: []string{"internal/fakeca depends on " + m("internal/est")},
		},
		{
			name: "hil subpackage imports boards",
			pkgs: []listedPackage{{ImportPath: m("hil/usb"), Deps: []string{m("boards")}}},
			want: []string{"hil/usb depends on " + m("boards")},
		},
		{
			name: "cloud endpoint imports sim, boards/esp32 and hil",
			pkgs: []listedPackage{{ImportPath: m("cloud/internal/mqtt"), Deps: []string{m("sim"), m("boards/esp32"), m("hil"), m("simulator")}}},
			want: []string{"depends on " + m("sim"), "depends on " + m("boards/esp32"), "depends on " + m("hil")},
		},
		{
			name: "scenario imports the command line",
			pkgs: []listedPackage{{ImportPath: m("internal/scenario"), Imports: []string{m("internal/cli")}, Deps: []string{m("internal/cli")}}},
			want: []string{"internal/scenario imports " + m("internal/cli")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("violations:\n%s\nwant %d", strings.Join(got, "\n"), len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}
