package httpapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a registry with project "acme", an authority and their clock.
type env struct {
	reg   *registry.Registry
	auth  *fakeca.Authority
	clock *clock
	ctx   context.Context
	log   *slog.Logger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := &clock{t: t0}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := registry.Open(":memory:", registry.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	return &env{reg: reg, auth: a, clock: c, ctx: ctx, log: log}
}

// listen starts the endpoint, closed at the end of the test, and returns
// it with an HTTPS client that trusts the authority's root.
func (e *env) listen(t testing.TB, opts Options) (*Server, *http.Client) {
	t.Helper()
	opts.Registry, opts.Authority, opts.Now, opts.Logger = e.reg, e.auth, e.clock.Now, e.log
	s, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(e.auth.Root.Cert)
	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool,
			// The server certificate is dated by the virtual clock.
			Time: e.clock.Now,
		}},
	}
	t.Cleanup(client.CloseIdleConnections)
	return s, client
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func spki(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// csrDER makes a DER CSR with subject CN=cn signed by k.
func csrDER(t testing.TB, cn string, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func csrPEM(t testing.TB, cn string, k crypto.Signer) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER(t, cn, k)})
}

// get fetches url and returns the status, content type and body.
func get(t testing.TB, c *http.Client, url string) (int, string, []byte) {
	t.Helper()
	resp, err := c.Get(url)
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

// snapshot is what a refused request must leave unchanged.
func (e *env) snapshot(t testing.TB) string {
	t.Helper()
	devs, err := e.reg.Devices(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := e.reg.Credentials(e.ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	allow, err := e.reg.Allowlist(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, d := range devs {
		s += "device " + d.Project + "/" + d.ID + "\n"
	}
	for _, c := range creds {
		s += "credential " + c.String() + " " + string(c.State) + "\n"
	}
	for _, a := range allow {
		s += "allow " + a.UDID + " " + a.PublicKeyFingerprint
		if a.Provisioned {
			s += " provisioned"
		}
		s += "\n"
	}
	return s
}
