package cloud_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
)

func TestCAIssueDevice(t *testing.T) {
	for _, tt := range []struct {
		name      string
		opts      cloud.CAOptions
		wantChain int
	}{
		{"intermediate", cloud.CAOptions{}, 2},
		{"root only", cloud.CAOptions{NoIntermediate: true, Name: "test root"}, 1},
		{"p384", cloud.CAOptions{KeyType: cloud.ECDSAP384}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := cloud.NewCA(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.opts.Name != "" && ca.Root().Subject.CommonName != tt.opts.Name {
				t.Errorf("root CN = %q", ca.Root().Subject.CommonName)
			}
			dc, err := ca.IssueDevice("acme", "dev-1")
			if err != nil {
				t.Fatal(err)
			}
			if len(dc.TLS.Certificate) != tt.wantChain {
				t.Fatalf("chain of %d certificates, want %d", len(dc.TLS.Certificate), tt.wantChain)
			}
			leaf := dc.TLS.Leaf
			if leaf.Subject.CommonName != "dev-1" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "acme" {
				t.Errorf("subject = %s", leaf.Subject)
			}
			inters := x509.NewCertPool()
			for _, der := range dc.TLS.Certificate[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.RootPool(), Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			// The PEM form is the same credential.
			pair, err := tls.X509KeyPair(dc.CertPEM, dc.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if len(pair.Certificate) != tt.wantChain || !pair.Leaf.Equal(leaf) {
				t.Errorf("PEM chain differs from the TLS one")
			}
			if blk, _ := pem.Decode(ca.RootPEM()); blk == nil || !ca.Root().Equal(mustParse(t, blk.Bytes)) {
				t.Errorf("RootPEM is not the root")
			}
			if got := ca.Issuer().Equal(ca.Root()); got != (tt.wantChain == 1) {
				t.Errorf("issuer is root = %t", got)
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCASaveLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := cloud.LoadCA(dir, cloud.CAOptions{}); !errors.Is(err, cloud.ErrNoCA) {
		t.Fatalf("load from an empty dir: %v, want ErrNoCA", err)
	}
	ca, err := cloud.NewCA(cloud.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := cloud.LoadCA(dir, cloud.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !back.Root().Equal(ca.Root()) || !back.Issuer().Equal(ca.Issuer()) || back.Fingerprint() != ca.Fingerprint() {
		t.Fatal("loaded CA differs from the saved one")
	}

	// OpenCA makes and saves one on first use, then loads it.
	data := t.TempDir()
	first, err := cloud.OpenCA(data, "", true, cloud.CAOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := cloud.OpenCA(data, cloud.DefaultCA, false, cloud.CAOptions{}, nil)
	if err != nil || !again.Root().Equal(first.Root()) {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := cloud.OpenCA(data, "other", false, cloud.CAOptions{}, nil); !errors.Is(err, cloud.ErrNoCA) {
		t.Fatalf("open a missing CA without create: %v", err)
	}
}

func TestImportCA(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "my root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	ca, err := cloud.ImportCA(certPEM, keyPEM, cloud.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ca.Root().Subject.CommonName != "my root" || ca.Issuer().Equal(ca.Root()) {
		t.Fatalf("root %s, issuer %s", ca.Root().Subject, ca.Issuer().Subject)
	}
	direct, err := cloud.ImportCA(der, keyDER, cloud.CAOptions{NoIntermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !direct.Issuer().Equal(direct.Root()) {
		t.Fatal("NoIntermediate: the root should issue")
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, _ := x509.MarshalPKCS8PrivateKey(other)
	if _, err := cloud.ImportCA(der, otherDER, cloud.CAOptions{}); err == nil {
		t.Fatal("imported a root with a key that is not its own")
	}
}

// TestOptionsCA: a Cloud given a CA uses it, and its server certificate
// chains to that CA's root.
func TestOptionsCA(t *testing.T) {
	ca, err := cloud.NewCA(cloud.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloud.New(cloud.Options{CA: ca, CoAPAddr: "-", HTTPSAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.CA() != ca {
		t.Fatal("Cloud.CA is not the CA it was given")
	}
	conn, err := tls.Dial("tcp", c.Addrs().MQTTS, &tls.Config{RootCAs: ca.RootPool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("server certificate does not chain to the given CA: %v", err)
	}
	conn.Close()
}
