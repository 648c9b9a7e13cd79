package devicemodel

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the virtual "now" of every test.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// seeded returns a deterministic random source.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func p256(t testing.TB, seed byte) *ecdsa.PrivateKey {
	t.Helper()
	k, err := generateP256(seeded(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCA is a throwaway CA.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB, seed byte) *testCA {
	t.Helper()
	key := p256(t, seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root", Organization: []string{"credloop"}},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(seeded(seed), tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

var serial atomic.Int64

func (ca *testCA) issue(t testing.TB, cn string, pub crypto.PublicKey, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"proj"}},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(seeded(1), tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// certCred issues a certificate credential for a fresh key.
func (ca *testCA) certCred(t testing.TB, cn string, seed byte, notAfter time.Time) Credential {
	t.Helper()
	key := p256(t, seed)
	der := ca.issue(t, cn, key.Public(), notAfter)
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Credential{Kind: KindCert, CertChainDER: [][]byte{der, ca.cert.Raw}, KeyDER: kd}
}

func pemChain(chain [][]byte) string { return string(encodeChainPEM(chain)) }

func pemKey(t testing.TB, c Credential) string {
	t.Helper()
	return string(encodeKeyPEM(c.KeyDER))
}

// rotationJSON builds the seed-002 payload with properly escaped PEM.
func rotationJSON(t testing.TB, certPEM, keyPEM string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"new_certificate": certPEM, "new_private_key": keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func credPayload(t testing.TB, c Credential) []byte {
	t.Helper()
	return rotationJSON(t, pemChain(c.CertChainDER), pemKey(t, c))
}

func mustPEMBlock(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// image snapshots a MemStore for "nothing changed" assertions.
func image(t testing.TB, s *MemStore) string {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rig runs one scenario: a device on a MemStore, plus the last plan and
// decision for assertions.
type rig struct {
	t     *testing.T
	store *MemStore
	dev   *Device
	plan  Plan
	dec   Decision
	log   []string // every line printed so far
}

type step struct {
	name string
	do   func(r *rig)
}

func run(t *testing.T, cfg Config, steps []step) *rig {
	t.Helper()
	r := &rig{t: t, store: NewMemStore()}
	r.dev = New(cfg, r.store)
	for i, s := range steps {
		t.Logf("step %d: %s", i, s.name)
		s.do(r)
		if t.Failed() {
			t.Logf("console so far:\n  %s", strings.Join(r.log, "\n  "))
			t.FailNow()
		}
	}
	t.Logf("console:\n  %s", strings.Join(r.log, "\n  "))
	return r
}

func boot(want Slot, wantBootCount int, wantFellBack bool) step {
	return step{"boot", func(r *rig) {
		r.t.Helper()
		r.plan = r.dev.Boot()
		r.log = append(r.log, r.plan.Log...)
		if r.plan.Err != nil {
			r.t.Errorf("Boot: Err = %v", r.plan.Err)
		}
		if r.plan.Slot != want || r.plan.BootCount != wantBootCount || r.plan.FellBack != wantFellBack {
			r.t.Errorf("Boot = slot %q boots %d fellback %t, want %q %d %t", r.plan.Slot, r.plan.BootCount, r.plan.FellBack, want, wantBootCount, wantFellBack)
		}
		if got := r.dev.Current(); !got.Equal(r.plan.Credential) {
			r.t.Errorf("Current() = %v, plan has %v", got, r.plan.Credential)
		}
	}}
}

func bootErr(want error) step {
	return step{"boot (expect error)", func(r *rig) {
		r.plan = r.dev.Boot()
		r.log = append(r.log, r.plan.Log...)
		if !errors.Is(r.plan.Err, want) {
			r.t.Errorf("Boot: Err = %v, want %v", r.plan.Err, want)
		}
	}}
}

type outcome int

const (
	connected outcome = iota
	reboot
	retry
	failed // Err set
)

func connect(ok bool, want outcome) step {
	return step{"connect", func(r *rig) {
		r.t.Helper()
		r.dec = r.dev.ConnectResult(ok, map[bool]string{true: "", false: "handshake failure"}[ok])
		r.log = append(r.log, r.dec.Log...)
		got := failed
		switch {
		case r.dec.Err != nil:
		case r.dec.Connected && !r.dec.Reboot && !r.dec.Retry:
			got = connected
		case r.dec.Reboot && !r.dec.Connected && !r.dec.Retry:
			got = reboot
		case r.dec.Retry && !r.dec.Connected && !r.dec.Reboot:
			got = retry
		}
		if got != want {
			r.t.Errorf("ConnectResult(%t) = %+v, want outcome %d", ok, r.dec, want)
		}
	}}
}

func reset() step      { return step{"reset", func(r *rig) { r.dev.Reset() }} }
func powerCycle() step { return step{"power cycle", func(r *rig) { r.dev.PowerCycle() }} }
func armCut(point string) step {
	return step{"arm power cut " + point, func(r *rig) { r.store.ArmPowerCut(point) }}
}

func installBackup(id string, key []byte, want error) step {
	return step{"install backup PSK", func(r *rig) {
		if err := r.dev.InstallBackupPSK(id, key); !errors.Is(err, want) {
			r.t.Errorf("InstallBackupPSK = %v, want %v", err, want)
		}
	}}
}

func handleRotation(payload []byte, want error) step {
	return step{"rotation message", func(r *rig) {
		r.dec = r.dev.HandleRotation(payload)
		r.log = append(r.log, r.dec.Log...)
		if !errors.Is(r.dec.Err, want) {
			r.t.Errorf("HandleRotation: Err = %v, want %v", r.dec.Err, want)
		}
		if r.dec.Reboot != (want == nil) {
			r.t.Errorf("HandleRotation: Reboot = %t with Err %v", r.dec.Reboot, r.dec.Err)
		}
	}}
}

func expectCurrent(c Credential) step {
	return step{"expect current credential", func(r *rig) {
		if got := r.dev.Current(); !got.Equal(c) {
			r.t.Errorf("Current() = %v, want %v", got, c)
		}
	}}
}

func expectNext(slot Slot, c Credential) step {
	return step{"expect retry plan", func(r *rig) {
		if r.dec.Next.Slot != slot || !r.dec.Next.Credential.Equal(c) {
			r.t.Errorf("Decision.Next = %q %v, want %q %v", r.dec.Next.Slot, r.dec.Next.Credential, slot, c)
		}
	}}
}

// expectState checks the snapshot with f, which returns a complaint or "".
func expectState(f func(s State) string) step {
	return step{"expect state", func(r *rig) {
		s := r.dev.State()
		if msg := f(s); msg != "" {
			r.t.Errorf("State: %s\n  %s", msg, s)
		}
	}}
}

func expectLog(substr string) step {
	return step{"expect log " + substr, func(r *rig) {
		if !slices.ContainsFunc(r.log, func(l string) bool { return strings.Contains(l, substr) }) {
			r.t.Errorf("no log line contains %q", substr)
		}
	}}
}

func do(name string, f func(r *rig)) step { return step{name, f} }
