package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"reflect"
	"testing"
	"time"
)

func pubDER(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestAllow(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))
	k1, k2 := pubDER(t), pubDER(t)

	tests := []struct {
		name, project, udid string
		key                 []byte
		want                error
	}{
		{"new", "p", "UDID-0001", k1, nil},
		{"same again", "p", "UDID-0001", k1, nil},
		{"other key", "p", "UDID-0001", k2, ErrExists},
		{"other project", "q", "UDID-0001", k1, ErrExists},
		{"second udid, same key", "q", "UDID-0002", k1, nil},
		{"bad udid", "p", "UDID 3", k2, ErrInvalid},
		{"empty udid", "p", "", k2, ErrInvalid},
		{"not a key", "p", "UDID-0003", []byte("garbage"), ErrInvalid},
		{"trailing data", "p", "UDID-0003", append(k2[:len(k2):len(k2)], 0), ErrInvalid},
		{"no key", "p", "UDID-0003", nil, ErrInvalid},
		{"no project", "nope", "UDID-0003", k2, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Allow(ctx, tt.project, tt.udid, tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Allow = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			want := AllowEntry{UDID: tt.udid, Project: tt.project, PublicKeyDER: tt.key, PublicKeyFingerprint: Fingerprint(tt.key), Added: t0}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Allow = %+v, want %+v", got, want)
			}
		})
	}
	if err := r.MarkProvisioned(ctx, "UDID-0001"); err != nil {
		t.Fatal(err)
	}
	if e := must[AllowEntry](t)(r.AllowEntry(ctx, "UDID-0001")); !e.Provisioned {
		t.Errorf("not provisioned: %+v", e)
	}
	if e := must[AllowEntry](t)(r.Allow(ctx, "p", "UDID-0001", k1)); !e.Provisioned {
		t.Errorf("allowing again resets Provisioned: %+v", e)
	}
	if err := r.MarkProvisioned(ctx, "UDID-9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkProvisioned(unknown) = %v", err)
	}
	if _, err := r.AllowEntry(ctx, "UDID-9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AllowEntry(unknown) = %v", err)
	}
	if _, err := r.AllowEntry(ctx, "a/b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AllowEntry(a/b) = %v", err)
	}
	udids := func(es []AllowEntry) (s []string) {
		for _, e := range es {
			s = append(s, e.Project+"/"+e.UDID)
		}
		return s
	}
	lists := []struct {
		project string
		want    []string
	}{
		{"", []string{"p/UDID-0001", "q/UDID-0002"}},
		{"q", []string{"q/UDID-0002"}},
		{"none", nil},
	}
	for _, tt := range lists {
		if got := udids(must[[]AllowEntry](t)(r.Allowlist(ctx, tt.project))); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Allowlist(%q) = %v, want %v", tt.project, got, tt.want)
		}
	}
	if _, err := r.Allowlist(ctx, "p q"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Allowlist(p q) = %v", err)
	}
}

func TestUnattachedCertificates(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))
	ca := newCA(t, "ca", nil)
	leaf := func(serial int64) []byte { return ca.leaf(t, "p", "thing", serial, t0.Add(time.Hour)) }

	loose := must[Credential](t)(r.AddCertificate(ctx, "p", "", leaf(1), StatePendingActivation))
	if loose.Device != "" || loose.Project != "p" {
		t.Fatalf("AddCertificate unattached = %v", loose.LogValue())
	}
	got := must[Credential](t)(r.CertificateByFingerprint(ctx, loose.Fingerprint))
	if got.ID != loose.ID || got.Device != "" {
		t.Errorf("CertificateByFingerprint = %v", got.LogValue())
	}
	if cs := must[[]Credential](t)(r.Credentials(ctx, "p", "")); len(cs) != 1 || cs[0].ID != loose.ID {
		t.Errorf("Credentials(p) = %v", cs)
	}
	for _, tt := range []struct {
		name, project string
		want          error
	}{
		{"no project", "nope", ErrNotFound},
		{"bad project", "p q", ErrInvalid},
	} {
		if _, err := r.AddCertificate(ctx, tt.project, "", leaf(2), StateActive); !errors.Is(err, tt.want) {
			t.Errorf("AddCertificate unattached, %s = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := r.AddPSK(ctx, "p", "", "x@p", []byte("k")); !errors.Is(err, ErrInvalid) {
		t.Errorf("unattached PSK: %v", err)
	}
	other := must[Credential](t)(r.AddCertificate(ctx, "p", "d2", leaf(3), StateActive))

	tests := []struct {
		name, fp, project, device string
		want                      error
	}{
		{"unknown device", loose.Fingerprint, "p", "d9", ErrNotFound},
		{"other project", loose.Fingerprint, "q", "d1", ErrInvalid},
		{"bad device", loose.Fingerprint, "p", "", ErrInvalid},
		{"bad fingerprint", "xyz", "p", "d1", ErrInvalid},
		{"unknown certificate", Fingerprint([]byte("x")), "p", "d1", ErrNotFound},
		{"attach", loose.Fingerprint, "p", "d1", nil},
		{"again", loose.Fingerprint, "p", "d1", nil},
		{"to another device", loose.Fingerprint, "p", "d2", ErrExists},
		{"attached at creation", other.Fingerprint, "p", "d1", ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.AttachCertificate(ctx, tt.fp, tt.project, tt.device); !errors.Is(err, tt.want) {
				t.Fatalf("AttachCertificate = %v, want %v", err, tt.want)
			}
		})
	}
	if cs := must[[]Credential](t)(r.Credentials(ctx, "p", "d1")); len(cs) != 1 || cs[0].ID != loose.ID || cs[0].Device != "d1" {
		t.Errorf("Credentials(p, d1) = %v", cs)
	}
	// Deleting the device deletes the certificate attached to it.
	if err := r.DeleteDevice(ctx, "p", "d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CertificateByFingerprint(ctx, loose.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Errorf("certificate of a deleted device: %v", err)
	}
}
