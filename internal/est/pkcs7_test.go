package est

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
)

func testCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsOnlyRoundTrip(t *testing.T) {
	a, b := testCert(t, "a"), testCert(t, "b")
	der, err := CertsOnly([][]byte{a.Raw, b.Raw})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	// certificates is a DER SET OF: its order is the encoding's, not ours.
	names := map[string]bool{}
	for _, c := range got {
		names[c.Subject.CommonName] = true
	}
	if len(got) != 2 || !names["a"] || !names["b"] {
		t.Fatalf("got %d certs: %v", len(got), names)
	}
}

// openssl must read what we write, as EST clients built on it do.
func TestCertsOnlyOpenSSL(t *testing.T) {
	bin := peer.Require(t, "openssl")
	der, err := CertsOnly([][]byte{testCert(t, "dev-1").Raw})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "c.p7")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out := peer.Run(t, "", bin, "pkcs7", "-inform", "DER", "-in", f, "-print_certs", "-noout")
	if !strings.Contains(out, "CN = dev-1") && !strings.Contains(out, "CN=dev-1") {
		t.Fatalf("openssl did not list the certificate:\n%s", out)
	}
}

func TestParseCertsOnlyRejects(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not asn.1"),
		"trailing": func() []byte {
			d, _ := CertsOnly([][]byte{testCert(t, "x").Raw})
			return append(d, 0)
		}(),
		"huge": make([]byte, MaxCertsOnly+1),
	} {
		if _, err := ParseCertsOnly(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseCertsOnly(f *testing.F) {
	d, _ := CertsOnly([][]byte{testCert(f, "seed").Raw})
	f.Add(d)
	f.Add([]byte{0x30, 0x03, 0x06, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertsOnly(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("nil error with no certificates")
		}
	})
}
