package registry

import (
	"context"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProjects(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	p := must[Project](t)(r.CreateProject(ctx, "zeta"))
	if p.ID != "zeta" || !p.Created.Equal(t0) {
		t.Errorf("CreateProject = %+v", p)
	}
	c.Advance(time.Second)
	must[Project](t)(r.CreateProject(ctx, "alpha"))

	tests := []struct {
		name string
		id   string
		want error
	}{
		{"duplicate", "zeta", ErrExists},
		{"empty", "", ErrInvalid},
		{"bad char", "a b", ErrInvalid},
		{"too long", strings.Repeat("p", 65), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run("create "+tt.name, func(t *testing.T) {
			if _, err := r.CreateProject(ctx, tt.id); !errors.Is(err, tt.want) {
				t.Fatalf("CreateProject(%q) = %v, want %v", tt.id, err, tt.want)
			}
		})
	}
	lookups := []struct {
		id   string
		want error
	}{
		{"zeta", nil},
		{"nope", ErrNotFound},
		{"a/b", ErrInvalid},
	}
	for _, tt := range lookups {
		t.Run("get "+tt.id, func(t *testing.T) {
			got, err := r.Project(ctx, tt.id)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Project(%q) = %v, want %v", tt.id, err, tt.want)
			}
			if err == nil && got != p {
				t.Errorf("Project = %+v, want %+v", got, p)
			}
		})
	}
	ps := must[[]Project](t)(r.Projects(ctx))
	if len(ps) != 2 || ps[0].ID != "alpha" || ps[1].ID != "zeta" || !ps[0].Created.Equal(t0.Add(time.Second)) {
		t.Errorf("Projects = %+v", ps)
	}
}

func TestTrustRoot(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	must[Project](t)(r.CreateProject(ctx, "p"))
	must[Project](t)(r.CreateProject(ctx, "q"))
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	leaf := root.leaf(t, "p", "d1", 7, t0.Add(time.Hour))
	pemRoot := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.cert.Raw})

	tests := []struct {
		name    string
		project string
		der     []byte
		wantFP  string
		want    error
	}{
		{"root", "p", root.cert.Raw, root.fp, nil},
		{"again is idempotent", "p", root.cert.Raw, root.fp, nil},
		{"same root other project", "q", root.cert.Raw, root.fp, nil},
		{"intermediate as PEM", "p", pemRoot, inter.fp, nil},
		{"leaf is not a CA", "p", leaf, "", ErrInvalid},
		{"garbage", "p", []byte("not a certificate"), "", ErrInvalid},
		{"empty", "p", nil, "", ErrInvalid},
		{"PEM without certificate", "p", []byte("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"), "", ErrInvalid},
		{"unknown project", "nope", root.cert.Raw, "", ErrNotFound},
		{"bad project id", "p q", root.cert.Raw, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.TrustRoot(ctx, tt.project, tt.der)
			if !errors.Is(err, tt.want) {
				t.Fatalf("TrustRoot = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if got.Fingerprint != tt.wantFP || got.Project != tt.project || got.NotAfter.IsZero() || !got.Added.Equal(t0) || len(got.DER) == 0 {
				t.Errorf("TrustRoot = %+v", got)
			}
		})
	}
	c.Advance(time.Minute) // a later Added would show if the idempotent call rewrote it
	again := must[TrustedRoot](t)(r.TrustRoot(ctx, "p", root.cert.Raw))
	if !again.Added.Equal(t0) || again.Subject != root.cert.Subject.String() {
		t.Errorf("re-trust = %+v", again)
	}

	roots := must[[]TrustedRoot](t)(r.TrustedRoots(ctx, "p"))
	fps := []string{}
	for _, rt := range roots {
		fps = append(fps, rt.Fingerprint)
	}
	slices.Sort(fps)
	want := []string{root.fp, inter.fp}
	slices.Sort(want)
	if !slices.Equal(fps, want) {
		t.Errorf("TrustedRoots(p) = %v, want %v", fps, want)
	}

	untrust := []struct {
		name, project, fp string
		want              error
	}{
		{"upper case fingerprint", "p", strings.ToUpper(inter.fp), nil},
		{"twice", "p", inter.fp, ErrNotFound},
		{"bad fingerprint", "p", "abc", ErrInvalid},
		{"bad project", "", root.fp, ErrInvalid},
	}
	for _, tt := range untrust {
		t.Run("untrust "+tt.name, func(t *testing.T) {
			if err := r.UntrustRoot(ctx, tt.project, tt.fp); !errors.Is(err, tt.want) {
				t.Fatalf("UntrustRoot = %v, want %v", err, tt.want)
			}
		})
	}
	if roots := must[[]TrustedRoot](t)(r.TrustedRoots(ctx, "p")); len(roots) != 1 || roots[0].Fingerprint != root.fp {
		t.Errorf("after untrust: %+v", roots)
	}
	if roots := must[[]TrustedRoot](t)(r.TrustedRoots(ctx, "q")); len(roots) != 1 {
		t.Errorf("project q lost its root: %+v", roots)
	}
	if _, err := r.TrustedRoots(ctx, "bad id"); !errors.Is(err, ErrInvalid) {
		t.Errorf("TrustedRoots(bad id) = %v", err)
	}
}

func TestTrustRootBackfillsIssuer(t *testing.T) {
	r := openMem(t, nil)
	ctx := context.Background()
	seed(t, r)
	root := newCA(t, "root", nil)
	other := newCA(t, "other", nil)
	mine := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", root.leaf(t, "p", "d1", 1, t0.Add(time.Hour)), StateActive))
	theirs := must[Credential](t)(r.AddCertificate(ctx, "p", "d2", other.leaf(t, "p", "d2", 1, t0.Add(time.Hour)), StateActive))
	if mine.IssuerFingerprint != "" {
		t.Fatalf("issuer known before its root was trusted: %q", mine.IssuerFingerprint)
	}
	must[TrustedRoot](t)(r.TrustRoot(ctx, "p", root.cert.Raw))
	if got := must[Credential](t)(r.Credential(ctx, mine.ID)); got.IssuerFingerprint != root.fp {
		t.Errorf("issuer after TrustRoot = %q, want %q", got.IssuerFingerprint, root.fp)
	}
	if got := must[Credential](t)(r.Credential(ctx, theirs.ID)); got.IssuerFingerprint != "" {
		t.Errorf("another CA's certificate got issuer %q", got.IssuerFingerprint)
	}
}
