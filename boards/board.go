// Package boards opens a board of the hardware in the loop — a real one on
// a serial port named in the hardware map, or an emulator on a
// pseudo-terminal — and drives it with its kind's Driver. Kinds (ESP32,
// nRF, CC3220: packages boards/esp32, boards/nrf, boards/cc3220) register
// themselves; import boards/all to have them all. Either way the driver
// talks through go.bug.st/serial and hil.Console, so the serial code path
// is the same.
package boards

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/sim"
)

// Endpoints are the cloud's addresses the firmware connects to.
type Endpoints struct{ CoAPS, MQTTS, HTTPS string }

// Credentials are what a driver installs on a board: the device runtime's
// one credential type, as every board kind takes it.
type Credentials = sim.Credential

// Errors of an open board.
var (
	// ErrNotEmulated is returned for fault injection on a real board.
	ErrNotEmulated = errors.New("boards: only an emulated board can do this")
	// ErrUnsupported is returned for what a kind of board cannot do
	// (a power cut on an emulator without them, the identity of a board
	// without a pre-burned one).
	ErrUnsupported = errors.New("boards: this kind of board cannot do this")
)

// Options configures Open.
type Options struct {
	// Spec is the board's hardware map entry; Spec.Emulate selects the
	// emulator.
	Spec hil.BoardSpec
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
	// ServerCA is the PEM a host board's firmware trusts for the cloud
	// (its {ca} placeholder).
	ServerCA []byte
}

// Board is an open board: a hardware map entry (hil.BoardSpec) brought
// up, with its emulator started when the entry says emulate, its serial
// port and console open, and its kind's Driver on the console. Open
// returns one; Close releases it all.
type Board struct {
	Name, Kind string
	Console    *hil.Console

	spec hil.BoardSpec
	kind Kind
	emu  Emulator
	drv  Driver
	host bool // a process on this host (Kind.Launch)

	closeOnce sync.Once
	closeErr  error
}

// Open starts the emulator (when the entry says emulate) and opens the
// board's serial port and console, and its kind's driver.
func Open(ctx context.Context, o Options) (*Board, error) {
	k, err := Lookup(o.Spec.Kind)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", o.Spec.Name, err)
	}
	spec := k.defaults(o.Spec)
	b := &Board{Name: spec.Name, Kind: k.Name, spec: spec, kind: k}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Redactor == nil {
		// Drivers refuse to send a secret they cannot keep out of the log.
		o.Redactor = hil.NewRedactor()
	}
	if k.Launch != nil {
		return b.launch(ctx, o)
	}
	var po hil.PortOptions
	if spec.Emulate {
		if k.Emulate == nil {
			return nil, fmt.Errorf("board %s: %w: %s", spec.Name, ErrNoEmulator, k.Name)
		}
		flash := filepath.Join(o.RunDir, "boards", spec.Name+".flash")
		if err := os.MkdirAll(filepath.Dir(flash), 0o700); err != nil {
			return nil, err
		}
		if o.Flash != nil {
			if err := os.WriteFile(flash, o.Flash, 0o600); err != nil {
				return nil, fmt.Errorf("boards: flashing %s: %w", spec.Name, err)
			}
		}
		emu, err := k.Emulate(ctx, EmulatorOptions{Name: spec.Name, FlashPath: flash, Cloud: o.Cloud, Now: o.Now, Log: o.Log,
			DeviceID: o.DeviceID, Project: o.Project, Factory: o.Factory, UDID: o.UDID, KeyFile: o.KeyFile})
		if err != nil {
			return nil, fmt.Errorf("boards: emulator of %s: %w", spec.Name, err)
		}
		b.emu = emu
		po = hil.PortOptions{Board: spec.Name, Resolve: hil.PathResolver(emu.PortPath()), Baud: hil.DefaultBaud}
	} else {
		if po, err = spec.PortOptions(); err != nil {
			return nil, err
		}
		if o.Flash != nil {
			return nil, fmt.Errorf("boards: %s is a real board: flash it with its flash command (hardware map 'flash')", spec.Name)
		}
	}
	port, err := hil.OpenPort(ctx, po)
	if err != nil {
		b.closeEmu()
		return nil, err
	}
	c, err := hil.NewConsole(port, hil.ConsoleOptions{Name: spec.Name, RunDir: o.RunDir, Redactor: o.Redactor})
	if err != nil {
		_ = port.Close()
		b.closeEmu()
		return nil, err
	}
	b.Console = c
	if b.drv, err = k.Open(c, port, o.Redactor); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("boards: driver of %s: %w", spec.Name, err)
	}
	return b, nil
}

// launch opens a host board: the kind starts the process and hands back
// the console's connection.
func (b *Board) launch(ctx context.Context, o Options) (*Board, error) {
	if b.spec.Emulate || b.spec.Exec == "" {
		return nil, fmt.Errorf("board %s: %w: a %s board needs exec (the firmware to run), not emulate", b.Name, hil.ErrInvalidMap, b.Kind)
	}
	if o.Flash != nil {
		return nil, fmt.Errorf("boards: %s runs on this host: its workdir is its flash", b.Name)
	}
	conn, err := b.kind.Launch(ctx, LaunchOptions{Spec: b.spec, RunDir: o.RunDir, Cloud: o.Cloud, ServerCA: o.ServerCA, Log: o.Log})
	if err != nil {
		return nil, fmt.Errorf("boards: starting %s: %w", b.Name, err)
	}
	b.host = true
	c, err := hil.NewConsole(conn, hil.ConsoleOptions{Name: b.Name, RunDir: o.RunDir, Redactor: o.Redactor, LogEscapes: true})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	b.Console = c
	if b.drv, err = b.kind.Open(c, conn, o.Redactor); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("boards: driver of %s: %w", b.Name, err)
	}
	return b, nil
}

// Host reports whether the board is firmware run as a process on this
// host (kind linux).
func (b *Board) Host() bool { return b.host }

// Emulated reports whether the board is played by an emulator.
func (b *Board) Emulated() bool { return b.emu != nil }

// Spec is the board's hardware map entry, with its kind's defaults.
func (b *Board) Spec() hil.BoardSpec { return b.spec }

// Driver is the board's kind's driver, for what only that kind can do
// (a type assertion to the kind's driver type).
func (b *Board) Driver() Driver { return b.drv }

// SelfProvisioning reports whether the board makes its own credentials
// (Provision then takes none).
func (b *Board) SelfProvisioning() bool { return b.kind.SelfProvisioning }

// WaitBoot waits for the boot banner or prompt.
func (b *Board) WaitBoot(ctx context.Context) error { return b.drv.WaitBoot(ctx) }

// WaitOnline waits for the firmware's "connected" line and returns it.
func (b *Board) WaitOnline(ctx context.Context) (string, error) { return b.drv.WaitOnline(ctx) }

// Provision installs credentials the board's kind's own way (see the
// kind's driver: ESP32 console NVS commands or Golioth settings, nRF
// settings or mcumgr file upload; a CC3220 provisions itself).
func (b *Board) Provision(ctx context.Context, cr Credentials) error {
	return b.drv.Provision(ctx, cr)
}

// Reset resets the board: a real board the way its hardware map says
// (DTR/RTS, console command, power; the kind's default when it says
// nothing), an emulated one with its console command.
func (b *Board) Reset(ctx context.Context) error {
	if b.emu == nil && !b.host {
		return hil.ResetBoard(ctx, b.spec, b.Console)
	}
	return b.drv.Reset(ctx)
}

// PowerCycle removes and restores power: the emulator's RTC state is lost;
// a real board runs its hardware map power command.
func (b *Board) PowerCycle(ctx context.Context) error {
	if pd, ok := b.drv.(PowerDriver); ok && b.host {
		return pd.PowerCycle(ctx)
	}
	if b.emu == nil {
		return hil.PowerCycle(ctx, b.spec, b.Console)
	}
	b.Console.Note("power cycle")
	b.emu.PowerCycle()
	return nil
}

// CutPowerAt makes the emulated board lose power at its next flash write
// matching point ("set:<key>", "any"). A real board is ErrNotEmulated, an
// emulator that cannot ErrUnsupported.
func (b *Board) CutPowerAt(point string) error {
	if pd, ok := b.drv.(PowerDriver); ok && b.host {
		return pd.CutPowerAt(point)
	}
	if b.emu == nil {
		return fmt.Errorf("%w: %s is a real board", ErrNotEmulated, b.Name)
	}
	pc, ok := b.emu.(PowerCutter)
	if !ok {
		return fmt.Errorf("%w: the %s emulator has no power cuts", ErrUnsupported, b.Kind)
	}
	b.Console.Note("power cut armed at %s", point)
	pc.CutPowerAt(point)
	return nil
}

func (b *Board) identifier() (Identifier, error) {
	id, ok := b.drv.(Identifier)
	if !ok {
		return nil, fmt.Errorf("%w: %s is a %s: it has no pre-burned identity", ErrUnsupported, b.Name, b.Kind)
	}
	return id, nil
}

// UDID reads a board's pre-burned unique device id over its console.
func (b *Board) UDID(ctx context.Context) (string, error) {
	id, err := b.identifier()
	if err != nil {
		return "", err
	}
	return id.UDID(ctx)
}

// PublicKey returns the board's pre-burned public key, PEM-encoded
// (what `credloop device allow --pubkey` takes).
func (b *Board) PublicKey(ctx context.Context) ([]byte, error) {
	id, err := b.identifier()
	if err != nil {
		return nil, err
	}
	der, err := id.PublicKey(ctx)
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

// Close closes the driver, the console (and port, or a host board's
// process) and stops the emulator. It may be called again.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		var errs []error
		if b.drv != nil {
			errs = append(errs, b.drv.Close())
		}
		if b.Console != nil {
			errs = append(errs, b.Console.Close())
		}
		errs = append(errs, b.closeEmu())
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}
