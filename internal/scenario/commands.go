package scenario

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// Commands is the scenario command set. Each command's usage is in Usage.
func Commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"cloud":   cmdCloud,
		"clock":   cmdClock,
		"sim":     cmdSim,
		"await":   cmdAwait,
		"mark":    cmdMark,
		"expect":  cmdExpect,
		"board":   cmdBoard,
		"lightdb": cmdLightDB,

		"stream":   cmdStream,
		"logs":     cmdLogs,
		"settings": cmdSettings,
		"rpc":      cmdRPC,
		"ota":      cmdOTA,
	}
}

// Usage documents the command set; `credloop run --commands` prints it.
const Usage = `Scenario commands (besides testscript's exec, stdout, cmp, env, ...):

  cloud start [--idle D] [--coap-addr HOST:PORT]
                               start the cloud on $CREDLOOP_DIR; sets $COAPS.
                               --coap-addr fixes the DTLS/CoAP address for
                               firmware with a compiled-in server (Golioth's
                               SDK: coaps://127.0.56.1 means 127.0.56.1:5684)
  cloud stop | cloud restart   stop it; restart keeps the address and the registry

  clock advance D              move the virtual clock (cloud and devices) forward;
                               D like 36h, 90m or 400d
  clock set RFC3339            set the virtual clock

  sim add NAME --project P [--id ID] (--psk HEX [--psk-identity ID@P] |
          --cert FILE --key FILE [--chain FILE]) [--handshake-timeout D]
                               create a simulated device with factory credentials
  sim boot NAME                boot and connect; '! sim boot' expects failure
  sim reboot NAME              reset (RTC kept) and connect
  sim power-cycle NAME         power loss (RTC lost, flash kept) and connect
  sim stop NAME                disconnect
  sim hello NAME               GET /hello; prints the identity JSON to stdout
  sim state NAME set PATH JSON | sim state NAME get PATH
  sim enroll NAME | sim reenroll NAME
                               EST sen / sren with a key made on the device; the
                               certificate is used from the next boot
  sim rotate-psk NAME IDENTITY HEX
                               install a backup PSK (tried first at next boot)
  sim power-cut NAME POINT     the next flash write matching POINT loses power
                               (set:<key>, delete:<key> or any)
  sim status NAME              print the device model state to stdout
  sim online NAME              assert online; '! sim online' asserts offline
  sim wait-offline NAME [--timeout D]
                               wait until the cloud ends the session

  await event [--project P] [--device D] [--kind K] [--outcome ok|fail]
             [--reason REGEXP] [--timeout D]
                               wait for a matching event recorded since the last
                               mark that no earlier await matched (so awaits after
                               a mark may come in any order); prints it to stdout
  mark                         later awaits only see events recorded after this

  board add NAME --kind esp32|nrf|cc3220 [--id ID --project P] [--flash FILE]
                               [--udid U --key FILE]
                               a board: the hardware map's real one named NAME, or
                               an emulator on a pseudo-terminal; waits for boot
  board add NAME --kind linux --exec PATH [--arg A]... [--env K=V]...
                 [--workdir D] [--volatile P]... [--online REGEXP]
                               the firmware PATH built for this host, run as a
                               process on a pseudo-terminal; K=V may name {psk}
                               {psk_id} {cert} {key} {ca}, filled at provisioning
  board provision NAME (--psk-identity ID --psk HEX | --device P/ID |
                        --cert F --key F [--chain F])
                               install credentials the board's own way (console,
                               settings, mcumgr upload; a cc3220 provisions itself)
  board reset|power-cycle NAME, board power-cut NAME POINT (linux: now)
  board online NAME            wait for the firmware's "connected" line
  board expect NAME REGEXP [--timeout D] [--not REGEXP]...
  board send NAME LINE, board udid NAME, board pubkey NAME FILE

  rpc call PROJECT DEVICE METHOD [ARG]... [--timeout D]
                               call a method on the device (Golioth RPC over its
                               observation of .rpc); ARGs are JSON values or
                               strings; prints "status NAME (CODE)" and "detail
                               JSON"; '! rpc call' expects a timeout or a status
                               other than OK
  ota release PROJECT PACKAGE VERSION FILE [--device D]
                               release FILE to the project's devices (or one);
                               observers of .u/desired get the new manifest
  ota status PROJECT DEVICE    print the device's manifest sequence, desired
                               components and the state it last reported

Conditions:
  [board:KIND]                 the hardware map names a real board of KIND
                               (esp32, nrf, cc3220); an unknown kind is an error
  [env:NAME]                   the host sets NAME; host variables whose names
                               end in _FW (paths to firmware built on the host)
                               are passed into every scenario, so
                               '[!env:GOLIOTH_BASICS_FW] skip ...' skips a
                               scenario whose firmware was not built
  [have:BIN]                   BIN (a third-party peer such as openssl) is
                               installed; when it is not and $CI is set the
                               condition fails the scenario instead of being
                               false, so '[!have:openssl] skip' never skips in CI
  [pkgconfig:LIB]              pkg-config knows LIB (its development files are
                               installed, e.g. libcoap-3-openssl for a firmware
                               built in the scenario); under $CI as [have:BIN]

  expect device PROJECT ID (exists|absent|enabled|disabled|auto-provisioned)
  expect credentials PROJECT ID [--kind psk|cert] [--state S] --count N
  expect events [--project P] [--device D] [--kind K] [--outcome O]
                [--reason REGEXP] [--since-mark] --count N
` + lightdbUsage + goliothUsage

// flags parses a command's flags, failing the script with the usage on
// error.
func flags(ts *testscript.TestScript, name string, args []string, def func(fs *flag.FlagSet)) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	def(fs)
	if err := fs.Parse(args); err != nil {
		ts.Fatalf("%s: %v\n%s", name, err, buf.String())
	}
	return fs
}

func noNeg(ts *testscript.TestScript, neg bool, what string) {
	if neg {
		ts.Fatalf("%s does not support '!': %s", what, "it either succeeds or fails the scenario")
	}
}

func cmdCloud(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "cloud")
	w := getWorld(ts)
	if len(args) == 0 {
		ts.Fatalf("usage: cloud start [--idle D] | cloud stop | cloud restart")
	}
	switch args[0] {
	case "start":
		var coapAddr string
		fs := flags(ts, "cloud start", args[1:], func(fs *flag.FlagSet) {
			fs.DurationVar(&w.idle, "idle", 0, "idle timeout of DTLS sessions")
			fs.StringVar(&coapAddr, "coap-addr", "", "UDP address of the DTLS/CoAP endpoint (default 127.0.0.1:0)")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("usage: cloud start [--idle D] [--coap-addr HOST:PORT]")
		}
		if coapAddr != "" {
			w.addr = coapAddr
		}
		ts.Check(w.startCloud())
	case "stop":
		ts.Check(w.stopCloud())
	case "restart":
		ts.Check(w.stopCloud())
		ts.Check(w.startCloud())
	case "rotate", "publish", "activate":
		if w.cloud == nil {
			ts.Fatalf("cloud %s: the cloud is not running", args[0])
		}
		cloudOperate(ts, w, args[0], args[1:])
		return
	default:
		ts.Fatalf("usage: cloud start [--idle D] | cloud stop | cloud restart | cloud rotate | cloud publish | cloud activate")
	}
	if w.cloud != nil {
		ts.Setenv("COAPS", w.addr)
		ts.Setenv("MQTTS", w.mqttAddr)
		ts.Setenv("HTTPS", w.httpAddr)
		ts.Logf("cloud running: coaps=%s mqtts=%s https=%s dir=%s", w.addr, w.mqttAddr, w.httpAddr, w.dir)
	} else {
		ts.Logf("cloud stopped")
	}
}

// parseDuration accepts time.ParseDuration's units plus d (days).
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

func cmdClock(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "clock")
	w := getWorld(ts)
	if len(args) != 2 {
		ts.Fatalf("usage: clock advance D | clock set RFC3339")
	}
	switch args[0] {
	case "advance":
		d, err := parseDuration(args[1])
		ts.Check(err)
		w.clock.Advance(d)
	case "set":
		t, err := time.Parse(time.RFC3339, args[1])
		ts.Check(err)
		w.clock.Set(t)
	default:
		ts.Fatalf("usage: clock advance D | clock set RFC3339")
	}
	ts.Logf("virtual time is %s", w.clock.Now().UTC().Format(time.RFC3339))
}

func cmdSim(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	if len(args) < 2 {
		ts.Fatalf("usage: sim SUBCOMMAND NAME ...; see `credloop run --commands`")
	}
	sub, name, rest := args[0], args[1], args[2:]
	if sub == "add" {
		noNeg(ts, neg, "sim add")
		simAdd(ts, w, name, rest)
		return
	}
	d, err := w.device(name)
	ts.Check(err)
	// coap returns the device as a CoAP device, for what only CoAP does.
	coap := func() *sim.Device {
		c, ok := d.(*sim.Device)
		if !ok {
			ts.Fatalf("sim %s: %s is not a CoAP device", sub, name)
		}
		return c
	}
	ctx, cancel := ctxTimeout(60 * time.Second)
	defer cancel()
	// expectErr reports err according to '!'.
	expectErr := func(what string, err error) {
		switch {
		case err != nil && !neg:
			ts.Fatalf("%s %s: %v\n%s", what, name, err, tail(w.consoles[name].Name(), 15))
		case err == nil && neg:
			ts.Fatalf("%s %s succeeded unexpectedly", what, name)
		case err != nil:
			fmt.Fprintf(ts.Stderr(), "%s %s: %v\n", what, name, err)
		}
	}
	switch sub {
	case "observe", "notifications":
		simObserve(ts, w, neg, sub, name, coap(), rest)
	case "boot":
		expectErr("boot", d.Start(ctx))
	case "reboot":
		expectErr("reboot", d.Reboot(ctx))
	case "power-cycle":
		expectErr("power-cycle", d.PowerCycle(ctx))
	case "stop":
		noNeg(ts, neg, "sim stop")
		d.Stop()
	case "hello":
		h, err := coap().Hello(ctx)
		expectErr("hello", err)
		if err == nil {
			b, _ := json.Marshal(h)
			fmt.Fprintf(ts.Stdout(), "%s\n", b)
		}
	case "state":
		if len(rest) < 2 || (rest[0] == "set" && len(rest) != 3) || (rest[0] != "set" && rest[0] != "get") {
			ts.Fatalf("usage: sim state NAME set PATH JSON | sim state NAME get PATH")
		}
		s, err := coap().Session()
		if err == nil {
			if rest[0] == "set" {
				err = s.PutState(ctx, rest[1], []byte(rest[2]))
			} else {
				var v []byte
				v, err = s.GetState(ctx, rest[1])
				if err == nil {
					fmt.Fprintf(ts.Stdout(), "%s\n", v)
				}
			}
		}
		expectErr("state "+rest[0], err)
	case "enroll", "reenroll":
		cert, err := coap().Enroll(ctx, sub == "reenroll")
		expectErr(sub, err)
		if err == nil {
			fmt.Fprintf(ts.Stdout(), "serial %x fingerprint %s\n", cert.SerialNumber, fakeca.Fingerprint(cert.Raw))
		}
	case "rotate-psk":
		noNeg(ts, neg, "sim rotate-psk")
		if len(rest) != 2 {
			ts.Fatalf("usage: sim rotate-psk NAME IDENTITY HEX")
		}
		key, err := hex.DecodeString(rest[1])
		if err != nil {
			ts.Fatalf("sim rotate-psk: key must be hex")
		}
		expectErr("rotate-psk", modelOf(d).InstallBackupPSK(rest[0], key))
	case "power-cut":
		noNeg(ts, neg, "sim power-cut")
		if len(rest) != 1 {
			ts.Fatalf("usage: sim power-cut NAME POINT")
		}
		ms, ok := modelOf(d).Store().(*devicemodel.MemStore)
		if !ok {
			ts.Fatalf("sim power-cut: device %s has no injectable store", name)
		}
		ms.ArmPowerCut(rest[0])
	case "status":
		noNeg(ts, neg, "sim status")
		fmt.Fprintf(ts.Stdout(), "%s\n", d.Status())
	case "online":
		if d.Online() == neg {
			if neg {
				ts.Fatalf("device %s is online", name)
			}
			ts.Fatalf("device %s is offline", name)
		}
	case "wait-offline":
		noNeg(ts, neg, "sim wait-offline")
		var timeout time.Duration
		flags(ts, "sim wait-offline", rest, func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait")
		})
		select {
		case <-d.Done():
		case <-time.After(timeout):
			ts.Fatalf("device %s still online after %s", name, timeout)
		}
	case "wait-online":
		noNeg(ts, neg, "sim wait-online")
		var timeout time.Duration
		flags(ts, "sim wait-online", rest, func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", 20*time.Second, "how long to wait")
		})
		wctx, wcancel := context.WithTimeout(ctx, timeout)
		defer wcancel()
		if m, ok := d.(*sim.MQTTDevice); ok {
			if _, err := m.Wait(wctx, func(st sim.MQTTState) bool { return st.Online }); err != nil {
				ts.Fatalf("device %s not online after %s: %v\n%s", name, timeout, err, tail(w.consoles[name].Name(), 15))
			}
		} else if !d.Online() {
			ts.Fatalf("device %s is offline", name)
		}
	case "wait-console":
		noNeg(ts, neg, "sim wait-console")
		if len(rest) < 1 {
			ts.Fatalf("usage: sim wait-console NAME REGEXP [--timeout D]")
		}
		re, err := regexp.Compile(rest[0])
		ts.Check(err)
		var timeout time.Duration
		flags(ts, "sim wait-console", rest[1:], func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait")
		})
		ts.Check(waitConsole(w.consoles[name].Name(), re, timeout))
	case "stream", "log", "settings":
		simGolioth(ts, coap(), sub, rest, expectErr)
	case "provision", "https-provision", "renew":
		m, ok := d.(*sim.MQTTDevice)
		if !ok {
			ts.Fatalf("sim %s: %s is not an MQTT device (sim add --mqtt)", sub, name)
		}
		mqttOperate(ts, w, m, sub, rest, expectErr)
	default:
		ts.Fatalf("unknown sim subcommand %q; see `credloop run --commands`", sub)
	}
}

func simAdd(ts *testscript.TestScript, w *world, name string, args []string) {
	if _, ok := w.devices[name]; ok {
		ts.Fatalf("sim add: device %q exists", name)
	}
	var project, id, pskHex, pskID, certFile, keyFile, chainFile string
	var hsTimeout time.Duration
	var useMQTT bool
	fs := flags(ts, "sim add", args, func(fs *flag.FlagSet) {
		fs.StringVar(&project, "project", "", "project id")
		fs.StringVar(&id, "id", "", "device id (default NAME)")
		fs.StringVar(&pskHex, "psk", "", "factory PSK, hex")
		fs.StringVar(&pskID, "psk-identity", "", "PSK identity (default ID@PROJECT)")
		fs.StringVar(&certFile, "cert", "", "factory certificate (PEM or DER)")
		fs.StringVar(&keyFile, "key", "", "factory private key (PEM or DER)")
		fs.StringVar(&chainFile, "chain", "", "intermediate certificates to send (PEM)")
		fs.DurationVar(&hsTimeout, "handshake-timeout", 5*time.Second, "DTLS handshake timeout")
		fs.BoolVar(&useMQTT, "mqtt", false, "an MQTT-over-TLS device (default: DTLS/CoAP)")
	})
	if fs.NArg() != 0 || project == "" {
		ts.Fatalf("usage: sim add NAME --project P [--id ID] (--psk HEX [--psk-identity ID@P] | --cert FILE --key FILE [--chain FILE])")
	}
	if id == "" {
		id = name
	}
	var factory devicemodel.Credential
	switch {
	case pskHex != "" && certFile == "":
		key, err := hex.DecodeString(pskHex)
		if err != nil {
			ts.Fatalf("sim add: --psk must be hex")
		}
		if pskID == "" {
			pskID = registry.PSKIdentity(id, project)
		}
		factory = devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: pskID, PSK: key}
	case certFile == "" && keyFile != "" && pskHex == "" && useMQTT:
		// A key pair and no certificate yet: a board with a pre-burned
		// key that provisions itself at run time (sim https-provision).
		factory = devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: readKeyDER(ts, keyFile)}
	case certFile != "" && keyFile != "" && pskHex == "":
		chain, keyDER := readCertKey(ts, certFile, keyFile, chainFile)
		factory = devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain, KeyDER: keyDER}
	default:
		ts.Fatalf("sim add: give either --psk or --cert and --key")
	}
	if w.addr == "" {
		ts.Fatalf("sim add: start the cloud first (`cloud start`)")
	}
	if useMQTT && factory.Kind != devicemodel.KindCert {
		ts.Fatalf("sim add: an MQTT device authenticates with a certificate (--cert and --key)")
	}
	console, err := os.OpenFile(filepath.Join(w.work, "devices", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		ts.Check(os.MkdirAll(filepath.Join(w.work, "devices"), 0o700))
		console, err = os.OpenFile(filepath.Join(w.work, "devices", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	ts.Check(err)
	w.consoles[name] = console
	model := devicemodel.New(devicemodel.Config{ID: id, Project: project, Factory: factory}, devicemodel.NewMemStore())
	if useMQTT {
		w.devices[name] = simmodel.NewMQTTDevice(model, sim.MQTTDeviceOptions{
			Addr:    w.mqttAddr,
			Console: console,
			Now:     w.clock.Now,
		})
		return
	}
	w.devices[name] = simmodel.NewDevice(model, sim.DeviceOptions{
		Addr:             w.addr,
		HandshakeTimeout: hsTimeout,
		Console:          console,
		Now:              w.clock.Now,
	})
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "device console (last lines):\n  " + strings.Join(lines, "\n  ")
}

type eventFlags struct {
	project, device, kind, outcome, reason string
	re                                     *regexp.Regexp
}

func (e *eventFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&e.project, "project", "", "project id")
	fs.StringVar(&e.device, "device", "", "device id")
	fs.StringVar(&e.kind, "kind", "", "event kind, or a prefix ending in '.' or '*'")
	fs.StringVar(&e.outcome, "outcome", "", "ok or fail")
	fs.StringVar(&e.reason, "reason", "", "regular expression the reason must match")
}

func (e *eventFlags) compile(ts *testscript.TestScript) {
	if e.reason != "" {
		re, err := regexp.Compile(e.reason)
		if err != nil {
			ts.Fatalf("--reason: %v", err)
		}
		e.re = re
	}
	if e.outcome != "" && e.outcome != "ok" && e.outcome != "fail" {
		ts.Fatalf("--outcome must be ok or fail")
	}
}

func (e *eventFlags) filter(after int64) registry.Filter {
	return registry.Filter{Project: e.project, Device: e.device, Kind: registry.EventKind(e.kind), Outcome: e.outcome, AfterSeq: after}
}

func (e *eventFlags) match(ev registry.Event) bool { return e.re == nil || e.re.MatchString(ev.Reason) }

func formatEvent(ev registry.Event) string {
	return fmt.Sprintf("#%d %s %s %s/%s %s: %s", ev.Seq, ev.Kind, ev.Outcome, ev.Project, ev.Device, ev.Credential, ev.Reason)
}

func cmdAwait(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "await (use `expect events ... --count 0` to assert that something did not happen)")
	w := getWorld(ts)
	if len(args) == 0 || args[0] != "event" {
		ts.Fatalf("usage: await event [--project P] [--device D] [--kind K] [--outcome ok|fail] [--reason REGEXP] [--timeout D]")
	}
	var ef eventFlags
	var timeout time.Duration
	fs := flags(ts, "await event", args[1:], func(fs *flag.FlagSet) {
		ef.define(fs)
		fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait")
	})
	if fs.NArg() != 0 {
		ts.Fatalf("await event: unexpected argument %q", fs.Arg(0))
	}
	ef.compile(ts)
	ctx, cancel := ctxTimeout(timeout)
	defer cancel()
	err := w.withRegistry(func(r *registry.Registry) error {
		after := w.mark
		for {
			ev, err := r.WaitEvent(ctx, ef.filter(after))
			if err != nil {
				return err
			}
			after = ev.Seq
			if ef.match(ev) && !w.claimed[ev.Seq] {
				w.claimed[ev.Seq] = true
				fmt.Fprintf(ts.Stdout(), "%s\n", formatEvent(ev))
				return nil
			}
		}
	})
	if err != nil {
		recent := ""
		_ = w.withRegistry(func(r *registry.Registry) error {
			evs, _ := r.Events(context.Background(), registry.Filter{AfterSeq: w.mark})
			if len(evs) > 12 {
				evs = evs[len(evs)-12:]
			}
			for _, ev := range evs {
				recent += "\n  " + formatEvent(ev)
				if w.claimed[ev.Seq] {
					recent += " (already awaited)"
				}
			}
			return nil
		})
		if recent == "" {
			recent = "\n  (none)"
		}
		ts.Fatalf("await event %s: %v; events since the last mark:%s", strings.Join(args[1:], " "), err, recent)
	}
}

func cmdMark(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "mark")
	w := getWorld(ts)
	ts.Check(w.withRegistry(func(r *registry.Registry) error {
		seq, err := r.LastSeq(context.Background())
		w.mark = seq
		return err
	}))
}

func cmdExpect(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "expect (state the expected value instead)")
	w := getWorld(ts)
	if len(args) == 0 {
		ts.Fatalf("usage: expect device|credentials|events ...")
	}
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	switch args[0] {
	case "device":
		if len(args) != 4 {
			ts.Fatalf("usage: expect device PROJECT ID (exists|absent|enabled|disabled|auto-provisioned)")
		}
		ts.Check(w.withRegistry(func(r *registry.Registry) error {
			d, err := r.Device(ctx, args[1], args[2])
			if errors.Is(err, registry.ErrNotFound) {
				if args[3] == "absent" {
					return nil
				}
				return fmt.Errorf("device %s/%s does not exist", args[1], args[2])
			}
			if err != nil {
				return err
			}
			ok := map[string]bool{"exists": true, "absent": false, "enabled": !d.Disabled, "disabled": d.Disabled, "auto-provisioned": d.AutoProvisioned}
			v, known := ok[args[3]]
			if !known {
				return fmt.Errorf("expect device: unknown state %q", args[3])
			}
			if !v {
				return fmt.Errorf("device %s/%s is not %s (%+v)", args[1], args[2], args[3], d)
			}
			return nil
		}))
	case "credentials":
		if len(args) < 3 {
			ts.Fatalf("usage: expect credentials PROJECT ID [--kind psk|cert] [--state S] --count N")
		}
		var kind, state string
		count := -1
		fs := flags(ts, "expect credentials", args[3:], func(fs *flag.FlagSet) {
			fs.StringVar(&kind, "kind", "", "psk or cert")
			fs.StringVar(&state, "state", "", "ACTIVE, PENDING_ACTIVATION, INACTIVE or REVOKED")
			fs.IntVar(&count, "count", -1, "how many")
		})
		if fs.NArg() != 0 || count < 0 {
			ts.Fatalf("usage: expect credentials PROJECT ID [--kind psk|cert] [--state S] --count N")
		}
		ts.Check(w.withRegistry(func(r *registry.Registry) error {
			creds, err := r.Credentials(ctx, args[1], args[2])
			if err != nil {
				return err
			}
			n := 0
			var seen []string
			for _, c := range creds {
				seen = append(seen, fmt.Sprintf("%s %s %s", c.Kind, c.State, c.Fingerprint[:min(16, len(c.Fingerprint))]))
				if (kind == "" || string(c.Kind) == kind) && (state == "" || string(c.State) == state) {
					n++
				}
			}
			if n != count {
				return fmt.Errorf("%d credentials match, want %d; the device has: %v", n, count, seen)
			}
			return nil
		}))
	case "stream", "logs":
		expectGolioth(ts, w, args)
	case "events":
		var ef eventFlags
		var count int
		var sinceMark bool
		fs := flags(ts, "expect events", args[1:], func(fs *flag.FlagSet) {
			ef.define(fs)
			fs.IntVar(&count, "count", -1, "how many")
			fs.BoolVar(&sinceMark, "since-mark", false, "only events after the last mark")
		})
		if fs.NArg() != 0 || count < 0 {
			ts.Fatalf("usage: expect events [filters] [--since-mark] --count N")
		}
		ef.compile(ts)
		after := int64(0)
		if sinceMark {
			after = w.mark
		}
		ts.Check(w.withRegistry(func(r *registry.Registry) error {
			evs, err := r.Events(ctx, ef.filter(after))
			if err != nil {
				return err
			}
			var matched []string
			for _, ev := range evs {
				if ef.match(ev) {
					matched = append(matched, formatEvent(ev))
				}
			}
			if len(matched) != count {
				return fmt.Errorf("%d events match, want %d:\n  %s", len(matched), count, strings.Join(matched, "\n  "))
			}
			return nil
		}))
	default:
		ts.Fatalf("usage: expect device|credentials|events ...")
	}
}

// readKeyDER reads a private key file (PEM or DER, SEC 1, PKCS#8 or
// PKCS#1) and returns it as DER.
func readKeyDER(ts *testscript.TestScript, keyFile string) []byte {
	keyBytes, err := os.ReadFile(ts.MkAbs(keyFile))
	ts.Check(err)
	key, err := fakeca.ParseKey(keyBytes)
	ts.Check(err)
	keyDER, err := fakeca.EncodeKeyDER(key)
	ts.Check(err)
	return keyDER
}

// readCertKey reads a certificate file (leaf first; PEM or DER), its key,
// and optional intermediates, and returns the chain (leaf first, no
// duplicates of the leaf) and the key as DER.
func readCertKey(ts *testscript.TestScript, certFile, keyFile, chainFile string) (chain [][]byte, keyDER []byte) {
	certs, err := fakeca.ParseCertPEMOrDER([]byte(ts.ReadFile(certFile)))
	ts.Check(err)
	for _, c := range certs {
		chain = append(chain, c.Raw)
	}
	if chainFile != "" {
		inter, err := fakeca.ParseCertPEMOrDER([]byte(ts.ReadFile(chainFile)))
		ts.Check(err)
		for _, c := range inter {
			if !bytes.Equal(c.Raw, chain[0]) {
				chain = append(chain, c.Raw)
			}
		}
	}
	return chain, readKeyDER(ts, keyFile)
}
