package fakeca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func FuzzParseCSR(f *testing.F) {
	key := mustKey(f, ECDSAP256)
	der := newCSRDER(f, key, pkix.Name{Country: []string{"BR"}, Organization: []string{"proj"}, CommonName: "dev1"})
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der}))
	f.Add(newCSRDER(f, key, pkix.Name{CommonName: "dev\n1"}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("error %v does not wrap ErrBadCSR", err)
			}
			return
		}
		if csr == nil {
			t.Fatal("nil CSR without error")
		}
		// Whatever parses must be safe to check against a policy.
		if err := CheckCSR(csr, Policy{Organization: "proj"}); err != nil && !errors.Is(err, ErrPolicy) {
			t.Fatalf("CheckCSR error %v does not wrap ErrPolicy", err)
		}
	})
}

func FuzzParseChain(f *testing.F) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		f.Fatal(err)
	}
	leaf, _, err := a.Issuing.IssueWith(Template{CN: "dev"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf.Raw, a.Issuing.Cert.Raw)
	f.Add(leaf.Raw, []byte{})
	f.Add([]byte{}, a.Issuing.Cert.Raw)
	f.Add([]byte{0x30, 0x80}, []byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, first, second []byte) {
		for _, raw := range [][][]byte{{first}, {first, second}} {
			certs, err := ParseChain(raw)
			if err != nil {
				if !errors.Is(err, ErrBadCert) || certs != nil {
					t.Fatalf("ParseChain = %d certificates, %v; want none and ErrBadCert", len(certs), err)
				}
				continue
			}
			if len(certs) != len(raw) {
				t.Fatalf("%d certificates from %d", len(certs), len(raw))
			}
			for i, c := range certs {
				if c == nil || !bytes.Equal(c.Raw, raw[i]) {
					t.Fatalf("certificate %d is not the one given", i)
				}
			}
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, kt := range []KeyType{ECDSAP256, ECDSAP384} {
		k := mustKey(f, kt)
		der, err := EncodeKeyDER(k)
		if err != nil {
			f.Fatal(err)
		}
		p, _ := EncodeKeyPEM(k)
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
		f.Add(der)
		f.Add(p)
		f.Add(pkcs8)
		f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	}
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v does not wrap ErrBadKey", err)
			}
			// The error never echoes the input.
			if msg := err.Error(); len(data) >= 16 && (strings.Contains(msg, string(data)) || strings.Contains(msg, hex.EncodeToString(data))) {
				t.Fatalf("error %q echoes the input", msg)
			}
			return
		}
		// A parsed key re-encodes and parses back to the same key.
		der, err := EncodeKeyDER(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseKey(der)
		if err != nil {
			t.Fatal(err)
		}
		if !publicKeyEqual(k.Public(), k2) {
			t.Fatal("round trip changed the key")
		}
	})
}

func FuzzParseCertPEMOrDER(f *testing.F) {
	ca, err := NewRoot("Fuzz Root", ECDSAP256, 0, vopts())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.Cert.Raw)
	f.Add(EncodeCertPEM(ca.Cert))
	f.Add(bytes.Repeat(EncodeCertPEM(ca.Cert), 2))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertPEMOrDER(data)
		if err != nil {
			if !errors.Is(err, ErrBadCert) {
				t.Fatalf("error %v does not wrap ErrBadCert", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		for _, c := range certs {
			if c == nil {
				t.Fatal("nil certificate")
			}
			_ = Fingerprint(c.Raw)
			_, _ = KeyTypeOf(c.PublicKey)
		}
	})
}

func BenchmarkSignCSR(b *testing.B) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		b.Fatal(err)
	}
	der := newCSRDER(b, mustKey(b, ECDSAP256), pkix.Name{Organization: []string{"proj"}, CommonName: "dev1"})
	p := Policy{Organization: "proj"}
	b.ReportAllocs()
	for b.Loop() {
		csr, err := ParseCSR(der)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Issuing.SignCSR(csr, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := a.Issuing.Issue("dev1", "proj", ECDSAP256, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyClient(b *testing.B) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		b.Fatal(err)
	}
	leaf, _, err := a.Issuing.Issue("dev1", "proj", "", 0)
	if err != nil {
		b.Fatal(err)
	}
	certs, roots := []*x509.Certificate{leaf, a.Issuing.Cert}, []*x509.Certificate{a.Root.Cert}
	now := leaf.NotBefore.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyClient(certs, roots, now); err != nil {
			b.Fatal(err)
		}
	}
}
