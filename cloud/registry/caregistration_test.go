package registry

import (
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRegisterCA(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))
	root := newCA(t, "root", nil)
	inter := newCA(t, "inter", root)
	other := newCA(t, "other", nil)
	leaf := root.leaf(t, "p", "d1", 7, t0.Add(time.Hour))
	pemRoot := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw})

	tests := []struct {
		name, project string
		der           []byte
		mode          CAMode
		template      string
		want          error
		wantMode      CAMode
	}{
		{"jitr", "p", root.cert.Raw, CAModeJITR, "", nil, CAModeJITR},
		{"again as PEM, new mode and template", "p", pemRoot, CAModeJITP, "tmpl", nil, CAModeJITP},
		{"intermediate, claim", "p", inter.cert.Raw, CAModeClaim, "fleet", nil, CAModeClaim},
		{"none", "q", other.cert.Raw, CAModeNone, "", nil, CAModeNone},
		{"other project", "q", root.cert.Raw, CAModeJITR, "", ErrExists, ""},
		{"leaf is not a CA", "p", leaf, CAModeNone, "", ErrInvalid, ""},
		{"bad mode", "p", root.cert.Raw, "auto", "", ErrInvalid, ""},
		{"empty mode", "p", root.cert.Raw, "", "", ErrInvalid, ""},
		{"bad template", "p", root.cert.Raw, CAModeClaim, "a/b", ErrInvalid, ""},
		{"long template", "p", root.cert.Raw, CAModeClaim, strings.Repeat("t", 37), ErrInvalid, ""},
		{"garbage", "p", []byte("garbage"), CAModeNone, "", ErrInvalid, ""},
		{"no project", "nope", other.cert.Raw, CAModeNone, "", ErrNotFound, ""},
		{"bad project", "p q", other.cert.Raw, CAModeNone, "", ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.RegisterCA(ctx, tt.project, tt.der, tt.mode, tt.template)
			if !errors.Is(err, tt.want) {
				t.Fatalf("RegisterCA = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if got.Mode != tt.wantMode || got.TemplateName != tt.template || !got.Active || got.Project != tt.project ||
				got.ID != Fingerprint(got.DER) || got.Created.IsZero() || got.Subject == "" {
				t.Errorf("RegisterCA = %+v", got)
			}
		})
		c.Advance(time.Second)
	}

	id := Fingerprint(root.cert.Raw)
	if err := r.SetCAActive(ctx, strings.ToUpper(id), false); err != nil {
		t.Fatal(err)
	}
	got := must[CARegistration](t)(r.CARegistrationByID(ctx, id))
	if got.Active || got.Mode != CAModeJITP || got.TemplateName != "tmpl" {
		t.Errorf("after SetCAActive(false): %+v", got)
	}
	// Registering again keeps Active.
	got = must[CARegistration](t)(r.RegisterCA(ctx, "p", root.cert.Raw, CAModeJITR, ""))
	if got.Active || got.Mode != CAModeJITR {
		t.Errorf("re-registered: %+v", got)
	}
	if err := r.SetCAActive(ctx, Fingerprint(leaf), true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetCAActive(unknown) = %v", err)
	}
	if _, err := r.CARegistrationByID(ctx, Fingerprint(leaf)); !errors.Is(err, ErrNotFound) {
		t.Errorf("CARegistrationByID(unknown) = %v", err)
	}
	if _, err := r.CARegistrationByID(ctx, "xyz"); !errors.Is(err, ErrInvalid) {
		t.Errorf("CARegistrationByID(xyz) = %v", err)
	}

	list := []struct {
		project string
		want    []string
		err     error
	}{
		{"p", []string{id, Fingerprint(inter.cert.Raw)}, nil},
		{"q", []string{Fingerprint(other.cert.Raw)}, nil},
		{"", nil, nil}, // all three, checked by count
		{"none", nil, nil},
		{"p q", nil, ErrInvalid},
	}
	for _, tt := range list {
		t.Run("list "+tt.project, func(t *testing.T) {
			regs, err := r.CARegistrations(ctx, tt.project)
			if !errors.Is(err, tt.err) {
				t.Fatalf("CARegistrations = %v, want %v", err, tt.err)
			}
			if tt.project == "" {
				if len(regs) != 3 {
					t.Errorf("all registrations: %d", len(regs))
				}
				return
			}
			var ids []string
			for _, g := range regs {
				ids = append(ids, g.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("CARegistrations(%q) = %v, want %v", tt.project, ids, tt.want)
			}
		})
	}
}

// TestRegisteredCAIsIssuer: a certificate signed by a registered CA gets
// its issuer fingerprint, so revoking by that CA reaches it, also when the
// certificate was stored before the CA was registered.
func TestRegisteredCAIsIssuer(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)
	ca := newCA(t, "jitp", nil)
	before := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", ca.leaf(t, "p", "d1", 1, t0.Add(time.Hour)), StateActive))
	if before.IssuerFingerprint != "" {
		t.Fatalf("issuer before registration: %q", before.IssuerFingerprint)
	}
	must[CARegistration](t)(r.RegisterCA(ctx, "p", ca.cert.Raw, CAModeJITP, ""))
	after := must[Credential](t)(r.AddCertificate(ctx, "p", "", ca.leaf(t, "p", "x", 2, t0.Add(time.Hour)), StatePendingActivation))
	if after.IssuerFingerprint != ca.fp {
		t.Errorf("issuer of a certificate added after registration: %q", after.IssuerFingerprint)
	}
	if got := must[Credential](t)(r.Credential(ctx, before.ID)); got.IssuerFingerprint != ca.fp {
		t.Errorf("issuer not backfilled: %q", got.IssuerFingerprint)
	}
	for _, serial := range []string{"1", "2"} {
		must[Revocation](t)(r.Revoke(ctx, ca.fp, serial, 1))
	}
	for _, id := range []int64{before.ID, after.ID} {
		if got := must[Credential](t)(r.Credential(ctx, id)); got.State != StateRevoked {
			t.Errorf("credential %d is %s after revocation", id, got.State)
		}
	}
}
