package cloud_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/sim"
)

func newCloud(t *testing.T, opts cloud.Options) *cloud.Cloud {
	t.Helper()
	c, err := cloud.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitEvent(t *testing.T, c *cloud.Cloud, f registry.Filter) registry.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := c.Registry.WaitEvent(ctx, f)
	if err != nil {
		t.Fatalf("wait for event %+v: %v", f, err)
	}
	return ev
}

func TestPSK(t *testing.T) {
	c := newCloud(t, cloud.Options{})
	ctx := ctxT(t)
	reg := c.Registry
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef")
	if _, err := reg.AddPSK(ctx, "acme", "dev1", "dev1@acme", key); err != nil {
		t.Fatal(err)
	}
	key2 := []byte("fedcba9876543210")
	if _, err := reg.AddPSK(ctx, "acme", "dev1", "dev1-2@acme", key2); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, identity string
		key            []byte
		reason         string // empty: success
	}{
		{"main key", "dev1@acme", key, ""},
		{"second key", "dev1-2@acme", key2, ""},
		{"wrong key", "dev1@acme", []byte("not-the-key-0000"), "psk mismatch"},
		{"unknown identity", "nobody@acme", key, "psk identity unknown"},
		{"malformed identity", "no-at-sign", key, "psk identity malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, _ := reg.LastSeq(ctx)
			s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: sim.Credential{PSKIdentity: tc.identity, PSK: tc.key}, HandshakeTimeout: 5 * time.Second})
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				h, err := s.Hello(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if h.Device != "dev1" || h.Project != "acme" || h.Credential != tc.identity {
					t.Fatalf("hello = %+v", h)
				}
				if err := s.PutState(ctx, "fw", []byte(`{"version":"1.2.3"}`)); err != nil {
					t.Fatal(err)
				}
				got, err := s.GetState(ctx, "fw")
				if err != nil || string(got) != `{"version":"1.2.3"}` {
					t.Fatalf("state = %s, %v", got, err)
				}
				if err := s.Keepalive(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("handshake succeeded")
			}
			if !errors.Is(err, sim.ErrHandshake) {
				t.Fatalf("err = %v", err)
			}
			ev := waitEvent(t, c, registry.Filter{Kind: "auth.psk", Outcome: "fail", AfterSeq: seq})
			if !strings.Contains(ev.Reason, tc.reason) {
				t.Fatalf("reason = %q, want %q", ev.Reason, tc.reason)
			}
			if strings.Contains(ev.Reason, string(tc.key)) {
				t.Fatal("the key reached an event")
			}
		})
	}
}

func TestCertificateAutoProvisioning(t *testing.T) {
	var now = time.Now()
	clock := func() time.Time { return now }
	c := newCloud(t, cloud.Options{Now: clock, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	ctx := ctxT(t)
	reg := c.Registry
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	// The customer's own root, trusted by the project.
	own, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.TrustRoot(ctx, "acme", own.Root.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	untrusted, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *fakeca.Authority, cn, org string, nb, na time.Time) sim.Credential {
		cert, key, err := a.Issuing.IssueWith(fakeca.Template{CN: cn, Org: org, NotBefore: nb, NotAfter: na})
		if err != nil {
			t.Fatal(err)
		}
		return sim.Credential{Chain: [][]byte{cert.Raw, a.Issuing.Cert.Raw}, Key: key}
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.CA().Root())

	good := issue(own, "dev-7", "acme", now.Add(-time.Hour), now.Add(24*time.Hour))
	seq, _ := reg.LastSeq(ctx)
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: good, RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Hello(ctx)
	if err != nil || h.Device != "dev-7" || h.Method != "cert" {
		t.Fatalf("hello = %+v, %v", h, err)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: "provision.auto", AfterSeq: seq})
	if ev.Outcome != "ok" || ev.Device != "dev-7" {
		t.Fatalf("event = %+v", ev)
	}
	dev, err := reg.Device(ctx, "acme", "dev-7")
	if err != nil || !dev.AutoProvisioned {
		t.Fatalf("device = %+v, %v", dev, err)
	}

	// EST: enroll a fresh key over the certificate session, then connect
	// with the issued certificate (it chains to the cloud's own CA).
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-7", Organization: []string{"acme"}}}, k)
	issued, err := s.Enroll(ctx, csr, true)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: sim.Credential{Chain: [][]byte{issued.Raw, c.CA().Issuer().Raw}, Key: k}, RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("connect with re-enrolled certificate: %v", err)
	}
	s2.Close()
	// The same with 16-byte blocks: the CSR goes up in Block1 blocks and
	// the PKCS#7 answer comes back in Block2 blocks.
	small, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: good, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr2, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-7", Organization: []string{"acme"}}}, k2)
	seqBefore, _ := reg.LastSeq(ctx)
	issued2, err := small.Enroll(ctx, csr2, false)
	if err != nil {
		t.Fatalf("enroll in 16-byte blocks: %v", err)
	}
	if !issued2.PublicKey.(*ecdsa.PublicKey).Equal(&k2.PublicKey) {
		t.Fatal("issued certificate is for another key")
	}
	enrolls, _ := reg.Events(ctx, registry.Filter{Kind: "est.enroll", AfterSeq: seqBefore})
	if len(enrolls) != 1 {
		t.Fatalf("%d enrollments for one block-wise request, want 1", len(enrolls))
	}
	small.Close()

	// A CSR for another device is refused.
	other, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-8", Organization: []string{"acme"}}}, k)
	s3, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: good})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Enroll(ctx, other, false); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("enroll for another device: %v", err)
	}
	s3.Close()

	// Revoking the device's certificate drops its live session and refuses
	// the next handshake.
	live, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: good})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(good.Chain[0])
	if err := c.Revoke(ctx, fakeca.Fingerprint(own.Issuing.Cert.Raw), fmt.Sprintf("%X", leaf.SerialNumber), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-live.Done():
	case <-ctx.Done():
		t.Fatal("live session of a revoked certificate was not dropped")
	}
	seq, _ = reg.LastSeq(ctx)
	if s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: good}); err == nil {
		s.Close()
		t.Fatal("revoked certificate accepted")
	}
	if ev := waitEvent(t, c, registry.Filter{Kind: "auth.cert", Outcome: "fail", AfterSeq: seq}); !strings.Contains(strings.ToLower(ev.Reason), "revoked") {
		t.Fatalf("reason = %q", ev.Reason)
	}

	for _, tc := range []struct {
		name   string
		cred   sim.Credential
		reason string
	}{
		{"untrusted root", issue(untrusted, "dev-9", "acme", now.Add(-time.Hour), now.Add(time.Hour)), "untrusted root"},
		{"expired", issue(own, "dev-10", "acme", now.Add(-48*time.Hour), now.Add(-24*time.Hour)), "expired"},
		{"not yet valid", issue(own, "dev-11", "acme", now.Add(24*time.Hour), now.Add(48*time.Hour)), "not yet valid"},
		{"unknown project", issue(own, "dev-12", "nope", now.Add(-time.Hour), now.Add(time.Hour)), "unknown project"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, _ := reg.LastSeq(ctx)
			s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: tc.cred})
			if err == nil {
				s.Close()
				t.Fatal("handshake succeeded")
			}
			ev := waitEvent(t, c, registry.Filter{Kind: "auth.cert", Outcome: "fail", AfterSeq: seq})
			if !strings.Contains(ev.Reason, tc.reason) {
				t.Fatalf("reason = %q, want %q", ev.Reason, tc.reason)
			}
		})
	}
	if _, err := reg.Device(ctx, "acme", "dev-9"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("rejected device was created: %v", err)
	}
}

// A revocation or a disable made by another process (the CLI, with its own
// registry handle on the same file) reaches live sessions through the
// event log: they are dropped within a second.
func TestRevocationFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	c := newCloud(t, cloud.Options{Dir: dir})
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	key := []byte("watch-secret-001")
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", key); err != nil {
		t.Fatal(err)
	}
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: sim.Credential{PSKIdentity: "dev1@acme", PSK: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	other, err := registry.Open(cloud.RegistryPath(dir), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	start := time.Now()
	if err := other.SetDeviceDisabled(ctx, "acme", "dev1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Record(ctx, registry.Event{Project: "acme", Device: "dev1", Kind: "device.disabled", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session of a device disabled by another process still live after 5 s")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("dropped after %s, want within 1 s", took)
	} else {
		t.Logf("dropped %s after the other process disabled the device", took)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: "session.closed", Device: "dev1"})
	if !strings.Contains(ev.Reason, "disabled") {
		t.Fatalf("reason = %q", ev.Reason)
	}
}
