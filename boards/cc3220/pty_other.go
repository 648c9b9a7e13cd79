//go:build !linux

package cc3220

import (
	"errors"
	"os"
)

// openRawPTY: the emulator's pseudo-terminal is implemented for Linux.
func openRawPTY() (master, slave *os.File, err error) {
	return nil, nil, errors.New("cc3220: the emulator's pseudo-terminal needs Linux")
}
