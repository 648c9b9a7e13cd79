package scenario

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/boards"
	_ "github.com/credloop/credloop/boards/all" // every kind of board
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/hil"
)

// boardCondition answers [board:KIND]: whether the hardware map names a
// real board of that kind (scenarios then run against it; otherwise against
// an emulator). An unknown kind is an error.
func boardCondition(hw *hil.Map, kind string) (bool, error) {
	if _, err := boards.Lookup(kind); err != nil {
		return false, fmt.Errorf("[board:%s]: %w", kind, err)
	}
	if hw == nil {
		return false, nil
	}
	for _, b := range hw.Boards {
		if b.Kind == kind && !b.Emulate {
			return true, nil
		}
	}
	return false, nil
}

// boardEntry picks the hardware map's board for NAME, or an emulated one.
func (w *world) boardEntry(name, kind string) (hil.BoardSpec, error) {
	if w.hw != nil {
		if b, err := w.hw.Board(name); err == nil {
			if kind != "" && b.Kind != kind {
				return hil.BoardSpec{}, fmt.Errorf("board %s is a %s in the hardware map, not a %s", name, b.Kind, kind)
			}
			return b, nil
		}
	}
	if kind == "" {
		return hil.BoardSpec{}, fmt.Errorf("board add %s: --kind is required (%s)", name, boards.KindList())
	}
	return hil.BoardSpec{Name: name, Kind: kind, Emulate: true, Baud: hil.DefaultBaud}, nil
}

func cmdBoard(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	if len(args) < 2 {
		ts.Fatalf("usage: board SUBCOMMAND NAME ...; see `credloop run --commands`")
	}
	sub, name, rest := args[0], args[1], args[2:]
	ctx, cancel := ctxTimeout(90 * time.Second)
	defer cancel()
	if sub == "add" {
		noNeg(ts, neg, "board add")
		boardAdd(ctx, ts, w, name, rest)
		return
	}
	b, ok := w.boards[name]
	if !ok {
		ts.Fatalf("no board %q; add it with `board add`", name)
	}
	check := func(what string, err error) {
		switch {
		case err != nil && !neg:
			ts.Fatalf("board %s %s: %v", what, name, err)
		case err == nil && neg:
			ts.Fatalf("board %s %s succeeded unexpectedly", what, name)
		case err != nil:
			fmt.Fprintf(ts.Stderr(), "board %s %s: %v\n", what, name, err)
		}
	}
	switch sub {
	case "provision":
		cr := boardCredentials(ctx, ts, w, b, rest)
		check("provision", b.Provision(ctx, cr))
	case "reset":
		check("reset", b.Reset(ctx))
	case "power-cycle":
		check("power-cycle", b.PowerCycle(ctx))
	case "power-cut":
		noNeg(ts, neg, "board power-cut")
		if len(rest) != 1 {
			ts.Fatalf("usage: board power-cut NAME POINT")
		}
		ts.Check(b.CutPowerAt(rest[0]))
	case "online":
		line, err := b.WaitOnline(ctx)
		check("online", err)
		if err == nil {
			fmt.Fprintf(ts.Stdout(), "%s\n", line)
		}
	case "expect":
		if len(rest) < 1 {
			ts.Fatalf("usage: board expect NAME REGEXP [--timeout D] [--not REGEXP]...")
		}
		var timeout time.Duration
		var nots multiFlag
		fs := flags(ts, "board expect", rest[1:], func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait")
			fs.Var(&nots, "not", "a REGEXP that must not appear first (repeatable)")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("board expect: unexpected argument %q", fs.Arg(0))
		}
		opts := hil.ExpectOptions{Timeout: timeout}
		for _, n := range nots {
			re, err := regexp.Compile(n)
			ts.Check(err)
			opts.NotMatch = append(opts.NotMatch, re)
		}
		m, err := b.Console.Expect(ctx, rest[0], opts)
		check("expect", err)
		if err == nil {
			fmt.Fprintf(ts.Stdout(), "%s\n", m.Text)
		}
	case "send":
		noNeg(ts, neg, "board send")
		if len(rest) != 1 {
			ts.Fatalf("usage: board send NAME LINE")
		}
		ts.Check(b.Console.Send(rest[0]))
	case "udid":
		noNeg(ts, neg, "board udid")
		u, err := b.UDID(ctx)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "%s\n", u)
	case "pubkey":
		noNeg(ts, neg, "board pubkey")
		if len(rest) != 1 {
			ts.Fatalf("usage: board pubkey NAME FILE")
		}
		pemKey, err := b.PublicKey(ctx)
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(rest[0]), pemKey, 0o644))
	default:
		ts.Fatalf("unknown board subcommand %q; see `credloop run --commands`", sub)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func boardAdd(ctx context.Context, ts *testscript.TestScript, w *world, name string, args []string) {
	if _, ok := w.boards[name]; ok {
		ts.Fatalf("board add: board %q exists", name)
	}
	var kind, id, project, flash, udid, keyFile, factoryCert, factoryKey string
	var execPath, workdir, online string
	var hostArgs, hostEnv, volatile multiFlag
	fs := flags(ts, "board add", args, func(fs *flag.FlagSet) {
		fs.StringVar(&execPath, "exec", "", "linux: the firmware built for this host (relative to the work dir)")
		fs.Var(&hostArgs, "arg", "linux: an argument (repeatable)")
		fs.Var(&hostEnv, "env", "linux: K=V, V may name {psk} {psk_id} {cert} {key} {ca} (repeatable)")
		fs.StringVar(&workdir, "workdir", "", "linux: its working directory (default boards/NAME/)")
		fs.Var(&volatile, "volatile", "linux: a workdir path a power cycle removes (repeatable)")
		fs.StringVar(&online, "online", "", "linux: the REGEXP of its connected line (default: Golioth's)")
		fs.StringVar(&kind, "kind", "", "the board's kind: "+boards.KindList())
		fs.StringVar(&id, "id", "", "device id (esp32 certificate mode)")
		fs.StringVar(&project, "project", "", "project (esp32 certificate mode)")
		fs.StringVar(&flash, "flash", "", "image to flash before boot (esp32: an NVS partition image)")
		fs.StringVar(&udid, "udid", "", "cc3220: the pre-burned UDID")
		fs.StringVar(&keyFile, "key", "", "cc3220: the pre-burned key (PEM)")
		fs.StringVar(&factoryCert, "factory-cert", "", "esp32: the certificate compiled into the firmware")
		fs.StringVar(&factoryKey, "factory-key", "", "esp32: its key")
	})
	if fs.NArg() != 0 {
		ts.Fatalf("usage: board add NAME --kind KIND [--id ID] [--project P] [--flash FILE] [--udid U --key FILE] | --kind linux --exec PATH [--arg A]... [--env K=V]... [--workdir D] [--volatile P]... [--online RE]")
	}
	if w.cloud == nil {
		ts.Fatalf("board add: start the cloud first (`cloud start`)")
	}
	var entry hil.BoardSpec
	var err error
	if execPath != "" {
		entry = hil.BoardSpec{Name: name, Kind: kind, Exec: ts.MkAbs(execPath), Args: hostArgs, Volatile: volatile, Online: online, Baud: hil.DefaultBaud}
		if workdir != "" {
			entry.Workdir = ts.MkAbs(workdir)
		}
		for _, kv := range hostEnv {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				ts.Fatalf("board add: --env wants K=V, not %q", kv)
			}
			if entry.Env == nil {
				entry.Env = map[string]string{}
			}
			entry.Env[k] = v
		}
		m := &hil.Map{Boards: []hil.BoardSpec{entry}}
		if err := errors.Join(m.Validate(), boards.CheckMap(m)); err != nil {
			ts.Fatalf("board add: %v", err)
		}
		entry = m.Boards[0]
	} else {
		entry, err = w.boardEntry(name, kind)
		ts.Check(err)
	}
	o := boards.Options{
		Spec: entry, RunDir: w.work, Now: w.clock.Now, Redactor: w.redactor,
		Cloud:    boards.Endpoints{CoAPS: w.addr, MQTTS: w.mqttAddr, HTTPS: w.httpAddr},
		DeviceID: id, Project: project, UDID: udid, ServerCA: w.cloud.CA().RootPEM(),
	}
	if keyFile != "" {
		o.KeyFile = ts.MkAbs(keyFile)
	}
	if factoryCert != "" {
		o.Factory = boardCredentials(ctx, ts, w, nil, []string{"--cert", factoryCert, "--key", factoryKey})
	}
	if flash != "" {
		b, err := os.ReadFile(ts.MkAbs(flash))
		ts.Check(err)
		o.Flash = b
	}
	b, err := boards.Open(ctx, o)
	ts.Check(err)
	w.boards[name] = b
	var where string
	switch port, _ := b.Console.Conn().(*hil.Port); {
	case b.Host():
		where = "firmware run on this host, " + entry.Exec
	case b.Emulated():
		where = "emulated on " + port.Path()
	default:
		where = "real board on " + port.Path()
	}
	ts.Logf("board %s (%s): %s; log %s", name, entry.Kind, where, b.Console.LogPath())
	ts.Check(b.WaitBoot(ctx))
}

// boardCredentials reads `board provision` flags: a PSK given in the
// scenario or held by the registry (--device P/ID), or certificate files.
func boardCredentials(ctx context.Context, ts *testscript.TestScript, w *world, b *boards.Board, args []string) boards.Credentials {
	var pskID, pskHex, device, certFile, keyFile, chainFile string
	fs := flags(ts, "board provision", args, func(fs *flag.FlagSet) {
		fs.StringVar(&pskID, "psk-identity", "", "PSK identity <device>@<project>")
		fs.StringVar(&pskHex, "psk", "", "PSK, hex")
		fs.StringVar(&device, "device", "", "install the PSK the registry holds for PROJECT/DEVICE")
		fs.StringVar(&certFile, "cert", "", "device certificate (PEM or DER)")
		fs.StringVar(&keyFile, "key", "", "its private key (PEM or DER)")
		fs.StringVar(&chainFile, "chain", "", "intermediates (PEM)")
	})
	if fs.NArg() != 0 {
		ts.Fatalf("board provision: unexpected argument %q", fs.Arg(0))
	}
	var cr boards.Credentials
	switch {
	case device != "":
		project, id, ok := strings.Cut(device, "/")
		if !ok {
			ts.Fatalf("board provision: --device wants PROJECT/DEVICE")
		}
		c, err := w.cloud.Admin().ActivePSK(ctx, project, id)
		if errors.Is(err, cloud.ErrNoPSK) {
			ts.Fatalf("board provision: the registry holds no active PSK for %s (certificates' private keys are never in the registry: give --cert and --key)", device)
		}
		ts.Check(err)
		cr.PSKIdentity, cr.PSK = c.PSKIdentity, c.PSK
	case pskHex != "":
		key, err := hex.DecodeString(pskHex)
		if err != nil {
			ts.Fatalf("board provision: --psk must be hex")
		}
		cr.PSKIdentity, cr.PSK = pskID, key
	case certFile != "" && keyFile != "":
		cr.Chain, cr.KeyDER = readCertKey(ts, certFile, keyFile, chainFile)
	case b != nil && b.SelfProvisioning():
		// The board makes its own credentials (a CC3220: a CSR with
		// its pre-burned key).
	default:
		ts.Fatalf("board provision: give --psk-identity and --psk, --device P/ID, or --cert and --key")
	}
	if len(cr.PSK) > 0 {
		_, _ = w.redactor.AddPSK(cr.PSK)
	}
	if len(cr.KeyDER) > 0 {
		_, _ = w.redactor.AddPrivateKey(cr.KeyDER)
	}
	return cr
}
