package esp32

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
)

// newTestCA makes a CA that no cloud knows.
func newTestCA(t *testing.T) *fakeca.CA {
	t.Helper()
	ca, err := fakeca.NewRoot("test devices", fakeca.ECDSAP256, 0, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a device certificate (O=acme, CN=cn) as Credentials.
func issue(t *testing.T, ca *fakeca.CA, cn string) (Credentials, *x509.Certificate) {
	t.Helper()
	cert, key, err := ca.Issue(cn, "acme", fakeca.ECDSAP256, 0)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{Chain: [][]byte{cert.Raw}, KeyDER: der}, cert
}

func TestLineReader(t *testing.T) {
	tests := []struct {
		name string
		in   []string // fed in chunks
		want []line
	}{
		{"lf", []string{"a\nb\n"}, []line{{text: "a"}, {text: "b"}}},
		{"crlf split", []string{"a\r", "\nb\r\n"}, []line{{text: "a"}, {text: "b"}}},
		{"cr cr", []string{"\r\r"}, []line{{}, {}}},
		{"backspace", []string{"ab\x08c\x7f\x7f\x7fd\n"}, []line{{text: "d"}}},
		{"escape", []string{"a\x1b[1;5Db\x1bOc\n"}, []line{{text: "ab"}}},
		{"tab", []string{"a\tb\n"}, []line{{text: "a b"}}},
		{"too long", []string{strings.Repeat("y", 9), "\nok\n"}, []line{{tooLong: true}, {text: "ok"}}},
		{"unfinished", []string{"abc"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := lineReader{max: 8}
			var got []line
			for _, c := range tt.in {
				got = append(got, r.feed([]byte(c))...)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("lines %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSplitArgv(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"a b  c", []string{"a", "b", "c"}, false},
		{`settings set golioth/psk "two words"`, []string{"settings", "set", "golioth/psk", "two words"}, false},
		{`a\ b "c\"d" e\\`, []string{"a b", `c"d`, `e\`}, false},
		{`""`, []string{""}, false},
		{`"open`, nil, true},
		{"", nil, false},
		{strings.Repeat("x ", 40), slices.Repeat([]string{"x"}, maxArgs), false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitArgv(tt.in)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("splitArgv(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
	for _, a := range []string{"plain", "two words", `q"uote`, `back\slash`, "", "\ttab"} {
		got, err := splitArgv("cmd " + quoteArg(a))
		if err != nil || len(got) != 2 || got[1] != a {
			t.Errorf("quoteArg(%q) = %s splits to %q, %v", a, quoteArg(a), got, err)
		}
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		typ  nvs.Type
		in   string
		want int64 // or uint via conversion
		err  string
	}{
		{nvs.TypeU8, "0", 0, ""},
		{nvs.TypeU8, "0377", 255, ""},
		{nvs.TypeU8, "0x100", 0, errValueTooLong},
		{nvs.TypeU8, "-1", 0, errValueTooLong},
		{nvs.TypeI8, "-129", 0, errValueTooLong},
		{nvs.TypeI8, "+127", 127, ""},
		{nvs.TypeI16, "--1", 0, errInvalidArg},
		{nvs.TypeU64, "18446744073709551615", -1, ""},
		{nvs.TypeU64, "18446744073709551616", 0, errValueTooLong},
		{nvs.TypeI32, "12abc", 0, errInvalidArg},
		{nvs.TypeI32, "", 0, errInvalidArg},
		{nvs.TypeI32, "1_000", 0, errInvalidArg},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String()+" "+tt.in, func(t *testing.T) {
			it := nvs.Item{Type: tt.typ}
			if got := parseInt(&it, tt.in); got != tt.err {
				t.Fatalf("error %q, want %q", got, tt.err)
			}
			if tt.err != "" {
				return
			}
			v := it.Int
			if !tt.typ.Signed() {
				v = int64(it.Uint)
			}
			if v != tt.want {
				t.Fatalf("value %d, want %d", v, tt.want)
			}
		})
	}
}

func TestCommandTableSorted(t *testing.T) {
	if !slices.IsSortedFunc(commands, func(a, b command) int { return strings.Compare(a.name, b.name) }) {
		t.Fatal("commands must be sorted by name (exec searches them)")
	}
}

func TestCredentialsString(t *testing.T) {
	ca := newTestCA(t)
	cr, _ := issue(t, ca, "dev-s")
	cr.PSK, cr.PSKIdentity = []byte("super-secret-psk"), "dev-s@acme"
	for _, s := range []string{cr.String(), fmt.Sprintf("%v %+v %#v %s", cr, cr, cr, cr)} {
		if strings.Contains(s, "super-secret-psk") || bytes.Contains([]byte(s), cr.KeyDER) || strings.Contains(s, fmt.Sprintf("%x", cr.KeyDER[:8])) {
			t.Fatalf("String reveals a secret: %s", s)
		}
	}
	wantContains(t, "String", cr.String(), "dev-s@acme", "key fp="+devicemodel.Fingerprint(cr.KeyDER))
}

func wantContains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}
