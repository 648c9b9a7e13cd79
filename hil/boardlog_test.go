package hil

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNormalizer(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"crlf", []string{"a\r\nb\r\n"}, "a\nb\n"},
		{"crlf split", []string{"a\r", "\nb"}, "a\nb"},
		{"bare cr", []string{"10%\r20%\r"}, "10%\n20%\n"},
		{"cr cr lf", []string{"a\r\r\n"}, "a\n\n"},
		{"lf lf", []string{"a\n\nb"}, "a\n\nb"},
		{"lf cr", []string{"a\n\rb"}, "a\n\nb"},
		{"colour", []string{"\x1b[0;32mI (1) x\x1b[0m\n"}, "I (1) x\n"},
		{"colour split", []string{"\x1b", "[0;3", "2mok\x1b[", "m"}, "ok"},
		{"two-byte escape", []string{"a\x1b7b"}, "ab"},
		{"not csi", []string{"\x1b[12\n"}, "\n"},
		{"escape between cr and lf", []string{"a\r\x1b[m\nb"}, "a\nb"},
		{"binary kept", []string{"\x00\xff\x07"}, "\x00\xff\x07"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n normalizer
			var got []byte
			for _, c := range tc.chunks {
				got = n.append(got, []byte(c))
			}
			if string(got) != tc.want {
				t.Errorf("%q -> %q, want %q", tc.chunks, got, tc.want)
			}
			// Byte at a time gives the same.
			var n2 normalizer
			var got2 []byte
			for _, c := range []byte(strings.Join(tc.chunks, "")) {
				got2 = n2.append(got2, []byte{c})
			}
			if !bytes.Equal(got, got2) {
				t.Errorf("byte at a time %q", got2)
			}
		})
	}
}

func TestAppendPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain\ttext", "plain\ttext"},
		{"nul\x00 bel\x07 del\x7f", `nul\x00 bel\x07 del\x7f`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"µs °C ✓", "µs °C ✓"},
		{"c1 \u0085", `c1 \u0085`},
	}
	for _, tc := range tests {
		if got := string(appendPrintable(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%q -> %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBoardLogPath(t *testing.T) {
	if p, err := BoardLogPath("/run/1", "esp32-1"); err != nil || p != "/run/1/boards/esp32-1.log" {
		t.Errorf("%q %v", p, err)
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "x y"} {
		if _, err := BoardLogPath("/run", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A line that never ends is logged in pieces, and a secret across the
// place it is cut is still redacted.
func TestBoardLogLongLine(t *testing.T) {
	r := NewRedactor()
	secret := "0123456789abcdef0123456789abcdef"
	if _, err := r.AddToken(secret); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{maxLogLine - 40, maxLogLine - 10, maxLogLine - 1, maxLogLine, maxLogLine + 5} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			var buf bytes.Buffer
			l, err := openBoardLog("", "x", &buf, func() time.Time { return time.Unix(0, 0) }, r)
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Repeat("x", at) + secret + strings.Repeat("y", 3*maxLogLine)
			for i := 0; i < len(line); i += 1000 {
				l.text(DirReceived, []byte(line[i:min(i+1000, len(line))]))
			}
			if err := l.close(); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Contains(out, secret) || !strings.Contains(out, "<redacted fp=") {
				t.Fatalf("secret at %d: not redacted", at)
			}
			var joined strings.Builder
			for _, ln := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				text, ok := strings.CutPrefix(ln, "1970-01-01T00:00:00.000Z < ")
				if !ok {
					continue
				}
				if len(text) > maxLogLine+len(markerTemplate) {
					t.Errorf("log line of %d bytes", len(text))
				}
				joined.WriteString(text)
			}
			if want := r.Redact(line); joined.String() != want {
				t.Errorf("pieces do not add up to the line")
			}
		})
	}
}
