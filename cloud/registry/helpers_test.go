package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// t0 is the virtual clock's start.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a virtual clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

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

func testOptions(t testing.TB, c *clock) Options {
	opts := Options{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if c != nil {
		opts.Now = c.Now
	}
	return opts
}

// openMem opens an in-memory registry closed at the end of the test.
func openMem(t testing.TB, c *clock) *Registry {
	t.Helper()
	r, err := Open(":memory:", testOptions(t, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// openFile opens (or reopens) the registry file path.
func openFile(t testing.TB, path string, c *clock) *Registry {
	t.Helper()
	r, err := Open(path, testOptions(t, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func tempDB(t testing.TB) string { return filepath.Join(t.TempDir(), "registry.db") }

// ctxT returns a context that ends with the test, with a deadline.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	fp   string
}

var (
	keyOnce sync.Once
	testKey *ecdsa.PrivateKey
)

// leafKey is one key shared by all test leaves: only certificates differ.
func leafKey(t testing.TB) *ecdsa.PrivateKey {
	keyOnce.Do(func() {
		var err error
		testKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
	})
	return testKey
}

// newCA makes a self-signed root, or an intermediate if parent is set.
func newCA(t testing.TB, cn string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"credloop test"}},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, fp: Fingerprint(der)}
}

// leaf issues a device certificate (O = project, CN = device).
func (ca *testCA) leaf(t testing.TB, project, device string, serial int64, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: device, Organization: []string{project}},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	k := leafKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// seed creates project p with devices d1 and d2.
func seed(t testing.TB, r *Registry) {
	t.Helper()
	ctx := context.Background()
	if _, err := r.CreateProject(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"d1", "d2"} {
		if _, err := r.CreateDevice(ctx, "p", d); err != nil {
			t.Fatal(err)
		}
	}
}
