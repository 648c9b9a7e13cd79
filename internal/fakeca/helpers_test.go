package fakeca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
)

// t0 is the virtual "now" of most tests.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// clock is a virtual clock fixed at t.
func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

// vopts are Options with the clock fixed at t0.
func vopts() Options { return Options{Now: clock(t0)} }

// newCSR makes a CSR for subj signed by key and parses it back.
func newCSR(tb testing.TB, key crypto.Signer, subj pkix.Name) *x509.CertificateRequest {
	tb.Helper()
	der := newCSRDER(tb, key, subj)
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		tb.Fatal(err)
	}
	return csr
}

func newCSRDER(tb testing.TB, key crypto.Signer, subj pkix.Name) []byte {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj}, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func mustKey(tb testing.TB, kt KeyType) crypto.Signer {
	tb.Helper()
	k, err := GenerateKey(kt, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// runOpenSSL runs openssl with args in dir and returns its combined
// output, failing the test on a non-zero exit.
func runOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := tryOpenSSL(t, dir, args...)
	if err != nil {
		t.Fatalf("openssl %q: %v\n%s", args, err, out)
	}
	return out
}

func tryOpenSSL(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin := peer.Require(t, "openssl")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// Keep a user's or distro's openssl.cnf tweaks out of the picture as
	// far as the defaults allow.
	cmd.Env = append(os.Environ(), "RANDFILE="+filepath.Join(dir, ".rnd"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
