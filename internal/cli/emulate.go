package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/credloop/credloop/boards"
)

const boardEmulateUsage = `
Usage: credloop board emulate KIND [--dir DIR] [--name NAME] [--coaps ADDR] [--mqtts ADDR] [--https ADDR] [--json] [-v]

Starts an emulated board of KIND on a pseudo-terminal, outside any
scenario, and prints the terminal's path: open it as you would the USB
serial port of a real board, with mcumgr, a serial terminal, or a hardware
map ("port: /dev/pts/7") for the other board commands. The board keeps its
flash in DIR/NAME.flash (DIR: a new temporary directory, printed, when not
given), so a later run with the same --dir boots from what this one left.
It runs until interrupted (Ctrl-C, SIGTERM), then stops cleanly.

The firmware connects to the cloud addresses given (those a running
'credloop cloud' prints); without them it stays offline, and its console
and flash work all the same.

With --json the ready line is one JSON object on stdout:

  {"event":"ready","kind":"nrf","name":"nrf","pty":"/dev/pts/7","dir":"/tmp/credloop-emulate-1234"}

Examples:
  # An nRF: the Zephyr shell and mcumgr SMP share the terminal.
  credloop board emulate nrf --dir ./nrf-1
  mcumgr --conntype serial --connstring dev=/dev/pts/7,baud=115200 echo hello
  mcumgr --conntype serial --connstring dev=/dev/pts/7 fs download /lfs1/credentials/crt.der crt.der

  # An ESP32: the ESP-IDF console (type help) in a serial terminal.
  credloop board emulate esp32 --coaps 127.0.0.1:5684
  picocom -b 115200 /dev/pts/7

  # A CC3220 that provisions itself against a running cloud.
  credloop board emulate cc3220 --json --https 127.0.0.1:8443 --mqtts 127.0.0.1:8883
`

// emulateReady is the --json ready line.
type emulateReady struct {
	Event string `json:"event"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	PTY   string `json:"pty"`
	Dir   string `json:"dir"`
}

func boardEmulate(ctx context.Context, env *Env) error {
	fs := flagSet(env, "board emulate", boardEmulateUsage+kindsHelp())
	dir := fs.String("dir", "", "keep the board's flash in `DIR` (default: a new temporary directory)")
	name := fs.String("name", "", "the board's `NAME` (default: KIND)")
	coaps := fs.String("coaps", "", "the cloud's CoAP/DTLS `ADDR`ess (host:port)")
	mqtts := fs.String("mqtts", "", "the cloud's MQTT/TLS `ADDR`ess (host:port)")
	https := fs.String("https", "", "the cloud's HTTPS `ADDR`ess (host:port)")
	asJSON := fs.Bool("json", false, "print the ready line as JSON")
	verbose := fs.Bool("v", false, "log the emulator's own debug lines to stderr")
	args, err := parseArgs(fs, env.Args, "KIND")
	if err != nil {
		return err
	}
	kind, err := boards.Lookup(args[0])
	if err != nil {
		return usageErr("%v", err)
	}
	if kind.Emulate == nil {
		return fmt.Errorf("%w: %s", boards.ErrNoEmulator, kind.Name)
	}
	if *name == "" {
		*name = kind.Name
	}
	if !validName(*name) {
		return usageErr("--name %q: use letters, digits, '.', '_' and '-'", *name)
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "credloop-emulate-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if *dir, err = filepath.Abs(*dir); err != nil {
		return err
	}
	o := boards.EmulatorOptions{
		Name: *name, FlashPath: filepath.Join(*dir, *name+".flash"),
		Cloud: boards.Endpoints{CoAPS: *coaps, MQTTS: *mqtts, HTTPS: *https},
	}
	if *verbose {
		o.Log = env.Stderr
	}
	emu, err := kind.Emulate(ctx, o)
	if err != nil {
		return fmt.Errorf("emulator of %s: %w", kind.Name, err)
	}
	if err := printReady(env.Stdout, *asJSON, emulateReady{Event: "ready", Kind: kind.Name, Name: *name, PTY: emu.PortPath(), Dir: *dir}); err != nil {
		return fmt.Errorf("%w (emulator stopped: %w)", err, emu.Close())
	}
	if !*asJSON {
		fmt.Fprintln(env.Stderr, "Ctrl-C stops it")
	}
	<-ctx.Done()
	if err := emu.Close(); err != nil {
		return fmt.Errorf("stopping the emulator: %w", err)
	}
	if !*asJSON {
		fmt.Fprintf(env.Stderr, "stopped %s; its flash is in %s\n", *name, o.FlashPath)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return false
		}
	}
	return true
}

func printReady(w io.Writer, asJSON bool, r emulateReady) error {
	if asJSON {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintf(w, "%s emulator %s on %s\nflash in %s\n", r.Kind, r.Name, r.PTY, r.Dir)
	return err
}
