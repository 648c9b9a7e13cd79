package cc3220

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openRawPTY opens a pseudo-terminal and puts it in raw mode at once, so
// nothing is echoed or translated before a driver opens the slave.
func openRawPTY() (master, slave *os.File, err error) {
	master, slave, err = pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("cc3220: pty: %w", err)
	}
	fd := int(slave.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err == nil {
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
		err = unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	}
	if err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("cc3220: pty raw mode: %w", err)
	}
	// pty.Open leaves the master in blocking mode (it called Fd): use a
	// non-blocking duplicate, so Close interrupts a pending Read and
	// writes can have a deadline.
	nb, err := unix.Dup(int(master.Fd()))
	if err == nil {
		if err = unix.SetNonblock(nb, true); err != nil {
			unix.Close(nb)
		}
	}
	master.Close()
	if err != nil {
		slave.Close()
		return nil, nil, fmt.Errorf("cc3220: pty: %w", err)
	}
	return os.NewFile(uintptr(nb), "/dev/ptmx"), slave, nil
}
