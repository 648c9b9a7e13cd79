package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) (*registry.Registry, *fakeca.Authority, *clock, context.Context) {
	t.Helper()
	c := &clock{t: t0}
	reg, err := registry.Open(":memory:", registry.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return reg, a, c, ctx
}

func parse(t *testing.T, der []byte, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return l
}

func revoke(t *testing.T, ctx context.Context, reg *registry.Registry, ca *fakeca.CA, serial string, reason int) {
	t.Helper()
	if _, err := reg.Revoke(ctx, fakeca.Fingerprint(ca.Cert.Raw), serial, reason); err != nil {
		t.Fatal(err)
	}
}

func TestBuild(t *testing.T) {
	reg, a, _, ctx := setup(t)
	revoke(t, ctx, reg, a.Issuing, "0A", 1)
	revoke(t, ctx, reg, a.Issuing, "b2", 4)
	revoke(t, ctx, reg, a.Root, "77", 2)
	tests := []struct {
		name    string
		ca      *fakeca.CA
		next    time.Duration
		number  int64
		serials []string
		wantNx  time.Duration
	}{
		{"intermediate", a.Issuing, 72 * time.Hour, 1, []string{"a", "b2"}, 72 * time.Hour},
		{"intermediate again: a new number", a.Issuing, 0, 3, []string{"a", "b2"}, DefaultNext},
		{"root", a.Root, time.Hour, 1, []string{"77"}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := BuildList(ctx, reg, tt.ca, tt.next)
			if err != nil {
				t.Fatal(err)
			}
			crl := parse(t, l.DER, tt.ca.Cert)
			if crl.Number.Int64() != tt.number || l.Number != tt.number || l.Revoked != len(tt.serials) {
				t.Errorf("number %v (%d), %d revoked", crl.Number, l.Number, l.Revoked)
			}
			var got []string
			for _, e := range crl.RevokedCertificateEntries {
				got = append(got, fmt.Sprintf("%x", e.SerialNumber))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.serials) {
				t.Errorf("serials %v, want %v", got, tt.serials)
			}
			if !l.ThisUpdate.Equal(t0) || l.NextUpdate.Sub(l.ThisUpdate) != tt.wantNx {
				t.Errorf("thisUpdate %v nextUpdate %v", l.ThisUpdate, l.NextUpdate)
			}
			der, err := Build(ctx, reg, tt.ca, tt.next)
			if err != nil || parse(t, der, tt.ca.Cert).Number.Int64() != tt.number+1 {
				t.Errorf("Build: %v", err)
			}
		})
	}
	if _, err := Build(ctx, reg, a.Issuing, -time.Hour); err == nil {
		t.Error("negative nextUpdate accepted")
	}
	if _, err := Build(ctx, nil, a.Issuing, 0); err == nil {
		t.Error("nil registry accepted")
	}
}

func TestEntries(t *testing.T) {
	tests := []struct {
		serial string
		want   string
		err    error
	}{
		{"1", "1", nil},
		{"abcdef0123456789abcdef", "abcdef0123456789abcdef", nil},
		{"-5", "-5", nil},
		{"xyz", "", ErrBadSerial},
		{"", "", ErrBadSerial},
	}
	for _, tt := range tests {
		t.Run(tt.serial, func(t *testing.T) {
			es, err := Entries([]registry.Revocation{{Serial: tt.serial, Reason: 1, Time: t0}})
			if !errors.Is(err, tt.err) {
				t.Fatalf("Entries = %v, want %v", err, tt.err)
			}
			if err == nil && (fmt.Sprintf("%x", es[0].SerialNumber) != tt.want || es[0].ReasonCode != 1 || !es[0].RevocationTime.Equal(t0)) {
				t.Errorf("entry %+v", es[0])
			}
		})
	}
}

// TestCache: the CRL number changes only when the revocations change or
// the CRL is halfway to its nextUpdate.
func TestCache(t *testing.T) {
	reg, a, c, ctx := setup(t)
	cache := NewCache(reg, a.Issuing, 2*time.Hour)
	steps := []struct {
		name    string
		do      func()
		number  int64
		revoked int
	}{
		{"first", func() {}, 1, 0},
		{"unchanged", func() {}, 1, 0},
		{"later, unchanged", func() { c.Advance(59 * time.Minute) }, 1, 0},
		{"revoked", func() { revoke(t, ctx, reg, a.Issuing, "10", 1) }, 2, 1},
		{"revoked again: no change", func() { revoke(t, ctx, reg, a.Issuing, "10", 1) }, 2, 1},
		{"the root revoked: no change", func() { revoke(t, ctx, reg, a.Root, "10", 1) }, 2, 1},
		{"halfway to nextUpdate", func() { c.Advance(time.Hour) }, 3, 1},
		{"second revocation", func() { revoke(t, ctx, reg, a.Issuing, "11", 0) }, 4, 2},
		{"unchanged at the end", func() {}, 4, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do()
			l, err := cache.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			crl := parse(t, l.DER, a.Issuing.Cert)
			if crl.Number.Int64() != s.number || len(crl.RevokedCertificateEntries) != s.revoked {
				t.Errorf("CRL number %v with %d entries, want %d with %d", crl.Number, len(crl.RevokedCertificateEntries), s.number, s.revoked)
			}
			if !c.Now().Before(crl.NextUpdate) {
				t.Errorf("served at %v, past its nextUpdate %v", c.Now(), crl.NextUpdate)
			}
		})
	}
	if cache.CA() != a.Issuing {
		t.Error("CA()")
	}
}

func TestCacheConcurrent(t *testing.T) {
	reg, a, _, ctx := setup(t)
	cache := NewCache(reg, a.Issuing, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if l, err := cache.Get(ctx); err != nil || l.Number != 1 {
				t.Errorf("Get = %d, %v", l.Number, err)
			}
		})
	}
	wg.Wait()
}
