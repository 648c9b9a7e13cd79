package devicemodel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"
)

func TestCSRRoundTrip(t *testing.T) {
	f := newFixtures(t)
	ca := newTestCA(t, 50) // the throwaway CA that signs the CSR
	var csr *x509.CertificateRequest
	sign := func(r *rig) []byte {
		r.t.Helper()
		leaf := ca.issue(r.t, csr.Subject.CommonName, csr.PublicKey, t0.Add(90*24*time.Hour))
		return append(leaf, ca.cert.Raw...) // chain as concatenated DER
	}
	prepare := func(subject pkix.Name, wantCN, wantO string) step {
		return do("prepare CSR", func(r *rig) {
			der, err := r.dev.PrepareCSR(seeded(7), subject)
			if err != nil {
				r.t.Fatal(err)
			}
			if csr, err = x509.ParseCertificateRequest(der); err != nil {
				r.t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				r.t.Fatalf("CSR signature: %v", err)
			}
			if csr.Subject.CommonName != wantCN || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != wantO {
				r.t.Fatalf("CSR subject = %s", csr.Subject)
			}
			if !r.dev.State().CSRPending {
				r.t.Fatal("CSRPending not set")
			}
		})
	}
	complete := func(certDER func(r *rig) []byte, want error) step {
		return do("complete CSR", func(r *rig) {
			if err := r.dev.CompleteCSR(certDER(r)); !errors.Is(err, want) {
				r.t.Fatalf("CompleteCSR = %v, want %v", err, want)
			}
		})
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"signed CSR becomes the rotated certificate", []step{
			boot(SlotFactory, 0, false),
			prepare(pkix.Name{}, "dev1", "proj"),
			complete(sign, nil),
			expectState(func(s State) string {
				if s.CSRPending || !s.HasRotated || s.RotatedConfirmed || !s.RTC.RotationPending {
					return "want pending key moved to an unconfirmed rotated slot"
				}
				return ""
			}),
			reset(),
			boot(SlotRotated, 1, false),
			do("the rotated key is the CSR key", func(r *rig) {
				signer, err := r.dev.Current().Signer()
				if err != nil {
					r.t.Fatal(err)
				}
				if !csr.PublicKey.(*ecdsa.PublicKey).Equal(signer.Public()) {
					r.t.Fatal("key differs from the CSR's")
				}
				if n := len(r.dev.Current().CertChainDER); n != 2 {
					r.t.Fatalf("chain length %d", n)
				}
			}),
			connect(true, connected),
			expectState(func(s State) string {
				if !s.RotatedConfirmed {
					return "want confirmed"
				}
				return ""
			}),
		}},
		{"explicit subject", []step{
			prepare(pkix.Name{CommonName: "other", Organization: []string{"org"}}, "other", "org"),
		}},
		{"certificate for another key is refused", []step{
			prepare(pkix.Name{}, "dev1", "proj"),
			complete(func(r *rig) []byte { return f.rotated.CertChainDER[0] }, ErrKeyMismatch),
			complete(func(r *rig) []byte { return []byte("garbage") }, ErrBadCert),
			complete(func(r *rig) []byte { return nil }, ErrBadCert),
			expectState(func(s State) string {
				if !s.CSRPending || s.HasRotated {
					return "nothing may change"
				}
				return ""
			}),
			complete(sign, nil), // the right one still works
		}},
		{"no pending key", []step{
			complete(func(r *rig) []byte { return f.rotated.CertChainDER[0] }, ErrNoPendingCSR),
		}},
		{"power cut while completing keeps the pending key", []step{
			prepare(pkix.Name{}, "dev1", "proj"),
			armCut("delete:csr_key"),
			complete(sign, ErrPowerCut),
			powerCycle(),
			boot(SlotFactory, 0, false),
			expectState(func(s State) string {
				if !s.CSRPending || s.HasRotated {
					return "want the pending key kept and no rotated slot"
				}
				return ""
			}),
			complete(sign, nil),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, f.certCfg, tt.steps) })
	}
}

func TestCSRKeyIsDeterministic(t *testing.T) {
	keyOf := func() []byte {
		d := New(Config{ID: "dev1"}, nil)
		if _, err := d.PrepareCSR(seeded(9), pkix.Name{}); err != nil {
			t.Fatal(err)
		}
		k, _ := d.Store().Get(KeyCSRKey)
		return k
	}
	a, b := keyOf(), keyOf()
	if !bytes.Equal(a, b) {
		t.Fatal("same random source, different keys")
	}
	if _, err := generateP256(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("short random source must fail")
	}
	if _, err := generateP256(bytes.NewReader(make([]byte, 32*64))); err == nil {
		t.Fatal("an all-zero source never yields a valid scalar")
	}
}
