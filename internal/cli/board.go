package cli

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/credloop/credloop/hil"
)

func init() {
	register(command{name: "board", summary: "find boards on serial ports and write a hardware map", run: func(ctx context.Context, env *Env) error {
		return subcommands(ctx, env, "board", boardUsage, map[string]func(context.Context, *Env) error{
			"list": func(ctx context.Context, env *Env) error { return boardList(env, hil.ListPorts) },
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

Examples:
  credloop board list
  credloop board list --generate hardware.yml
`

const boardListUsage = `
Usage: credloop board list [--generate FILE] [--json]

Lists the serial ports of this machine with their USB vendor and product
ids, serial number and bus location, and guesses the board kind from the ids
(Espressif 303A, Silicon Labs CP210x 10C4:EA60 and WCH CH340 1A86:7523 →
esp32; SEGGER J-Link 1366 → nrf; TI XDS110 0451:BEF3 → cc3220). --generate
writes a hardware map with one board per recognised port, identified by its
USB serial number (or bus location when it has none) rather than its
/dev name, which can change when the board re-enumerates.

Examples:
  credloop board list
  credloop board list --generate hardware.yml
  credloop board list --json
`

type portRow struct {
	hil.PortInfo
	Kind string `json:"kind,omitempty"`
	Why  string `json:"why"`
}

func boardList(env *Env, lister func() ([]hil.PortInfo, error)) error {
	fs := flagSet(env, "board list", boardListUsage)
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
			r.Kind, r.Why = hil.GuessKind(p.VID, p.PID)
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
		b := hil.Board{Name: fmt.Sprintf("%s-%d", r.Kind, count[r.Kind]), Kind: r.Kind, Baud: hil.DefaultBaud}
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
