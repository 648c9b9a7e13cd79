package hil

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestMatchUSB(t *testing.T) {
	ports := []PortInfo{
		{Path: "/dev/ttyS0"},
		{Path: "/dev/ttyACM0", USB: true, VID: "1366", PID: "1051", SerialNumber: "001050012345", Location: "1-1.2", Interface: "1-1.2:1.0"},
		{Path: "/dev/ttyACM1", USB: true, VID: "1366", PID: "1051", SerialNumber: "001050012345", Location: "1-1.2", Interface: "1-1.2:1.2"},
		{Path: "/dev/ttyUSB0", USB: true, VID: "10C4", PID: "EA60", SerialNumber: "0001", Location: "1-1.3", Interface: "1-1.3:1.0"},
	}
	tests := []struct {
		serial, location string
		want             string
		err              error
	}{
		{"0001", "", "/dev/ttyUSB0", nil},
		{"", "1-1.3", "/dev/ttyUSB0", nil},
		{"0001", "1-1.3", "/dev/ttyUSB0", nil},
		{"001050012345", "1-1.2:1.2", "/dev/ttyACM1", nil},
		{"", "1-1.2:1.0", "/dev/ttyACM0", nil},
		{"001050012345", "", "", ErrAmbiguousPort},
		{"0001", "1-1.2", "", ErrPortNotFound},
		{"nope", "", "", ErrPortNotFound},
		{"", "", "", ErrPortNotFound},
	}
	for _, tc := range tests {
		got, err := matchUSB(ports, tc.serial, tc.location)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("matchUSB(%q, %q) = %q, %v; want %q, %v", tc.serial, tc.location, got, err, tc.want, tc.err)
		}
	}
	_, err := matchUSB(ports, "nope", "")
	if !strings.Contains(err.Error(), "/dev/ttyUSB0 (serial \"0001\", location 1-1.3:1.0)") {
		t.Errorf("not-found error does not list what is attached: %v", err)
	}
	if _, err := matchUSB(nil, "x", ""); err == nil || !strings.Contains(err.Error(), "no USB serial ports attached") {
		t.Errorf("%v", err)
	}
}

func TestBoardPortOptions(t *testing.T) {
	ctx := context.Background()
	o, err := BoardSpec{Name: "a", Kind: "esp32", Port: "/dev/ttyUSB3", Baud: 460800}.PortOptions()
	if err != nil || o.Board != "a" || o.Baud != 460800 {
		t.Fatalf("%+v %v", o, err)
	}
	if p, err := o.Resolve(ctx); p != "/dev/ttyUSB3" || err != nil {
		t.Errorf("resolve: %q %v", p, err)
	}
	if o, err := (BoardSpec{Name: "b", SerialNumber: "x"}).PortOptions(); err != nil || o.Resolve == nil {
		t.Errorf("usb: %v", err)
	}
	for _, b := range []BoardSpec{{Name: "e", Emulate: true}, {Name: "n"}} {
		if _, err := b.PortOptions(); !errors.Is(err, ErrPortNotFound) {
			t.Errorf("%+v: %v", b, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := USBResolver("x", "")(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("USBResolver ignores ctx: %v", err)
	}
}

func TestSerialErrorMessage(t *testing.T) {
	inner := &SerialError{Board: "b", Op: "open", Path: "/dev/ttyACM0", Kind: ErrPortNotFound, Err: syscall.ENOENT}
	e := &SerialError{Board: "b", Op: "reopen", Path: "/dev/ttyACM0", Kind: ErrPortGone, Detail: "within 10s, 3 attempt(s)", Err: inner}
	want := "hil: board b: reopen /dev/ttyACM0: serial port did not come back (within 10s, 3 attempt(s)): open /dev/ttyACM0: serial port not found: no such file or directory"
	if e.Error() != want {
		t.Errorf("\n%s\nwant\n%s", e.Error(), want)
	}
	for _, target := range []error{ErrPortGone, ErrPortNotFound, syscall.ENOENT} {
		if !errors.Is(e, target) {
			t.Errorf("not %v", target)
		}
	}
	if s := (PortEvent{Kind: PortReopened, Path: "/dev/x", Attempts: 2}).String(); s != "port reopened as /dev/x after 2 attempt(s)" {
		t.Error(s)
	}
}
