// Package boards opens a board of the hardware in the loop — a real one on
// a serial port named in the hardware map, or an emulator on a
// pseudo-terminal — and drives it with its kind's driver: ESP32 (ESP-IDF),
// nRF (Zephyr, mcumgr) or CC3220 (SimpleLink). Either way the driver talks
// through go.bug.st/serial and hil.Console, so the serial code path is the
// same.
package boards

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/credloop/credloop/boards/cc3220"
	"github.com/credloop/credloop/boards/esp32"
	"github.com/credloop/credloop/boards/nrf"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/sim"
)

// Endpoints are the cloud's addresses the firmware connects to.
type Endpoints struct{ CoAPS, MQTTS, HTTPS string }

// Credentials are what a driver installs on a board: the device runtime's
// one credential type, as every board kind takes it.
type Credentials = sim.Credential

// ErrNotEmulated is returned for fault injection on a real board.
var ErrNotEmulated = errors.New("boards: only an emulated board can do this")

// Options configures Open.
type Options struct {
	// Board is the hardware map's entry; Emulate selects the emulator.
	Board hil.Board
	// RunDir receives boards/<name>.log and, for emulators, their flash.
	RunDir string
	// Cloud is where an emulated board's firmware connects.
	Cloud Endpoints
	// Now is an emulated board's clock (default time.Now).
	Now func() time.Time
	// Redactor keeps secrets out of the board log.
	Redactor *hil.Redactor
	// DeviceID and Project name an emulated ESP32's identity in
	// certificate mode.
	DeviceID, Project string
	// Flash is an image an emulated board boots from (ESP32: an NVS
	// partition image); written to its flash before it starts.
	Flash []byte
	// Factory is the certificate compiled into an emulated ESP32's
	// firmware: what it falls back to after a failed rotation.
	Factory Credentials
	// UDID and KeyFile are an emulated CC3220's pre-burned identity
	// (generated once when empty).
	UDID, KeyFile string
	// Log receives emulators' own debug logs.
	Log io.Writer
}

type emulator interface {
	PortPath() string
	CutPowerAt(point string)
	PowerCycle()
	Close() error
}

type driver interface {
	WaitBoot(ctx context.Context) error
	Reset(ctx context.Context) error
	WaitOnline(ctx context.Context) (string, error)
}

// Board is an open board.
type Board struct {
	Name, Kind string
	Console    *hil.Console

	entry hil.Board
	emu   emulator
	drv   driver
	esp   *esp32.Driver
	nrf   *nrf.Driver
	cc    *cc3220.Driver
}

// Open starts the emulator (when the entry says emulate) and opens the
// board's serial port and console.
func Open(ctx context.Context, o Options) (*Board, error) {
	b := &Board{Name: o.Board.Name, Kind: o.Board.Kind, entry: o.Board}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Redactor == nil {
		// Drivers refuse to send a secret they cannot keep out of the log.
		o.Redactor = hil.NewRedactor()
	}
	var po hil.PortOptions
	if o.Board.Emulate {
		flash := filepath.Join(o.RunDir, "boards", o.Board.Name+".flash")
		if err := os.MkdirAll(filepath.Dir(flash), 0o700); err != nil {
			return nil, err
		}
		if o.Flash != nil {
			if err := os.WriteFile(flash, o.Flash, 0o600); err != nil {
				return nil, fmt.Errorf("boards: flashing %s: %w", o.Board.Name, err)
			}
		}
		emu, err := startEmulator(ctx, o, flash)
		if err != nil {
			return nil, fmt.Errorf("boards: emulator of %s: %w", o.Board.Name, err)
		}
		b.emu = emu
		po = hil.PortOptions{Board: o.Board.Name, Resolve: hil.PathResolver(emu.PortPath()), Baud: hil.DefaultBaud}
	} else {
		var err error
		if po, err = o.Board.PortOptions(); err != nil {
			return nil, err
		}
		if o.Flash != nil {
			return nil, fmt.Errorf("boards: %s is a real board: flash it with its flash command (hardware map 'flash')", o.Board.Name)
		}
	}
	port, err := hil.OpenPort(ctx, po)
	if err != nil {
		b.closeEmu()
		return nil, err
	}
	c, err := hil.NewConsole(port, hil.ConsoleOptions{Name: o.Board.Name, RunDir: o.RunDir, Redactor: o.Redactor})
	if err != nil {
		_ = port.Close()
		b.closeEmu()
		return nil, err
	}
	b.Console = c
	switch o.Board.Kind {
	case hil.KindESP32:
		b.esp = esp32.NewDriver(c, port)
		b.esp.UseRedactor(o.Redactor)
		b.drv = b.esp
	case hil.KindNRF:
		b.nrf = nrf.NewDriver(c, port)
		b.nrf.UseRedactor(o.Redactor)
		b.drv = b.nrf
	case hil.KindCC3220:
		b.cc = cc3220.NewDriver(c, port)
		b.drv = b.cc
	default:
		_ = b.Close()
		return nil, fmt.Errorf("boards: unknown board kind %q", o.Board.Kind)
	}
	return b, nil
}

func startEmulator(ctx context.Context, o Options, flash string) (emulator, error) {
	switch o.Board.Kind {
	case hil.KindESP32:
		return esp32.StartEmulator(ctx, esp32.EmulatorOptions{Name: o.Board.Name, FlashPath: flash, Now: o.Now, Log: o.Log,
			Cloud: esp32.Endpoints(o.Cloud), DeviceID: o.DeviceID, Project: o.Project, Factory: esp32.Credentials(o.Factory)})
	case hil.KindNRF:
		return nrf.StartEmulator(ctx, nrf.EmulatorOptions{Name: o.Board.Name, FlashPath: flash, Now: o.Now, Log: o.Log,
			Cloud: nrf.Endpoints(o.Cloud)})
	case hil.KindCC3220:
		return cc3220.StartEmulator(ctx, cc3220.EmulatorOptions{Name: o.Board.Name, FlashPath: flash, Now: o.Now, Log: o.Log,
			Cloud: cc3220.Endpoints(o.Cloud), UDID: o.UDID, KeyFile: o.KeyFile})
	}
	return nil, fmt.Errorf("unknown board kind %q", o.Board.Kind)
}

// Emulated reports whether the board is played by an emulator.
func (b *Board) Emulated() bool { return b.emu != nil }

// WaitBoot waits for the boot banner or prompt.
func (b *Board) WaitBoot(ctx context.Context) error { return b.drv.WaitBoot(ctx) }

// WaitOnline waits for the firmware's "connected" line and returns it.
func (b *Board) WaitOnline(ctx context.Context) (string, error) { return b.drv.WaitOnline(ctx) }

// Provision installs credentials the board's own way: ESP32 console NVS
// commands or Golioth settings, nRF settings or mcumgr file upload; the
// CC3220 provisions itself over HTTPS (its credentials are ignored).
func (b *Board) Provision(ctx context.Context, cr Credentials) error {
	switch {
	case b.esp != nil:
		return b.esp.Provision(ctx, esp32.Credentials(cr))
	case b.nrf != nil:
		return b.nrf.Provision(ctx, nrf.Credentials(cr))
	default:
		return b.cc.Provision(ctx, cc3220.Credentials(cr))
	}
}

// Reset resets the board: a real board the way its hardware map says
// (DTR/RTS, console command, power), an emulated one with its console
// command.
func (b *Board) Reset(ctx context.Context) error {
	if b.emu == nil {
		return hil.ResetBoard(ctx, b.entry, b.Console)
	}
	return b.drv.Reset(ctx)
}

// PowerCycle removes and restores power: the emulator's RTC state is lost;
// a real board runs its hardware map power command.
func (b *Board) PowerCycle(ctx context.Context) error {
	if b.emu == nil {
		return hil.PowerCycle(ctx, b.entry, b.Console)
	}
	b.Console.Note("power cycle")
	b.emu.PowerCycle()
	return nil
}

// CutPowerAt makes the emulated board lose power at its next flash write
// matching point ("set:<key>", "any").
func (b *Board) CutPowerAt(point string) error {
	if b.emu == nil {
		return fmt.Errorf("%w: %s is a real board", ErrNotEmulated, b.Name)
	}
	b.Console.Note("power cut armed at %s", point)
	b.emu.CutPowerAt(point)
	return nil
}

// UDID and PublicKey read a CC3220's pre-burned identity over its console.
func (b *Board) UDID(ctx context.Context) (string, error) {
	if b.cc == nil {
		return "", fmt.Errorf("boards: %s is a %s: only a cc3220 has a UDID", b.Name, b.Kind)
	}
	return b.cc.UDID(ctx)
}

// PublicKey returns the CC3220's pre-burned public key, PEM-encoded
// (what `credloop device allow --pubkey` takes).
func (b *Board) PublicKey(ctx context.Context) ([]byte, error) {
	if b.cc == nil {
		return nil, fmt.Errorf("boards: %s is a %s: only a cc3220 has a pre-burned key", b.Name, b.Kind)
	}
	der, err := b.cc.PublicKey(ctx)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func (b *Board) closeEmu() error {
	if b.emu == nil {
		return nil
	}
	return b.emu.Close()
}

// Close closes the console (and port) and stops the emulator.
func (b *Board) Close() error {
	var errs []error
	if b.nrf != nil {
		errs = append(errs, b.nrf.Close())
	}
	if b.Console != nil {
		errs = append(errs, b.Console.Close())
	}
	errs = append(errs, b.closeEmu())
	return errors.Join(errs...)
}
