package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzParseCSRBody: any body is parsed or refused with errBadRequest,
// never a panic.
func FuzzParseCSRBody(f *testing.F) {
	k := newKey(f)
	f.Add(csrDER(f, "udid-1", k))
	f.Add(csrPEM(f, "udid-1", k))
	f.Add(csrDER(f, "", k))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := parseCSRBody(body)
		if (csr == nil) == (err == nil) {
			t.Fatalf("csr %v, err %v", csr, err)
		}
		if err == nil && csr.Subject.CommonName == "" {
			t.Fatal("accepted a CSR without CN")
		}
	})
}

// FuzzProvisionCSR posts any body to the provisioning handler: the answer
// is 200 only for the allowlisted key, never 5xx, and a refusal leaves
// the registry unchanged.
func FuzzProvisionCSR(f *testing.F) {
	e := newEnv(f)
	s, err := newServer(Options{Registry: e.reg, Authority: e.auth, Now: e.clock.Now})
	if err != nil {
		f.Fatal(err)
	}
	k, other := newKey(f), newKey(f)
	if _, err := e.reg.Allow(e.ctx, "acme", "udid-1", spki(f, k)); err != nil {
		f.Fatal(err)
	}
	f.Add(csrDER(f, "udid-1", other))
	f.Add(csrPEM(f, "udid-2", k))
	f.Add(csrDER(f, "udid 1", k))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	before := e.snapshot(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/provision/csr", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctPKCS10)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusBadRequest, http.StatusForbidden:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if after := e.snapshot(t); after != before {
			t.Fatalf("registry changed:\n%s\n%s", before, after)
		}
	})
}
