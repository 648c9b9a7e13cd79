package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// kvFlag collects repeated K=V flags.
type kvFlag map[string]string

func (k kvFlag) String() string { return fmt.Sprint(map[string]string(k)) }
func (k kvFlag) Set(s string) error {
	key, v, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	k[key] = v
	return nil
}

// mqttOperate runs the sim subcommands only MQTT devices have.
func mqttOperate(ts *testscript.TestScript, w *world, d *sim.MQTTDevice, sub string, args []string, expectErr func(string, error)) {
	ctx, cancel := ctxTimeout(60 * time.Second)
	defer cancel()
	switch sub {
	case "provision":
		o := sim.ClaimOptions{Parameters: map[string]string{}}
		var clockBefore time.Duration
		var replay bool
		fs := flags(ts, "sim provision", args, func(fs *flag.FlagSet) {
			fs.StringVar(&o.Template, "template", "", "provisioning template")
			fs.StringVar(&o.Format, "format", "json", "json or cbor")
			fs.Var(kvFlag(o.Parameters), "param", "RegisterThing parameter K=V (repeatable)")
			fs.BoolVar(&o.CreateKeys, "create-keys", false, "let the cloud make the key (CreateKeysAndCertificate)")
			fs.DurationVar(&clockBefore, "clock-before-register", 0, "advance the virtual clock this much between the certificate and RegisterThing")
			fs.BoolVar(&replay, "replay-token", false, "send RegisterThing a second time with the same token")
		})
		if fs.NArg() != 0 || o.Template == "" {
			ts.Fatalf("usage: sim provision NAME --template T [--format json|cbor] [--param K=V]... [--create-keys] [--clock-before-register D] [--replay-token]")
		}
		if clockBefore > 0 {
			o.BeforeRegister = func(context.Context) error {
				w.clock.Advance(clockBefore)
				return nil
			}
		}
		o.ReplayToken = replay
		thing, err := d.ProvisionByClaim(ctx, o)
		expectErr("provision", err)
		if err == nil {
			fmt.Fprintf(ts.Stdout(), "thing %s\n", thing)
		}
	case "https-provision":
		if len(args) != 0 {
			ts.Fatalf("usage: sim https-provision NAME")
		}
		model := simmodel.Of(d)
		factory := model.Config().Factory
		key, err := fakeca.ParseKey(factory.KeyDER)
		ts.Check(err)
		chain, err := sim.ProvisionHTTPS(ctx, sim.HTTPSProvisionOptions{URL: "https://" + w.httpAddr, UDID: model.Config().ID, Key: key})
		if err == nil {
			// The device's own first certificate: its primary credential,
			// as on the CC3220 emulator (not a rotation on trial).
			err = model.InstallCertificate(chain)
		}
		expectErr("https-provision", err)
	case "renew":
		if len(args) != 0 {
			ts.Fatalf("usage: sim renew NAME")
		}
		expectErr("renew", d.Renew(ctx))
	}
}

// cloudOperate runs what an operator or a backend does to a running cloud.
func cloudOperate(ts *testscript.TestScript, w *world, sub string, args []string) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	switch sub {
	case "rotate":
		var o cloud.RotateOptions
		if len(args) < 2 {
			ts.Fatalf("usage: cloud rotate PROJECT DEVICE --mode key|csr [--broken]")
		}
		fs := flags(ts, "cloud rotate", args[2:], func(fs *flag.FlagSet) {
			fs.StringVar(&o.Mode, "mode", "csr", "key (new certificate and key over MQTT) or csr (the device sends a CSR)")
			fs.BoolVar(&o.Broken, "broken", false, "send a certificate that cannot connect")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("usage: cloud rotate PROJECT DEVICE --mode key|csr [--broken]")
		}
		ts.Check(w.cloud.Rotate(ctx, args[0], args[1], o))
	case "publish":
		if len(args) < 1 {
			ts.Fatalf("usage: cloud publish TOPIC (--payload TEXT | --file FILE | --rotation-of CERT --key-of KEY)")
		}
		var payload, file, certFile, keyFile string
		fs := flags(ts, "cloud publish", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&payload, "payload", "", "the payload text")
			fs.StringVar(&file, "file", "", "the payload, from a file")
			fs.StringVar(&certFile, "rotation-of", "", "a rotation payload with this certificate...")
			fs.StringVar(&keyFile, "key-of", "", "...and this private key")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("cloud publish: unexpected argument %q", fs.Arg(0))
		}
		var body []byte
		switch {
		case file != "":
			body = []byte(ts.ReadFile(file))
		case certFile != "" && keyFile != "":
			key, err := os.ReadFile(ts.MkAbs(keyFile))
			ts.Check(err)
			b, err := json.Marshal(map[string]string{"new_certificate": ts.ReadFile(certFile), "new_private_key": string(key)})
			ts.Check(err)
			body = b
		default:
			body = []byte(payload)
		}
		ts.Check(w.cloud.Publish(args[0], body))
	case "activate":
		if len(args) != 2 {
			ts.Fatalf("usage: cloud activate PROJECT DEVICE")
		}
		changed, err := w.cloud.Admin().ActivatePending(ctx, args[0], args[1])
		ts.Check(err)
		n := len(changed)
		if n == 0 {
			ts.Fatalf("cloud activate: %s/%s has no PENDING_ACTIVATION certificate", args[0], args[1])
		}
	}
}

// waitConsole waits until a line of the device's console log matches.
func waitConsole(path string, re *regexp.Regexp, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if re.Match(b) {
			return nil
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("no console line matched %q within %s\n%s", re, timeout, tail(path, 15))
		case <-tick.C:
		}
	}
}
