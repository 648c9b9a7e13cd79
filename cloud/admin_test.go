package cloud_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/sim"
)

// newAdmin opens the admin of a new directory with a CA "default" and a
// project "acme".
func newAdmin(t *testing.T, now func() time.Time) (*cloud.Admin, string) {
	t.Helper()
	dir := t.TempDir()
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: "by test", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := a.InitCA(ctxT(t), cloud.InitCAOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateProject(ctxT(t), "acme"); err != nil {
		t.Fatal(err)
	}
	return a, dir
}

// eventsSince returns the kinds of the events after seq, and the events.
func eventsSince(t *testing.T, a *cloud.Admin, seq int64) ([]string, []registry.Event) {
	t.Helper()
	evs, err := a.Events(ctxT(t), registry.Filter{AfterSeq: seq})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, string(e.Kind))
	}
	return kinds, evs
}

func lastSeq(t *testing.T, a *cloud.Admin) int64 {
	t.Helper()
	seq, err := a.Registry().LastSeq(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func wantKinds(t *testing.T, a *cloud.Admin, seq int64, want ...registry.EventKind) []registry.Event {
	t.Helper()
	got, evs := eventsSince(t, a, seq)
	var ws []string
	for _, k := range want {
		ws = append(ws, string(k))
	}
	if strings.Join(got, " ") != strings.Join(ws, " ") {
		t.Fatalf("events %v, want %v", got, ws)
	}
	for _, e := range evs {
		if !strings.HasSuffix(e.Reason, "by test") {
			t.Errorf("event %s reason %q lacks the origin", e.Kind, e.Reason)
		}
	}
	return evs
}

func TestOpenAdmin(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: missing}); !errors.Is(err, cloud.ErrNoDir) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := cloud.OpenAdmin(cloud.AdminOptions{}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("no dir: %v", err)
	}
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: missing, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cloud.RegistryPath(missing)); err != nil {
		t.Fatalf("no registry: %v", err)
	}
	if _, err := a.CA(""); !errors.Is(err, cloud.ErrNoCA) {
		t.Fatalf("CA of a directory without one: %v", err)
	}
	if _, err := a.CA("../x"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("CA name ../x: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestAdminProjects(t *testing.T) {
	a, _ := newAdmin(t, nil)
	ctx := ctxT(t)
	if _, err := a.CreateProject(ctx, "acme"); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	ca, err := a.CA("")
	if err != nil {
		t.Fatal(err)
	}
	if ca.Intermediate == nil || ca.Issuing() != ca.Intermediate || ca.IssuingRole() != cloud.IssuerIntermediate {
		t.Fatalf("CA %+v", ca)
	}
	is, err := a.Issue(ctx, cloud.IssueOptions{CN: "dev1", Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	seq := lastSeq(t, a)
	var ce *cloud.CertError
	if _, err := a.TrustRoots(ctx, "acme", []*x509.Certificate{ca.Root, is.Cert}); !errors.As(err, &ce) || !errors.Is(err, cloud.ErrNotCA) || ce.Index != 1 || ce.Count != 2 {
		t.Fatalf("trust a device certificate: %v", err)
	}
	if _, err := a.TrustRoots(ctx, "nope", []*x509.Certificate{ca.Root}); !errors.Is(err, cloud.ErrNoProject) {
		t.Fatalf("trust in a missing project: %v", err)
	}
	roots, err := a.TrustRoots(ctx, "acme", []*x509.Certificate{ca.Root, ca.Intermediate})
	if err != nil || len(roots) != 2 {
		t.Fatalf("trust: %v, %v", roots, err)
	}
	if _, _, err := a.AddDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	p, err := a.Project(ctx, "acme")
	if err != nil || p.Devices != 1 || len(p.TrustedRoots) != 2 {
		t.Fatalf("project %+v, %v", p, err)
	}
	if _, err := a.Project(ctx, "nope"); !errors.Is(err, cloud.ErrNoProject) || !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("missing project: %v", err)
	}
	if _, err := a.UntrustRoot(ctx, "acme", "0000000000"); !errors.Is(err, cloud.ErrNoRoot) {
		t.Fatalf("untrust unknown: %v", err)
	}
	if _, err := a.UntrustRoot(ctx, "acme", "abc"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("untrust short prefix: %v", err)
	}
	r, err := a.UntrustRoot(ctx, "acme", strings.ToUpper(roots[0].Fingerprint[:10]))
	if err != nil || r.Fingerprint != roots[0].Fingerprint {
		t.Fatalf("untrust: %+v, %v", r, err)
	}
	ps, err := a.Projects(ctx)
	if err != nil || len(ps) != 1 || len(ps[0].TrustedRoots) != 1 {
		t.Fatalf("projects %+v, %v", ps, err)
	}
	wantKinds(t, a, seq, registry.EventRootTrusted, registry.EventRootTrusted, registry.EventDeviceCreated, registry.EventRootUntrusted)
}

func TestAdminDevicesAndPSKs(t *testing.T) {
	a, _ := newAdmin(t, nil)
	ctx := ctxT(t)
	seq := lastSeq(t, a)
	key := bytes.Repeat([]byte{7}, 16)
	d, psks, err := a.AddDevice(ctx, "acme", "dev1", cloud.PSK{}, cloud.PSK{Identity: "dev1-b@acme", Key: key})
	if err != nil || d.ID != "dev1" || len(psks) != 2 {
		t.Fatalf("add: %+v %v %v", d, psks, err)
	}
	if !psks[0].Generated || len(psks[0].Key) != cloud.PSKLen || psks[0].Credential.PSKIdentity != "dev1@acme" || psks[1].Generated || !bytes.Equal(psks[1].Key, key) {
		t.Fatalf("psks %+v", psks)
	}
	var inUse *cloud.PSKInUseError
	if _, _, err := a.AddDevice(ctx, "acme", "dev2", cloud.PSK{Identity: "dev1-b@acme", Key: key}); !errors.As(err, &inUse) || inUse.Identity != "dev1-b@acme" || !errors.Is(err, registry.ErrExists) {
		t.Fatalf("identity in use: %v", err)
	}
	if _, err := a.Device(ctx, "acme", "dev2", 0); !errors.Is(err, cloud.ErrNoDevice) {
		t.Fatalf("device of a failed add is left: %v", err)
	}
	if _, _, err := a.AddDevice(ctx, "acme", "dev2", cloud.PSK{Identity: "dev2@other", Key: key}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("identity of another project: %v", err)
	}
	if _, _, err := a.AddDevice(ctx, "nope", "dev2"); !errors.Is(err, cloud.ErrNoProject) {
		t.Fatalf("missing project: %v", err)
	}
	if _, err := a.AddPSK(ctx, "acme", "dev1", cloud.PSK{Identity: "dev1-c@acme"}); !errors.Is(err, registry.ErrTooManyPSKs) {
		t.Fatalf("third psk: %v", err)
	}
	c, already, err := a.RevokePSK(ctx, "acme", "dev1", "dev1@acme")
	if err != nil || already || c.State != registry.StateRevoked {
		t.Fatalf("revoke psk: %v %v %v", c.State, already, err)
	}
	if _, already, err := a.RevokePSK(ctx, "acme", "dev1", "dev1@acme"); err != nil || !already {
		t.Fatalf("revoke again: %v %v", already, err)
	}
	if _, _, err := a.RevokePSK(ctx, "acme", "dev1", "x@acme"); !errors.Is(err, cloud.ErrNoPSK) {
		t.Fatalf("revoke unknown psk: %v", err)
	}
	n, err := a.AddPSK(ctx, "acme", "dev1", cloud.PSK{Identity: "dev1-c@acme"})
	if err != nil || !n.Generated {
		t.Fatalf("add psk: %+v %v", n, err)
	}
	if p, err := a.ActivePSK(ctx, "acme", "dev1"); err != nil || p.PSKIdentity != "dev1-b@acme" || !bytes.Equal(p.PSK, key) {
		t.Fatalf("active psk %v, %v", p, err)
	}
	if changed, err := a.DisableDevice(ctx, "acme", "dev1"); err != nil || !changed {
		t.Fatalf("disable: %v %v", changed, err)
	}
	if changed, err := a.DisableDevice(ctx, "acme", "dev1"); err != nil || changed {
		t.Fatalf("disable again: %v %v", changed, err)
	}
	if changed, err := a.EnableDevice(ctx, "acme", "dev1"); err != nil || !changed {
		t.Fatalf("enable: %v %v", changed, err)
	}
	if _, err := a.DisableDevice(ctx, "acme", "ghost"); !errors.Is(err, cloud.ErrNoDevice) || !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("disable a missing device: %v", err)
	}
	devs, err := a.Devices(ctx, "acme")
	if err != nil || len(devs) != 1 || devs[0].Credentials != 3 || devs[0].Disabled {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	dd, err := a.Device(ctx, "acme", "dev1", 2)
	if err != nil || len(dd.Credentials) != 3 || len(dd.Events) != 2 || dd.Events[1].Kind != registry.EventDeviceEnabled {
		t.Fatalf("device %+v, %v", dd, err)
	}
	evs := wantKinds(t, a, seq, registry.EventDeviceCreated, registry.EventCredentialAdded, registry.EventCredentialAdded,
		registry.EventCredentialRevoked, registry.EventCredentialAdded, registry.EventDeviceDisabled, registry.EventDeviceEnabled)
	for _, e := range evs {
		for _, p := range psks {
			if strings.Contains(e.Reason, fmt.Sprintf("%x", p.Key)) {
				t.Fatalf("event %s shows a key: %q", e.Kind, e.Reason)
			}
		}
	}
}

// certAt registers a certificate of the CA for device dev in state st.
func certAt(t *testing.T, a *cloud.Admin, dev string, st registry.CredState, o cloud.IssueOptions) (*x509.Certificate, registry.Credential) {
	t.Helper()
	ctx := ctxT(t)
	o.CN, o.Org = dev, "acme"
	is, err := a.Issue(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Registry().EnsureDevice(ctx, "acme", dev, true); err != nil {
		t.Fatal(err)
	}
	c, err := a.Registry().AddCertificate(ctx, "acme", dev, is.Cert.Raw, st)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := a.CA("")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Registry().SetIssuerFingerprint(ctx, c.ID, fakeca.Fingerprint(ca.Issuing().Raw)); err != nil {
		t.Fatal(err)
	}
	return is.Cert, c
}

func TestAdminRevoke(t *testing.T) {
	a, _ := newAdmin(t, nil)
	ctx := ctxT(t)
	ca, err := a.CA("")
	if err != nil {
		t.Fatal(err)
	}
	interFP := fakeca.Fingerprint(ca.Intermediate.Raw)
	reg := a.Registry()
	var creds []registry.Credential
	var certs []*x509.Certificate
	for _, dev := range []string{"dev1", "dev2"} {
		cert, c := certAt(t, a, dev, registry.StateActive, cloud.IssueOptions{})
		if err := reg.SetIssuerFingerprint(ctx, c.ID, interFP); err != nil {
			t.Fatal(err)
		}
		certs, creds = append(certs, cert), append(creds, c)
	}
	if _, err := a.RegisterCA(ctx, cloud.RegisterCAOptions{Project: "acme", Certs: []*x509.Certificate{ca.Intermediate}, Mode: registry.CAModeJITP}); err != nil {
		t.Fatal(err)
	}

	seq := lastSeq(t, a)
	rev, err := a.Revoke(ctx, cloud.RevokeOptions{Cert: certs[0], Reason: 1})
	if err != nil || rev.Already || rev.IssuerRole != cloud.IssuerIntermediate || rev.IssuerFingerprint != interFP || len(rev.Credentials) != 1 || rev.Credentials[0].ID != creds[0].ID {
		t.Fatalf("revoke by certificate: %+v, %v", rev, err)
	}
	evs := wantKinds(t, a, seq, registry.EventCARevoke, registry.EventCredentialRevoked)
	if evs[1].Device != "dev1" || evs[1].Credential != creds[0].Fingerprint || !strings.Contains(evs[0].Reason, "keyCompromise") {
		t.Fatalf("events %+v", evs)
	}
	seq = lastSeq(t, a)
	if rev, err := a.Revoke(ctx, cloud.RevokeOptions{Serial: rev.Serial}); err != nil || !rev.Already || rev.Reason != 1 {
		t.Fatalf("revoke again: %+v, %v", rev, err)
	}
	wantKinds(t, a, seq)

	// By serial, with the issuer named by fingerprint (Cloud.Revoke).
	rev, err = a.RevokeSerial(ctx, interFP, fmt.Sprintf("%X", certs[1].SerialNumber), 4)
	if err != nil || rev.Issuer == nil || !rev.Issuer.Equal(ca.Intermediate) || len(rev.Credentials) != 1 {
		t.Fatalf("revoke by serial: %+v, %v", rev, err)
	}
	wantKinds(t, a, seq, registry.EventCARevoke, registry.EventCredentialRevoked)

	// The intermediate by the root: its registration is deactivated.
	seq = lastSeq(t, a)
	rev, err = a.Revoke(ctx, cloud.RevokeOptions{Issuer: cloud.IssuerRoot, Cert: ca.Intermediate, Reason: 2})
	if err != nil || rev.IssuerRole != cloud.IssuerRoot || len(rev.Deactivated) != 1 || rev.Deactivated[0].Active {
		t.Fatalf("revoke the intermediate: %+v, %v", rev, err)
	}
	if cr, err := reg.CARegistrationByID(ctx, interFP); err != nil || cr.Active {
		t.Fatalf("registration after its CA was revoked: %+v, %v", cr, err)
	}
	wantKinds(t, a, seq, registry.EventCARevoke, registry.EventCADeactivated)

	// An issuer the cloud does not know.
	seq = lastSeq(t, a)
	if rev, err := a.RevokeSerial(ctx, strings.Repeat("ab", 32), "0a", 0); err != nil || rev.Issuer != nil {
		t.Fatalf("revoke under an unknown issuer: %+v, %v", rev, err)
	}
	wantKinds(t, a, seq, registry.EventCARevoke)

	var ni *cloud.NotIssuedError
	if _, err := a.Revoke(ctx, cloud.RevokeOptions{Issuer: cloud.IssuerIntermediate, Cert: ca.Root}); !errors.As(err, &ni) || !errors.Is(err, cloud.ErrNotIssued) || ni.Role != cloud.IssuerIntermediate {
		t.Fatalf("revoke the root as the intermediate's: %v", err)
	}
	for _, o := range []cloud.RevokeOptions{{}, {Serial: "01", Cert: ca.Root}, {Serial: "xyz"}, {Serial: "01", Reason: 7}, {Serial: "01", Issuer: "ca"}} {
		if _, err := a.Revoke(ctx, o); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("revoke %+v: %v", o, err)
		}
	}
	if _, err := a.Revoke(ctx, cloud.RevokeOptions{CA: "other", Serial: "01"}); !errors.Is(err, cloud.ErrNoCA) {
		t.Fatalf("revoke with a missing CA: %v", err)
	}

	// The CRL lists the intermediate's two revocations.
	for n := int64(1); n <= 2; n++ {
		l, err := a.CRL(ctx, cloud.CRLOptions{NextUpdate: 48 * time.Hour})
		if err != nil || l.Number != n || l.Revoked != 2 || l.NextUpdate.Sub(l.ThisUpdate) != 48*time.Hour || !bytes.HasPrefix(l.PEM, []byte("-----BEGIN X509 CRL")) {
			t.Fatalf("CRL %d: %+v, %v", n, l, err)
		}
		parsed, err := x509.ParseRevocationList(l.DER)
		if err != nil || parsed.CheckSignatureFrom(ca.Intermediate) != nil {
			t.Fatalf("CRL does not verify: %v", err)
		}
	}
	if l, err := a.CRL(ctx, cloud.CRLOptions{Issuer: cloud.IssuerRoot}); err != nil || l.Revoked != 1 || l.IssuerRole != cloud.IssuerRoot {
		t.Fatalf("root CRL: %+v, %v", l, err)
	}
}

func TestAdminCertificateStates(t *testing.T) {
	a, _ := newAdmin(t, nil)
	ctx := ctxT(t)
	_, pending := certAt(t, a, "dev1", registry.StatePendingActivation, cloud.IssueOptions{})
	_, other := certAt(t, a, "dev2", registry.StateActive, cloud.IssueOptions{})
	seq := lastSeq(t, a)
	ch, err := a.ActivatePending(ctx, "acme", "dev1")
	if err != nil || len(ch) != 1 || !ch[0].Changed || ch[0].From != registry.StatePendingActivation || ch[0].Credential.State != registry.StateActive {
		t.Fatalf("activate pending: %+v, %v", ch, err)
	}
	if c, err := a.ActivateCertificate(ctx, pending.Fingerprint[:10]); err != nil || c.Changed {
		t.Fatalf("activate again: %+v, %v", c, err)
	}
	if c, err := a.DeactivateCertificate(ctx, strings.ToUpper(other.Fingerprint)); err != nil || !c.Changed || c.To != registry.StateInactive {
		t.Fatalf("deactivate: %+v, %v", c, err)
	}
	evs := wantKinds(t, a, seq, registry.EventCertActivated, registry.EventCertDeactivated)
	if evs[0].Credential != pending.Fingerprint || evs[0].Device != "dev1" || !strings.HasPrefix(evs[0].Reason, "PENDING_ACTIVATION -> ACTIVE") {
		t.Fatalf("events %+v", evs)
	}
	if err := a.Registry().SetCredentialState(ctx, other.ID, registry.StateRevoked); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ActivateCertificate(ctx, other.Fingerprint); !errors.Is(err, cloud.ErrFinal) {
		t.Fatalf("activate a revoked certificate: %v", err)
	}
	for id, want := range map[string]error{"abc": registry.ErrInvalid, "zzzzzzzzzz": registry.ErrInvalid, "00000000": cloud.ErrNoCertificate, strings.Repeat("0", 64): cloud.ErrNoCertificate} {
		if _, err := a.FindCertificate(ctx, id); !errors.Is(err, want) {
			t.Errorf("find %s: %v, want %v", id, err, want)
		}
	}
}

func TestAdminIssueAndSign(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, dir := newAdmin(t, func() time.Time { return now })
	ctx := ctxT(t)
	past := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	is, err := a.Issue(ctx, cloud.IssueOptions{CN: "old", Org: "acme", NotAfter: past, Validity: 24 * time.Hour, KeyType: "ecdsa-p384"})
	if err != nil || !is.Cert.NotAfter.Equal(past) || !is.Cert.NotBefore.Equal(past.Add(-24*time.Hour)) {
		t.Fatalf("issue: %v %v", is.Cert, err)
	}
	if _, err := fakeca.ParseKey(is.KeyPEM); err != nil || bytes.Count(is.ChainPEM, []byte("BEGIN CERTIFICATE")) != 2 {
		t.Fatalf("key %v, chain of %d", err, bytes.Count(is.ChainPEM, []byte("BEGIN CERTIFICATE")))
	}
	is, err = a.Issue(ctx, cloud.IssueOptions{CN: "new"})
	if err != nil || !is.Cert.NotAfter.Equal(now.Add(cloud.DefaultValidity)) {
		t.Fatalf("issue with the admin's clock: %v, %v", is.Cert.NotAfter, err)
	}
	for _, o := range []cloud.IssueOptions{{}, {CN: "x", KeyType: "dsa"}, {CN: "x", NotBefore: now, NotAfter: past}} {
		if _, err := a.Issue(ctx, o); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("issue %+v: %v", o, err)
		}
	}
	if _, err := a.Issue(ctx, cloud.IssueOptions{CN: "x", CA: "factory"}); !errors.Is(err, cloud.ErrNoCA) {
		t.Fatalf("issue from a missing CA: %v", err)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev1", Organization: []string{"acme"}}}, key)
	s, err := a.SignCSR(ctx, cloud.SignOptions{CSR: csr, Org: "acme", Validity: time.Hour, Chain: true})
	if err != nil || s.Cert.Subject.CommonName != "dev1" || bytes.Count(s.PEM, []byte("BEGIN CERTIFICATE")) != 2 {
		t.Fatalf("sign: %v", err)
	}
	var ce *cloud.CSRError
	if _, err := a.SignCSR(ctx, cloud.SignOptions{CSR: csr, Org: "other"}); !errors.As(err, &ce) || ce.Subject == "" || !errors.Is(err, cloud.ErrBadCSR) {
		t.Fatalf("sign for another org: %v", err)
	}
	if _, err := a.SignCSR(ctx, cloud.SignOptions{CSR: []byte("junk")}); !errors.As(err, &ce) || ce.Subject != "" {
		t.Fatalf("sign junk: %v", err)
	}

	// A CA imported without an intermediate has none to name.
	root, err := fakeca.NewRoot("solo", fakeca.ECDSAP384, 0, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := fakeca.EncodeKeyPEM(root.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ImportCA(ctx, cloud.InitCAOptions{Name: "solo"}, fakeca.EncodeCertPEM(root.Cert), keyPEM, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ImportCA(ctx, cloud.InitCAOptions{Name: "solo"}, fakeca.EncodeCertPEM(root.Cert), keyPEM, false); !errors.Is(err, cloud.ErrCAExists) {
		t.Fatalf("import over an existing CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cloud.CADirName, "solo", fakeca.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CRL(ctx, cloud.CRLOptions{CA: "solo", Issuer: cloud.IssuerIntermediate}); !errors.Is(err, cloud.ErrNoIntermediate) {
		t.Fatalf("intermediate of a root-only CA: %v", err)
	}
	if info, err := a.CA("solo"); err != nil || info.Intermediate != nil || info.IssuingRole() != cloud.IssuerRoot || !info.Root.Equal(root.Cert) {
		t.Fatalf("root-only CA: %+v, %v", info, err)
	}
	if _, err := a.InitCA(ctx, cloud.InitCAOptions{}); !errors.Is(err, cloud.ErrCAExists) {
		t.Fatalf("init over the default CA: %v", err)
	}
	old, _ := a.CA("")
	if info, err := a.InitCA(ctx, cloud.InitCAOptions{Force: true, KeyType: "rsa-2048"}); err != nil || info.Root.Equal(old.Root) {
		t.Fatalf("init --force: %v", err)
	}
}

func TestAdminAllowlistTemplatesRegistrations(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := newAdmin(t, func() time.Time { return now })
	ctx := ctxT(t)
	if _, err := a.CreateProject(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	seq := lastSeq(t, a)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub2, _ := x509.MarshalPKIXPublicKey(&key2.PublicKey)
	if r, err := a.Allow(ctx, "acme", "UDID-1", pub); err != nil || r.Already || r.KeyType != "ecdsa-p256" {
		t.Fatalf("allow: %+v, %v", r, err)
	}
	if r, err := a.Allow(ctx, "acme", "UDID-1", pub); err != nil || !r.Already {
		t.Fatalf("allow again: %+v, %v", r, err)
	}
	if r, err := a.Allow(ctx, "acme", "UDID-1", pub2); !errors.Is(err, registry.ErrExists) || r.Entry.Project != "acme" {
		t.Fatalf("allow with another key: %+v, %v", r, err)
	}
	if es, err := a.Allowlist(ctx, "acme"); err != nil || len(es) != 1 {
		t.Fatalf("allowlist %v, %v", es, err)
	}
	if t1, created, err := a.PutTemplate(ctx, registry.Template{Name: "fleet", Project: "acme", Activate: true}); err != nil || !created || t1.Name != "fleet" {
		t.Fatalf("template: %+v %v %v", t1, created, err)
	}
	if _, created, err := a.PutTemplate(ctx, registry.Template{Name: "fleet", Project: "acme", ThingPrefix: "t-"}); err != nil || created {
		t.Fatalf("template again: %v %v", created, err)
	}
	if _, _, err := a.PutTemplate(ctx, registry.Template{Name: "bad/name", Project: "acme"}); err == nil {
		t.Fatal("template with a bad name")
	}
	ca, _ := a.CA("")
	if r, err := a.RegisterCA(ctx, cloud.RegisterCAOptions{Project: "other", Certs: []*x509.Certificate{ca.Intermediate}, Mode: registry.CAModeClaim, Template: "fleet"}); !errors.Is(err, cloud.ErrTemplateProject) || len(r.Registrations) != 0 {
		t.Fatalf("register with another project's template: %v", err)
	}
	r, err := a.RegisterCA(ctx, cloud.RegisterCAOptions{Project: "acme", Certs: []*x509.Certificate{ca.Intermediate}, Mode: registry.CAModeClaim, Template: "later", Inactive: true})
	if err != nil || !r.TemplateMissing || len(r.Registrations) != 1 || r.Registrations[0].Active {
		t.Fatalf("register: %+v, %v", r, err)
	}
	var ce *cloud.CertError
	if _, err := a.RegisterCA(ctx, cloud.RegisterCAOptions{Project: "other", Certs: []*x509.Certificate{ca.Intermediate}, Mode: registry.CAModeJITP}); !errors.As(err, &ce) || !errors.Is(err, registry.ErrExists) {
		t.Fatalf("register with another project: %v", err)
	}
	if regs, err := a.CARegistrations(ctx, "acme"); err != nil || len(regs) != 1 {
		t.Fatalf("registrations %v, %v", regs, err)
	}
	if _, err := a.CARegistrations(ctx, "nope"); !errors.Is(err, cloud.ErrNoProject) {
		t.Fatalf("registrations of a missing project: %v", err)
	}
	wantKinds(t, a, seq, registry.EventAllowlistAdded, registry.EventTemplatePut, registry.EventTemplatePut, registry.EventCARegistered)

	_, soon := certAt(t, a, "soon", registry.StateActive, cloud.IssueOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	_, gone := certAt(t, a, "gone", registry.StateActive, cloud.IssueOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-36 * time.Hour)})
	certAt(t, a, "later", registry.StateActive, cloud.IssueOptions{NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)})
	exp, err := a.ExpiringCertificates(ctx, "acme", 30*24*time.Hour)
	if err != nil || len(exp) != 2 || exp[0].ID != gone.ID || !exp[0].Expired || exp[0].DaysLeft != -1 || exp[1].ID != soon.ID || exp[1].DaysLeft != 10 || exp[1].Expired {
		t.Fatalf("expiring %+v, %v", exp, err)
	}
	if exp, err := a.ExpiringCertificates(ctx, "other", 30*24*time.Hour); err != nil || len(exp) != 0 {
		t.Fatalf("expiring in other: %+v, %v", exp, err)
	}
}

// The admin of a running cloud drops live sessions at once; an admin on
// the same directory in another process reaches them through the event
// log.
func TestAdminEnforces(t *testing.T) {
	dir := t.TempDir()
	c := newCloud(t, cloud.Options{Dir: dir, MQTTAddr: "-", HTTPSAddr: "-"})
	ctx := ctxT(t)
	own := c.Admin()
	defer own.Close()
	if _, err := own.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	key := []byte("admin-secret-001")
	if _, _, err := own.AddDevice(ctx, "acme", "dev1", cloud.PSK{Key: key}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := own.AddDevice(ctx, "acme", "dev2", cloud.PSK{Key: key}); err != nil {
		t.Fatal(err)
	}
	dial := func(dev string) *sim.Session {
		s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: sim.Credential{PSKIdentity: dev + "@acme", PSK: key}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1, s2 := dial("dev1"), dial("dev2")
	if _, err := own.DisableDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s1.Done():
	case <-ctx.Done():
		t.Fatal("session of a device disabled through the cloud's admin is live")
	}

	other, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: "by test"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := other.RevokePSK(ctx, "acme", "dev2", "dev2@acme"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s2.Done():
	case <-ctx.Done():
		t.Fatal("session of a PSK revoked by another process's admin is live")
	}
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.LastSeq(ctx); err != nil {
		t.Fatalf("closing the cloud's admin closed its registry: %v", err)
	}
}

func FuzzParseRevocationReason(f *testing.F) {
	for _, s := range []string{"keyCompromise", "KEYCOMPROMISE", "1", "7", "11", "-1", "", "superseded", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := cloud.ParseRevocationReason(s)
		if err != nil {
			return
		}
		if n < 0 || n > 10 || n == 7 {
			t.Fatalf("ParseRevocationReason(%q) = %d", s, n)
		}
		if back, err := cloud.ParseRevocationReason(cloud.RevocationReasonName(n)); err != nil || back != n {
			t.Fatalf("RevocationReasonName(%d) = %q does not parse back: %d, %v", n, cloud.RevocationReasonName(n), back, err)
		}
	})
}
