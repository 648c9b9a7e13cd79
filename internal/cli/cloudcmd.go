package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/fakeca"
)

func init() {
	register(command{name: "cloud", summary: "run the cloud stand-in (CA, registry, CoAP/DTLS endpoint) in the foreground", run: runCloud})
}

const cloudUsage = `
Usage: credloop cloud [flags]

Runs the cloud stand-in in the foreground for real boards, simulated devices
and third-party clients: a DTLS/CoAP endpoint (Golioth-style PSK and
certificate authentication with auto-provisioning, a per-device state store
under .d/<path>, EST over CoAPS at /.well-known/est/{crts,sen,sren}), an
MQTT broker on TLS with client certificates (AWS-style JITP/JITR, fleet
provisioning by claim, rotation on devices/<id>/certs/rotate), and an
HTTPS endpoint (run-time CSR provisioning against the UDID allowlist at
POST /v1/provision/csr, CRLs at /crl/<ca>.crl, CA chains at /ca/<ca>.pem).

Everything it knows lives in --dir: the CA (created on first start if
missing) and the SQLite registry. Both survive a restart, and the project,
device and ca commands may change them while the cloud runs.

When it is ready it prints exactly one JSON line to stdout with the bound
addresses, then logs go to stderr; SIGINT or SIGTERM shut it down cleanly:

  {"event":"ready","coaps":"127.0.0.1:5684","mqtts":"127.0.0.1:8883","https":"127.0.0.1:8443"}

PSK clients whose first acceptable suite is AES-128-GCM, CCM or CCM_8 are
served by credloop's own DTLS 1.2 PSK server, which costs about half the
server CPU per handshake and under half the memory per session of
pion/dtls; certificate clients and
the CBC suite by pion. --dtls-psk-stack pion makes pion serve everything
(to compare the two, or to rule credloop's server out).

Examples:
  credloop cloud --dir ./lab
  credloop cloud --dir ./lab --dtls-psk-stack pion
  credloop cloud --dir ./lab --coap-addr 127.0.0.1:0 --log-format json
  credloop cloud --dir ./lab --coap-addr 0.0.0.0:5684 --host 192.168.1.20
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func runCloud(ctx context.Context, env *Env) error {
	fs := flagSet(env, "cloud", cloudUsage)
	dir := addDirFlag(fs)
	coapAddr := fs.String("coap-addr", ":5684", "UDP address of the DTLS/CoAP endpoint; port 0 picks a free port; - turns it off")
	mqttAddr := fs.String("mqtt-addr", ":8883", "TCP address of the MQTT-over-TLS endpoint (client certificates required); - turns it off")
	httpsAddr := fs.String("https-addr", ":8443", "TCP address of the HTTPS endpoint (run-time CSR provisioning, CRLs); - turns it off")
	idle := fs.Duration("idle", 120*time.Second, "close DTLS sessions idle for this long")
	handshake := fs.Duration("handshake-timeout", 10*time.Second, "give up on a DTLS handshake after this long")
	pskStack := fs.String("dtls-psk-stack", string(cloud.DTLSPSKCredloop), "DTLS implementation serving PSK clients: credloop (its own DTLS 1.2 PSK server) or pion")
	keyType := fs.String("key", "ecdsa-p256", "key type of a CA created on first start: ecdsa-p256, ecdsa-p384 or rsa-2048")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE` at shutdown (go tool pprof)")
	memProfile := fs.String("memprofile", "", "write a heap profile to `FILE` at shutdown, taken before the sessions close")
	var hosts listFlag
	fs.Var(&hosts, "host", "extra DNS name or IP for the server certificate (repeatable)")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := checkDir(*dir); err != nil {
		return err
	}
	kt, err := fakeca.ParseKeyType(*keyType)
	if err != nil {
		return usageErr("%v", err)
	}
	stack, err := cloud.ParseDTLSPSKStack(*pskStack)
	if err != nil {
		return usageErr("--dtls-psk-stack: %v", err)
	}
	log, err := newLogger(env, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	stopProfile, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	c, err := cloud.New(cloud.Options{
		Dir:              *dir,
		CoAPAddr:         *coapAddr,
		MQTTAddr:         *mqttAddr,
		HTTPSAddr:        *httpsAddr,
		Hosts:            hosts,
		IdleTimeout:      *idle,
		HandshakeTimeout: *handshake,
		DTLSPSKStack:     stack,
		KeyType:          cloud.KeyType(kt),
		Logger:           log,
	})
	if err != nil {
		_ = stopProfile()
		return err
	}
	ready := struct {
		Event string `json:"event"`
		cloud.Addrs
	}{"ready", c.Addrs()}
	line, _ := json.Marshal(ready)
	fmt.Fprintln(env.Stdout, string(line))
	log.Info("cloud ready", "dir", *dir, "coaps", c.Addrs().CoAPS, "mqtts", c.Addrs().MQTTS, "https", c.Addrs().HTTPS,
		"root", fakeca.ShortFingerprint(c.CA().Root().Raw), "dtls_psk_stack", string(stack))
	<-ctx.Done()
	log.Info("shutting down")
	perr := stopProfile()
	return errors.Join(perr, c.Close())
}

func newLogger(env *Env, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level: %v", err)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, ho)), nil
	}
	return nil, usageErr("--log-format must be text or json")
}
