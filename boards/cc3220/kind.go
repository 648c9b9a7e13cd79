package cc3220

import (
	"context"
	"io"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// init registers the cc3220 kind with package boards (boards/all imports
// this package for it).
func init() {
	boards.Register(boards.Kind{
		Name:    "cc3220",
		Summary: "TI CC3220 SimpleLink (a pre-burned key, run-time CSR provisioning over HTTPS, then MQTT/TLS)",
		USB: []boards.USBID{
			{VID: "0451", PID: "BEF3", Why: "TI XDS110, the on-board debugger of CC3220 LaunchPads"},
		},
		// Its power command, when the map gives one.
		Reset:            "power",
		SelfProvisioning: true,
		Open: func(c *hil.Console, port io.ReadWriter, _ *hil.Redactor) (boards.Driver, error) {
			return boardDriver{NewDriver(c, port)}, nil
		},
		Emulate: func(ctx context.Context, o boards.EmulatorOptions) (boards.Emulator, error) {
			return StartEmulator(ctx, EmulatorOptions{Name: o.Name, FlashPath: o.FlashPath, Now: o.Now, Log: o.Log,
				Cloud: Endpoints(o.Cloud), UDID: o.UDID, KeyFile: o.KeyFile})
		},
	})
}

// boardDriver is a Driver as package boards drives it; its UDID and
// PublicKey make it a boards.Identifier.
type boardDriver struct{ *Driver }

func (d boardDriver) Provision(ctx context.Context, cr boards.Credentials) error {
	return d.Driver.Provision(ctx, Credentials(cr))
}

func (boardDriver) Close() error { return nil }
