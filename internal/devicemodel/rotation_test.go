package devicemodel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRotationAcceptsKeyFormats(t *testing.T) {
	f := newFixtures(t)
	rsaKey, err := rsa.GenerateKey(seeded(3), 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := f.ca.issue(t, "dev1", rsaKey.Public(), t0.Add(time.Hour))
	tests := []struct {
		name    string
		certPEM string
		keyPEM  string
	}{
		{"PKCS#8 with chain", pemChain(f.rotated.CertChainDER), pemKey(t, f.rotated)},
		{"leaf only", pemChain(f.rotated.CertChainDER[:1]), pemKey(t, f.rotated)},
		{"SEC 1 EC PRIVATE KEY", pemChain(f.rotated.CertChainDER), mustPEMBlock(t, "EC PRIVATE KEY", mustSEC1(t, f.rotated))},
		{"PKCS#1 RSA PRIVATE KEY", pemChain([][]byte{rsaCert}), mustPEMBlock(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"CRLF line ends and text around", "subject=dev1\r\n" + pemChain(f.rotated.CertChainDER) + "\r\n", pemKey(t, f.rotated)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRotation(rotationJSON(t, tt.certPEM, tt.keyPEM))
			if err != nil {
				t.Fatalf("ParseRotation: %v", err)
			}
			if err := r.Credential.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if _, err := x509.ParsePKCS8PrivateKey(r.Credential.KeyDER); err != nil {
				t.Fatalf("key not normalised to PKCS#8: %v", err)
			}
			d := New(f.certCfg, nil)
			if err := d.ApplyRotation(r); err != nil {
				t.Fatal(err)
			}
			if p := d.Boot(); p.Slot != SlotRotated || !p.Credential.Equal(r.Credential) {
				t.Fatalf("Boot = %q %v, want the rotation", p.Slot, p.Credential)
			}
		})
	}
}

func mustSEC1(t testing.TB, c Credential) []byte {
	t.Helper()
	k, err := c.Signer()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func FuzzParseRotation(f *testing.F) {
	fx := newFixtures(f)
	f.Add(credPayload(f, fx.rotated))
	f.Add(rotationJSON(f, pemChain(fx.rotated.CertChainDER), pemKey(f, fx.rotated2)))
	f.Add([]byte(`{"new_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "new_private_key": "x"}`))
	f.Add([]byte(`{"new_certificate": 1}`))
	f.Add([]byte(`{"new_certificate": "a
b", "new_private_key": "c"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := ParseRotation(payload)
		if err != nil {
			if !errors.Is(err, ErrBadRotation) {
				t.Fatalf("error does not wrap ErrBadRotation: %v", err)
			}
			return
		}
		if err := r.Credential.Validate(); err != nil {
			t.Fatalf("accepted an invalid rotation: %v", err)
		}
	})
}

func TestRotationFromPEM(t *testing.T) {
	f := newFixtures(t)
	tests := []struct {
		name    string
		certPEM string
		keyPEM  string
		want    error // nil: accepted
	}{
		{"chain and PKCS#8 key", pemChain(f.rotated.CertChainDER), pemKey(t, f.rotated), nil},
		{"SEC 1 key", pemChain(f.rotated.CertChainDER[:1]), mustPEMBlock(t, "EC PRIVATE KEY", mustSEC1(t, f.rotated)), nil},
		{"key of another certificate", pemChain(f.rotated.CertChainDER), pemKey(t, f.rotated2), ErrKeyMismatch},
		{"no PEM in certificate", "not a certificate", pemKey(t, f.rotated), ErrBadPEM},
		{"no PEM in key", pemChain(f.rotated.CertChainDER), "", ErrBadPEM},
		{"certificate block as key", pemChain(f.rotated.CertChainDER), pemChain(f.rotated.CertChainDER[:1]), ErrBadPrivateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := RotationFromPEM([]byte(tt.certPEM), []byte(tt.keyPEM))
			if tt.want != nil {
				if !errors.Is(err, ErrBadRotation) || !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want ErrBadRotation and %v", err, tt.want)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY-----") {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Credential.Validate(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Credential.CertChainDER[0], f.rotated.CertChainDER[0]) {
				t.Fatal("leaf differs")
			}
		})
	}
	// Same result as the JSON envelope.
	a, err := ParseRotation(credPayload(t, f.rotated))
	if err != nil {
		t.Fatal(err)
	}
	b, err := RotationFromPEM([]byte(pemChain(f.rotated.CertChainDER)), []byte(pemKey(t, f.rotated)))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Credential.Equal(b.Credential) {
		t.Fatal("RotationFromPEM and ParseRotation disagree")
	}
}

func TestParseCertChainPEM(t *testing.T) {
	f := newFixtures(t)
	chain := f.rotated.CertChainDER
	tests := []struct {
		name string
		in   string
		want int   // certificates
		err  error // nil: accepted
	}{
		{"leaf and CA", pemChain(chain), 2, nil},
		{"text around", "issued:\n" + pemChain(chain[:1]) + "\nbye\n", 1, nil},
		{"empty", "", 0, ErrBadPEM},
		{"key block", pemKey(t, f.rotated), 0, ErrBadPEM},
		{"truncated second block", pemChain(chain[:1]) + "-----BEGIN CERTIFICATE-----\nAAAA\n", 0, ErrBadPEM},
		{"garbage certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, ErrBadCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertChainPEM([]byte(tt.in))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want || !bytes.Equal(got[0], chain[0]) {
				t.Fatalf("got %d certificates", len(got))
			}
		})
	}
}
