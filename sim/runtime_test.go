package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
)

// selfSigned is a certificate credential whose chain is its own leaf.
func selfSigned(t *testing.T, cn string) devicemodel.Credential {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: [][]byte{der}, KeyDER: kd}
}

// fakeLink records what the loop asked of the transport. Its sessions are
// the credentials they were dialled with.
type fakeLink struct {
	accept   func(cred devicemodel.Credential) bool
	dials    []devicemodel.Credential
	online   []devicemodel.Credential
	reboots  int // online asks for this many reboots first
	discards int
	offline  []error
	console  bytes.Buffer
}

func (f *fakeLink) loop(m *devicemodel.Device, maxAttempts int) connectLoop[devicemodel.Credential] {
	return connectLoop[devicemodel.Credential]{
		model: m, id: m.Config().ID, maxAttempts: maxAttempts, target: "cloud:5684",
		logf: func(format string, args ...any) { fmt.Fprintf(&f.console, format+"\n", args...) },
		dial: func(_ context.Context, cred devicemodel.Credential) (devicemodel.Credential, error) {
			f.dials = append(f.dials, cred)
			if f.accept(cred) {
				return cred, nil
			}
			return devicemodel.Credential{}, errors.New("handshake refused")
		},
		discard: func(devicemodel.Credential) { f.discards++ },
		online: func(_ context.Context, s, cred devicemodel.Credential) (bool, error) {
			if !s.Equal(cred) {
				return false, errors.New("online got a session of another credential")
			}
			f.online = append(f.online, cred)
			if f.reboots > 0 {
				f.reboots--
				return true, nil
			}
			return false, nil
		},
		offline: func(last error) { f.offline = append(f.offline, last) },
	}
}

func TestConnectLoop(t *testing.T) {
	factoryPSK := devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: "dev1@acme", PSK: []byte("factory-key")}
	factoryCert := selfSigned(t, "dev1")
	rotated := selfSigned(t, "dev1")
	is := func(c devicemodel.Credential) func(devicemodel.Credential) bool {
		return func(got devicemodel.Credential) bool { return got.Equal(c) }
	}
	tests := []struct {
		name        string
		factory     devicemodel.Credential
		prepare     func(t *testing.T, m *devicemodel.Device)
		accept      func(devicemodel.Credential) bool
		reboots     int
		maxAttempts int
		wantErr     error
		wantDials   int
		wantOnline  int
		wantDiscard int
		wantOffline bool
		wantLines   []string
		check       func(t *testing.T, m *devicemodel.Device)
	}{
		{
			name: "online at once", factory: factoryPSK,
			accept:    is(factoryPSK),
			wantDials: 1, wantOnline: 1,
			wantLines: []string{"boot", "connecting to cloud:5684 with factory credential " + factoryPSK.Fingerprint()},
		},
		{
			name: "rejected backup PSK retries with the factory key", factory: factoryPSK,
			prepare: func(t *testing.T, m *devicemodel.Device) {
				if err := m.InstallBackupPSK("dev1@acme", []byte("new-key")); err != nil {
					t.Fatal(err)
				}
			},
			accept:    is(factoryPSK),
			wantDials: 2, wantOnline: 1,
			wantLines: []string{"connecting to cloud:5684 with backup credential", "connection failed: handshake refused", "connecting to cloud:5684 with factory credential"},
			check: func(t *testing.T, m *devicemodel.Device) {
				if st := m.State(); st.HasBackupPSK || st.Slot != devicemodel.SlotFactory {
					t.Errorf("state %s: want the backup erased and the factory key in use", st)
				}
			},
		},
		{
			name: "the same credential failing twice gives up", factory: factoryPSK,
			accept:    func(devicemodel.Credential) bool { return false },
			wantErr:   ErrOffline,
			wantDials: 1, wantOffline: true,
		},
		{
			name: "an unconfirmed rotated certificate reboots until the boot counter falls back", factory: factoryCert,
			prepare: func(t *testing.T, m *devicemodel.Device) {
				if err := m.ApplyRotation(devicemodel.Rotation{Credential: rotated}); err != nil {
					t.Fatal(err)
				}
			},
			accept:    is(factoryCert),
			wantDials: devicemodel.DefaultMaxRotatedFailures + 1, wantOnline: 1,
			wantLines: []string{"rebooting", "boot", "falling back to factory credentials"},
			check: func(t *testing.T, m *devicemodel.Device) {
				if st := m.State(); st.HasRotated || !st.FellBack {
					t.Errorf("state %s: want the rotated certificate erased after the fallback", st)
				}
			},
		},
		{
			name: "attempts run out", factory: factoryCert, maxAttempts: 2,
			prepare: func(t *testing.T, m *devicemodel.Device) {
				if err := m.ApplyRotation(devicemodel.Rotation{Credential: rotated}); err != nil {
					t.Fatal(err)
				}
			},
			accept:    is(factoryCert),
			wantErr:   ErrOffline,
			wantDials: 2, wantOffline: true,
		},
		{
			name: "online asks for a reboot into a renewed certificate", factory: factoryPSK, reboots: 1,
			accept:    is(factoryPSK),
			wantDials: 2, wantOnline: 2,
			wantLines: []string{"boot", "rebooting", "boot"},
		},
		{
			name: "a session the model cannot confirm is discarded", factory: factoryPSK,
			prepare: func(t *testing.T, m *devicemodel.Device) {
				if err := m.InstallBackupPSK("dev1@acme", []byte("new-key")); err != nil {
					t.Fatal(err)
				}
				// The swap of main and backup loses power.
				m.Store().(*devicemodel.MemStore).ArmPowerCut("set:psk_main*")
			},
			accept:      func(devicemodel.Credential) bool { return true },
			wantErr:     devicemodel.ErrPowerCut,
			wantDials:   1,
			wantDiscard: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := devicemodel.New(devicemodel.Config{ID: "dev1", Project: "acme", Factory: tc.factory}, nil)
			if tc.prepare != nil {
				tc.prepare(t, m)
			}
			f := &fakeLink{reboots: tc.reboots}
			f.accept = tc.accept
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := f.loop(m, tc.maxAttempts).run(ctx)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("run: %v, want %v", err, tc.wantErr)
			}
			if len(f.dials) != tc.wantDials || len(f.online) != tc.wantOnline || f.discards != tc.wantDiscard {
				t.Errorf("dials %d, online %d, discards %d; want %d, %d, %d",
					len(f.dials), len(f.online), f.discards, tc.wantDials, tc.wantOnline, tc.wantDiscard)
			}
			if got := len(f.offline) == 1 && f.offline[0] != nil; got != tc.wantOffline {
				t.Errorf("offline reported %v, want %v", f.offline, tc.wantOffline)
			}
			console := f.console.String()
			rest := console
			for _, want := range tc.wantLines {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("console lacks %q (in order); console:\n%s", want, console)
				}
				rest = rest[i+len(want):]
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// A dial that fails because ctx ended is not the credential's fault: the
// model is not told, so a new backup PSK stays untried.
func TestConnectLoopCanceledDialNotReported(t *testing.T) {
	m := devicemodel.New(devicemodel.Config{ID: "dev1", Project: "acme",
		Factory: devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: "dev1@acme", PSK: []byte("k")}}, nil)
	if err := m.InstallBackupPSK("dev1@acme", []byte("new-key")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &fakeLink{accept: func(devicemodel.Credential) bool { return false }}
	l := f.loop(m, 0)
	l.dial = func(context.Context, devicemodel.Credential) (devicemodel.Credential, error) {
		cancel()
		return devicemodel.Credential{}, errors.New("interrupted")
	}
	if err := l.run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	if st := m.State(); !st.BackupPending {
		t.Errorf("state %s: the backup PSK was judged on a cancelled dial", st)
	}
}
