package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func TestOTAReleases(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)

	if m, err := r.OTAManifest(ctx, "p", "d1"); err != nil || len(m) != 0 {
		t.Fatalf("empty manifest %+v, %v", m, err)
	}
	main1, err := r.ReleaseOTA(ctx, "p", "", "main", "1.2.3", []byte("firmware one"), "")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("firmware one"))
	if main1.Sequence != 1 || main1.Hash != hex.EncodeToString(sum[:]) || main1.Size != 12 {
		t.Fatalf("release %+v", main1)
	}
	walrus, err := r.ReleaseOTA(ctx, "p", "", "walrus", "0.4.2", []byte("w"), "")
	if err != nil || walrus.Sequence != 2 {
		t.Fatalf("walrus %+v, %v", walrus, err)
	}
	own, err := r.ReleaseOTA(ctx, "p", "d2", "main", "2.0.0", []byte("for d2"), "by test")
	if err != nil || own.Sequence != 3 {
		t.Fatalf("d2's release %+v, %v", own, err)
	}

	m1, err := r.OTAManifest(ctx, "p", "d1")
	if err != nil || len(m1) != 2 || m1[0].Version != "1.2.3" || m1[1].Package != "walrus" {
		t.Fatalf("d1 manifest %+v, %v", m1, err)
	}
	m2, err := r.OTAManifest(ctx, "p", "d2")
	if err != nil || len(m2) != 2 || m2[0].Version != "2.0.0" || m2[0].Device != "d2" {
		t.Fatalf("d2 manifest %+v, %v", m2, err)
	}
	c, err := r.OTAComponent(ctx, "p", "d2", "main", "2.0.0")
	if err != nil || string(c.Data) != "for d2" {
		t.Fatalf("d2 component %+v, %v", c, err)
	}
	if _, err := r.OTAComponent(ctx, "p", "d2", "main", "1.2.3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("d2 asks for the project's version: %v", err)
	}
	if c, err := r.OTAComponent(ctx, "p", "d1", "main", "1.2.3"); err != nil || string(c.Data) != "firmware one" {
		t.Fatalf("d1 component %+v, %v", c, err)
	}

	// A new release of a package replaces the old one with a higher
	// sequence.
	main2, err := r.ReleaseOTA(ctx, "p", "", "main", "1.2.4", []byte("firmware two"), "")
	if err != nil || main2.Sequence != 4 {
		t.Fatalf("second main %+v, %v", main2, err)
	}
	if _, err := r.OTAComponent(ctx, "p", "d1", "main", "1.2.3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replaced version still served: %v", err)
	}
	all, err := r.OTAReleases(ctx, "p")
	if err != nil || len(all) != 3 {
		t.Fatalf("releases %+v, %v", all, err)
	}
	if evs, _ := r.Events(ctx, Filter{Kind: EventOTARelease}); len(evs) != 4 {
		t.Fatalf("%d ota.release events, want 4", len(evs))
	}

	for _, tc := range []struct {
		name, project, device, pkg, version string
		data                                []byte
		want                                error
	}{
		{"no project", "q", "", "main", "1", []byte("x"), ErrNotFound},
		{"no device", "p", "d9", "main", "1", []byte("x"), ErrNotFound},
		{"empty data", "p", "", "main", "1", nil, ErrInvalid},
		{"too large", "p", "", "main", "1", make([]byte, MaxOTAComponent+1), ErrInvalid},
		{"package with @", "p", "", "ma@in", "1", []byte("x"), ErrInvalid},
		{"package too long", "p", "", "abcdefghijklmnopq", "1", []byte("x"), ErrInvalid},
		{"version with /", "p", "", "main", "1/2", []byte("x"), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.ReleaseOTA(ctx, tc.project, tc.device, tc.pkg, tc.version, tc.data, ""); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOTAReports(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)
	for i := range 3 {
		if _, err := r.AddOTAReport(ctx, OTAReport{Project: "p", Device: "d1", Package: "main", State: i, Reason: i, Version: "2.3.4", Target: "5.6.7"}, "d1@p"); err != nil {
			t.Fatal(err)
		}
	}
	reps, err := r.OTAReports(ctx, "p", "d1", 2)
	if err != nil || len(reps) != 2 || reps[0].State != 2 || reps[0].Target != "5.6.7" {
		t.Fatalf("reports %+v, %v", reps, err)
	}
	evs, err := r.Events(ctx, Filter{Kind: EventOTAReport})
	if err != nil || len(evs) != 3 || evs[2].Reason != "main state DOWNLOADED reason NOT_ENOUGH_FLASH_MEMORY version 2.3.4 target 5.6.7" || evs[2].Credential != "d1@p" {
		t.Fatalf("events %+v, %v", evs, err)
	}
	if _, err := r.AddOTAReport(ctx, OTAReport{Project: "p", Device: "d9", Package: "main"}, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	if _, err := r.AddOTAReport(ctx, OTAReport{Project: "p", Device: "d1", Package: "m\x00"}, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("control character: %v", err)
	}
	if n, _ := r.OTAReports(ctx, "p", "d1", 0); len(n) != 3 {
		t.Fatalf("a refused report was stored: %d reports", len(n))
	}
	if OTAStateName(9) != "9" || OTAReasonName(11) != "AWAIT_RETRY" {
		t.Fatal("names")
	}
}
