package esp32

import (
	"context"
	"io"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// init registers the esp32 kind with package boards (boards/all imports
// this package for it).
func init() {
	boards.Register(boards.Kind{
		Name:    "esp32",
		Summary: "ESP32 running ESP-IDF's console (Golioth PSK over CoAP/DTLS, certificate rotation over MQTT/TLS)",
		USB: []boards.USBID{
			{VID: "303A", PID: "1001", Why: "Espressif USB-Serial/JTAG (ESP32-C3/S3/C6/H2 built-in USB)"},
			{VID: "303A", Why: "Espressif USB (vendor 303A)"},
			{VID: "10C4", PID: "EA60", Why: "Silicon Labs CP210x USB-UART, common on ESP32 dev kits"},
			{VID: "1A86", PID: "7523", Why: "WCH CH340 USB-UART, common on ESP32 dev kits"},
		},
		Reset: hil.HardReset,
		Open: func(c *hil.Console, port io.ReadWriter, red *hil.Redactor) (boards.Driver, error) {
			d := NewDriver(c, port)
			d.UseRedactor(red)
			return boardDriver{d}, nil
		},
		Emulate: func(ctx context.Context, o boards.EmulatorOptions) (boards.Emulator, error) {
			return StartEmulator(ctx, EmulatorOptions{Name: o.Name, FlashPath: o.FlashPath, Now: o.Now, Log: o.Log,
				Cloud: Endpoints(o.Cloud), DeviceID: o.DeviceID, Project: o.Project, Factory: Credentials(o.Factory)})
		},
	})
}

// boardDriver is a Driver as package boards drives it.
type boardDriver struct{ *Driver }

func (d boardDriver) Provision(ctx context.Context, cr boards.Credentials) error {
	return d.Driver.Provision(ctx, Credentials(cr))
}

func (boardDriver) Close() error { return nil }
