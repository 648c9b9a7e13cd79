package registry

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRevoke(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	stranger := newCA(t, "stranger", nil)
	must[TrustedRoot](t)(r.TrustRoot(ctx, "p", root.cert.Raw))
	exp := t0.Add(time.Hour)

	// Serial 0x1a from three issuers: only the revoking issuer's goes.
	byRoot := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", root.leaf(t, "p", "d1", 0x1a, exp), StateActive))
	byInter := must[Credential](t)(r.AddCertificate(ctx, "p", "d2", inter.leaf(t, "p", "d2", 0x1a, exp), StateActive))
	byStranger := must[Credential](t)(r.AddCertificate(ctx, "p", "d2", stranger.leaf(t, "p", "d2", 0x1a, exp), StateActive))
	other := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", root.leaf(t, "p", "d1", 0x1b, exp), StateActive))
	if byRoot.IssuerFingerprint != root.fp {
		t.Fatalf("issuer of a root-signed certificate = %q, want %q", byRoot.IssuerFingerprint, root.fp)
	}
	if byInter.IssuerFingerprint != "" {
		t.Fatalf("issuer of an intermediate-signed certificate = %q, want unknown", byInter.IssuerFingerprint)
	}
	if err := r.SetIssuerFingerprint(ctx, byInter.ID, strings.ToUpper(inter.fp)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		issuer   string
		serial   string
		reason   int
		want     error
		revoked  []int64
		survived []int64
	}{
		{"by root, upper-case serial with zeros", root.fp, "001A", 1, nil, []int64{byRoot.ID}, []int64{byInter.ID, byStranger.ID, other.ID}},
		{"by intermediate", inter.fp, "0x1a", 4, nil, []int64{byInter.ID}, []int64{byStranger.ID, other.ID}},
		{"unknown serial", root.fp, "ffff", 0, nil, nil, []int64{byStranger.ID, other.ID}},
		{"bad issuer", "nothex", "1a", 0, ErrInvalid, nil, nil},
		{"bad serial", root.fp, "1z", 0, ErrInvalid, nil, nil},
		{"bad reason", root.fp, "1a", 11, ErrInvalid, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, err := r.Revoke(ctx, tt.issuer, tt.serial, tt.reason)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Revoke = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			ns, _ := NormalizeSerial(tt.serial)
			want := Revocation{IssuerFingerprint: tt.issuer, Serial: ns, Reason: tt.reason, Time: c.Now()}
			if rev != want {
				t.Errorf("Revoke = %+v, want %+v", rev, want)
			}
			for _, id := range tt.revoked {
				if s := must[Credential](t)(r.Credential(ctx, id)).State; s != StateRevoked {
					t.Errorf("credential %d is %s, want REVOKED", id, s)
				}
			}
			for _, id := range tt.survived {
				if s := must[Credential](t)(r.Credential(ctx, id)).State; s != StateActive {
					t.Errorf("credential %d is %s, want ACTIVE", id, s)
				}
			}
		})
	}

	t.Run("idempotent", func(t *testing.T) {
		c.Advance(time.Hour)
		rev := must[Revocation](t)(r.Revoke(ctx, root.fp, "1a", 5))
		if !rev.Time.Equal(t0) || rev.Reason != 1 {
			t.Errorf("second Revoke = %+v, want the first", rev)
		}
	})

	checks := []struct {
		issuer, serial string
		want           bool
		err            error
	}{
		{root.fp, "1a", true, nil},
		{strings.ToUpper(root.fp), "00:1A", true, nil},
		{root.fp, "1b", false, nil},
		{stranger.fp, "1a", false, nil},
		{inter.fp, "1A", true, nil},
		{"x", "1a", false, ErrInvalid},
		{root.fp, "", false, ErrInvalid},
	}
	for _, tt := range checks {
		t.Run(fmt.Sprintf("IsRevoked %.8s %s", tt.issuer, tt.serial), func(t *testing.T) {
			got, err := r.IsRevoked(ctx, tt.issuer, tt.serial)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("IsRevoked = %t, %v; want %t, %v", got, err, tt.want, tt.err)
			}
		})
	}

	revs := must[[]Revocation](t)(r.Revocations(ctx, root.fp))
	if len(revs) != 2 || revs[0].Serial != "1a" || revs[1].Serial != "ffff" {
		t.Errorf("Revocations(root) = %+v", revs)
	}
	if revs := must[[]Revocation](t)(r.Revocations(ctx, stranger.fp)); len(revs) != 0 {
		t.Errorf("Revocations(stranger) = %+v", revs)
	}
	if _, err := r.Revocations(ctx, "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Revocations(bad) = %v", err)
	}

	t.Run("certificate added after its revocation", func(t *testing.T) {
		must[Device](t)(r.CreateDevice(ctx, "p", "d3"))
		late := must[Credential](t)(r.AddCertificate(ctx, "p", "d3", root.leaf(t, "p", "d3", 0xffff, exp), StateActive))
		if late.State != StateRevoked {
			t.Errorf("state = %s, want REVOKED", late.State)
		}
		viaInter := must[Credential](t)(r.AddCertificate(ctx, "p", "d3", inter.leaf(t, "p", "d3", 0x1a, exp), StateActive))
		if viaInter.State != StateActive {
			t.Fatalf("state = %s before its issuer is known", viaInter.State)
		}
		if err := r.SetIssuerFingerprint(ctx, viaInter.ID, inter.fp); err != nil {
			t.Fatal(err)
		}
		if s := must[Credential](t)(r.Credential(ctx, viaInter.ID)).State; s != StateRevoked {
			t.Errorf("state after SetIssuerFingerprint = %s, want REVOKED", s)
		}
	})

	t.Run("issuer found by signature", func(t *testing.T) {
		// The root is also registered as a trusted root of project p, so
		// Revoke can check a certificate whose issuer was never recorded.
		must[Project](t)(r.CreateProject(ctx, "q"))
		must[Device](t)(r.CreateDevice(ctx, "q", "d"))
		orphan := must[Credential](t)(r.AddCertificate(ctx, "q", "d", root.leaf(t, "q", "d", 0x77, exp), StateActive))
		if orphan.IssuerFingerprint != "" {
			t.Fatalf("project q does not trust the root, yet issuer = %q", orphan.IssuerFingerprint)
		}
		must[Revocation](t)(r.Revoke(ctx, root.fp, "77", 0))
		got := must[Credential](t)(r.Credential(ctx, orphan.ID))
		if got.State != StateRevoked || got.IssuerFingerprint != root.fp {
			t.Errorf("orphan = %s issuer %q, want REVOKED by root", got.State, got.IssuerFingerprint)
		}
	})

	setIssuer := []struct {
		name string
		id   int64
		fp   string
		want error
	}{
		{"psk is not a certificate", must[Credential](t)(r.AddPSK(ctx, "p", "d1", "d1@p", []byte("k"))).ID, root.fp, ErrNotFound},
		{"missing", 9999, root.fp, ErrNotFound},
		{"bad fingerprint", other.ID, "zz", ErrInvalid},
	}
	for _, tt := range setIssuer {
		t.Run("SetIssuerFingerprint "+tt.name, func(t *testing.T) {
			if err := r.SetIssuerFingerprint(ctx, tt.id, tt.fp); !errors.Is(err, tt.want) {
				t.Fatalf("SetIssuerFingerprint = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRevokedInChain(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	revokedInter := newCA(t, "revoked intermediate", root)
	exp := t0.Add(time.Hour)
	parse := func(der []byte) *x509.Certificate {
		t.Helper()
		return must[*x509.Certificate](t)(x509.ParseCertificate(der))
	}
	good := parse(inter.leaf(t, "p", "d1", 0x1a, exp))
	revoked := parse(inter.leaf(t, "p", "d1", 0x1b, exp))
	underRevoked := parse(revokedInter.leaf(t, "p", "d1", 0x1c, exp))
	must[Revocation](t)(r.Revoke(ctx, inter.fp, "1b", 1))
	must[Revocation](t)(r.Revoke(ctx, root.fp, fmt.Sprintf("%x", revokedInter.cert.SerialNumber), 1))
	// The same serial revoked by another issuer does not count.
	must[Revocation](t)(r.Revoke(ctx, revokedInter.fp, "1a", 1))

	closed, err := Open(":memory:", testOptions(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		r     *Registry
		chain []*x509.Certificate
		want  int
		err   error
	}{
		{"nothing revoked", r, []*x509.Certificate{good, inter.cert, root.cert}, -1, nil},
		{"leaf revoked", r, []*x509.Certificate{revoked, inter.cert, root.cert}, 0, nil},
		{"leaf revoked, anchor is the intermediate", r, []*x509.Certificate{revoked, inter.cert}, 0, nil},
		{"intermediate revoked", r, []*x509.Certificate{underRevoked, revokedInter.cert, root.cert}, 1, nil},
		{"intermediate revoked, anchor is the intermediate", r, []*x509.Certificate{underRevoked, revokedInter.cert}, -1, nil},
		{"anchor alone", r, []*x509.Certificate{root.cert}, -1, nil},
		{"empty", r, nil, -1, nil},
		{"closed registry", closed, []*x509.Certificate{good, inter.cert, root.cert}, -1, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.RevokedInChain(ctx, tt.chain)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("RevokedInChain = %d, %v; want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNextCRLNumber(t *testing.T) {
	path := tempDB(t)
	r := openFile(t, path, nil)
	ctx := ctxT(t)
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	steps := []struct {
		issuer string
		want   int64
		err    error
	}{
		{a, 1, nil},
		{a, 2, nil},
		{b, 1, nil},
		{strings.ToUpper(a), 3, nil},
		{"short", 0, ErrInvalid},
	}
	for i, tt := range steps {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			n, err := r.NextCRLNumber(ctx, tt.issuer)
			if !errors.Is(err, tt.err) || n != tt.want {
				t.Fatalf("NextCRLNumber = %d, %v; want %d, %v", n, err, tt.want, tt.err)
			}
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openFile(t, path, nil)
	if n := must[int64](t)(r.NextCRLNumber(ctx, a)); n != 4 {
		t.Errorf("after reopening: %d, want 4", n)
	}
}
