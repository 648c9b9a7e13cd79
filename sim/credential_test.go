package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
)

func TestCredentialRedacted(t *testing.T) {
	cert := selfSigned(t, "dev1")
	c := Credential{PSKIdentity: "dev1@acme", PSK: []byte("psk-secret-0001"), Chain: cert.CertChainDER, KeyDER: cert.KeyDER}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("provision", "cred", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{c.String(), c.GoString(), fmt.Sprintf("%v|%+v|%#v|%s|%x|%q|%d", c, c, c, c, c, c, c), logged.String(), string(js)}
	for _, out := range outs {
		for _, secret := range [][]byte{c.PSK, c.KeyDER} {
			if strings.Contains(out, string(secret)) || strings.Contains(out, hex.EncodeToString(secret[:8])) || strings.Contains(out, fmt.Sprint(secret[:8])[1:12]) {
				t.Fatalf("a secret shows in %q", out)
			}
		}
	}
	for _, want := range []string{`identity="dev1@acme"`, "key fp=" + devicemodel.Fingerprint(c.PSK), `cn="dev1"`, "key fp=" + devicemodel.Fingerprint(c.KeyDER), "chain=1"} {
		if !strings.Contains(c.String(), want) {
			t.Errorf("String %q lacks %q", c.String(), want)
		}
	}
	if (Credential{}).String() != "no credentials" {
		t.Errorf("zero credential: %q", Credential{}.String())
	}
}

func TestCredentialKeyForms(t *testing.T) {
	cert := selfSigned(t, "dev1")
	other := selfSigned(t, "dev1")
	c, err := NewCredential(cert.CertChainDER, cert.KeyDER)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key == nil || !bytes.Equal(c.KeyDER, cert.KeyDER) || !c.HasCert() || c.HasPSK() {
		t.Fatalf("NewCredential = %v (key parsed: %t)", c, c.Key != nil)
	}
	if _, err := NewCredential(cert.CertChainDER, other.KeyDER); !errors.Is(err, ErrCredential) || !errors.Is(err, devicemodel.ErrKeyMismatch) {
		t.Fatalf("NewCredential with another key: %v, want ErrCredential and ErrKeyMismatch", err)
	}
	if _, err := NewCredential(cert.CertChainDER, []byte("not a key")); !errors.Is(err, ErrCredential) || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("NewCredential with garbage: %v", err)
	}

	// A SEC 1 key file is what a board is sent, byte for byte; a parsed
	// key alone goes as PKCS #8.
	key, err := c.Signer()
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if der, err := (Credential{Chain: c.Chain, KeyDER: sec1}).EncodedKey(); err != nil || !bytes.Equal(der, sec1) {
		t.Fatalf("EncodedKey of a SEC 1 key: %v", err)
	}
	if der, err := (Credential{Chain: c.Chain, Key: key}).EncodedKey(); err != nil || !bytes.Equal(der, cert.KeyDER) {
		t.Fatalf("EncodedKey of a parsed key: want its PKCS #8 (%v)", err)
	}
	if s, err := (Credential{KeyDER: sec1}).Signer(); err != nil || !s.Public().(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("Signer of a SEC 1 key: %v", err)
	}
	if _, err := (Credential{KeyDER: []byte{1, 2, 3}}).Signer(); !errors.Is(err, ErrCredential) {
		t.Fatalf("Signer of garbage: %v", err)
	}

	// The model's credentials map onto it and back.
	psk := devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: "dev1@acme", PSK: []byte("k")}
	if got, err := fromModel(psk); err != nil || got.PSKIdentity != psk.PSKIdentity || !bytes.Equal(got.PSK, psk.PSK) || got.HasCert() {
		t.Fatalf("fromModel(psk) = %v, %v", got, err)
	}
	if got, err := fromModel(cert); err != nil || got.Key == nil || !bytes.Equal(got.KeyDER, cert.KeyDER) || len(got.Chain) != 1 {
		t.Fatalf("fromModel(cert) = %v, %v", got, err)
	}
	if _, err := fromModel(devicemodel.Credential{}); !errors.Is(err, ErrCredential) {
		t.Fatalf("fromModel(zero) = %v", err)
	}
	if cl := c.Clone(); !bytes.Equal(cl.Chain[0], c.Chain[0]) || &cl.Chain[0][0] == &c.Chain[0][0] || &cl.KeyDER[0] == &c.KeyDER[0] {
		t.Fatal("Clone shares the chain or key bytes")
	}
}
