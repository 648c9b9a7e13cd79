package nrf

import (
	"context"
	"io"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// init registers the nrf kind with package boards (boards/all imports
// this package for it).
func init() {
	boards.Register(boards.Kind{
		Name:    "nrf",
		Summary: "nRF running Zephyr and Golioth's firmware (the shell and mcumgr SMP on one UART)",
		USB: []boards.USBID{
			{VID: "1366", Why: "SEGGER J-Link, the on-board debugger of Nordic nRF DKs"},
		},
		// As the Golioth HIL does.
		Reset: "console:kernel reboot cold",
		Open: func(c *hil.Console, port io.ReadWriter, red *hil.Redactor) (boards.Driver, error) {
			d := NewDriver(c, port)
			d.UseRedactor(red)
			return boardDriver{d}, nil
		},
		Emulate: func(ctx context.Context, o boards.EmulatorOptions) (boards.Emulator, error) {
			return StartEmulator(ctx, EmulatorOptions{Name: o.Name, FlashPath: o.FlashPath, Now: o.Now, Log: o.Log,
				Cloud: Endpoints(o.Cloud)})
		},
	})
}

// boardDriver is a Driver as package boards drives it.
type boardDriver struct{ *Driver }

func (d boardDriver) Provision(ctx context.Context, cr boards.Credentials) error {
	return d.Driver.Provision(ctx, Credentials(cr))
}
