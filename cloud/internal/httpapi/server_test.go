package httpapi

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
)

// post sends body to /v1/provision/csr.
func post(t *testing.T, c *http.Client, s *Server, ct string, body []byte) (int, string, []byte) {
	t.Helper()
	resp, err := c.Post(s.URL()+"/v1/provision/csr", ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestProvisionCSR(t *testing.T) {
	e := newEnv(t)
	s, client := e.listen(t, Options{})
	k, other := newKey(t), newKey(t)
	if _, err := e.reg.Allow(e.ctx, "acme", "CC3220-0001", spki(t, k)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Allow(e.ctx, "acme", "CC3220-0002", spki(t, other)); err != nil {
		t.Fatal(err)
	}
	badSig := csrDER(t, "CC3220-0001", k)
	badSig[len(badSig)-3] ^= 0xff

	tests := []struct {
		name      string
		ct        string
		body      []byte
		code      int
		msg       string // in the error JSON
		reason    string // in the event
		issued    bool
		udid      string
		ownDevice bool // the event names the device
	}{
		{"allowlisted, PEM", ctPEM, csrPEM(t, "CC3220-0001", k), 200, "", "issued", true, "CC3220-0001", true},
		{"again, DER: a new certificate", ctPKCS10, csrDER(t, "CC3220-0001", k), 200, "", "issued", true, "CC3220-0001", true},
		{"not on the allowlist", ctPEM, csrPEM(t, "CC3220-9999", k), 403, `UDID "CC3220-9999" is not on the allowlist`, "UDID not on the allowlist", false, "CC3220-9999", true},
		{"not an id", ctPEM, csrPEM(t, "CC3220 9999", k), 403, "is not on the allowlist", "UDID not on the allowlist", false, "", false},
		{"another key", ctPKCS10, csrDER(t, "CC3220-0002", k), 403, "public key does not match the allowlist", "public key does not match the allowlist", false, "CC3220-0002", true},
		{"garbage", ctPKCS10, []byte("garbage"), 400, "bad request", "bad request", false, "", false},
		{"garbage PEM", ctPEM, []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), 400, "bad request", "", false, "", false},
		{"empty", ctPKCS10, nil, 400, "empty body", "", false, "", false},
		{"oversized", ctPEM, bytes.Repeat([]byte("A"), MaxBody+1), 400, "larger than", "", false, "", false},
		{"oversized CSR", ctPEM, append(csrPEM(t, "CC3220-0001", k), bytes.Repeat([]byte("\n"), MaxBody)...), 400, "larger than", "", false, "", false},
		{"bad signature", ctPKCS10, badSig, 400, "signature", "", false, "", false},
		{"no CN", ctPKCS10, csrDER(t, "", k), 400, "no CN", "", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot(t)
			mark, err := e.reg.LastSeq(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			code, ct, body := post(t, client, s, tt.ct, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			evs, err := e.reg.Events(e.ctx, registry.Filter{Kind: registry.EventProvisionCSR, AfterSeq: mark})
			if err != nil || len(evs) != 1 {
				t.Fatalf("%d provision.csr events, %v", len(evs), err)
			}
			ev := evs[0]
			if !strings.Contains(ev.Reason, tt.reason) || ev.Device != tt.udid && tt.ownDevice {
				t.Errorf("event %+v", ev)
			}
			if !tt.issued {
				if ev.Outcome != registry.OutcomeFail {
					t.Errorf("event outcome %q", ev.Outcome)
				}
				var msg struct{ Error string }
				if ct != "application/json" || json.Unmarshal(body, &msg) != nil || !strings.Contains(msg.Error, tt.msg) {
					t.Errorf("error body (%s) %s, want %q", ct, body, tt.msg)
				}
				if after := e.snapshot(t); after != before {
					t.Errorf("registry changed:\nbefore\n%s\nafter\n%s", before, after)
				}
				return
			}
			if ct != ctPEM || ev.Outcome != registry.OutcomeOK || ev.Project != "acme" {
				t.Errorf("content type %q, event %+v", ct, ev)
			}
			certs := pemCerts(t, body)
			if len(certs) != 2 || !certs[1].Equal(e.auth.Issuing.Cert) {
				t.Fatalf("response holds %d certificates", len(certs))
			}
			leaf := certs[0]
			roots := x509.NewCertPool()
			roots.AddCert(e.auth.Root.Cert)
			inters := x509.NewCertPool()
			inters.AddCert(certs[1])
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: e.clock.Now(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("issued certificate does not verify: %v", err)
			}
			if leaf.Subject.CommonName != tt.udid || fmt.Sprint(leaf.Subject.Organization) != "[acme]" || !k.PublicKey.Equal(leaf.PublicKey) {
				t.Errorf("certificate subject %q", leaf.Subject)
			}
			cred, err := e.reg.CertificateByFingerprint(e.ctx, fakeca.Fingerprint(leaf.Raw))
			if err != nil || cred.State != registry.StateActive || cred.Device != tt.udid || cred.Project != "acme" ||
				cred.IssuerFingerprint != fakeca.Fingerprint(e.auth.Issuing.Cert.Raw) {
				t.Fatalf("registered %v %+v, %v", cred, cred, err)
			}
			if ev.Credential != cred.Fingerprint {
				t.Errorf("event credential %q", ev.Credential)
			}
			dev, err := e.reg.Device(e.ctx, "acme", tt.udid)
			if err != nil || !dev.AutoProvisioned {
				t.Errorf("device %+v, %v", dev, err)
			}
			if a, err := e.reg.AllowEntry(e.ctx, tt.udid); err != nil || !a.Provisioned {
				t.Errorf("allow entry %+v, %v", a, err)
			}
		})
	}
	if creds, _ := e.reg.Credentials(e.ctx, "acme", "CC3220-0001"); len(creds) != 2 {
		t.Errorf("%d certificates issued, want 2", len(creds))
	}

	t.Run("disabled device", func(t *testing.T) {
		if err := e.reg.SetDeviceDisabled(e.ctx, "acme", "CC3220-0001", true); err != nil {
			t.Fatal(err)
		}
		before := e.snapshot(t)
		if code, _, body := post(t, client, s, ctPEM, csrPEM(t, "CC3220-0001", k)); code != 403 || !strings.Contains(string(body), "disabled") {
			t.Errorf("status %d: %s", code, body)
		}
		if after := e.snapshot(t); after != before {
			t.Errorf("registry changed:\n%s\n%s", before, after)
		}
	})
	t.Run("methods and paths", func(t *testing.T) {
		for _, tt := range []struct {
			url  string
			code int
		}{
			{"/v1/provision/csr", http.StatusMethodNotAllowed},
			{"/v1/provision", http.StatusNotFound},
			{"/", http.StatusNotFound},
		} {
			if code, _, body := get(t, client, s.URL()+tt.url); code != tt.code {
				t.Errorf("GET %s: %d, want %d: %s", tt.url, code, tt.code, body)
			}
		}
	})
}

func TestCRLAndCA(t *testing.T) {
	e := newEnv(t)
	factory, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	noInter, err := fakeca.Import(fakeca.EncodeCertPEM(factory.Root.Cert), mustKeyPEM(t, factory.Root), false, "", fakeca.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s, client := e.listen(t, Options{CAs: map[string]*fakeca.Authority{"factory": factory, "single": noInter}, CRLNext: 48 * time.Hour})
	interFP := fakeca.Fingerprint(e.auth.Issuing.Cert.Raw)

	fetch := func(t *testing.T, name string, issuer *x509.Certificate) (*x509.RevocationList, []byte) {
		t.Helper()
		code, ct, der := get(t, client, s.URL()+"/crl/"+name+".crl")
		if code != 200 || ct != ctCRL {
			t.Fatalf("GET %s.crl: %d %s: %s", name, code, ct, der)
		}
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatalf("ParseRevocationList: %v", err)
		}
		if err := l.CheckSignatureFrom(issuer); err != nil {
			t.Fatalf("CRL of %s not signed by %s: %v", name, issuer.Subject, err)
		}
		return l, der
	}
	serials := func(l *x509.RevocationList) string {
		var s []string
		for _, e := range l.RevokedCertificateEntries {
			s = append(s, fmt.Sprintf("%x", e.SerialNumber))
		}
		return strings.Join(s, ",")
	}
	steps := []struct {
		name    string
		do      func(t *testing.T)
		number  int64
		serials string
	}{
		{"empty", func(*testing.T) {}, 1, ""},
		{"again: same number", func(*testing.T) {}, 1, ""},
		{"revoked", func(t *testing.T) { revoke(t, e, interFP, "abc123", 1) }, 2, "abc123"},
		{"revoked again: same number", func(t *testing.T) { revoke(t, e, interFP, "ABC123", 1) }, 2, "abc123"},
		{"another CA's revocation: same number", func(t *testing.T) {
			revoke(t, e, fakeca.Fingerprint(factory.Issuing.Cert.Raw), "77", 1)
		}, 2, "abc123"},
		{"second revocation", func(t *testing.T) { revoke(t, e, interFP, "def", 4) }, 3, "abc123,def"},
		{"a day later: rebuilt before nextUpdate", func(*testing.T) { e.clock.Advance(24 * time.Hour) }, 4, "abc123,def"},
	}
	var lastDER []byte
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			l, der := fetch(t, "default", e.auth.Issuing.Cert)
			if l.Number.Int64() != st.number || serials(l) != st.serials {
				t.Errorf("CRL number %v serials %q, want %d %q", l.Number, serials(l), st.number, st.serials)
			}
			if !e.clock.Now().Before(l.NextUpdate) {
				t.Errorf("nextUpdate %v is past", l.NextUpdate)
			}
			lastDER = der
		})
	}

	t.Run("pem", func(t *testing.T) {
		code, ct, body := get(t, client, s.URL()+"/crl/default.pem")
		blk, _ := pem.Decode(body)
		if code != 200 || ct != ctPEM || blk == nil || blk.Type != "X509 CRL" || !bytes.Equal(blk.Bytes, lastDER) {
			t.Errorf("GET default.pem: %d %s\n%s", code, ct, body)
		}
	})
	t.Run("root", func(t *testing.T) {
		if l, _ := fetch(t, "default-root", e.auth.Root.Cert); len(l.RevokedCertificateEntries) != 0 {
			t.Errorf("root CRL lists %s", serials(l))
		}
	})
	t.Run("other CA", func(t *testing.T) {
		if l, _ := fetch(t, "factory", factory.Issuing.Cert); serials(l) != "77" {
			t.Errorf("factory CRL lists %q", serials(l))
		}
		fetch(t, "single", noInter.Root.Cert)
		fetch(t, "single-root", noInter.Root.Cert)
	})
	t.Run("ca chain", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			want []*x509.Certificate
		}{
			{"default", []*x509.Certificate{e.auth.Issuing.Cert, e.auth.Root.Cert}},
			{"default-root", []*x509.Certificate{e.auth.Root.Cert}},
			{"factory", []*x509.Certificate{factory.Issuing.Cert, factory.Root.Cert}},
			{"single", []*x509.Certificate{noInter.Root.Cert}},
		} {
			code, ct, body := get(t, client, s.URL()+"/ca/"+tt.name+".pem")
			got := pemCerts(t, body)
			if code != 200 || ct != ctPEM || len(got) != len(tt.want) {
				t.Fatalf("GET /ca/%s.pem: %d %s, %d certificates", tt.name, code, ct, len(got))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("/ca/%s.pem certificate %d is %s", tt.name, i, got[i].Subject)
				}
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		for _, p := range []string{"/crl/nope.crl", "/crl/default", "/crl/default.txt", "/crl/", "/ca/nope.pem", "/ca/default.crl", "/crl/a/b.crl"} {
			if code, _, body := get(t, client, s.URL()+p); code != 404 {
				t.Errorf("GET %s: %d %s", p, code, body)
			}
		}
	})
	t.Run("openssl", func(t *testing.T) {
		openssl := peer.Require(t, "openssl")
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "crl.der"), lastDER, 0o644); err != nil {
			t.Fatal(err)
		}
		text := peer.Run(t, dir, openssl, "crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text")
		for _, want := range []string{"ABC123", "0DEF", "Key Compromise", "Superseded", "CRL Number", "Next Update"} {
			if !strings.Contains(strings.ToUpper(text), strings.ToUpper(want)) {
				t.Errorf("openssl crl -text lacks %q:\n%s", want, text)
			}
		}
	})
}

func mustKeyPEM(t *testing.T, ca *fakeca.CA) []byte {
	t.Helper()
	b, err := fakeca.EncodeKeyPEM(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func revoke(t *testing.T, e *env, issuerFP, serial string, reason int) {
	t.Helper()
	if _, err := e.reg.Revoke(e.ctx, issuerFP, serial, reason); err != nil {
		t.Fatal(err)
	}
}

func TestListenAndClose(t *testing.T) {
	e := newEnv(t)
	if _, err := Listen(Options{}); err == nil {
		t.Error("Listen without registry and authority succeeded")
	}
	if _, err := Listen(Options{Registry: e.reg, Authority: e.auth, CAs: map[string]*fakeca.Authority{"x": {}}}); err == nil {
		t.Error("Listen with an incomplete CA succeeded")
	}
	if _, err := Listen(Options{Registry: e.reg, Authority: e.auth, Addr: "256.0.0.1:1"}); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
	s, err := Listen(Options{Registry: e.reg, Authority: e.auth})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || s.Addr() == nil || !strings.HasSuffix(s.URL(), s.Addr().String()) {
		t.Errorf("URL %q Addr %v", s.URL(), s.Addr())
	}
	for range 3 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A server that never listened closes too.
	ns, err := newServer(Options{Registry: e.reg, Authority: e.auth})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil || ns.Addr() != nil {
		t.Error(err)
	}
}

// TestProvisionedThenRevoked: a certificate provisioned over HTTPS and
// then revoked is listed on the CRL served over HTTPS, and the
// credential is REVOKED.
func TestProvisionedThenRevoked(t *testing.T) {
	e := newEnv(t)
	s, client := e.listen(t, Options{})
	k := newKey(t)
	if _, err := e.reg.Allow(e.ctx, "acme", "udid-1", spki(t, k)); err != nil {
		t.Fatal(err)
	}
	code, _, body := post(t, client, s, ctPEM, csrPEM(t, "udid-1", k))
	if code != 200 {
		t.Fatalf("provision: %d %s", code, body)
	}
	leaf := pemCerts(t, body)[0]
	_, _, before := get(t, client, s.URL()+"/crl/default.crl")
	revoke(t, e, fakeca.Fingerprint(e.auth.Issuing.Cert.Raw), fmt.Sprintf("%x", leaf.SerialNumber), 1)
	cred, err := e.reg.CertificateByFingerprint(e.ctx, fakeca.Fingerprint(leaf.Raw))
	if err != nil || cred.State != registry.StateRevoked {
		t.Errorf("credential %v: %v", cred.State, err)
	}
	_, _, der := get(t, client, s.URL()+"/crl/default.crl")
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	old, err := x509.ParseRevocationList(before)
	if err != nil {
		t.Fatal(err)
	}
	if l.Number.Cmp(old.Number) <= 0 || len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("CRL number %v (was %v) lists %d", l.Number, old.Number, len(l.RevokedCertificateEntries))
	}
	if err := l.CheckSignatureFrom(e.auth.Issuing.Cert); err != nil {
		t.Error(err)
	}
	resp, err := client.Post(s.URL()+"/crl/default.crl", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("POST /crl/default.crl: %d", resp.StatusCode)
	}
}
