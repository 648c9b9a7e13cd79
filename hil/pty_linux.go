package hil

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// OpenPTY opens a pseudo-terminal pair for an emulated board: the slave in
// raw mode at baud (DefaultBaud when 0) before anyone writes, so nothing
// is echoed or translated, and the master in Go's poller, so that Close
// ends a pending Read or Write and deadlines work (pty.Open hands it out
// in blocking mode).
func OpenPTY(baud int) (*PTY, error) {
	speed, err := termiosSpeed(baud)
	if err != nil {
		return nil, err
	}
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("hil: pty: %w", err)
	}
	if err := makeRaw(s, speed); err != nil {
		_ = m.Close()
		_ = s.Close()
		return nil, fmt.Errorf("hil: pty raw mode: %w", err)
	}
	master, err := pollable(m)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("hil: pty: %w", err)
	}
	return &PTY{Master: master, Slave: s}, nil
}

// makeRaw sets the terminal's raw mode: no echo, no line editing, no \r
// or \n translation, 8 data bits, no parity, at speed.
func makeRaw(f *os.File, speed uint32) error {
	fd := int(f.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	tio.Cflag |= unix.CS8 | speed
	tio.Ispeed, tio.Ospeed = speed, speed
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
}

// pollable returns a non-blocking duplicate of f, which Go's poller
// takes; f is closed.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// speeds are the termios speeds of the usual console baud rates.
var speeds = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600,
	19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800,
	500000: unix.B500000, 576000: unix.B576000, 921600: unix.B921600,
	1000000: unix.B1000000, 1500000: unix.B1500000, 2000000: unix.B2000000,
	3000000: unix.B3000000, 4000000: unix.B4000000,
}

func termiosSpeed(baud int) (uint32, error) {
	if baud == 0 {
		baud = DefaultBaud
	}
	s, ok := speeds[baud]
	if !ok {
		return 0, fmt.Errorf("%w: %d baud on a pseudo-terminal", ErrBaud, baud)
	}
	return s, nil
}
