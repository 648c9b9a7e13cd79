package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/credloop/credloop/boards"
	_ "github.com/credloop/credloop/boards/all" // every kind of board
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/hil"
)

func init() {
	register(command{name: "board", summary: "find boards on serial ports and write a hardware map", run: func(ctx context.Context, env *Env) error {
		return subcommands(ctx, env, "board", boardUsage+kindsHelp(), map[string]func(context.Context, *Env) error{
			"list":      func(ctx context.Context, env *Env) error { return boardList(env, hil.ListPorts) },
			"console":   boardConsole,
			"reset":     boardReset,
			"provision": boardProvision,
			"flash":     boardFlash,
			"emulate":   boardEmulate,
		})
	}})
}

const boardUsage = `
Usage: credloop board <subcommand> [flags]

Boards are the hardware in the loop: an ESP32, an nRF (Zephyr) or a TI
CC3220 on a USB serial port. A hardware map (YAML, like Zephyr Twister's
map.yml) names each board, its kind and its port — by device path, or by USB
serial number or location so that it survives re-enumeration — its baud
rate, how to reset it, and optional power and flash commands; a board with
"emulate: true" is played by credloop's emulator on a pseudo-terminal.

Subcommands:
  list       list serial ports, guess each board's kind from its USB ids,
             and optionally write a hardware map (--generate FILE)
  console    an interactive console on a board, logged (secrets redacted)
  reset      reset a board the way the hardware map says
  provision  install the credentials the registry holds for a device
  flash      flash an image with the board's flash command template
  emulate    run an emulated board on a pseudo-terminal until interrupted

Boards with "emulate: true" in a hardware map exist inside scenarios
(credloop run), where credloop starts their emulators; 'board emulate'
starts one on its own.

Examples:
  credloop board list
  credloop board list --generate hardware.yml
  credloop board console --map hardware.yml esp32-1
  credloop board reset --map hardware.yml nrf-1
  credloop board provision --map hardware.yml --dir ./lab nrf-1 --device acme/nrf-1
  credloop board flash --map hardware.yml esp32-1 nvs.bin --offset 0x9000
  credloop board emulate nrf
`

// kindsHelp lists the registered kinds of board for a help text.
func kindsHelp() string {
	var b strings.Builder
	b.WriteString("\nKinds:\n")
	for _, k := range boards.Kinds() {
		fmt.Fprintf(&b, "  %-8s %s\n", k.Name, k.Summary)
	}
	return b.String()
}

const boardProvisionUsage = `
Usage: credloop board provision --map FILE NAME --device PROJECT/ID [--dir DIR]

Installs on a real board the credentials the registry of DIR holds for the
device: its PSK (the registry never holds a device's private key, so
certificates are installed from files in scenarios, or by the board's own
CSR). ESP32 boards get Golioth's settings (settings set golioth/psk-id,
golioth/psk) over the ESP-IDF console; nRF boards the same over the Zephyr
shell; then the board restarts. A linux board (firmware run on this host)
gets them in its working directory, for the placeholders of its env, args
and files, and runs while the command does. The key is never printed or
logged.

Example:
  credloop board provision --map hardware.yml --dir ./lab esp32-1 --device acme/esp-1
`

const boardFlashUsage = `
Usage: credloop board flash --map FILE NAME IMAGE [--offset 0x9000]

Runs the board's flash command from the hardware map with {port}, {image},
{offset} and {baud} filled in, e.g. for an ESP32 NVS partition built with
'credloop nvs build':

  flash: esptool.py --chip esp32 --port {port} --baud {baud} write_flash {offset} {image}

Example:
  credloop board flash --map hardware.yml esp32-1 nvs.bin --offset 0x9000
`

const boardConsoleUsage = `
Usage: credloop board console --map FILE NAME [--log-dir DIR]

Opens the board's serial port (by path, or by USB serial number or location,
reopened if the board re-enumerates), or starts a linux board's firmware on
a pseudo-terminal, and passes your keystrokes to it and its output to you,
line by line. Everything is logged with timestamps to
DIR/boards/NAME.log. Ctrl-] ends the session.

Example:
  credloop board console --map hardware.yml esp32-1
`

const boardResetUsage = `
Usage: credloop board reset --map FILE NAME [--log-dir DIR]

Resets the board as the hardware map says: an esptool-style DTR/RTS
sequence (reset: "D0|R1|W0.1|R0"), a console command
(reset: "console:kernel reboot cold"), or its power command (reset: power).

Example:
  credloop board reset --map hardware.yml esp32-1
`

// openMapBoard loads the map, finds a real board and opens its console.
func openMapBoard(ctx context.Context, env *Env, usage string) (hil.BoardSpec, *hil.Console, error) {
	fs := flagSet(env, "board", usage)
	mapFile := fs.String("map", "", "hardware map `FILE` (YAML)")
	logDir := fs.String("log-dir", ".", "write the board log under `DIR`/boards/")
	args, err := parseArgs(fs, env.Args, "NAME")
	if err != nil {
		return hil.BoardSpec{}, nil, err
	}
	if *mapFile == "" {
		return hil.BoardSpec{}, nil, usageErr("--map is required (write one with 'credloop board list --generate FILE')")
	}
	m, err := boards.LoadMap(*mapFile)
	if err != nil {
		return hil.BoardSpec{}, nil, err
	}
	b, err := m.Board(args[0])
	if err != nil {
		return hil.BoardSpec{}, nil, err
	}
	if b.Emulate {
		return hil.BoardSpec{}, nil, fmt.Errorf("board %s is emulated: emulators run inside scenarios ('credloop run') or on their own ('credloop board emulate %s')", b.Name, b.Kind)
	}
	if b.Exec != "" {
		// Firmware run on this host: it runs while the console is open.
		hb, err := boards.Open(ctx, boards.Options{Spec: b, RunDir: *logDir})
		if err != nil {
			return hil.BoardSpec{}, nil, err
		}
		return b, hb.Console, nil
	}
	po, err := b.PortOptions()
	if err != nil {
		return hil.BoardSpec{}, nil, err
	}
	port, err := hil.OpenPort(ctx, po)
	if err != nil {
		return hil.BoardSpec{}, nil, err
	}
	c, err := hil.NewConsole(port, hil.ConsoleOptions{Name: b.Name, RunDir: *logDir})
	if err != nil {
		_ = port.Close()
		return hil.BoardSpec{}, nil, err
	}
	return b, c, nil
}

func boardConsole(ctx context.Context, env *Env) error {
	b, c, err := openMapBoard(ctx, env, boardConsoleUsage)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(env.Stderr, "connected to %s (%s); log: %s; Ctrl-] to quit\n", b.Name, c.Conn(), c.LogPath())
	return c.Interact(ctx, env.Stdin, env.Stdout)
}

func boardReset(ctx context.Context, env *Env) error {
	b, c, err := openMapBoard(ctx, env, boardResetUsage)
	if err != nil {
		return err
	}
	defer c.Close()
	if b.Exec != "" {
		return fmt.Errorf("board %s is firmware run on this host: it runs only while a credloop command does ('board console', 'board provision'); reset it in a scenario ('board reset %s')", b.Name, b.Name)
	}
	if err := hil.ResetBoard(ctx, b, c); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "reset %s\n", b.Name)
	return nil
}

const boardListUsage = `
Usage: credloop board list [--generate FILE] [--json]

Lists the serial ports of this machine with their USB vendor and product
ids, serial number and bus location, and guesses the board kind from the ids
(the table below). --generate writes a hardware map with one board per recognised port, identified by its
USB serial number (or bus location when it has none) rather than its
/dev name, which can change when the board re-enumerates.

Examples:
  credloop board list
  credloop board list --generate hardware.yml
  credloop board list --json

USB ids and kinds:
`

type portRow struct {
	hil.PortInfo
	Kind string `json:"kind,omitempty"`
	Why  string `json:"why"`
}

func boardList(env *Env, lister func() ([]hil.PortInfo, error)) error {
	fs := flagSet(env, "board list", boardListUsage+boards.USBTable())
	generate := fs.String("generate", "", "write a hardware map for the recognised boards to `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	ports, err := lister()
	if err != nil {
		return err
	}
	ports = append([]hil.PortInfo(nil), ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Path < ports[j].Path })
	rows := make([]portRow, 0, len(ports))
	for _, p := range ports {
		r := portRow{PortInfo: p, Why: "not a USB port"}
		if p.USB {
			r.Kind, r.Why = boards.GuessKind(p.VID, p.PID)
		}
		rows = append(rows, r)
	}
	if *asJSON {
		if err := emitJSON(env.Stdout, rows); err != nil {
			return err
		}
	} else if len(rows) == 0 {
		fmt.Fprintln(env.Stdout, "no serial ports found")
	} else {
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "PORT\tUSB ID\tKIND\tSERIAL\tLOCATION\tPRODUCT\tWHY")
		for _, r := range rows {
			id := "-"
			if r.USB {
				id = r.VID + ":" + r.PID
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Path, id, dashIfEmpty(r.Kind), dashIfEmpty(r.SerialNumber), dashIfEmpty(r.Location), dashIfEmpty(r.Product), r.Why)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if *generate == "" {
		return nil
	}
	m := &hil.Map{}
	count := map[string]int{}
	for _, r := range rows {
		if r.Kind == "" {
			continue
		}
		count[r.Kind]++
		b := hil.BoardSpec{Name: fmt.Sprintf("%s-%d", r.Kind, count[r.Kind]), Kind: r.Kind, Baud: hil.DefaultBaud}
		switch {
		case r.SerialNumber != "":
			b.SerialNumber = r.SerialNumber
		case r.Location != "":
			b.Location = r.Location
		default:
			b.Port = r.Path
		}
		m.Boards = append(m.Boards, b)
	}
	if len(m.Boards) == 0 {
		return fmt.Errorf("no recognised board to write to %s; add boards by hand, or 'emulate: true' ones (see 'credloop board --help')", *generate)
	}
	var b strings.Builder
	if err := hil.WriteMap(&b, m); err != nil {
		return err
	}
	if err := os.WriteFile(*generate, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "wrote %d board(s) to %s\n", len(m.Boards), *generate)
	return nil
}

func boardProvision(ctx context.Context, env *Env) error {
	fs := flagSet(env, "board provision", boardProvisionUsage)
	mapFile := fs.String("map", "", "hardware map `FILE` (YAML)")
	dir := addDirFlag(fs)
	device := fs.String("device", "", "the device, `PROJECT/ID`, whose credentials to install")
	logDir := fs.String("log-dir", ".", "write the board log under `DIR`/boards/")
	args, err := parseArgs(fs, env.Args, "NAME")
	if err != nil {
		return err
	}
	project, id, ok := strings.Cut(*device, "/")
	if !ok || project == "" || id == "" {
		return usageErr("--device PROJECT/ID is required")
	}
	if *mapFile == "" {
		return usageErr("--map is required")
	}
	m, err := boards.LoadMap(*mapFile)
	if err != nil {
		return err
	}
	entry, err := m.Board(args[0])
	if err != nil {
		return err
	}
	if entry.Emulate {
		return fmt.Errorf("board %s is emulated: emulators run inside scenarios ('credloop run') or on their own ('credloop board emulate %s')", entry.Name, entry.Kind)
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	c, err := a.ActivePSK(ctx, project, id)
	a.Close()
	if errors.Is(err, cloud.ErrNoPSK) {
		return fmt.Errorf("the registry holds no active PSK for %s/%s (private keys of certificates are never in the registry)", project, id)
	}
	if err != nil {
		return err
	}
	cr := boards.Credentials{PSKIdentity: c.PSKIdentity, PSK: c.PSK}
	red := hil.NewRedactor()
	if _, err := red.AddPSK(cr.PSK); err != nil {
		return err
	}
	// A host board's {ca}: the root of the directory's default CA.
	serverCA, _ := os.ReadFile(filepath.Join(*dir, "ca", "default", "root.pem"))
	b, err := boards.Open(ctx, boards.Options{Spec: entry, RunDir: *logDir, Redactor: red, ServerCA: serverCA})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Provision(ctx, cr); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "installed PSK %s (fp=%s) on %s; log: %s\n", cr.PSKIdentity, hil.Fingerprint(cr.PSK), entry.Name, b.Console.LogPath())
	return nil
}

func boardFlash(ctx context.Context, env *Env) error {
	fs := flagSet(env, "board flash", boardFlashUsage)
	mapFile := fs.String("map", "", "hardware map `FILE` (YAML)")
	offset := fs.String("offset", "0x9000", "flash `OFFSET` (ESP32's default NVS partition is at 0x9000)")
	args, err := parseArgs(fs, env.Args, "NAME", "IMAGE")
	if err != nil {
		return err
	}
	if *mapFile == "" {
		return usageErr("--map is required")
	}
	m, err := boards.LoadMap(*mapFile)
	if err != nil {
		return err
	}
	entry, err := m.Board(args[0])
	if err != nil {
		return err
	}
	if entry.Emulate {
		return fmt.Errorf("board %s is emulated: in a scenario, 'board add %s --flash IMAGE' flashes it", entry.Name, entry.Name)
	}
	po, err := entry.PortOptions()
	if err != nil {
		return err
	}
	port, err := po.Resolve(ctx)
	if err != nil {
		return err
	}
	argv, err := entry.FlashCommand(port, args[1], *offset)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "$ %s\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = env.Stdout, env.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("flashing %s: %w", entry.Name, err)
	}
	return nil
}
