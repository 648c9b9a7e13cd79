package hil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// leaks returns the registered forms found in out, ignoring case.
func leaks(r *Redactor, out []byte) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f := foldBytes(out)
	var found []string
	for s := range r.all {
		if bytes.Contains(f, []byte(s)) {
			found = append(found, s)
		}
	}
	return found
}

func TestRedactPSK(t *testing.T) {
	r := NewRedactor()
	psk := []byte("\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98")
	fp, err := r.AddPSK(psk)
	if err != nil {
		t.Fatal(err)
	}
	if fp != Fingerprint(psk) || len(fp) != 8 {
		t.Fatalf("fp %q", fp)
	}
	m := "<redacted fp=" + fp + ">"
	h := hex.EncodeToString(psk)
	tests := []struct{ in, want string }{
		{"psk " + h + " ok", "psk " + m + " ok"},
		{"PSK=" + strings.ToUpper(h), "PSK=" + m},
		{"mixed " + h[:6] + strings.ToUpper(h[6:]), "mixed " + m},
		{"raw " + string(psk), "raw " + m},
		{"01:23:45:67:89:ab:cd:ef:fe:dc:ba:98", m},
		{"01 23 45 67 89 AB CD EF FE DC BA 98", m},
		{"b64 " + base64.StdEncoding.EncodeToString(psk), "b64 " + m},
		{"twice " + h + h, "twice " + m + m},
		{"partial " + h[:20], "partial " + h[:20]},
		{"", ""},
	}
	for _, tc := range tests {
		if got := r.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactPrivateKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	r := NewRedactor()
	fp, err := r.AddPrivateKey(pemText)
	if err != nil {
		t.Fatal(err)
	}
	if fp != Fingerprint(p8) {
		t.Fatalf("fp %s, want the PKCS #8 DER's %s", fp, Fingerprint(p8))
	}
	b64 := base64.StdEncoding.EncodeToString(p8)
	wrap76 := ""
	for i := 0; i < len(b64); i += 76 {
		wrap76 += b64[i:min(i+76, len(b64))] + "\r\n"
	}
	inputs := map[string]string{
		"PEM":             string(pemText),
		"PEM with CRLF":   strings.ReplaceAll(string(pemText), "\n", "\r\n"),
		"DER":             string(p8),
		"base64":          "key=" + b64,
		"hex":             hex.EncodeToString(p8),
		"HEX":             strings.ToUpper(hex.EncodeToString(p8)),
		"SEC 1":           string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})),
		"SEC 1 DER":       string(sec1),
		"base64 76 cols":  wrap76,
		"base64 offset 1": base64.StdEncoding.EncodeToString(append([]byte{7}, p8...)),
		"base64 offset 2": base64.StdEncoding.EncodeToString(append([]byte{7, 7}, p8...)),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			out := r.Redact(in)
			if !strings.Contains(out, "<redacted fp=") {
				t.Fatalf("nothing redacted: %q", out)
			}
			// No run of 16 base64 characters of the key survives.
			for a := range 3 {
				enc := base64.StdEncoding.EncodeToString(p8[a:])
				for i := 0; i+16 <= len(enc)-4; i++ {
					if strings.Contains(out, enc[i:i+16]) {
						t.Fatalf("key material %q left in %q", enc[i:i+16], out)
					}
				}
			}
			if strings.Contains(strings.ToLower(out), hex.EncodeToString(p8[:12])) || bytes.Contains([]byte(out), p8[:12]) || bytes.Contains([]byte(out), sec1[8:20]) {
				t.Fatalf("key bytes left in %q", out)
			}
		})
	}
	// A whole PEM becomes one marker; one that went through a console
	// (CRLF) keeps its frame and loses each line.
	if out := r.Redact(string(pemText)); out != "<redacted fp="+fp+">" {
		t.Errorf("PEM redacted as %q", out)
	}
	crlf := r.Redact(strings.ReplaceAll(string(pemText), "\n", "\r\n"))
	if !strings.HasPrefix(crlf, "-----BEGIN PRIVATE KEY-----\r\n<redacted fp="+fp+">\r\n<redacted fp="+fp+">") {
		t.Errorf("CRLF PEM redacted as %q", crlf)
	}
	if _, err := r.AddPrivateKey([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("a PEM without a private key was accepted")
	}
}

func TestRedactTokenAndErrors(t *testing.T) {
	r := NewRedactor()
	tok := "qV3x_9-ownership-token"
	fp, err := r.AddToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Errorf("wrap: %w", ErrPortGone)
	err = r.RedactError(fmt.Errorf("register with %s: %w", tok, base))
	if strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "<redacted fp="+fp+">") {
		t.Errorf("%v", err)
	}
	if !errors.Is(err, ErrPortGone) {
		t.Error("RedactError lost the chain")
	}
	if got := r.RedactError(base); got != base {
		t.Error("an error without secrets was rewrapped")
	}
	if r.RedactError(nil) != nil {
		t.Error("nil")
	}
	var nilR *Redactor
	if nilR.Redact(tok) != tok || nilR.RedactError(base) != base || nilR.MaxLen() != 0 {
		t.Error("a nil Redactor changed something")
	}
}

func TestRedactRefuses(t *testing.T) {
	tests := []struct {
		secret string
		want   error
	}{
		{"abc", ErrSecretTooShort},
		{"", ErrSecretTooShort},
		{"redacted", ErrSecretMarker},
		{"<redacted fp=0123abcd>", ErrSecretMarker},
		{"d fp=0123", ErrSecretMarker},
		{"x<redacted fp=0123abcd>y", ErrSecretMarker},
		{"ab<redacted f", ErrSecretTooShort}, // what is left before the marker part is too short
	}
	for _, tc := range tests {
		r := NewRedactor()
		if _, err := r.Add([]byte(tc.secret)); !errors.Is(err, tc.want) {
			t.Errorf("Add(%q): %v, want %v", tc.secret, err, tc.want)
		}
		if len(r.all) != 0 {
			t.Errorf("Add(%q) registered %d forms", tc.secret, len(r.all))
		}
	}
}

// A secret that ends like the start of a marker must not be spelled by
// the text before another secret and that secret's marker.
func TestRedactMarkerNeighbours(t *testing.T) {
	r := NewRedactor()
	s1 := "prefix7<re"
	s2 := "\x93\x1a>tail-of-it"
	s3 := "another-secret"
	for _, s := range []string{s1, s2, s3} {
		if _, err := r.AddToken(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range []string{
		"prefix7" + s3,
		s3 + "tail-of-it",
		"x prefix7" + s3 + "tail-of-it y",
	} {
		out := r.Redact(in)
		if l := leaks(r, []byte(out)); len(l) > 0 || !strings.Contains(out, "<redacted") {
			t.Errorf("Redact(%q) = %q leaks %q", in, out, l)
		}
	}
}

func TestRedactStreamSplits(t *testing.T) {
	r := NewRedactor()
	psk := []byte("0123456789abcdefXYZ")
	if _, err := r.AddPSK(psk); err != nil {
		t.Fatal(err)
	}
	in := []byte("a " + hex.EncodeToString(psk) + " b " + string(psk) + " " + strings.ToUpper(hex.EncodeToString(psk)) + " end")
	want := r.RedactBytes(in)
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j += 7 {
			s := r.NewStream()
			var got []byte
			got = append(got, s.Write(in[:i])...)
			got = append(got, s.Write(in[i:j])...)
			got = append(got, s.Write(in[j:])...)
			got = append(got, s.Flush()...)
			if !bytes.Equal(got, want) {
				t.Fatalf("split %d,%d: %q, want %q", i, j, got, want)
			}
		}
	}
	// Byte by byte.
	s := r.NewStream()
	var got []byte
	for _, c := range in {
		got = append(got, s.Write([]byte{c})...)
	}
	got = append(got, s.Flush()...)
	if !bytes.Equal(got, want) {
		t.Fatalf("byte by byte: %q", got)
	}
}

// FuzzRedact: whatever the secrets and the text, redacted output never
// contains a registered secret (in any registered form, in any case), and
// a stream written in two pieces gives the same output.
func FuzzRedact(f *testing.F) {
	f.Add([]byte("deadbeefcafe\x00hunter2hunter2"), []byte("psk=\x01 tok=\x02 \x11"), uint16(7), true)
	f.Add([]byte("prefix7<\x00another-secret"), []byte("x prefix7\x02 y"), uint16(3), false)
	f.Add([]byte("abcdefgh>\x00zyxwvuts"), []byte("\x02bcdefgh>\x01"), uint16(1), false)
	f.Add([]byte("\x93\x1a>tail-of-it\x00another\x00ends-with<"), []byte("ends-with\x03tail-of-it\x01\x02"), uint16(12), true)
	f.Add([]byte("0123456789\x00ABCDEF0123"), []byte("\x11\x12\x01\x02"), uint16(40), true)
	f.Fuzz(func(t *testing.T, blob, text []byte, cut uint16, psk bool) {
		r := NewRedactor()
		secrets := bytes.SplitN(blob, []byte{0}, 3)
		for i, s := range secrets {
			if psk && i%2 == 0 {
				_, _ = r.AddPSK(s)
			} else {
				_, _ = r.Add(s)
			}
		}
		// \x01..\x03 stand for the secrets, \x11..\x13 for their
		// upper-case hex.
		var in []byte
		for _, c := range text {
			switch {
			case c >= 1 && c <= 3 && int(c) <= len(secrets):
				in = append(in, secrets[c-1]...)
			case c >= 0x11 && c <= 0x13 && int(c-0x10) <= len(secrets):
				in = append(in, strings.ToUpper(hex.EncodeToString(secrets[c-0x11]))...)
			default:
				in = append(in, c)
			}
		}
		out := r.RedactBytes(in)
		if l := leaks(r, out); len(l) > 0 {
			t.Fatalf("output %q of %q contains %q", out, in, l)
		}
		k := int(cut) % (len(in) + 1)
		s := r.NewStream()
		got := append(s.Write(in[:k]), s.Write(in[k:])...)
		got = append(got, s.Flush()...)
		if !bytes.Equal(got, out) {
			t.Fatalf("stream split at %d: %q, want %q", k, got, out)
		}
	})
}
