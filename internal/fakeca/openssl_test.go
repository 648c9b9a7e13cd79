package fakeca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
)

// These tests run the real openssl. They use the wall clock, since openssl
// verify does.

// TestOpenSSLVerify: openssl accepts our chains and key files.
func TestOpenSSLVerify(t *testing.T) {
	peer.Require(t, "openssl")
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			a, err := Init(kt, Options{})
			if err != nil {
				t.Fatal(err)
			}
			leaf, key, err := a.Issuing.Issue("dev1", "proj", kt, 0)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, err := EncodeKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			keyDER, err := EncodeKeyDER(key)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, "root.pem", EncodeCertPEM(a.Root.Cert))
			writeFile(t, dir, "intermediate.pem", EncodeCertPEM(a.Issuing.Cert))
			writeFile(t, dir, "device.pem", EncodeCertPEM(leaf))
			writeFile(t, dir, "device.der", leaf.Raw)
			writeFile(t, dir, "device.key", keyPEM)
			writeFile(t, dir, "device.key.der", keyDER)

			out := runOpenSSL(t, dir, "verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "device.pem")
			if !strings.Contains(out, "device.pem: OK") {
				t.Fatalf("openssl verify: %s", out)
			}
			out = runOpenSSL(t, dir, "verify", "-purpose", "sslclient", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "device.pem")
			if !strings.Contains(out, "device.pem: OK") {
				t.Fatalf("openssl verify -purpose sslclient -x509_strict: %s", out)
			}
			// Without the intermediate the chain must not verify.
			if out, err := tryOpenSSL(t, dir, "verify", "-CAfile", "root.pem", "device.pem"); err == nil {
				t.Fatalf("openssl verify without intermediate passed: %s", out)
			}
			// DER certificate and both key encodings parse, and the key
			// matches the certificate.
			certPub := runOpenSSL(t, dir, "x509", "-inform", "DER", "-in", "device.der", "-noout", "-pubkey")
			for _, args := range [][]string{
				{"pkey", "-in", "device.key", "-pubout"},
				{"pkey", "-inform", "DER", "-in", "device.key.der", "-pubout"},
			} {
				if got := runOpenSSL(t, dir, args...); got != certPub {
					t.Fatalf("openssl %v: public key %q, certificate has %q", args, got, certPub)
				}
			}
		})
	}
}

// TestOpenSSLServerChain: openssl accepts a server chain for the purpose
// sslserver, with the hosts as SANs.
func TestOpenSSLServerChain(t *testing.T) {
	peer.Require(t, "openssl")
	dir := t.TempDir()
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := a.Issuing.ServerCert([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "root.pem", EncodeCertPEM(a.Root.Cert))
	writeFile(t, dir, "server.pem", EncodeCertPEM(tc.Leaf))
	chain, err := x509.ParseCertificate(tc.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "chain.pem", EncodeCertPEM(chain))
	out := runOpenSSL(t, dir, "verify", "-purpose", "sslserver", "-verify_ip", "127.0.0.1", "-verify_hostname", "localhost",
		"-CAfile", "root.pem", "-untrusted", "chain.pem", "server.pem")
	if !strings.Contains(out, "server.pem: OK") {
		t.Fatalf("openssl verify: %s", out)
	}
}

// TestOpenSSLCRL: openssl parses our CRLs, verifies their signature and
// lists the revoked serials.
func TestOpenSSLCRL(t *testing.T) {
	peer.Require(t, "openssl")
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := a.Issuing.Issue("dev1", "proj", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := a.Issuing.CRL([]x509.RevocationListEntry{
		{SerialNumber: leaf.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)},
		{SerialNumber: big.NewInt(0x1234), RevocationTime: time.Now().Add(-time.Hour)},
	}, big.NewInt(3), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "crl.pem", EncodeCRLPEM(der))
	writeFile(t, dir, "crl.der", der)
	writeFile(t, dir, "intermediate.pem", EncodeCertPEM(a.Issuing.Cert))
	writeFile(t, dir, "root.pem", EncodeCertPEM(a.Root.Cert))
	writeFile(t, dir, "device.pem", EncodeCertPEM(leaf))

	out := runOpenSSL(t, dir, "crl", "-in", "crl.pem", "-noout", "-text")
	for _, want := range []string{
		"Certificate Revocation List (CRL):",
		"Version 2",
		"Issuer: CN = " + InitIntermediateCN,
		"X509v3 CRL Number:",
		fmt.Sprintf("Serial Number: %X", leaf.SerialNumber.Bytes()),
		"Serial Number: 1234",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, out)
		}
	}
	if out := runOpenSSL(t, dir, "crl", "-inform", "DER", "-in", "crl.der", "-noout", "-CAfile", "intermediate.pem"); !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -CAfile: %s", out)
	}
	// With CRL checking the revoked device no longer verifies.
	out, err = tryOpenSSL(t, dir, "verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "device.pem")
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check: %v\n%s", err, out)
	}
}

// TestOpenSSLCSR: a CSR made as in Golioth's certificate guide is accepted with Organization
// "proj" and refused with another, and the certificate verifies in openssl.
func TestOpenSSLCSR(t *testing.T) {
	peer.Require(t, "openssl")
	dir := t.TempDir()
	runOpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "dev.key.pem")
	runOpenSSL(t, dir, "req", "-new", "-key", "dev.key.pem", "-subj", "/C=BR/O=proj/CN=dev1", "-out", "dev.csr.pem")
	runOpenSSL(t, dir, "req", "-in", "dev.csr.pem", "-outform", "DER", "-out", "dev.csr.der")

	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "root.pem", EncodeCertPEM(a.Root.Cert))
	writeFile(t, dir, "intermediate.pem", EncodeCertPEM(a.Issuing.Cert))
	devKey, err := ParseKey(readFile(t, dir, "dev.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dev.csr.pem", "dev.csr.der"} {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(readFile(t, dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Issuing.SignCSR(csr, Policy{Organization: "other"}); !errors.Is(err, ErrPolicy) {
				t.Fatalf("SignCSR with O=other: %v; want ErrPolicy", err)
			}
			c, err := a.Issuing.SignCSR(csr, Policy{Organization: "proj", AllowedKeys: []KeyType{ECDSAP256}})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Subject.String(); got != "CN=dev1,O=proj,C=BR" {
				t.Errorf("subject %q", got)
			}
			if !publicKeyEqual(c.PublicKey, devKey) {
				t.Error("certificate is not for the CSR's key")
			}
			crt := strings.TrimSuffix(name, filepath.Ext(name)) + ".crt.pem"
			writeFile(t, dir, crt, EncodeCertPEM(c))
			out := runOpenSSL(t, dir, "verify", "-purpose", "sslclient", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", crt)
			if !strings.Contains(out, crt+": OK") {
				t.Fatalf("openssl verify: %s", out)
			}
			subj := runOpenSSL(t, dir, "x509", "-in", crt, "-noout", "-subject")
			if !strings.Contains(subj, "C = BR, O = proj, CN = dev1") {
				t.Errorf("openssl sees subject %q", subj)
			}
		})
	}
}

// TestOpenSSLImport imports a root made with the commands of Golioth's certificate guide, with
// and without an intermediate, issues from it, and checks openssl and Go
// agree on the result; a root with someone else's key is refused.
func TestOpenSSLImport(t *testing.T) {
	peer.Require(t, "openssl")
	dir := t.TempDir()
	runOpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "golioth.key.pem")
	runOpenSSL(t, dir, "req", "-x509", "-new", "-nodes", "-key", "golioth.key.pem", "-sha256", "-subj", "/C=BR/CN=Root golioth", "-days", "1024", "-out", "golioth.crt.pem")
	runOpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "other.key.pem")
	// The same root key as DER, as `openssl ec -outform DER` writes it.
	runOpenSSL(t, dir, "ec", "-in", "golioth.key.pem", "-outform", "DER", "-out", "golioth.key.der")
	// A v1 self-signed root, as `openssl x509 -req -signkey` makes it.
	runOpenSSL(t, dir, "req", "-new", "-key", "other.key.pem", "-subj", "/CN=V1 Root", "-out", "v1.csr")
	runOpenSSL(t, dir, "x509", "-req", "-in", "v1.csr", "-signkey", "other.key.pem", "-days", "30", "-out", "v1.crt.pem")
	rootKey := readFile(t, dir, "golioth.key.pem")

	tests := []struct {
		name      string
		cert, key string
		withInter bool
		subject   string
		want      error
	}{
		{"root issues", "golioth.crt.pem", "golioth.key.pem", false, "CN=Root golioth,C=BR", nil},
		{"root issues, DER key", "golioth.crt.pem", "golioth.key.der", false, "CN=Root golioth,C=BR", nil},
		{"with intermediate", "golioth.crt.pem", "golioth.key.pem", true, "CN=Root golioth,C=BR", nil},
		{"v1 root", "v1.crt.pem", "other.key.pem", false, "CN=V1 Root", nil},
		{"v1 root with intermediate", "v1.crt.pem", "other.key.pem", true, "CN=V1 Root", nil},
		{"key mismatch", "golioth.crt.pem", "other.key.pem", false, "", ErrKeyMismatch},
		{"key mismatch with intermediate", "golioth.crt.pem", "other.key.pem", true, "", ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootPEM := readFile(t, dir, tt.cert)
			a, err := Import(rootPEM, readFile(t, dir, tt.key), tt.withInter, ECDSAP256, Options{})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Import = %v; want %v", err, tt.want)
				}
				noSecrets(t, err, rootKey)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Root.Cert.Subject.String(); got != tt.subject {
				t.Errorf("root subject %q", got)
			}
			leaf, _, err := a.Issuing.Issue("dev1", "proj", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			certs := []*x509.Certificate{leaf}
			if tt.withInter {
				certs = append(certs, a.Issuing.Cert)
			}
			if _, err := VerifyClient(certs, []*x509.Certificate{a.Root.Cert}, time.Now()); err != nil {
				t.Fatal(err)
			}
			sub := t.TempDir()
			writeFile(t, sub, "root.pem", rootPEM)
			writeFile(t, sub, "device.pem", EncodeCertPEM(leaf))
			args := []string{"verify", "-purpose", "sslclient", "-CAfile", "root.pem"}
			if tt.withInter {
				writeFile(t, sub, "intermediate.pem", EncodeCertPEM(a.Issuing.Cert))
				args = append(args, "-untrusted", "intermediate.pem")
			}
			if out := runOpenSSL(t, sub, append(args, "device.pem")...); !strings.Contains(out, "device.pem: OK") {
				t.Fatalf("openssl verify: %s", out)
			}
			// The openssl root has no keyUsage; it can still sign a CRL
			// that both Go and openssl accept.
			der, err := a.Root.CRL([]x509.RevocationListEntry{{SerialNumber: big.NewInt(99), RevocationTime: time.Now()}}, big.NewInt(1), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.CheckSignatureFrom(a.Root.Cert); err != nil {
				t.Fatal(err)
			}
			writeFile(t, sub, "crl.pem", EncodeCRLPEM(der))
			if out := runOpenSSL(t, sub, "crl", "-in", "crl.pem", "-noout", "-CAfile", "root.pem"); !strings.Contains(out, "verify OK") {
				t.Errorf("openssl crl: %s", out)
			}
			// Save and Load keep the imported root intact.
			ca := filepath.Join(t.TempDir(), "ca")
			if err := a.Save(ca); err != nil {
				t.Fatal(err)
			}
			if b, err := Load(ca, Options{}); err != nil || !b.Root.Cert.Equal(a.Root.Cert) {
				t.Fatalf("Load after import: %v", err)
			}
		})
	}
}
