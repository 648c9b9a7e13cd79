// Package all registers every kind of board credloop drives and emulates
// with package boards: import it for its side effect.
package all

import (
	// Each kind registers itself from its init.
	_ "github.com/credloop/credloop/boards/cc3220"
	_ "github.com/credloop/credloop/boards/esp32"
	_ "github.com/credloop/credloop/boards/linux"
	_ "github.com/credloop/credloop/boards/nrf"
)
