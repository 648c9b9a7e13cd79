package devicemodel

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func assertNoSecret(t *testing.T, out string, secret []byte) {
	t.Helper()
	for _, form := range []string{
		string(secret),
		hex.EncodeToString(secret),
		strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret),
		fmt.Sprint(secret), // [1 2 3]
	} {
		if len(form) >= 8 && strings.Contains(out, form) {
			t.Fatalf("output reveals a secret (%q...):\n%s", form[:8], out)
		}
	}
	// Also look for any 12-byte window of the secret, hex encoded.
	h := hex.EncodeToString(secret)
	for i := 0; i+24 <= len(h); i += 2 {
		if strings.Contains(strings.ToLower(out), h[i:i+24]) {
			t.Fatalf("output reveals part of a secret at byte %d", i/2)
		}
	}
}

func TestCredentialNeverRevealsSecrets(t *testing.T) {
	f := newFixtures(t)
	tests := []struct {
		name   string
		cred   Credential
		secret []byte
		want   []string // must appear
	}{
		{"psk", f.factoryPSK, f.factoryPSK.PSK, []string{"dev1@proj", "key fp=" + Fingerprint(f.factoryPSK.PSK)}},
		{"cert", f.factoryCert, f.factoryCert.KeyDER, []string{`cn="dev1"`, "fp=" + Fingerprint(f.factoryCert.CertChainDER[0]), "key fp=" + Fingerprint(f.factoryCert.KeyDER)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var outs []string
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%10.3v"} {
				outs = append(outs, fmt.Sprintf(verb, tt.cred), fmt.Sprintf(verb, &tt.cred))
			}
			outs = append(outs, fmt.Sprintf("%+v", Plan{Credential: tt.cred}), fmt.Sprintf("%#v", Plan{Credential: tt.cred}),
				fmt.Sprintf("%v", []Credential{tt.cred}), Rotation{Credential: tt.cred}.String())
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("connect", "cred", tt.cred)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("connect", "cred", tt.cred)
			outs = append(outs, buf.String())
			j, err := json.Marshal(Plan{Credential: tt.cred})
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, string(j))
			all := strings.Join(outs, "\n")
			assertNoSecret(t, all, tt.secret)
			for _, w := range tt.want {
				if !strings.Contains(outs[0], w) {
					t.Errorf("String() = %q, want it to contain %q", outs[0], w)
				}
			}
			if !strings.Contains(buf.String(), `"key_fp":"`+tt.cred.KeyFingerprint()) {
				t.Errorf("slog output lacks key_fp: %s", buf.String())
			}
		})
	}
}

func TestCredentialValidate(t *testing.T) {
	f := newFixtures(t)
	mismatched := f.rotated.Clone()
	mismatched.KeyDER = f.rotated2.KeyDER
	tests := []struct {
		name string
		cred Credential
		ok   bool
	}{
		{"psk", f.factoryPSK, true},
		{"cert", f.factoryCert, true},
		{"psk without key", Credential{Kind: KindPSK, PSKIdentity: "a"}, false},
		{"cert without chain", Credential{Kind: KindCert, KeyDER: f.rotated.KeyDER}, false},
		{"mismatched key", mismatched, false},
		{"garbage key", Credential{Kind: KindCert, CertChainDER: f.rotated.CertChainDER, KeyDER: []byte{1, 2}}, false},
		{"unknown kind", Credential{Kind: "token"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cred.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
	if _, err := f.factoryCert.TLSCertificate(); err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
	if Fingerprint(nil) != "none" || len(Fingerprint([]byte("x"))) != 8 {
		t.Fatal("Fingerprint format")
	}
	c := f.factoryCert.Clone()
	c.CertChainDER[0][0] ^= 0xff
	if f.factoryCert.Equal(c) {
		t.Fatal("Clone must deep-copy")
	}
}
