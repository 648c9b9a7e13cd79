package fakeca

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestKeyEncoding(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		key     crypto.Signer
		pemType string
	}{
		{"p256", mustKey(t, ECDSAP256), "EC PRIVATE KEY"},
		{"p384", mustKey(t, ECDSAP384), "EC PRIVATE KEY"},
		{"rsa", mustKey(t, RSA2048), "RSA PRIVATE KEY"},
		{"ed25519", ed, "PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := EncodeKeyPEM(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(p); b == nil || b.Type != tt.pemType {
				t.Fatalf("PEM block %v, want %q", b, tt.pemType)
			}
			der, err := EncodeKeyDER(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			pkcs8, err := x509.MarshalPKCS8PrivateKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
			for name, in := range map[string][]byte{
				"PEM":              p,
				"DER":              der,
				"PKCS#8 DER":       pkcs8,
				"PKCS#8 PEM":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
				"after EC PARAMS":  append(bytes.Clone(ecParams), p...),
				"after junk lines": append([]byte("key follows\n"), p...),
			} {
				k, err := ParseKey(in)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !publicKeyEqual(tt.key.Public(), k) {
					t.Fatalf("%s: parsed a different key", name)
				}
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	key := mustKey(t, ECDSAP256)
	der, err := EncodeKeyDER(key)
	if err != nil {
		t.Fatal(err)
	}
	truncated := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der[:len(der)-10]})
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	x25519, _ := x509.MarshalPKCS8PrivateKey(x)
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "empty"},
		{"garbage DER", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, "not a SEC1"},
		{"truncated SEC1 PEM", truncated, "EC PRIVATE KEY block does not parse"},
		{"SEC1 labelled RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), "does not parse"},
		{"certificate", EncodeCertPEM(mustRoot(t).Cert), `"CERTIFICATE" is not a private key`},
		{"encrypted PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), "encrypted"},
		{"legacy encrypted", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: der}), "encrypted"},
		{"only EC PARAMETERS", pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 1, 1}}), "no private key"},
		{"X25519 cannot sign", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519}), "does not parse"},
		{"too large", bytes.Repeat([]byte{'A'}, MaxKeySize+1), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.data)
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ParseKey = %v, %v; want ErrBadKey mentioning %q", k, err, tt.msg)
			}
			noSecrets(t, err, der)
		})
	}
	t.Run("unsupported signer", func(t *testing.T) {
		if _, err := EncodeKeyPEM(otherSigner{}); !errors.Is(err, ErrKeyType) {
			t.Fatalf("EncodeKeyPEM = %v", err)
		}
	})
}

// noSecrets fails if err shows any 8-byte window of key, raw, hex or base64.
func noSecrets(t *testing.T, err error, key []byte) {
	t.Helper()
	msg := err.Error()
	for i := 0; i+8 <= len(key); i++ {
		w := key[i : i+8]
		if strings.Contains(msg, string(w)) || strings.Contains(strings.ToLower(msg), hex.EncodeToString(w)) {
			t.Fatalf("error %q shows key bytes", msg)
		}
	}
	b64 := base64.StdEncoding.EncodeToString(key)
	for i := 0; i+12 <= len(b64); i += 4 {
		if strings.Contains(msg, b64[i:i+12]) {
			t.Fatalf("error %q shows base64 key bytes", msg)
		}
	}
}

type otherSigner struct{ crypto.Signer }

func TestParseCertPEMOrDER(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	root, inter := a.Root.Cert, a.Issuing.Cert
	keyPEM, err := EncodeKeyPEM(a.Root.Key)
	if err != nil {
		t.Fatal(err)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name string
		data []byte
		want []*x509.Certificate // nil: error
	}{
		{"PEM", EncodeCertPEM(root), []*x509.Certificate{root}},
		{"DER", root.Raw, []*x509.Certificate{root}},
		{"bundle", cat(EncodeCertPEM(inter), EncodeCertPEM(root)), []*x509.Certificate{inter, root}},
		{"bundle with key and text", cat([]byte("subject=...\n"), EncodeCertPEM(inter), keyPEM, EncodeCertPEM(root)), []*x509.Certificate{inter, root}},
		{"empty", nil, nil},
		{"garbage", []byte("not a certificate"), nil},
		{"key only", keyPEM, nil},
		{"DER with trailing byte", append(bytes.Clone(root.Raw), 0), nil},
		{"bad PEM body", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), nil},
		{"too large", bytes.Repeat([]byte{'-'}, MaxCertSize+1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertPEMOrDER(tt.data)
			if tt.want == nil {
				if !errors.Is(err, ErrBadCert) {
					t.Fatalf("ParseCertPEMOrDER = %v, %v; want ErrBadCert", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("certificate %d differs", i)
				}
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	tests := []struct{ in, full, short string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "e3b0c442"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "ba7816bf"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Fingerprint([]byte(tt.in)); got != tt.full {
				t.Errorf("Fingerprint = %s", got)
			}
			if got := ShortFingerprint([]byte(tt.in)); got != tt.short {
				t.Errorf("ShortFingerprint = %s", got)
			}
		})
	}
}

func TestEncodeCRLPEM(t *testing.T) {
	b, _ := pem.Decode(EncodeCRLPEM([]byte{1, 2}))
	if b == nil || b.Type != "X509 CRL" || !bytes.Equal(b.Bytes, []byte{1, 2}) {
		t.Fatalf("EncodeCRLPEM block %v", b)
	}
}
