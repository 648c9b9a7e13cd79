package cc3220

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
)

func newTestFlash(t *testing.T) (*flash, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flash.bin")
	f, err := openFlash(path)
	if err != nil {
		t.Fatal(err)
	}
	return f, path
}

func reopen(t *testing.T, path string) *flash {
	t.Helper()
	f, err := openFlash(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	return f
}

// A write cut by a power loss changes neither the memory nor the file,
// whatever the point names; the next write goes through.
func TestFlashPowerCut(t *testing.T) {
	for _, tc := range []struct {
		name, point string
		cut         bool
	}{
		{"exact", "set:devcert", true},
		{"any", "any", true},
		{"prefix", "set:dev*", true},
		{"delete of another key in the same update", "delete:client_ok", true},
		{"other key", "set:client_cert", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, path := newTestFlash(t)
			if err := f.Set(KeyDeviceCert, []byte("old")); err != nil {
				t.Fatal(err)
			}
			var cutAt string
			f.onCut = func(p string) { cutAt = p }
			f.armCut(tc.point)
			err := f.Update(func(tx *devicemodel.Tx) error {
				return errors.Join(tx.Set(KeyDeviceCert, []byte("new")), tx.Delete(devicemodel.KeyRotatedOK))
			})
			want := "new"
			if tc.cut {
				want = "old"
				if !errors.Is(err, devicemodel.ErrPowerCut) || cutAt == "" {
					t.Fatalf("update: %v (cut at %q), want a power cut", err, cutAt)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for _, g := range []*flash{f, reopen(t, path)} {
				if v, _ := g.Get(KeyDeviceCert); string(v) != want {
					t.Fatalf("devcert %q, want %q", v, want)
				}
			}
			// The cut disarmed itself.
			if err := f.Set(KeyDeviceCert, []byte("later")); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Fatalf("files next to the flash: %v (temporary files left behind)", entries)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("flash file mode: %v, %v", fi, err)
			}
		})
	}
}

func TestOpenFlashCorrupt(t *testing.T) {
	f, path := newTestFlash(t)
	if err := f.Set(KeyUDID, []byte("U1")); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not a flash image")},
		{"truncated", good[:len(good)-3]},
		{"bit flip", flipped},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "flash.bin")
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := openFlash(p); !errors.Is(err, ErrFlash) {
				t.Fatalf("openFlash: %v, want ErrFlash", err)
			}
		})
	}
}

func writeKeyFile(t *testing.T) (string, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	p := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(k.Public())
	return p, pub
}

func TestBurn(t *testing.T) {
	keyFile, pub := writeKeyFile(t)
	otherKey, _ := writeKeyFile(t)

	t.Run("seed is deterministic", func(t *testing.T) {
		ids := map[string]identity{}
		for _, seed := range []string{"a", "a", "b"} {
			f, _ := newTestFlash(t)
			id, err := f.burn(EmulatorOptions{}, &seedReader{seed: []byte(seed)})
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := ids[seed]; ok && (prev.udid != id.udid || !bytes.Equal(prev.pubDER, id.pubDER)) {
				t.Fatalf("seed %q made two boards", seed)
			}
			ids[seed] = id
			if len(id.udid) != 32 || strings.ToUpper(id.udid) != id.udid {
				t.Fatalf("UDID %q, want 32 upper-case hex digits", id.udid)
			}
		}
		if ids["a"].udid == ids["b"].udid {
			t.Fatal("seeds a and b made the same board")
		}
	})

	t.Run("options and flash", func(t *testing.T) {
		f, path := newTestFlash(t)
		id, err := f.burn(EmulatorOptions{UDID: "CC3220-1", KeyFile: keyFile}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if id.udid != "CC3220-1" || !bytes.Equal(id.pubDER, pub) {
			t.Fatalf("identity %s %x", id.udid, id.pubDER)
		}
		for _, tc := range []struct {
			name string
			o    EmulatorOptions
			err  error
		}{
			{"from flash", EmulatorOptions{}, nil},
			{"same options", EmulatorOptions{UDID: "CC3220-1", KeyFile: keyFile}, nil},
			{"other UDID", EmulatorOptions{UDID: "CC3220-2"}, ErrFlashMismatch},
			{"other key", EmulatorOptions{KeyFile: otherKey}, ErrFlashMismatch},
			{"bad UDID", EmulatorOptions{UDID: "has space"}, ErrFlash},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := reopen(t, path).burn(tc.o, rand.Reader)
				if !errors.Is(err, tc.err) {
					t.Fatalf("burn: %v, want %v", err, tc.err)
				}
				if err == nil && (got.udid != id.udid || !bytes.Equal(got.keyDER, id.keyDER)) {
					t.Fatal("identity changed")
				}
			})
		}
	})

	t.Run("half an identity", func(t *testing.T) {
		f, _ := newTestFlash(t)
		if err := f.Set(KeyUDID, []byte("CC3220-1")); err != nil {
			t.Fatal(err)
		}
		if _, err := f.burn(EmulatorOptions{}, rand.Reader); !errors.Is(err, ErrFlash) {
			t.Fatalf("burn: %v, want ErrFlash", err)
		}
	})
}
