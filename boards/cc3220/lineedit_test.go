package cc3220

import (
	"reflect"
	"strings"
	"testing"
)

func TestLineEditor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []string // chunks, as reads deliver them
		lines []string
		echo  string
	}{
		{"lf", []string{"udid\n"}, []string{"udid"}, "udid\r\n"},
		{"crlf split", []string{"udid\r", "\nstatus\r\n"}, []string{"udid", "status"}, "udid\r\nstatus\r\n"},
		{"cr cr is two lines", []string{"\r\r"}, []string{"", ""}, "\r\n\r\n"},
		{"backspace and del", []string{"udiX\bd\x7f\x7fid\n"}, []string{"udid"}, "udiX\b \bd\b \b\b \bid\r\n"},
		{"backspace on empty", []string{"\x7fa\n"}, []string{"a"}, "a\r\n"},
		{"ctrl-c", []string{"prov\x03udid\n"}, []string{"", "udid"}, "prov^C\r\nudid\r\n"},
		{"escape sequence split", []string{"ud\x1b", "[1;5Aid\n"}, []string{"udid"}, "udid\r\n"},
		{"two-byte escape", []string{"\x1b7udid\n"}, []string{"udid"}, "udid\r\n"},
		{"tab and binary", []string{"a\tb\x00\xff\x80c\n"}, []string{"a bc"}, "a bc\r\n"},
		{"too long", []string{strings.Repeat("x", maxLine+10) + "\n"}, []string{strings.Repeat("x", maxLine)}, strings.Repeat("x", maxLine) + "\a\r\n"},
		{"no end yet", []string{"udid"}, nil, "udid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ed lineEditor
			var lines []string
			var echo []byte
			for _, c := range tc.in {
				l, e := ed.feed([]byte(c))
				lines = append(lines, l...)
				echo = append(echo, e...)
			}
			if !reflect.DeepEqual(lines, tc.lines) {
				t.Errorf("lines %q, want %q", lines, tc.lines)
			}
			if string(echo) != tc.echo {
				t.Errorf("echo %q, want %q", echo, tc.echo)
			}
		})
	}
}
