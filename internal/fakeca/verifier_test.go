package fakeca

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// The Verifier accepts and rejects exactly what VerifyClient does, before
// and after it has remembered an intermediate.
func TestVerifierMatchesVerifyClient(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	other, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := a.Issuing.Issue("dev1", "proj", ECDSAP256, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf2, _, err := a.Issuing.Issue("dev2", "proj", ECDSAP256, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Signed by another intermediate with the same name: the remembered
	// one must not vouch for it.
	forged, _, err := other.Issuing.Issue("dev3", "proj", ECDSAP256, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{a.Root.Cert}
	var v Verifier
	for _, tt := range []struct {
		name  string
		certs []*x509.Certificate
		roots []*x509.Certificate
		now   time.Time
		ok    bool
	}{
		{"first (full)", []*x509.Certificate{leaf, a.Issuing.Cert}, roots, t0, true},
		{"again (short)", []*x509.Certificate{leaf, a.Issuing.Cert}, roots, t0, true},
		{"another leaf (short)", []*x509.Certificate{leaf2, a.Issuing.Cert}, roots, t0, true},
		{"leaf expired", []*x509.Certificate{leaf2, a.Issuing.Cert}, roots, t0.Add(2 * time.Hour), false},
		{"root no longer trusted", []*x509.Certificate{leaf, a.Issuing.Cert}, []*x509.Certificate{other.Root.Cert}, t0, false},
		{"no roots", []*x509.Certificate{leaf, a.Issuing.Cert}, nil, t0, false},
		{"intermediate expired", []*x509.Certificate{leaf, a.Issuing.Cert}, roots, a.Issuing.Cert.NotAfter.Add(time.Hour), false},
		{"before intermediate", []*x509.Certificate{leaf, a.Issuing.Cert}, roots, a.Issuing.Cert.NotBefore.Add(-time.Hour), false},
		{"wrong issuer presented", []*x509.Certificate{forged, a.Issuing.Cert}, roots, t0, false},
		{"forged under its own chain", []*x509.Certificate{forged, other.Issuing.Cert}, roots, t0, false},
		{"leaf alone", []*x509.Certificate{leaf}, roots, t0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, werr := VerifyClient(tt.certs, tt.roots, tt.now)
			got, gerr := v.Verify(tt.certs, tt.roots, tt.now)
			if (gerr == nil) != tt.ok || (werr == nil) != tt.ok {
				t.Fatalf("Verifier: %v, VerifyClient: %v; want ok=%t", gerr, werr, tt.ok)
			}
			if gerr != nil {
				if !errors.Is(gerr, ErrVerify) && !errors.Is(gerr, ErrUnknownAuthority) && !errors.Is(gerr, ErrExpired) && !errors.Is(gerr, ErrNotYetValid) {
					t.Errorf("error %v is none of fakeca's", gerr)
				}
				return
			}
			if len(got) != len(want) {
				t.Fatalf("chain of %d, VerifyClient's of %d", len(got), len(want))
			}
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Fatalf("chain[%d] = %s, want %s", i, got[i].Subject, want[i].Subject)
				}
			}
		})
	}
	if len(v.known) != 1 {
		t.Fatalf("remembers %d intermediates, want 1", len(v.known))
	}
}

// Max bounds the memory; a constrained root is never used to shorten.
func TestVerifierBounds(t *testing.T) {
	v := Verifier{Max: 2}
	for range 4 {
		a, err := Init(ECDSAP256, vopts())
		if err != nil {
			t.Fatal(err)
		}
		leaf, _, err := a.Issuing.Issue("dev", "proj", ECDSAP256, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify([]*x509.Certificate{leaf, a.Issuing.Cert}, []*x509.Certificate{a.Root.Cert}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if len(v.known) != 2 {
		t.Fatalf("remembers %d, want Max = 2", len(v.known))
	}
	root := &x509.Certificate{PermittedDNSDomains: []string{"example.com"}}
	if !constrained(root) || constrained(&x509.Certificate{}) {
		t.Fatal("constrained misjudges name constraints")
	}
}

func BenchmarkVerifier(b *testing.B) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		b.Fatal(err)
	}
	leaf, _, err := a.Issuing.Issue("dev1", "proj", "", 0)
	if err != nil {
		b.Fatal(err)
	}
	certs, roots := []*x509.Certificate{leaf, a.Issuing.Cert}, []*x509.Certificate{a.Root.Cert}
	now := leaf.NotBefore.Add(time.Hour)
	var v Verifier
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(certs, roots, now); err != nil {
			b.Fatal(err)
		}
	}
}
