package hil

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// OpenPTY's terminal is raw at the baud asked for, a driver reaches the
// master through go.bug.st/serial, and Close ends a pending Read.
func TestOpenPTY(t *testing.T) {
	p, err := OpenPTY(460800)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tio, err := unix.IoctlGetTermios(int(p.Slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&(unix.ECHO|unix.ICANON) != 0 || tio.Oflag&unix.OPOST != 0 || tio.Iflag&unix.ICRNL != 0 {
		t.Errorf("not raw: iflag %#x oflag %#x lflag %#x", tio.Iflag, tio.Oflag, tio.Lflag)
	}
	if tio.Cflag&unix.CBAUD != unix.B460800 {
		t.Errorf("speed: cflag %#x, want B460800", tio.Cflag)
	}

	port := openTestPort(t, "emu", PathResolver(p.Path()), PortOptions{Baud: 460800})
	if _, err := port.Write([]byte("ping\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if err := p.Master.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("the master takes no deadline: %v", err)
	}
	var got []byte
	for len(got) < 6 {
		n, err := p.Master.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "ping\r\n" {
		t.Fatalf("the board got %q (translated?)", got)
	}

	// Close ends a Read under way, and may be called again.
	if err := p.Master.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := p.Master.Read(buf); done <- err }()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the Read")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenPTYBaud(t *testing.T) {
	if _, err := OpenPTY(12345); !errors.Is(err, ErrBaud) {
		t.Fatalf("OpenPTY(12345) = %v, want ErrBaud", err)
	}
}
