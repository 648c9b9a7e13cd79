package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

func TestProject(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	work := t.TempDir()

	failCLI(t, 1, []string{"no credloop directory", "credloop project create ID --dir " + dir}, "project", "list", "--dir", dir)
	r := mustCLI(t, "project", "create", "proj", "--dir", dir)
	if !strings.Contains(r.stdout, "created project proj") {
		t.Errorf("create: %s", r.stdout)
	}
	failCLI(t, 1, []string{"already exists"}, "project", "create", "--dir", dir, "proj")
	failCLI(t, 2, []string{"character"}, "project", "create", "bad/id", "--dir", dir)
	mustCLI(t, "project", "create", "--dir", dir, "other")

	mustCLI(t, "ca", "init", "--dir", dir)
	mustCLI(t, "ca", "init", "--dir", dir, "--ca", "factory")
	caRoot := readCert(t, filepath.Join(cloud.CADir(dir, cloud.DefaultCA), fakeca.RootCertFile))
	factoryInter := filepath.Join(cloud.CADir(dir, "factory"), fakeca.IntermediateCertFile)
	mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", work)

	r = mustCLI(t, "project", "trust", "proj", "--ca", "default", "--dir", dir)
	if !strings.Contains(r.stdout, fakeca.Fingerprint(caRoot.Raw)) {
		t.Errorf("trust --ca output lacks the root fingerprint:\n%s", r.stdout)
	}
	mustCLI(t, "project", "trust", "proj", "--ca", "default", "--dir", dir) // twice is harmless
	mustCLI(t, "project", "trust", "proj", "--cert", factoryInter, "--dir", dir)
	// A DER certificate is accepted too.
	rootDER := filepath.Join(work, "factory-root.der")
	if err := os.WriteFile(rootDER, readCert(t, filepath.Join(cloud.CADir(dir, "factory"), fakeca.RootCertFile)).Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "project", "trust", "other", "--cert", rootDER, "--dir", dir)

	tests := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"leaf", 1, []string{"device certificate", "neither a CA nor self-signed"}, []string{"project", "trust", "proj", "--cert", filepath.Join(work, "dev1.crt.pem"), "--dir", dir}},
		{"no source", 2, []string{"exactly one of --cert FILE and --ca NAME"}, []string{"project", "trust", "proj", "--dir", dir}},
		{"both", 2, []string{"exactly one"}, []string{"project", "trust", "proj", "--ca", "default", "--cert", factoryInter, "--dir", dir}},
		{"no project", 1, []string{"project nope does not exist", "credloop project create nope"}, []string{"project", "trust", "nope", "--ca", "default", "--dir", dir}},
		{"no CA", 1, []string{"no CA in", "credloop ca init --ca missing"}, []string{"project", "trust", "proj", "--ca", "missing", "--dir", dir}},
		{"show missing", 1, []string{"does not exist"}, []string{"project", "show", "nope", "--dir", dir}},
		{"untrust short", 2, []string{"at least 8 hex digits"}, []string{"project", "untrust", "proj", "--fingerprint", "abc", "--dir", dir}},
		{"untrust unknown", 1, []string{"trusts no certificate"}, []string{"project", "untrust", "proj", "--fingerprint", "0000000000", "--dir", dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { failCLI(t, tt.code, tt.want, tt.args...) })
	}

	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1")
	r = mustCLI(t, "project", "list", "--dir", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || strings.Fields(lines[2])[0] != "proj" || strings.Fields(lines[2])[2] != "1" || strings.Fields(lines[2])[3] != "2" {
		t.Fatalf("project list:\n%s", r.stdout)
	}
	r = mustCLI(t, "project", "list", "--dir", dir, "--json")
	var list []projectInfo
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("project list --json: %v\n%s", err, r.stdout)
	}

	r = mustCLI(t, "project", "show", "proj", "--dir", dir, "--json")
	var p projectInfo
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("project show --json: %v\n%s", err, r.stdout)
	}
	if p.ID != "proj" || p.Devices != 1 || len(p.TrustedRoots) != 2 {
		t.Fatalf("project show: %+v", p)
	}
	r = mustCLI(t, "project", "show", "proj", "--dir", dir)
	for _, want := range []string{"devices  1", "CN=credloop Root CA", "CN=credloop Intermediate CA", fakeca.Fingerprint(caRoot.Raw)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("project show lacks %q:\n%s", want, r.stdout)
		}
	}

	// Untrust by a prefix with colons, in upper case.
	fp := fakeca.Fingerprint(caRoot.Raw)
	prefix := strings.ToUpper(fp[0:2] + ":" + fp[2:4] + ":" + fp[4:6] + ":" + fp[6:10])
	r = mustCLI(t, "project", "untrust", "proj", "--fingerprint", prefix, "--dir", dir)
	if !strings.Contains(r.stdout, "no longer trusts") {
		t.Errorf("untrust: %s", r.stdout)
	}
	r = mustCLI(t, "project", "show", "proj", "--dir", dir, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || len(p.TrustedRoots) != 1 || p.TrustedRoots[0].Fingerprint == fp {
		t.Fatalf("after untrust: %+v %v", p, err)
	}
}

func TestProjectTemplate(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "project", "create", "other", "--dir", dir)
	reg := openTestRegistry(t, dir)
	ctx := t.Context()

	r := mustCLI(t, "project", "template", "--dir", dir, "--project", "proj", "fleet")
	for _, want := range []string{"created template fleet of project proj", "<SerialNumber>", "ACTIVE", "$aws/provisioning-templates/fleet/provision/json"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("template output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustCLI(t, "project", "template", "fleet", "--dir", dir, "--project", "proj", "--thing-name-param", "Mac", "--thing-prefix", "esp-", "--require", "Model, Mac", "--inactive")
	if !strings.Contains(r.stdout, "changed template fleet") || !strings.Contains(r.stdout, "esp-<Mac>") || !strings.Contains(r.stdout, "INACTIVE") {
		t.Errorf("template change:\n%s", r.stdout)
	}
	got, err := reg.Template(ctx, "fleet")
	if err != nil || got.ThingNameParam != "Mac" || got.ThingPrefix != "esp-" || strings.Join(got.Required, ",") != "Mac,Model" || got.Activate {
		t.Fatalf("stored %+v, %v", got, err)
	}
	mustCLI(t, "project", "template", "--dir", dir, "--project", "other", "t2")
	if evs, err := reg.Events(ctx, registry.Filter{Kind: "project.template"}); err != nil || len(evs) != 3 {
		t.Errorf("project.template events: %d, %v", len(evs), err)
	}

	for _, tt := range []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"no name", 2, []string{"missing template NAME"}, []string{"--project", "proj"}},
		{"long name", 2, []string{"longer than 36"}, []string{"--project", "proj", strings.Repeat("n", 37)}},
		{"bad parameter", 2, []string{"parameter name"}, []string{"--project", "proj", "x", "--require", "a b"}},
		{"bad prefix", 2, []string{"--thing-prefix"}, []string{"--project", "proj", "x", "--thing-prefix", "a/"}},
		{"no project flag", 2, []string{"missing --project"}, []string{"x"}},
		{"unknown project", 1, []string{"project nope does not exist"}, []string{"--project", "nope", "x"}},
		{"another project's name", 1, []string{"belongs to another project"}, []string{"--project", "proj", "t2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failCLI(t, tt.code, tt.want, append([]string{"project", "template", "--dir", dir}, tt.args...)...)
		})
	}

	r = mustCLI(t, "project", "templates", "--dir", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "fleet") || !strings.Contains(lines[2], "esp-<Mac>") || !strings.Contains(lines[1], "t2") {
		t.Errorf("templates:\n%s", r.stdout)
	}
	r = mustCLI(t, "project", "templates", "--dir", dir, "--project", "other", "--json")
	var infos []templateInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 1 || infos[0].Name != "t2" || infos[0].Certificate != "ACTIVE" {
		t.Errorf("templates --json: %v\n%s", err, r.stdout)
	}
}
