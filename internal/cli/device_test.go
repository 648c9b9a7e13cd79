package cli

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

var pskLine = regexp.MustCompile(`(?m)^psk: ([0-9a-f]+)$`)

// newProjectDir makes a data directory with project "proj".
func newProjectDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	mustCLI(t, "project", "create", "proj", "--dir", dir)
	return dir
}

// noSecret fails if any of the outputs shows the key.
func noSecret(t *testing.T, key string, outs ...cliResult) {
	t.Helper()
	for _, r := range outs {
		if strings.Contains(strings.ToLower(r.stdout+r.stderr), strings.ToLower(key)) {
			t.Errorf("output shows the PSK:\n%v", r)
		}
	}
}

func TestDeviceAddRandomPSK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := newProjectDir(t)
	// A registry held open all along, as by a running `credloop cloud`.
	reg := openTestRegistry(t, dir)

	r := mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1", "--psk-random")
	m := pskLine.FindAllStringSubmatch(r.stdout, -1)
	if len(m) != 1 || len(m[0][1]) != 32 {
		t.Fatalf("want one line 'psk: <32 hex>', got:\n%s", r.stdout)
	}
	key := m[0][1]
	if strings.Count(r.stdout, key) != 1 || strings.Contains(r.stderr, key) {
		t.Fatalf("the key is shown more than once:\n%v", r)
	}
	raw, _ := hex.DecodeString(key)
	cred, dev, err := reg.PSKByIdentity(ctx, "dev1@proj")
	if err != nil || string(cred.PSK) != string(raw) || dev.ID != "dev1" {
		t.Fatalf("registry: %v %v %v", cred, dev, err)
	}
	fp := cred.Fingerprint[:8]
	if !strings.Contains(r.stdout, "fp="+fp) {
		t.Errorf("add output lacks fp=%s:\n%s", fp, r.stdout)
	}

	show := mustCLI(t, "device", "show", "--dir", dir, "--project", "proj", "dev1")
	showJSON := mustCLI(t, "device", "show", "--dir", dir, "--project", "proj", "dev1", "--json")
	list := mustCLI(t, "device", "list", "--dir", dir)
	listJSON := mustCLI(t, "device", "list", "--dir", dir, "--json")
	events := mustCLI(t, "device", "events", "--dir", dir, "--json")
	noSecret(t, key, show, showJSON, list, listJSON, events)
	for _, want := range []string{"dev1@proj", "fp=" + fp, "ACTIVE", "enabled", "device.created", "credential.added"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("device show lacks %q:\n%s", want, show.stdout)
		}
	}
	var info deviceInfo
	if err := json.Unmarshal([]byte(showJSON.stdout), &info); err != nil {
		t.Fatal(err)
	}
	if info.ID != "dev1" || info.State != "enabled" || len(info.CredentialList) != 1 || info.CredentialList[0].Fingerprint != fp || len(info.Events) != 2 {
		t.Fatalf("device show --json: %+v", info)
	}
	if f := strings.Fields(strings.Split(list.stdout, "\n")[1]); len(f) < 6 || f[0] != "dev1" || f[2] != "enabled" || f[3] != "no" || f[4] != "1" || f[5] != "never" {
		t.Fatalf("device list:\n%s", list.stdout)
	}

	// Disable and enable, seen by the other registry handle at once.
	mustCLI(t, "device", "disable", "--dir", dir, "--project", "proj", "dev1")
	if d, err := reg.Device(ctx, "proj", "dev1"); err != nil || !d.Disabled {
		t.Fatalf("after disable: %+v %v", d, err)
	}
	r = mustCLI(t, "device", "list", "--dir", dir, "--project", "proj")
	if !strings.Contains(r.stdout, "disabled") {
		t.Errorf("device list after disable:\n%s", r.stdout)
	}
	mustCLI(t, "device", "enable", "--dir", dir, "--project", "proj", "dev1")
	if d, err := reg.Device(ctx, "proj", "dev1"); err != nil || d.Disabled {
		t.Fatalf("after enable: %+v %v", d, err)
	}
	r = mustCLI(t, "device", "events", "--dir", dir, "--device", "dev1", "--kind", "device.*")
	if !strings.Contains(r.stdout, "device.disabled") || !strings.Contains(r.stdout, "device.enabled") || strings.Contains(r.stdout, "credential.added") {
		t.Errorf("device events --kind device.*:\n%s", r.stdout)
	}
}

func TestDeviceTwoPSKs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := newProjectDir(t)
	k1 := "00112233445566778899aabbccddeeff"
	k2 := "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	r := mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev2", "--psk", k1, "--psk2", k2, "--psk2-identity", "dev2-b@proj")
	if pskLine.MatchString(r.stdout) {
		t.Errorf("a given key is printed:\n%s", r.stdout)
	}
	noSecret(t, k1, r)
	noSecret(t, k2, r)
	failCLI(t, 1, []string{"already has 2 PSKs", "dev2@proj", "dev2-b@proj", "credloop device psk revoke"},
		"device", "psk", "add", "--dir", dir, "--project", "proj", "dev2", "--identity", "dev2-c@proj", "--random")
	mustCLI(t, "device", "psk", "revoke", "--dir", dir, "--project", "proj", "dev2", "--identity", "dev2@proj")
	r = runCLIIn(t, strings.NewReader("0x0102030405060708\n"), "device", "psk", "add", "--dir", dir, "--project", "proj", "dev2", "--identity", "dev2-c@proj", "--key", "-")
	if r.code != 0 {
		t.Fatalf("psk add --key -: %v", r)
	}
	noSecret(t, "0102030405060708", r)

	reg := openTestRegistry(t, dir)
	creds, err := reg.Credentials(ctx, "proj", "dev2")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]registry.CredState{}
	for _, c := range creds {
		states[c.PSKIdentity] = c.State
	}
	want := map[string]registry.CredState{"dev2@proj": registry.StateRevoked, "dev2-b@proj": registry.StateActive, "dev2-c@proj": registry.StateActive}
	if len(states) != 3 {
		t.Fatalf("states %v", states)
	}
	for id, s := range want {
		if states[id] != s {
			t.Errorf("%s is %s, want %s", id, states[id], s)
		}
	}
	show := mustCLI(t, "device", "show", "--dir", dir, "--project", "proj", "dev2")
	noSecret(t, k1, show)
	noSecret(t, k2, show)
	if !strings.Contains(show.stdout, "REVOKED") {
		t.Errorf("device show:\n%s", show.stdout)
	}

	// A failed add leaves no device behind.
	failCLI(t, 1, []string{"already in use", "--psk-identity", "not created"},
		"device", "add", "--dir", dir, "--project", "proj", "dev3", "--psk", k1, "--psk-identity", "dev2-b@proj")
	if _, err := reg.Device(ctx, "proj", "dev3"); err == nil {
		t.Fatal("dev3 exists after a failed add")
	}
	failCLI(t, 1, []string{"already exists", "device show"}, "device", "add", "--dir", dir, "--project", "proj", "dev2")
}

func TestDeviceErrors(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1")
	secret := "deadbeefcafe0123456789"
	tests := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"no project flag", 2, []string{"missing --project"}, []string{"device", "add", "--dir", dir, "dev9"}},
		{"no id", 2, []string{"missing device ID"}, []string{"device", "add", "--dir", dir, "--project", "proj"}},
		{"unknown project", 1, []string{"project nope does not exist", "credloop project create nope"}, []string{"device", "add", "--dir", dir, "--project", "nope", "dev9"}},
		{"psk and random", 2, []string{"not both"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk", "00", "--psk-random"}},
		{"bad hex", 2, []string{"not hex"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk", secret + "zz"}},
		{"odd hex", 2, []string{"odd number"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk", secret + "a"}},
		{"identity project", 2, []string{"must end in @proj"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk-random", "--psk-identity", "dev9@other"}},
		{"psk2 without identity", 2, []string{"--psk2 needs --psk2-identity"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk-random", "--psk2", "00"}},
		{"psk2 alone", 2, []string{"needs a first key"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk2", "00", "--psk2-identity", "x@proj"}},
		{"same identities", 2, []string{"its own"}, []string{"device", "add", "--dir", dir, "--project", "proj", "dev9", "--psk", "00", "--psk2", "01", "--psk2-identity", "dev9@proj"}},
		{"psk add no key", 2, []string{"--key HEX or --random"}, []string{"device", "psk", "add", "--dir", dir, "--project", "proj", "dev1", "--identity", "dev1-b@proj"}},
		{"psk add unknown device", 1, []string{"device nope does not exist", "device add"}, []string{"device", "psk", "add", "--dir", dir, "--project", "proj", "nope", "--identity", "nope@proj", "--random"}},
		{"psk revoke unknown", 1, []string{"no PSK with identity"}, []string{"device", "psk", "revoke", "--dir", dir, "--project", "proj", "dev1", "--identity", "zz@proj"}},
		{"psk unknown sub", 2, []string{`unknown subcommand "rotate"`}, []string{"device", "psk", "rotate"}},
		{"show unknown", 1, []string{"device nope does not exist"}, []string{"device", "show", "--dir", dir, "--project", "proj", "nope"}},
		{"disable unknown", 1, []string{"does not exist"}, []string{"device", "disable", "--dir", dir, "--project", "proj", "nope"}},
		{"events outcome", 2, []string{"want ok or fail"}, []string{"device", "events", "--dir", dir, "--outcome", "maybe"}},
		{"missing dir", 1, []string{"no credloop directory"}, []string{"device", "list", "--dir", filepath.Join(dir, "nope")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := failCLI(t, tt.code, tt.want, tt.args...)
			noSecret(t, secret, r)
		})
	}
}

func TestDeviceEventsFilter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := newProjectDir(t)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1", "--psk-random")
	reg := openTestRegistry(t, dir)
	fail, err := reg.Record(ctx, registry.Event{Project: "proj", Device: "dev1", Credential: "dev1@proj", Kind: "auth.psk", Outcome: registry.OutcomeFail, Reason: "unknown identity"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Record(ctx, registry.Event{Project: "proj", Device: "dev1", Credential: "dev1@proj", Kind: "auth.psk", Reason: "session established"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // kinds, in order
	}{
		{"all", nil, []string{"project.created", "device.created", "credential.added", "auth.psk", "auth.psk"}},
		{"fail", []string{"--outcome", "fail"}, []string{"auth.psk"}},
		{"prefix", []string{"--kind", "auth."}, []string{"auth.psk", "auth.psk"}},
		{"since", []string{"--since-seq", "4"}, []string{"auth.psk"}},
		{"limit", []string{"--limit", "2"}, []string{"project.created", "device.created"}},
		{"device", []string{"--project", "proj", "--device", "dev1", "--kind", "credential.added"}, []string{"credential.added"}},
		{"none", []string{"--device", "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCLI(t, append([]string{"device", "events", "--dir", dir, "--json"}, tt.args...)...)
			var evs []evInfo
			if err := json.Unmarshal([]byte(r.stdout), &evs); err != nil {
				t.Fatalf("%v\n%s", err, r.stdout)
			}
			var kinds []string
			for _, e := range evs {
				kinds = append(kinds, e.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("kinds %v, want %v", kinds, tt.want)
			}
		})
	}
	r := mustCLI(t, "device", "events", "--dir", dir, "--outcome", "fail")
	if !strings.Contains(r.stdout, "unknown identity") || !strings.Contains(r.stdout, "SEQ") || fail.Seq == 0 {
		t.Errorf("device events table:\n%s", r.stdout)
	}
	r = mustCLI(t, "device", "show", "--dir", dir, "--project", "proj", "dev1", "--events", "1")
	if !strings.Contains(r.stdout, "session established") || strings.Contains(r.stdout, "unknown identity") {
		t.Errorf("device show --events 1:\n%s", r.stdout)
	}
}

func TestAdminUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr (or stdout for help)
	}{
		{"ca no sub", []string{"ca"}, 2, "missing subcommand"},
		{"ca unknown sub", []string{"ca", "frob"}, 2, `unknown subcommand "frob"`},
		{"project unknown sub", []string{"project", "frob"}, 2, `unknown subcommand "frob"`},
		{"device unknown sub", []string{"device", "frob"}, 2, `unknown subcommand "frob"`},
		{"unknown flag", []string{"ca", "show", "--nope"}, 2, "flag provided but not defined"},
		{"issue no cn", []string{"ca", "issue", "--dir", dir, "--org", "p"}, 2, "missing --cn"},
		{"issue no org", []string{"ca", "issue", "--dir", dir, "--cn", "d"}, 2, "missing --org"},
		{"issue bad key", []string{"ca", "issue", "--dir", dir, "--cn", "d", "--org", "p", "--key", "dsa"}, 2, "want ecdsa-p256"},
		{"issue bad time", []string{"ca", "issue", "--dir", dir, "--cn", "d", "--org", "p", "--not-after", "tomorrow"}, 2, "RFC 3339"},
		{"issue days and both", []string{"ca", "issue", "--dir", dir, "--cn", "d", "--org", "p", "--days", "3", "--not-before", "2020-01-01T00:00:00Z", "--not-after", "2021-01-01T00:00:00Z"}, 2, "--days cannot"},
		{"issue reversed", []string{"ca", "issue", "--dir", dir, "--cn", "d", "--org", "p", "--not-before", "2022-01-01T00:00:00Z", "--not-after", "2021-01-01T00:00:00Z"}, 2, "before"},
		{"issue bad name", []string{"ca", "issue", "--dir", dir, "--cn", "a/b", "--org", "p"}, 2, "give --name"},
		{"sign no csr", []string{"ca", "sign", "--dir", dir}, 2, "missing --csr"},
		{"import no key", []string{"ca", "import", "--dir", dir, "--cert", "x"}, 2, "--cert and --key"},
		{"init extra arg", []string{"ca", "init", "--dir", dir, "extra"}, 2, `unexpected argument "extra"`},
		{"empty dir", []string{"ca", "init", "--dir", ""}, 2, "--dir is empty"},
		{"project create no id", []string{"project", "create", "--dir", dir}, 2, "missing project ID"},
		{"project create two ids", []string{"project", "create", "a", "b", "--dir", dir}, 2, `unexpected argument "b"`},
		{"crl days", []string{"ca", "crl", "--dir", dir, "--days", "0"}, 2, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("want exit %d, got %v", tt.code, r)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if tt.code == 2 && !strings.Contains(r.stderr, "--help") {
				t.Errorf("usage error without a pointer to --help:\n%s", r.stderr)
			}
		})
	}
	// Every subcommand has help with examples, and --help exits 0.
	for _, cmd := range [][]string{
		{"ca"}, {"ca", "init"}, {"ca", "import"}, {"ca", "issue"}, {"ca", "sign"}, {"ca", "revoke"}, {"ca", "crl"}, {"ca", "show"},
		{"project"}, {"project", "create"}, {"project", "list"}, {"project", "show"}, {"project", "trust"}, {"project", "untrust"},
		{"device"}, {"device", "add"}, {"device", "psk"}, {"device", "psk", "add"}, {"device", "psk", "revoke"}, {"device", "list"},
		{"device", "show"}, {"device", "disable"}, {"device", "enable"}, {"device", "events"},
	} {
		t.Run("help "+strings.Join(cmd, " "), func(t *testing.T) {
			r := runCLI(t, append(cmd, "--help")...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%v", r.code, r)
			}
			if out := r.stdout + r.stderr; !strings.Contains(out, "Examples:") || !strings.Contains(out, "credloop "+cmd[0]) {
				t.Fatalf("help lacks examples:\n%s", out)
			}
		})
	}
}

// issueAt issues a certificate for dev of proj from a with the given
// NotAfter and returns it with its key.
func issueAt(t *testing.T, a *fakeca.Authority, dev string, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	notBefore := time.Now().Add(-time.Hour)
	if !notBefore.Before(notAfter) {
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	c, k, err := a.Issuing.IssueWith(fakeca.Template{CN: dev, Org: "proj", NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDeviceActivateDeactivate(t *testing.T) {
	ctx := t.Context()
	dir := newProjectDir(t)
	work := t.TempDir()
	reg := openTestRegistry(t, dir)
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pending, _ := issueAt(t, a, "thing-1", time.Now().Add(time.Hour))
	c, err := reg.AddCertificate(ctx, "proj", "", pending.Raw, registry.StatePendingActivation)
	if err != nil {
		t.Fatal(err)
	}
	certFile := writePEM(t, filepath.Join(work, "thing.pem"), "CERTIFICATE", pending.Raw)
	revoked, _ := issueAt(t, a, "thing-2", time.Now().Add(time.Hour))
	rc, err := reg.AddCertificate(ctx, "proj", "", revoked.Raw, registry.StateRevoked)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name  string
		args  []string
		state registry.CredState
		out   string
	}{
		{"activate by prefix", []string{"activate", "--cert-id", strings.ToUpper(c.Fingerprint[:10])}, registry.StateActive, "PENDING_ACTIVATION -> ACTIVE"},
		{"activate again", []string{"activate", "--cert-id", c.Fingerprint}, registry.StateActive, "already ACTIVE"},
		{"deactivate by file", []string{"deactivate", "--cert", certFile}, registry.StateInactive, "ACTIVE -> INACTIVE"},
		{"activate an inactive one", []string{"activate", "--cert-id", c.Fingerprint}, registry.StateActive, "INACTIVE -> ACTIVE"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := mustCLI(t, append([]string{"device", st.args[0], "--dir", dir}, st.args[1:]...)...)
			if !strings.Contains(r.stdout, st.out) || !strings.Contains(r.stdout, "not attached to a device") {
				t.Errorf("output:\n%s", r.stdout)
			}
			if got, err := reg.Credential(ctx, c.ID); err != nil || got.State != st.state {
				t.Errorf("state %s, %v; want %s", got.State, err, st.state)
			}
		})
	}
	for _, kind := range []registry.EventKind{"certificate.activated", "certificate.deactivated"} {
		evs, err := reg.Events(ctx, registry.Filter{Kind: kind})
		if err != nil || len(evs) == 0 || evs[0].Credential != c.Fingerprint || evs[0].Project != "proj" {
			t.Errorf("%s events: %+v, %v", kind, evs, err)
		}
	}
	for _, tt := range []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"neither", 2, []string{"exactly one of --cert-id ID and --cert FILE"}, []string{"activate"}},
		{"both", 2, []string{"exactly one"}, []string{"activate", "--cert-id", c.Fingerprint, "--cert", certFile}},
		{"short", 2, []string{"prefix of at least 8"}, []string{"activate", "--cert-id", "abc"}},
		{"not hex", 2, []string{"--cert-id"}, []string{"deactivate", "--cert-id", "xyzxyzxyz"}},
		{"unknown", 1, []string{"no registered certificate"}, []string{"activate", "--cert-id", "00000000"}},
		{"unknown full", 1, []string{"no registered certificate"}, []string{"activate", "--cert-id", strings.Repeat("0", 64)}},
		{"revoked", 1, []string{"REVOKED, which is final"}, []string{"activate", "--cert-id", rc.Fingerprint}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failCLI(t, tt.code, tt.want, append([]string{"device", tt.args[0], "--dir", dir}, tt.args[1:]...)...)
		})
	}
}

func TestDeviceAllow(t *testing.T) {
	ctx := t.Context()
	dir := newProjectDir(t)
	mustCLI(t, "project", "create", "other", "--dir", dir)
	work := t.TempDir()
	reg := openTestRegistry(t, dir)
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := issueAt(t, a, "UDID-1", time.Now().Add(time.Hour))
	spki := cert.RawSubjectPublicKeyInfo
	pubPEM := writePEM(t, filepath.Join(work, "k.pub.pem"), "PUBLIC KEY", spki)
	pubDER := filepath.Join(work, "k.pub.der")
	if err := os.WriteFile(pubDER, spki, 0o600); err != nil {
		t.Fatal(err)
	}
	certPEM := writePEM(t, filepath.Join(work, "c.pem"), "CERTIFICATE", cert.Raw)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "UDID-3"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := writePEM(t, filepath.Join(work, "r.csr"), "CERTIFICATE REQUEST", csrDER)
	_, otherKey := issueAt(t, a, "x", time.Now().Add(time.Hour))
	otherDER, err := x509.MarshalPKIXPublicKey(otherKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	otherPub := writePEM(t, filepath.Join(work, "o.pub.pem"), "PUBLIC KEY", otherDER)
	keyPEM, err := fakeca.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	privFile := filepath.Join(work, "k.key")
	if err := os.WriteFile(privFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(work, "garbage")
	if err := os.WriteFile(garbage, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, project, udid string
		args                []string
		out                 string
	}{
		{"pubkey PEM", "proj", "UDID-1", []string{"--pubkey", pubPEM}, "allowed UDID UDID-1 in project proj with key ecdsa-p256"},
		{"again", "proj", "UDID-1", []string{"--pubkey", pubDER}, "already allowed"},
		{"cert", "proj", "UDID-2", []string{"--cert", certPEM}, "allowed UDID UDID-2"},
		{"csr", "other", "UDID-3", []string{"--csr", csrFile}, "allowed UDID UDID-3 in project other"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCLI(t, append([]string{"device", "allow", "--dir", dir, "--project", tt.project, "--udid", tt.udid}, tt.args...)...)
			if !strings.Contains(r.stdout, tt.out) || !strings.Contains(r.stdout, "fp="+registry.Fingerprint(spki)[:8]) {
				t.Errorf("output:\n%s", r.stdout)
			}
			e, err := reg.AllowEntry(ctx, tt.udid)
			if err != nil || e.Project != tt.project || string(e.PublicKeyDER) != string(spki) {
				t.Errorf("entry %+v, %v", e, err)
			}
		})
	}
	if evs, err := reg.Events(ctx, registry.Filter{Kind: "allowlist.added"}); err != nil || len(evs) != 3 {
		t.Errorf("allowlist.added events: %d, %v", len(evs), err)
	}
	for _, tt := range []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"other key", 1, []string{"already on the allowlist of project proj"}, []string{"--project", "proj", "--udid", "UDID-1", "--pubkey", otherPub}},
		{"no key", 2, []string{"exactly one of --pubkey"}, []string{"--project", "proj", "--udid", "U"}},
		{"two keys", 2, []string{"exactly one of --pubkey"}, []string{"--project", "proj", "--udid", "U", "--pubkey", pubPEM, "--cert", certPEM}},
		{"no udid", 2, []string{"missing --udid"}, []string{"--project", "proj", "--pubkey", pubPEM}},
		{"bad udid", 2, []string{"--udid"}, []string{"--project", "proj", "--udid", "a b", "--pubkey", pubPEM}},
		{"no project", 2, []string{"missing --project"}, []string{"--udid", "U", "--pubkey", pubPEM}},
		{"unknown project", 1, []string{"project nope does not exist"}, []string{"--project", "nope", "--udid", "U", "--pubkey", pubPEM}},
		{"private key", 1, []string{"want PUBLIC KEY"}, []string{"--project", "proj", "--udid", "U", "--pubkey", privFile}},
		{"garbage", 1, []string{"is not a public key"}, []string{"--project", "proj", "--udid", "U", "--pubkey", garbage}},
		{"garbage CSR", 1, []string{"garbage"}, []string{"--project", "proj", "--udid", "U", "--csr", garbage}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := failCLI(t, tt.code, tt.want, append([]string{"device", "allow", "--dir", dir}, tt.args...)...)
			if strings.Contains(r.stdout+r.stderr, string(keyPEM)) {
				t.Error("output shows the private key")
			}
		})
	}

	r := mustCLI(t, "device", "allowlist", "--dir", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "PROJECT") || !strings.Contains(lines[1], "UDID-3") || !strings.Contains(lines[3], "UDID-2") {
		t.Errorf("allowlist:\n%s", r.stdout)
	}
	if err := reg.MarkProvisioned(ctx, "UDID-2"); err != nil {
		t.Fatal(err)
	}
	r = mustCLI(t, "device", "allowlist", "--dir", dir, "--project", "proj", "--json")
	var infos []allowInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 2 || infos[1].UDID != "UDID-2" || !infos[1].Provisioned || infos[0].Provisioned {
		t.Errorf("allowlist --json: %v\n%s", err, r.stdout)
	}
}

func TestDeviceExpiring(t *testing.T) {
	ctx := t.Context()
	dir := newProjectDir(t)
	mustCLI(t, "project", "create", "other", "--dir", dir)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1")
	reg := openTestRegistry(t, dir)
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	add := func(project, device string, notAfter time.Time, s registry.CredState) registry.Credential {
		c, _ := issueAt(t, a, "x", notAfter)
		cred, err := reg.AddCertificate(ctx, project, device, c.Raw, s)
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	soon := add("proj", "dev1", now.Add(10*24*time.Hour+time.Hour), registry.StateActive)
	expired := add("proj", "dev1", now.Add(-2*24*time.Hour-time.Hour), registry.StateActive)
	pending := add("other", "", now.Add(50*24*time.Hour+time.Hour), registry.StatePendingActivation)
	add("proj", "dev1", now.Add(400*24*time.Hour), registry.StateActive) // too far
	add("proj", "dev1", now.Add(5*24*time.Hour), registry.StateRevoked)  // revoked
	add("proj", "dev1", now.Add(5*24*time.Hour), registry.StateInactive) // inactive

	r := mustCLI(t, "device", "expiring", "--dir", dir, "--within", "60d")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "PROJECT") {
		t.Fatalf("expiring:\n%s", r.stdout)
	}
	for i, want := range []struct {
		c    registry.Credential
		cell string
	}{{expired, "-2 (expired)"}, {soon, "10"}, {pending, "50"}} {
		if !strings.Contains(lines[i+1], want.c.Fingerprint[:16]) || !strings.HasSuffix(lines[i+1], want.cell) || !strings.Contains(lines[i+1], want.c.Serial) {
			t.Errorf("line %d %q, want %s ... %s", i+1, lines[i+1], want.c.Fingerprint[:16], want.cell)
		}
	}
	if !strings.Contains(lines[3], " - ") {
		t.Errorf("an unattached certificate shows no device: %q", lines[3])
	}
	r = mustCLI(t, "device", "expiring", "--dir", dir, "--within", "720h", "--project", "proj", "--json")
	var infos []expiringInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 2 || infos[1].CertificateID != soon.Fingerprint || infos[1].DaysLeft != 10 || infos[0].DaysLeft != -2 || infos[1].Device != "dev1" {
		t.Errorf("expiring --json: %v\n%s", err, r.stdout)
	}
	if r := mustCLI(t, "device", "expiring", "--dir", dir, "--within", "1d", "--project", "other"); !strings.Contains(r.stdout, "no certificate expires within 1d") {
		t.Errorf("expiring other:\n%s", r.stdout)
	}
	if r := mustCLI(t, "device", "expiring", "--dir", dir, "--project", "other", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("expiring --json with none: %s", r.stdout)
	}
	for _, bad := range []string{"0d", "-5d", "soon", "xd", "-1h"} {
		failCLI(t, 2, []string{"--within"}, "device", "expiring", "--dir", dir, "--within", bad)
	}
	failCLI(t, 1, []string{"does not exist"}, "device", "expiring", "--dir", dir, "--project", "nope")
}

func TestLifecycleUsage(t *testing.T) {
	for _, cmd := range [][]string{
		{"ca", "register"}, {"ca", "registrations"}, {"project", "template"}, {"project", "templates"},
		{"device", "activate"}, {"device", "deactivate"}, {"device", "allow"}, {"device", "allowlist"}, {"device", "expiring"},
	} {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			r := runCLI(t, append(cmd, "--help")...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%v", r.code, r)
			}
			if out := r.stdout + r.stderr; !strings.Contains(out, "Examples:") || !strings.Contains(out, "credloop "+strings.Join(cmd, " ")) {
				t.Fatalf("help lacks examples:\n%s", out)
			}
		})
	}
	for _, group := range []string{"ca", "project", "device"} {
		r := runCLI(t, group, "--help")
		for _, cmd := range map[string][]string{"ca": {"register", "registrations"}, "project": {"template", "templates"},
			"device": {"activate", "deactivate", "allow", "allowlist", "expiring"}}[group] {
			if !strings.Contains(r.stdout, "  "+cmd+" ") && !strings.Contains(r.stdout, "  "+cmd+"\n") {
				t.Errorf("%s --help does not list %s:\n%s", group, cmd, r.stdout)
			}
		}
	}
}

func FuzzParseWithin(f *testing.F) {
	for _, s := range []string{"60d", "36h", "0d", "-1d", "1.5d", "9999999999999999999d", "d", "", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseWithin(s)
		if err == nil && d <= 0 {
			t.Fatalf("parseWithin(%q) = %v", s, d)
		}
	})
}
