//go:build linux

package cc3220_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/boards/cc3220"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Every test here drives the emulator through its pseudo-terminal, opened
// with hil (go.bug.st/serial) exactly like a USB serial port, against a
// real in-process cloud.

const project = "acme"

type env struct {
	t   *testing.T
	ctx context.Context
	c   *cloud.Cloud
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cloud close: %v", err)
		}
	})
	if _, err := c.Registry.CreateProject(ctx, project); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, c: c}
}

// start starts an emulator pointed at the cloud; it is closed at the end
// of the test (after the console, which is opened later).
func (v *env) start(o cc3220.EmulatorOptions) *cc3220.Emulator {
	v.t.Helper()
	a := v.c.Addrs()
	o.Cloud = cc3220.Endpoints{CoAPS: a.CoAPS, MQTTS: a.MQTTS, HTTPS: a.HTTPS}
	if o.Log == nil {
		o.Log = v.t.Output()
	}
	e, err := cc3220.StartEmulator(v.ctx, o)
	if err != nil {
		v.t.Fatalf("StartEmulator: %v", err)
	}
	v.t.Cleanup(func() {
		if err := e.Close(); err != nil {
			v.t.Errorf("emulator close: %v", err)
		}
	})
	return e
}

// board is the host side of one emulated board.
type board struct {
	con *hil.Console
	drv *cc3220.Driver
	log *syncBuffer // the board log, as a run directory would keep it
}

// open opens the emulator's port like a USB serial port.
func (v *env) open(e *cc3220.Emulator, red *hil.Redactor) *board {
	v.t.Helper()
	port, err := hil.OpenPort(v.ctx, hil.PortOptions{Board: "cc3220", Resolve: hil.PathResolver(e.PortPath()), ReopenWithin: -1})
	if err != nil {
		v.t.Fatalf("OpenPort: %v", err)
	}
	log := &syncBuffer{}
	con, err := hil.NewConsole(port, hil.ConsoleOptions{Name: "cc3220", Log: io.MultiWriter(log, v.t.Output()), Redactor: red})
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { con.Close() })
	d := cc3220.NewDriver(con, port)
	d.Timeout = 15 * time.Second
	return &board{con: con, drv: d, log: log}
}

func (v *env) lastSeq() int64 {
	v.t.Helper()
	n, err := v.c.Registry.LastSeq(v.ctx)
	if err != nil {
		v.t.Fatal(err)
	}
	return n
}

func (v *env) waitEvent(f registry.Filter) registry.Event {
	v.t.Helper()
	ev, err := v.c.Registry.WaitEvent(v.ctx, f)
	if err != nil {
		v.t.Fatalf("wait for event %+v: %v", f, err)
	}
	return ev
}

// allow reads the board's identity over its console and puts it on the
// allowlist, as `credloop device allow` would.
func (v *env) allow(b *board) string {
	v.t.Helper()
	udid, err := b.drv.UDID(v.ctx)
	if err != nil {
		v.t.Fatal(err)
	}
	pub, err := b.drv.PublicKey(v.ctx)
	if err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.c.Registry.Allow(v.ctx, project, udid, pub); err != nil {
		v.t.Fatalf("allow: %v", err)
	}
	return udid
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeKey makes a P-256 key, writes it as a SEC 1 PEM file and returns
// it.
func writeKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k, path
}

func spki(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The driver reads the UDID and public key, the test allowlists them, the
// provision command gets a certificate, and the board comes online over
// MQTT. The private key never reaches the console.
func TestProvisionAllowlisted(t *testing.T) {
	v := newEnv(t)
	key, keyFile := writeKey(t)
	e := v.start(cc3220.EmulatorOptions{Name: "board-a", FlashPath: filepath.Join(t.TempDir(), "flash.bin"), KeyFile: keyFile})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	// Not on the list yet: the provisioning at boot is refused.
	if _, err := b.con.Expect(v.ctx, `\[PROV\] Refused by the cloud: [^\n]*not on the allowlist`, hil.ExpectOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}

	pub, err := b.drv.PublicKey(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, spki(t, key)) {
		t.Fatal("pubkey: not the pre-burned key's public key")
	}
	udid := v.allow(b)
	if udid != e.UDID() || !regexp.MustCompile(`^[0-9A-F]{32}$`).MatchString(udid) {
		t.Fatalf("UDID %q, emulator says %q", udid, e.UDID())
	}

	mark := v.lastSeq()
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	ev := v.waitEvent(registry.Filter{Kind: "provision.csr", Device: udid, AfterSeq: mark})
	if ev.Outcome != registry.OutcomeOK || ev.Project != project {
		t.Fatalf("provision.csr event: %+v", ev)
	}
	line, err := b.drv.WaitOnline(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, udid) || !strings.Contains(line, "(provisioned)") {
		t.Errorf("online line %q", line)
	}
	auth := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, AfterSeq: mark})
	if auth.Outcome != registry.OutcomeOK {
		t.Fatalf("auth.mqtt event: %+v", auth)
	}
	st, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.UDID != udid || st.Project != project || st.Slot != "provisioned" || !st.Online || st.CertFP == "" || !strings.HasPrefix(auth.Credential, st.CertFP) {
		t.Errorf("status %+v, auth credential %s", st, auth.Credential)
	}
	creds, err := v.c.Registry.Credentials(v.ctx, project, udid)
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials of %s: %v, %v", udid, creds, err)
	}

	// A board with credentials to install is not a CC3220.
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{PSK: []byte("0123456789abcdef")}); !errors.Is(err, cc3220.ErrUnsupported) {
		t.Errorf("Provision with a PSK: %v, want ErrUnsupported", err)
	}

	// The console never showed the private key, in any encoding.
	b.con.Close()
	log := b.log.String()
	sec1, _ := x509.MarshalECPrivateKey(key)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	raw, err := key.Bytes() // the scalar alone
	if err != nil {
		t.Fatal(err)
	}
	for _, der := range [][]byte{sec1, pkcs8, raw} {
		for _, form := range []string{hex.EncodeToString(der), base64.StdEncoding.EncodeToString(der)[8:40]} {
			if strings.Contains(strings.ToLower(log), strings.ToLower(form)) {
				t.Fatalf("the board log holds the private key")
			}
		}
	}
	if strings.Contains(log, "PRIVATE KEY") {
		t.Fatal("the board log holds a PRIVATE KEY block")
	}
}

// A board that is not on the allowlist (or listed with another key) is
// refused: the cloud's reason is on its console, the driver returns
// ErrRefused with it, and no device is created.
func TestNotAllowlistedRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listed bool // the UDID is listed, with another key
		reason string
	}{
		{"not listed", false, "not on the allowlist"},
		{"listed with another key", true, "public key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			const udid = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
			if tc.listed {
				other, _ := writeKey(t)
				if _, err := v.c.Registry.Allow(v.ctx, project, udid, spki(t, other)); err != nil {
					t.Fatal(err)
				}
			}
			e := v.start(cc3220.EmulatorOptions{Name: "board-b", FlashPath: filepath.Join(t.TempDir(), "flash.bin"), UDID: udid, Seed: "board-b"})
			b := v.open(e, nil)
			if err := b.drv.WaitBoot(v.ctx); err != nil {
				t.Fatal(err)
			}
			// At boot, with no certificate, the board asks by itself.
			m, err := b.con.Expect(v.ctx, `\[PROV\] Refused by the cloud: ([^\n]*)\n`, hil.ExpectOptions{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(m.Groups[0], tc.reason) || !strings.Contains(m.Groups[0], "403") {
				t.Errorf("console reason %q, want %q", m.Groups[0], tc.reason)
			}
			// And again on command.
			mark := v.lastSeq()
			err = b.drv.Provision(v.ctx, cc3220.Credentials{})
			if !errors.Is(err, cc3220.ErrRefused) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Provision: %v, want ErrRefused: %s", err, tc.reason)
			}
			ev := v.waitEvent(registry.Filter{Kind: "provision.csr", AfterSeq: mark})
			if ev.Outcome != registry.OutcomeFail || !strings.Contains(ev.Reason, tc.reason) {
				t.Errorf("provision.csr event %+v", ev)
			}
			if _, err := v.c.Registry.Device(v.ctx, project, udid); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("device %s: %v, want ErrNotFound", udid, err)
			}
			st, err := b.drv.Status(v.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.CertFP != "" || st.Slot != "none" || st.Online {
				t.Errorf("status after refusal: %+v", st)
			}
			evs, err := v.c.Registry.Events(v.ctx, registry.Filter{Kind: "auth.mqtt"})
			if err != nil || len(evs) != 0 {
				t.Errorf("auth.mqtt events %v, %v: a refused board must not try MQTT", evs, err)
			}
		})
	}
}

// The flash keeps the UDID, the key and the certificate: a restarted
// emulator on the same flash file boots with them and reconnects without
// provisioning again; reset and power cycle reconnect too.
func TestFlashSurvivesRestart(t *testing.T) {
	v := newEnv(t)
	key, keyFile := writeKey(t)
	const udid = "CC3220-0A1B2C"
	if _, err := v.c.Registry.Allow(v.ctx, project, udid, spki(t, key)); err != nil {
		t.Fatal(err)
	}
	flash := filepath.Join(t.TempDir(), "flash.bin")
	e := v.start(cc3220.EmulatorOptions{Name: "board-c", FlashPath: flash, UDID: udid, KeyFile: keyFile})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	// Allowlisted before the first boot: it provisions itself.
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	v.waitEvent(registry.Filter{Kind: "provision.csr", Device: udid, Outcome: registry.OutcomeOK})
	before, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := b.drv.PublicKey(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.con.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	// Restart on the same flash; the identity comes from the flash.
	mark := v.lastSeq()
	e = v.start(cc3220.EmulatorOptions{Name: "board-c", FlashPath: flash})
	b = v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	auth := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, AfterSeq: mark})
	if auth.Outcome != registry.OutcomeOK || !strings.HasPrefix(auth.Credential, before.CertFP) {
		t.Fatalf("auth.mqtt after restart: %+v, want ok with %s", auth, before.CertFP)
	}
	got, err := b.drv.UDID(v.ctx)
	if err != nil || got != udid {
		t.Fatalf("UDID after restart: %q, %v", got, err)
	}
	pub2, err := b.drv.PublicKey(v.ctx)
	if err != nil || !bytes.Equal(pub, pub2) {
		t.Fatalf("public key changed across the restart (%v)", err)
	}
	after, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.CertFP != before.CertFP || !after.Online {
		t.Fatalf("status after restart %+v, before %+v", after, before)
	}

	// Reset (console command) and power cycle both reconnect with it.
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"reset", func() error { return b.drv.Reset(v.ctx) }},
		{"power cycle", func() error { e.PowerCycle(); return b.drv.WaitBoot(v.ctx) }},
	} {
		m := v.lastSeq()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if _, err := b.drv.WaitOnline(v.ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if ev := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, AfterSeq: m}); ev.Outcome != registry.OutcomeOK {
			t.Fatalf("%s: %+v", step.name, ev)
		}
	}
	evs, err := v.c.Registry.Events(v.ctx, registry.Filter{Kind: "provision.csr", AfterSeq: mark})
	if err != nil || len(evs) != 0 {
		t.Fatalf("provisioning after the restart: %v, %v", evs, err)
	}

	// The flash belongs to this board: another identity is refused.
	_, err = cc3220.StartEmulator(v.ctx, cc3220.EmulatorOptions{FlashPath: flash, UDID: "CC3220-OTHER"})
	if !errors.Is(err, cc3220.ErrFlashMismatch) {
		t.Fatalf("StartEmulator with another UDID: %v, want ErrFlashMismatch", err)
	}
}

// A power cut while a rotated certificate is being written leaves the
// provisioned certificate in flash, and the board connects with it again.
func TestPowerCutDuringRotation(t *testing.T) {
	v := newEnv(t)
	e := v.start(cc3220.EmulatorOptions{Name: "board-d", FlashPath: filepath.Join(t.TempDir(), "flash.bin"), Seed: "board-d"})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	udid := v.allow(b)
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	before, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The board is online at its CONNACK and the cloud records the
	// session right after: mark the log past that event.
	mark := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeOK}).Seq
	e.CutPowerAt("set:client_cert")
	if err := v.c.Rotate(v.ctx, project, udid, cloud.RotateOptions{Mode: cloud.RotateKey}); err != nil {
		t.Fatal(err)
	}
	// The board loses power in the write and boots again.
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	auth := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, AfterSeq: mark})
	if auth.Outcome != registry.OutcomeOK || !strings.HasPrefix(auth.Credential, before.CertFP) {
		t.Fatalf("after the cut: %+v, want ok with the old certificate %s", auth, before.CertFP)
	}
	after, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.CertFP != before.CertFP || after.Slot != "provisioned" {
		t.Fatalf("status after the cut %+v, before %+v", after, before)
	}
}

// The shell survives garbage, overlong lines and unknown commands, and
// answers them like the real one.
func TestConsoleRobust(t *testing.T) {
	v := newEnv(t)
	e := v.start(cc3220.EmulatorOptions{Seed: "board-e"})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		send []byte
		want string
	}{
		{"unknown command", []byte("frobnicate now\n"), `Unknown command 'frobnicate'`},
		{"binary", []byte{0x00, 0xff, 0x06, 0x09, 0x1b, '[', 'A', 0x80, 'x', 'y', '\r', '\n'}, `Unknown command 'xy'`},
		{"overlong", append(bytes.Repeat([]byte("z"), 5000), '\n'), `Unknown command 'zzzz`},
		{"argument", []byte("udid please\n"), `udid: unexpected argument 'please'`},
		{"help", []byte("help\n"), `provision +request a certificate`},
		{"backspace", []byte("udix\x7fd\r\n"), `(?m)^UDID: ` + e.UDID()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.con.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if _, err := b.con.Expect(v.ctx, tc.want, hil.ExpectOptions{Timeout: 10 * time.Second}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if got, err := b.drv.UDID(v.ctx); err != nil || got != e.UDID() {
		t.Fatalf("UDID after garbage: %q, %v", got, err)
	}
}

// A board whose session the cloud drops (the device is disabled) says so
// on its console, keeps trying with back-off, and comes back once the
// cloud accepts it again.
func TestReconnect(t *testing.T) {
	v := newEnv(t)
	e := v.start(cc3220.EmulatorOptions{Name: "board-f", Seed: "board-f", ReconnectDelay: 50 * time.Millisecond})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	udid := v.allow(b)
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	mark := v.lastSeq()
	if err := v.c.DisableDevice(v.ctx, project, udid); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`\[MQTT\] Connection lost; reconnecting\n`, `\[MQTT\] Offline: [^\n]*; retrying in `} {
		if _, err := b.con.Expect(v.ctx, want, hil.ExpectOptions{Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeFail, AfterSeq: mark}); !strings.Contains(ev.Reason, "disabled") {
		t.Errorf("refusal reason %q", ev.Reason)
	}
	mark = v.lastSeq()
	if err := v.c.Registry.SetDeviceDisabled(v.ctx, project, udid, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeOK, AfterSeq: mark})
}

// Certificates rotated over MQTT land in the model's rotated slot: a
// rotation the cloud cannot verify fails three boots and falls back to the
// provisioned certificate; a good one is used from then on, across reset
// and power cycle.
func TestRotation(t *testing.T) {
	v := newEnv(t)
	e := v.start(cc3220.EmulatorOptions{Name: "board-g", FlashPath: filepath.Join(t.TempDir(), "flash.bin"), Seed: "board-g"})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	udid := v.allow(b)
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	provisioned, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each step waits for the one session that follows the last one
	// seen, so a late event of an earlier session cannot stand in.
	last := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeOK}).Seq
	for _, tc := range []struct {
		name   string
		broken bool
		slot   string
	}{
		{"broken rotation falls back", true, "provisioned"},
		{"rotation", false, "rotated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := last
			if err := v.c.Rotate(v.ctx, project, udid, cloud.RotateOptions{Mode: cloud.RotateKey, Broken: tc.broken}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.con.Expect(v.ctx, `\[MQTT\] Connected to [^\n]*\(`+tc.slot+`\)\n`, hil.ExpectOptions{Timeout: 15 * time.Second}); err != nil {
				t.Fatal(err)
			}
			st, err := b.drv.Status(v.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Slot != tc.slot || !st.Online || (tc.broken != (st.CertFP == provisioned.CertFP)) {
				t.Fatalf("status %+v (provisioned certificate %s)", st, provisioned.CertFP)
			}
			ev := v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeOK, AfterSeq: mark})
			if !strings.HasPrefix(ev.Credential, st.CertFP) {
				t.Fatalf("connected with %s, status says %s", ev.Credential, st.CertFP)
			}
			last = ev.Seq
		})
	}
	rotated, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Reset(v.ctx); err != nil {
		t.Fatal(err)
	}
	e.PowerCycle()
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	line, err := b.drv.WaitOnline(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, rotated.CertFP) || !strings.Contains(line, "(rotated)") {
		t.Fatalf("after reset and power cycle: %q, want the rotated certificate %s", line, rotated.CertFP)
	}
}

// A certificate in flash that does not parse (or is not for the
// pre-burned key) is erased at boot, and the board provisions again.
func TestUnreadableCertificateErased(t *testing.T) {
	v := newEnv(t)
	flash := filepath.Join(t.TempDir(), "flash.bin")
	e := v.start(cc3220.EmulatorOptions{Name: "board-h", FlashPath: flash, Seed: "board-h"})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(flash)
	if err != nil {
		t.Fatal(err)
	}
	m := devicemodel.NewMemStore()
	if err := m.UnmarshalBinary(img); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(cc3220.KeyDeviceCert, []byte("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")); err != nil {
		t.Fatal(err)
	}
	if img, err = m.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flash, img, 0o600); err != nil {
		t.Fatal(err)
	}

	e = v.start(cc3220.EmulatorOptions{Name: "board-h", FlashPath: flash})
	b := v.open(e, nil)
	for _, want := range []string{`\[FS\] /cert/device.crt: unreadable \(fp=[0-9a-f]{8}\), erased\n`, `No device certificate in flash`} {
		if _, err := b.con.Expect(v.ctx, want, hil.ExpectOptions{Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	udid := v.allow(b)
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	v.waitEvent(registry.Filter{Kind: "auth.mqtt", Device: udid, Outcome: registry.OutcomeOK})
}

// The certificate the board obtained by its own run-time provisioning is
// its primary credential (devicemodel.Device.InstallCertificate), not a
// rotation on trial: it is stored as /cert/device.crt with no rotated slot,
// and connections refused more often than a rotation's boot budget leave
// it in use, with no boot counter and nothing to fall back to.
func TestProvisionedCertificateIsPrimary(t *testing.T) {
	v := newEnv(t)
	key, keyFile := writeKey(t)
	flash := filepath.Join(t.TempDir(), "flash.bin")
	e := v.start(cc3220.EmulatorOptions{Name: "board-p", FlashPath: flash, KeyFile: keyFile, ReconnectDelay: 20 * time.Millisecond})
	b := v.open(e, nil)
	if err := b.drv.WaitBoot(v.ctx); err != nil {
		t.Fatal(err)
	}
	udid := v.allow(b)
	if err := b.drv.Provision(v.ctx, cc3220.Credentials{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(v.ctx); err != nil {
		t.Fatal(err)
	}
	before, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The flash holds what InstallCertificate writes: the chain for the
	// pre-burned key under devcert, and no rotated slot. A model over
	// that flash boots into it as its factory-slot credential.
	img, err := os.ReadFile(flash)
	if err != nil {
		t.Fatal(err)
	}
	store := devicemodel.NewMemStore()
	if err := store.UnmarshalBinary(img); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Get(cc3220.KeyDeviceCert); !ok {
		t.Fatalf("flash keys %v: no %s", store.Keys(), cc3220.KeyDeviceCert)
	}
	for _, k := range []string{devicemodel.KeyRotatedCert, devicemodel.KeyRotatedKey, devicemodel.KeyRotatedOK} {
		if _, ok := store.Get(k); ok {
			t.Errorf("flash holds %s after provisioning", k)
		}
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	m := devicemodel.New(devicemodel.Config{ID: udid, Factory: devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: pkcs8}}, store)
	if p := m.Boot(); p.Err != nil || p.Slot != devicemodel.SlotFactory || !strings.HasPrefix(p.Credential.Fingerprint(), before.CertFP[:min(8, len(before.CertFP))]) {
		t.Fatalf("a model over the flash boots %s %s (%v), want the provisioned certificate %s", p.Slot, p.Credential.Fingerprint(), p.Err, before.CertFP)
	}

	// The cloud now refuses the board. Each reset and reconnection fails;
	// more failed boots than a rotation gets change nothing.
	if err := v.c.DisableDevice(v.ctx, project, udid); err != nil {
		t.Fatal(err)
	}
	for i := range devicemodel.DefaultMaxRotatedFailures + 1 {
		if err := b.drv.Reset(v.ctx); err != nil {
			t.Fatalf("reset %d: %v", i, err)
		}
		if _, err := b.con.Expect(v.ctx, `\[MQTT\] Offline: [^\n]*\n`, hil.ExpectOptions{Timeout: 15 * time.Second}); err != nil {
			t.Fatalf("reset %d: %v", i, err)
		}
	}
	after, err := b.drv.Status(v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Slot != "provisioned" || after.CertFP != before.CertFP || after.BootCount != 0 || after.Online {
		t.Fatalf("status after refused boots %+v, want the provisioned certificate %s offline with no boot count", after, before.CertFP)
	}
}
