package cc3220

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
)

// FuzzLineEditor: any bytes, split anywhere, give the same printable,
// bounded lines, and never panic.
func FuzzLineEditor(f *testing.F) {
	for _, s := range []string{"udid\r\n", "prov\x03ision\n", "a\x1b[1;5Ab\x7f\n", "\x06\x09AAEA\x04\x14\n", strings.Repeat("z", 300) + "\r", "\r\n\n\r"} {
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		var whole lineEditor
		lines, _ := whole.feed(in)
		if split < 0 {
			split = -split
		}
		if len(in) > 0 {
			split %= len(in) + 1
		} else {
			split = 0
		}
		var parts lineEditor
		a, _ := parts.feed(in[:split])
		b, _ := parts.feed(in[split:])
		got := append(a, b...)
		if len(got) != len(lines) {
			t.Fatalf("split at %d: %q, whole: %q", split, got, lines)
		}
		for i, l := range lines {
			if got[i] != l {
				t.Fatalf("split at %d: %q, whole: %q", split, got, lines)
			}
			if len(l) > maxLine {
				t.Fatalf("line of %d bytes", len(l))
			}
			for j := 0; j < len(l); j++ {
				if l[j] < 0x20 || l[j] > 0x7e {
					t.Fatalf("line %q holds byte %#x", l, l[j])
				}
			}
		}
	})
}

// FuzzDecodeFlash: a flash image is either refused or yields a usable
// identity.
func FuzzDecodeFlash(f *testing.F) {
	m := devicemodel.NewMemStore()
	_ = m.Set(KeyUDID, []byte("CC3220-1"))
	key, _ := generateP256(&seedReader{seed: []byte("fuzz")})
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = m.Set(KeyDeviceKey, der)
	img, _ := m.MarshalBinary()
	f.Add(img)
	blank, _ := devicemodel.NewMemStore().MarshalBinary()
	f.Add(blank)
	f.Add([]byte("CLNV\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, ok, err := decodeFlash(data)
		if err != nil || !ok {
			return
		}
		if validUDID(id.udid) != nil || id.key == nil {
			t.Fatalf("accepted identity %q without a valid UDID or key", id.udid)
		}
		pub, err := x509.MarshalPKIXPublicKey(id.key.Public())
		if err != nil || !bytes.Equal(pub, id.pubDER) {
			t.Fatal("public key does not match the key")
		}
	})
}

// FuzzParseStatus: never panics; what it accepts has a UDID.
func FuzzParseStatus(f *testing.F) {
	f.Add("udid=U1 pubkey_fp=aabbccdd cert_fp=none project=- not_after=- slot=none mqtt=offline connects=0 boot_count=0")
	f.Add("udid=U1 not_after=2027-01-02T03:04:05Z connects=-1")
	f.Add("= == udid=")
	f.Fuzz(func(t *testing.T, line string) {
		if s, err := parseStatus(line); err == nil && !strings.Contains(line, "udid=") {
			t.Fatalf("accepted %q without udid: %+v", line, s)
		}
	})
}

// FuzzParsePublicKeyPEM: never panics; what it accepts is a PKIX key.
func FuzzParsePublicKeyPEM(f *testing.F) {
	key, _ := generateP256(&seedReader{seed: []byte("fuzz")})
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	f.Add(string(encodePublicKeyPEM(der)))
	f.Add("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
	f.Fuzz(func(t *testing.T, text string) {
		der, err := parsePublicKeyPEM(text)
		if err != nil {
			return
		}
		if _, err := x509.ParsePKIXPublicKey(der); err != nil {
			t.Fatalf("accepted a key that does not parse: %v", err)
		}
	})
}
