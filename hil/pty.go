package hil

import (
	"errors"
	"os"
	"sync"
)

// ErrBaud is a baud rate a pseudo-terminal cannot be set to.
var ErrBaud = errors.New("hil: unsupported baud rate")

// PTY is a pseudo-terminal pair: the serial port of an emulated board.
// The emulator plays the board on Master; a driver opens Path with
// OpenPort (go.bug.st/serial), exactly as it opens a USB serial port.
type PTY struct {
	// Master is the board's side.
	Master *os.File
	// Slave is the terminal, held open so that the pair lives while a
	// driver opens, closes and reopens Path.
	Slave *os.File

	once sync.Once
	err  error
}

// Path is the terminal's path (e.g. /dev/pts/7).
func (p *PTY) Path() string { return p.Slave.Name() }

// Close closes both sides; it may be called again, and after closing
// Master or Slave alone.
func (p *PTY) Close() error {
	p.once.Do(func() {
		p.err = errors.Join(ignoreClosed(p.Master.Close()), ignoreClosed(p.Slave.Close()))
	})
	return p.err
}

func ignoreClosed(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
