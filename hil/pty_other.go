//go:build !linux

package hil

import "errors"

// OpenPTY is implemented for Linux: an emulated board needs its
// pseudo-terminals.
func OpenPTY(baud int) (*PTY, error) {
	return nil, errors.New("hil: emulated boards' pseudo-terminals need Linux")
}
