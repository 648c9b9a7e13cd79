package devicemodel

import (
	"errors"
	"testing"
)

func TestPowerCut(t *testing.T) {
	tests := []struct {
		pattern   string
		points    []string
		wantPoint string // "" when the cut must not fire
	}{
		{"", []string{"set:a", "delete:a"}, ""},
		{"any", []string{"set:a"}, "set:a"},
		{"set:a", []string{"set:ab", "delete:a"}, ""},
		{"set:a", []string{"delete:a", "set:a"}, "set:a"},
		{"set:psk_*", []string{"set:psk", "set:psk_bak", "set:psk_main"}, "set:psk_bak"},
		{"delete:*", []string{"set:x", "delete:y"}, "delete:y"},
		{"write:/lfs1/credentials/crt.der", []string{"mkdir:/lfs1/credentials", "write:/lfs1/credentials/crt.der"}, "write:/lfs1/credentials/crt.der"},
		{"*", []string{"set:x"}, "set:x"},
		{"any", nil, ""},
	}
	for _, tc := range tests {
		var c PowerCut
		c.Arm(tc.pattern)
		point, err := c.Check(tc.points...)
		if tc.wantPoint == "" {
			if err != nil || point != "" {
				t.Errorf("%q over %q: fired at %q (%v), want no cut", tc.pattern, tc.points, point, err)
			}
			if c.Armed() != tc.pattern {
				t.Errorf("%q over %q: armed %q after a miss, want it kept", tc.pattern, tc.points, c.Armed())
			}
			continue
		}
		if point != tc.wantPoint || !errors.Is(err, ErrPowerCut) || err.Error() != tc.wantPoint+": "+ErrPowerCut.Error() {
			t.Errorf("%q over %q: %q, %v; want %q and ErrPowerCut naming it", tc.pattern, tc.points, point, err, tc.wantPoint)
		}
		// One-shot: the cut disarms when it fires.
		if c.Armed() != "" {
			t.Errorf("%q: still armed after the cut", tc.pattern)
		}
		if _, err := c.Check(tc.points...); err != nil {
			t.Errorf("%q: fired twice: %v", tc.pattern, err)
		}
	}
}

func TestPowerCutOps(t *testing.T) {
	var c PowerCut
	c.Arm("delete:psk_bak")
	ops := []Op{{Key: "psk_main", Value: []byte("k")}, {Key: "psk_bak", Delete: true}}
	if p, err := c.CheckOps(ops); p != "delete:psk_bak" || !errors.Is(err, ErrPowerCut) {
		t.Fatalf("CheckOps = %q, %v; want the delete cut", p, err)
	}
	c.Arm("set:psk_bak")
	if p, err := c.CheckOps(ops); err != nil || p != "" {
		t.Fatalf("CheckOps = %q, %v; want no cut (psk_bak is deleted, not set)", p, err)
	}
	c.Disarm()
	if c.Armed() != "" {
		t.Fatal("Disarm left the cut armed")
	}
}
