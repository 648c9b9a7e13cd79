//go:build !linux

package esp32

import (
	"errors"
	"os"
)

var errNotLinux = errors.New("esp32: the emulator needs Linux pseudo-terminals")

func makeRaw(*os.File) error { return errNotLinux }

func pollable(f *os.File) (*os.File, error) {
	_ = f.Close()
	return nil, errNotLinux
}
