package fakeca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckCSR(t *testing.T) {
	p256, p384, rsa := mustKey(t, ECDSAP256), mustKey(t, ECDSAP384), mustKey(t, RSA2048)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}

	tests := []struct {
		name string
		key  crypto.Signer
		subj pkix.Name
		p    Policy
		msg  string // "" means accepted; else a substring of the ErrPolicy error
	}{
		{"zero policy p256", p256, pkix.Name{CommonName: "dev1"}, Policy{}, ""},
		{"zero policy p384", p384, pkix.Name{CommonName: "dev1"}, Policy{}, ""},
		{"zero policy rsa", rsa, pkix.Name{CommonName: "dev1"}, Policy{}, ""},
		{"allowed p256 only", p384, pkix.Name{CommonName: "dev1"}, Policy{AllowedKeys: []KeyType{ECDSAP256}}, "key type ecdsa-p384 not allowed"},
		{"allowed rsa only", p256, pkix.Name{CommonName: "dev1"}, Policy{AllowedKeys: []KeyType{RSA2048}}, "key type ecdsa-p256"},
		{"allowed default spelled empty", p256, pkix.Name{CommonName: "dev1"}, Policy{AllowedKeys: []KeyType{""}}, ""},
		{"p521 never", p521, pkix.Name{CommonName: "dev1"}, Policy{}, "key type ecdsa-p521"},
		{"ed25519 never", ed, pkix.Name{CommonName: "dev1"}, Policy{}, "key type ed25519"},
		{"no CN", p256, pkix.Name{Organization: []string{"proj"}}, Policy{}, "no CN"},
		{"two CNs", p256, pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "a"}, {Type: cn, Value: "b"}}}, Policy{}, "2 CNs"},
		{"CN 64 chars", p256, pkix.Name{CommonName: strings.Repeat("a", 64)}, Policy{}, ""},
		{"CN 65 chars", p256, pkix.Name{CommonName: strings.Repeat("a", 65)}, Policy{}, "65 characters"},
		{"CN 64 runes", p256, pkix.Name{CommonName: strings.Repeat("ä", 64)}, Policy{}, ""},
		{"CN unicode", p256, pkix.Name{CommonName: "Gerät-01 (Küche)"}, Policy{}, ""},
		{"CN newline", p256, pkix.Name{CommonName: "dev\n1"}, Policy{}, "unprintable character U+000A"},
		{"CN NUL", p256, pkix.Name{CommonName: "dev\x001"}, Policy{}, "unprintable"},
		{"CN escape", p256, pkix.Name{CommonName: "\x1b[31mdev"}, Policy{}, "unprintable"},
		{"CN zero width", p256, pkix.Name{CommonName: "dev\u200b1"}, Policy{}, "unprintable"},
		{"O matches", p256, pkix.Name{Country: []string{"BR"}, Organization: []string{"proj"}, CommonName: "dev1"}, Policy{Organization: "proj"}, ""},
		{"O differs", p256, pkix.Name{Organization: []string{"other"}, CommonName: "dev1"}, Policy{Organization: "proj"}, `want exactly "proj"`},
		{"O missing", p256, pkix.Name{CommonName: "dev1"}, Policy{Organization: "proj"}, "subject O []"},
		{"O twice", p256, pkix.Name{Organization: []string{"proj", "proj2"}, CommonName: "dev1"}, Policy{Organization: "proj"}, "subject O"},
		{"O case", p256, pkix.Name{Organization: []string{"Proj"}, CommonName: "dev1"}, Policy{Organization: "proj"}, "subject O"},
		{"any O", p256, pkix.Name{Organization: []string{"x", "y"}, CommonName: "dev1"}, Policy{}, ""},
		{"negative validity", p256, pkix.Name{CommonName: "dev1"}, Policy{Validity: -time.Hour}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCSR(newCSR(t, tt.key, tt.subj), tt.p)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("CheckCSR = %v; want ErrPolicy mentioning %q", err, tt.msg)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		if err := CheckCSR(nil, Policy{}); !errors.Is(err, ErrPolicy) {
			t.Fatalf("CheckCSR(nil) = %v", err)
		}
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		if err := checkCN("dev\xff"); !errors.Is(err, ErrPolicy) {
			t.Fatalf("checkCN = %v", err)
		}
	})
}

func TestParseCSR(t *testing.T) {
	key := mustKey(t, ECDSAP256)
	der := newCSRDER(t, key, pkix.Name{Organization: []string{"proj"}, CommonName: "dev1"})
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tampered := bytes.Clone(der)
	tampered[len(tampered)-3] ^= 0x40 // inside the signature
	otherSubj := bytes.Clone(der)
	if i := bytes.Index(otherSubj, []byte("dev1")); i > 0 {
		otherSubj[i+3] = '2' // inside the signed part
	}
	huge := append(pemOf("CERTIFICATE REQUEST", der), bytes.Repeat([]byte("#"), MaxCSRSize)...)

	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"DER", der, true},
		{"PEM", pemOf("CERTIFICATE REQUEST", der), true},
		{"PEM NEW", pemOf("NEW CERTIFICATE REQUEST", der), true},
		{"PEM after text and other blocks", append([]byte("Certificate Request:\n  ...\n"), append(pemOf("EC PARAMETERS", []byte{6, 1, 1}), pemOf("CERTIFICATE REQUEST", der)...)...), true},
		{"PEM with CRLF", bytes.ReplaceAll(pemOf("CERTIFICATE REQUEST", der), []byte("\n"), []byte("\r\n")), true},
		{"empty", nil, false},
		{"garbage", []byte("hello"), false},
		{"PEM wrong type", pemOf("CERTIFICATE", der), false},
		{"PEM broken", []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n"), false},
		{"PEM empty body", pemOf("CERTIFICATE REQUEST", nil), false},
		{"trailing data", append(bytes.Clone(der), 0), false},
		{"truncated", der[:len(der)/2], false},
		{"bad signature", tampered, false},
		{"signed part altered", otherSubj, false},
		{"over size limit", huge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.data)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if csr.Subject.CommonName != "dev1" || !publicKeyEqual(csr.PublicKey, key) {
					t.Fatalf("parsed subject %s", csr.Subject)
				}
				return
			}
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("ParseCSR = %v, %v; want ErrBadCSR", csr, err)
			}
		})
	}
	t.Run("DER that contains a PEM marker", func(t *testing.T) {
		cn := "-----BEGIN CERTIFICATE REQUEST-----"
		csr, err := ParseCSR(newCSRDER(t, key, pkix.Name{CommonName: cn}))
		if err != nil || csr.Subject.CommonName != cn {
			t.Fatalf("ParseCSR = %v, %v", csr, err)
		}
	})
}

func TestSignCSR(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, ECDSAP384)
	subj := pkix.Name{Country: []string{"BR"}, Organization: []string{"proj"}, CommonName: "dev1"}
	csr := newCSR(t, key, subj)
	nb := t0.Add(-30 * time.Minute)

	tests := []struct {
		name   string
		p      Policy
		nb, na time.Time
	}{
		{"zero policy", Policy{}, t0.Add(-time.Minute), t0.Add(DefaultLeafValidity)},
		{"validity", Policy{Validity: 90 * 24 * time.Hour, Organization: "proj"}, t0.Add(-time.Minute), t0.Add(90 * 24 * time.Hour)},
		{"not before", Policy{NotBefore: nb, Validity: time.Hour}, nb, nb.Add(time.Hour)},
		{"not before, default validity", Policy{NotBefore: nb}, nb, nb.Add(DefaultLeafValidity)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := a.Issuing.SignCSR(csr, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.RawSubject, csr.RawSubject) || !publicKeyEqual(c.PublicKey, key) {
				t.Errorf("subject %s / key not taken from the CSR", c.Subject)
			}
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("profile: IsCA %v KU %b EKU %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
			}
			if !bytes.Equal(c.AuthorityKeyId, a.Issuing.Cert.SubjectKeyId) || len(c.SubjectKeyId) == 0 {
				t.Errorf("AKI %x SKI %x", c.AuthorityKeyId, c.SubjectKeyId)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %x", c.SerialNumber)
			}
			if !c.NotBefore.Equal(tt.nb) || !c.NotAfter.Equal(tt.na) {
				t.Errorf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, tt.nb, tt.na)
			}
			if _, err := VerifyClient([]*x509.Certificate{c, a.Issuing.Cert}, []*x509.Certificate{a.Root.Cert}, t0); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("policy violation", func(t *testing.T) {
		c, err := a.Issuing.SignCSR(csr, Policy{Organization: "other"})
		if !errors.Is(err, ErrPolicy) || c != nil {
			t.Fatalf("SignCSR = %v, %v; want ErrPolicy", c, err)
		}
	})
	t.Run("forged signature", func(t *testing.T) {
		forged := *csr
		forged.PublicKey = mustKey(t, ECDSAP384).Public() // not the key that signed
		c, err := a.Issuing.SignCSR(&forged, Policy{})
		if !errors.Is(err, ErrBadCSR) || c != nil {
			t.Fatalf("SignCSR = %v, %v; want ErrBadCSR", c, err)
		}
	})
	t.Run("requested extensions ignored", func(t *testing.T) {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "dev1"}, DNSNames: []string{"evil.example"},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		req, err := ParseCSR(der)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Issuing.SignCSR(req, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.DNSNames) != 0 || c.IsCA {
			t.Errorf("requested SAN copied: %v", c.DNSNames)
		}
	})
}

// SignParsedCSR signs what ParseCSR accepted, applying the same policy as
// SignCSR; SignCSR still refuses a CSR whose signature does not verify.
func TestSignParsedCSR(t *testing.T) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := GenerateKey(ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev1", Organization: []string{"proj"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.Issuing.SignParsedCSR(csr, Policy{Organization: "proj"})
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "dev1" || cert.CheckSignatureFrom(a.Issuing.Cert) != nil {
		t.Fatalf("certificate %v", cert.Subject)
	}
	if _, err := a.Issuing.SignParsedCSR(csr, Policy{Organization: "other"}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("policy not applied: %v", err)
	}
	forged := *csr
	forged.Signature = append([]byte(nil), csr.Signature...)
	forged.Signature[len(forged.Signature)-1] ^= 1
	if _, err := a.Issuing.SignCSR(&forged, Policy{}); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("SignCSR accepted a bad signature: %v", err)
	}
}
