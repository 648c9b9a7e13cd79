package registry

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"dev-01", true},
		{"A.b_c:d-e", true},
		{"deadbeef-id", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"a b", false},
		{"a@b", false},
		{"a/b", false},
		{"é", false},
		{"a\x00", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.id), func(t *testing.T) {
			err := ValidID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidID(%q) = %v, want ok=%t", tt.id, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				if tt.id != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", clip(tt.id))) {
					t.Errorf("error %q does not name the id", err)
				}
			}
		})
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"a", "dev-01", "", "a b", "a@b", strings.Repeat("x", 64), strings.Repeat("x", 65), "é", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidID(id)
		if want := idRE.MatchString(id); (err == nil) != want {
			t.Fatalf("ValidID(%q) = %v, regexp says %t", id, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}

func TestParsePSKIdentity(t *testing.T) {
	tests := []struct {
		in              string
		device, project string
		ok              bool
	}{
		{"dev@proj", "dev", "proj", true},
		{"deadbeef-id@my-project-id", "deadbeef-id", "my-project-id", true},
		{"a.b:c@p_1", "a.b:c", "p_1", true},
		{"dev", "", "", false},
		{"@proj", "", "", false},
		{"dev@", "", "", false},
		{"a@b@c", "", "", false}, // last '@': device "a@b" is not an id
		{"dev@pro j", "", "", false},
		{"", "", "", false},
		{strings.Repeat("d", 64) + "@" + strings.Repeat("p", 64), strings.Repeat("d", 64), strings.Repeat("p", 64), true},
		{strings.Repeat("d", 65) + "@p", "", "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.30q", tt.in), func(t *testing.T) {
			d, p, err := ParsePSKIdentity(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParsePSKIdentity(%q) error %v, want ok=%t", tt.in, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if d != tt.device || p != tt.project {
				t.Errorf("got %q, %q, want %q, %q", d, p, tt.device, tt.project)
			}
		})
	}
}

func TestPSKIdentityRoundTrip(t *testing.T) {
	for _, tc := range []struct{ device, project, want string }{
		{"dev", "proj", "dev@proj"},
		{"a.b:c", "p_1", "a.b:c@p_1"},
		{"dev1-b", "acme", "dev1-b@acme"},
	} {
		got := PSKIdentity(tc.device, tc.project)
		if got != tc.want {
			t.Errorf("PSKIdentity(%q, %q) = %q, want %q", tc.device, tc.project, got, tc.want)
		}
		d, p, err := ParsePSKIdentity(got)
		if err != nil || d != tc.device || p != tc.project {
			t.Errorf("ParsePSKIdentity(%q) = %q, %q, %v; want %q, %q", got, d, p, err, tc.device, tc.project)
		}
	}
}

func FuzzParsePSKIdentity(f *testing.F) {
	for _, s := range []string{"dev@proj", "a@b@c", "@", "dev@", "@p", "x", "", "dev@pro j", "d\x00@p", "é@p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, p, err := ParsePSKIdentity(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if d != "" || p != "" {
				t.Fatalf("error with parts %q %q", d, p)
			}
			return
		}
		if PSKIdentity(d, p) != s {
			t.Fatalf("%q split into %q and %q", s, d, p)
		}
		if !idRE.MatchString(d) || !idRE.MatchString(p) {
			t.Fatalf("%q: invalid parts %q and %q accepted", s, d, p)
		}
	})
}

func TestNormalizeSerial(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"1a2b", "1a2b", true},
		{"1A2B", "1a2b", true},
		{"001a", "1a", true},
		{"0x1A", "1a", true},
		{"01:A2:03", "1a203", true},
		{"0", "0", true},
		{"0000", "0", true},
		{"-0a", "-a", true},
		{"", "", false},
		{"0x", "", false},
		{"xyz", "", false},
		{"1g", "", false},
		{":1", "", false},
		{"1:", "", false},
		{"1::2", "", false},
		{"- 1", "", false},
		{strings.Repeat("f", 257), "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.in), func(t *testing.T) {
			got, err := NormalizeSerial(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("NormalizeSerial(%q) error %v, want ok=%t", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if got != tt.want {
				t.Errorf("NormalizeSerial(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"1a2b", "0x00", "01:A2", "-0a", "", ":", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeSerial(s)
		if err != nil {
			return
		}
		// The result is the %x form of a big.Int, and normalizing is
		// idempotent.
		n, ok := new(big.Int).SetString(got, 16)
		if !ok || fmt.Sprintf("%x", n) != got {
			t.Fatalf("NormalizeSerial(%q) = %q, not canonical hex", s, got)
		}
		again, err := NormalizeSerial(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeSerial(%q) = %q, %v; not idempotent", got, again, err)
		}
	})
}

func TestNormalizeFingerprint(t *testing.T) {
	lower := strings.Repeat("ab", 32)
	tests := []struct {
		in, want string
		ok       bool
	}{
		{lower, lower, true},
		{strings.ToUpper(lower), lower, true},
		{strings.TrimSuffix(strings.Repeat("AB:", 32), ":"), lower, true},
		{lower[:63], "", false},
		{lower + "a", "", false},
		{strings.Repeat("zz", 32), "", false},
		{"", "", false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, err := NormalizeFingerprint(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("NormalizeFingerprint(%q) = %q, %v; want %q ok=%t", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}
