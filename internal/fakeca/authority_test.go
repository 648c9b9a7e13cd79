package fakeca

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoad(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	rootOnly, err := NewRoot("Solo Root", ECDSAP384, 0, vopts())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		a     *Authority
		files []string
	}{
		{"with intermediate", a, []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile}},
		{"root only", &Authority{Root: rootOnly, Issuing: rootOnly}, []string{RootCertFile, RootKeyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca", "default")
			if err := tt.a.Save(dir); err != nil {
				t.Fatal(err)
			}
			checkModes(t, dir, tt.files)

			t1 := t0.Add(time.Hour)
			b, err := Load(dir, Options{Now: clock(t1)})
			if err != nil {
				t.Fatal(err)
			}
			sameCA(t, "root", b.Root, tt.a.Root)
			sameCA(t, "issuing", b.Issuing, tt.a.Issuing)
			if (b.Issuing == b.Root) != (tt.a.Issuing == tt.a.Root) {
				t.Error("Load changed whether there is an intermediate")
			}
			if got := b.Issuing.Options().now(); !got.Equal(t1) {
				t.Errorf("loaded CA clock %s, want %s", got, t1)
			}
			// The loaded authority still issues good chains.
			leaf, _, err := b.Issuing.Issue("dev1", "", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyClient([]*x509.Certificate{leaf, b.Issuing.Cert}, []*x509.Certificate{b.Root.Cert}, t1); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("resave root only removes stale intermediate", func(t *testing.T) {
		dir := t.TempDir()
		if err := a.Save(dir); err != nil {
			t.Fatal(err)
		}
		if err := (&Authority{Root: rootOnly, Issuing: rootOnly}).Save(dir); err != nil {
			t.Fatal(err)
		}
		checkModes(t, dir, []string{RootCertFile, RootKeyFile})
		b, err := Load(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if b.Issuing != b.Root || !b.Root.Cert.Equal(rootOnly.Cert) {
			t.Fatal("stale intermediate loaded")
		}
	})
	t.Run("tightens directory mode", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := a.Save(dir); err != nil {
			t.Fatal(err)
		}
		checkModes(t, dir, []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile})
	})
}

// checkModes checks dir is 0700 and holds exactly files, keys 0600 and
// certificates 0644 (no temp files left behind).
func checkModes(t *testing.T, dir string, files []string) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o, want 700", st.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o644)
		if strings.HasSuffix(e.Name(), ".key") {
			want = 0o600
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", e.Name(), info.Mode().Perm(), want)
		}
	}
	if len(got) != len(files) {
		t.Errorf("dir holds %v, want %v", got, files)
	}
}

func sameCA(t *testing.T, what string, got, want *CA) {
	t.Helper()
	if !got.Cert.Equal(want.Cert) || !publicKeyEqual(want.Cert.PublicKey, got.Key) {
		t.Errorf("%s: certificate or key differ after load", what)
	}
	if len(got.Chain) != len(want.Chain) {
		t.Errorf("%s: chain of %d, want %d", what, len(got.Chain), len(want.Chain))
	}
}

func TestLoadErrors(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := EncodeKeyPEM(b.Root.Key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  error
		msg   string
	}{
		{"empty dir", func(*testing.T, string) {}, ErrNoCA, "run `credloop ca init`"},
		{"missing dir", func(t *testing.T, dir string) { os.Remove(dir) }, ErrNoCA, "no CA in"},
		{"root key mismatch", func(t *testing.T, dir string) {
			writeFile(t, dir, RootKeyFile, otherKey)
		}, ErrKeyMismatch, "Root CA"},
		{"intermediate from another root", func(t *testing.T, dir string) {
			writeFile(t, dir, IntermediateCertFile, EncodeCertPEM(b.Issuing.Cert))
			k, _ := EncodeKeyPEM(b.Issuing.Key)
			writeFile(t, dir, IntermediateKeyFile, k)
		}, ErrNotCA, "not signed by"},
		{"intermediate key missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, IntermediateKeyFile))
		}, fs.ErrNotExist, ""},
		{"root key garbage", func(t *testing.T, dir string) {
			writeFile(t, dir, RootKeyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
		}, ErrBadKey, ""},
		{"root cert garbage", func(t *testing.T, dir string) {
			writeFile(t, dir, RootCertFile, []byte("junk"))
		}, ErrBadCert, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.want != ErrNoCA {
				if err := a.Save(dir); err != nil {
					t.Fatal(err)
				}
			}
			tt.setup(t, dir)
			_, err := Load(dir, Options{})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Load = %v; want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestImportGo(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := func(ca *CA) []byte {
		k, err := EncodeKeyPEM(ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	leaf, leafKey, err := a.Issuing.Issue("dev1", "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	leafKeyPEM, _ := EncodeKeyPEM(leafKey)
	tests := []struct {
		name       string
		cert, key  []byte
		withInter  bool
		want       error
		wantChain  int
		wantIssuer string
	}{
		{"root, no intermediate", EncodeCertPEM(a.Root.Cert), pemKey(a.Root), false, nil, 0, InitRootCN},
		{"root DER, with intermediate", a.Root.Cert.Raw, pemKey(a.Root), true, nil, 1, InitIntermediateCN},
		{"key mismatch", EncodeCertPEM(a.Root.Cert), pemKey(a.Issuing), false, ErrKeyMismatch, 0, ""},
		{"intermediate is not self-signed", EncodeCertPEM(a.Issuing.Cert), pemKey(a.Issuing), false, ErrNotCA, 0, ""},
		{"leaf is not a CA", EncodeCertPEM(leaf), leafKeyPEM, false, ErrNotCA, 0, ""},
		{"no certificate", nil, pemKey(a.Root), false, ErrBadCert, 0, ""},
		{"no key", EncodeCertPEM(a.Root.Cert), nil, false, ErrBadKey, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Import(tt.cert, tt.key, tt.withInter, ECDSAP384, vopts())
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Import = %v; want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Issuing.Cert.Subject.CommonName != tt.wantIssuer || len(b.Issuing.Chain) != tt.wantChain {
				t.Fatalf("issuing %q with chain %d", b.Issuing.Cert.Subject.CommonName, len(b.Issuing.Chain))
			}
			if tt.withInter {
				if kt, _ := KeyTypeOf(b.Issuing.Cert.PublicKey); kt != ECDSAP384 {
					t.Errorf("intermediate key type %s", kt)
				}
			}
		})
	}
}
