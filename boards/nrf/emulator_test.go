//go:build linux

package nrf

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/fakeca"
)

// Every test here plays the board behind a real pseudo-terminal and drives
// it through go.bug.st/serial (hil.OpenPort), hil.Console and the Driver,
// against an in-process cloud.

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a board log that tests read while the console writes it.
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

func newTestCloud(t *testing.T) *cloud.Cloud {
	t.Helper()
	c, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cloud close: %v", err)
		}
	})
	if _, err := c.Registry.CreateProject(testCtx(t), "acme"); err != nil {
		t.Fatal(err)
	}
	return c
}

// board is an emulated board with a console and a driver on its port.
type board struct {
	emu *Emulator
	con *hil.Console
	drv *Driver
	log *syncBuffer // the console's board log (redacted)
	red *hil.Redactor
}

func (b *board) close(t *testing.T) {
	t.Helper()
	if err := b.drv.Close(); err != nil {
		t.Errorf("driver close: %v", err)
	}
	if err := b.con.Close(); err != nil {
		t.Errorf("console close: %v", err)
	}
	if err := b.emu.Close(); err != nil {
		t.Errorf("emulator close: %v", err)
	}
}

func startBoard(t *testing.T, c *cloud.Cloud, flashPath string, tune func(*EmulatorOptions)) *board {
	t.Helper()
	ctx := testCtx(t)
	o := EmulatorOptions{Name: "nrf1", FlashPath: flashPath, Cloud: Endpoints{CoAPS: c.Addrs().CoAPS},
		RetryInterval: 200 * time.Millisecond, Log: t.Output()}
	if tune != nil {
		tune(&o)
	}
	emu, err := StartEmulator(ctx, o)
	if err != nil {
		t.Fatalf("StartEmulator: %v", err)
	}
	port, err := hil.OpenPort(ctx, hil.PortOptions{Board: "nrf1", Resolve: hil.PathResolver(emu.PortPath()), Baud: 115200, ReopenWithin: -1})
	if err != nil {
		emu.Close()
		t.Fatalf("OpenPort %s: %v", emu.PortPath(), err)
	}
	b := &board{emu: emu, log: &syncBuffer{}, red: hil.NewRedactor()}
	b.con, err = hil.NewConsole(port, hil.ConsoleOptions{Name: "nrf1", Log: b.log, Redactor: b.red})
	if err != nil {
		port.Close()
		emu.Close()
		t.Fatal(err)
	}
	// The port itself, as boards.Open passes it: the driver taps the
	// console for SMP answers.
	b.drv = NewDriver(b.con, port)
	b.drv.UseRedactor(b.red)
	if b.drv.tap == nil {
		t.Fatal("the driver reads SMP from the port the console reads")
	}
	b.drv.OnlineTimeout = 15 * time.Second
	t.Cleanup(func() {
		b.close(t)
		if t.Failed() {
			t.Logf("board log:\n%s", b.log.String())
		}
	})
	return b
}

func (b *board) expect(t *testing.T, pattern string) hil.Match {
	t.Helper()
	m, err := b.con.Expect(testCtx(t), pattern, hil.ExpectOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (b *board) exec(t *testing.T, cmd string) string {
	t.Helper()
	out, err := b.drv.Exec(testCtx(t), cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

func lastSeq(t *testing.T, c *cloud.Cloud) int64 {
	t.Helper()
	seq, err := c.Registry.LastSeq(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func waitEvent(t *testing.T, c *cloud.Cloud, f registry.Filter) registry.Event {
	t.Helper()
	ev, err := c.Registry.WaitEvent(testCtx(t), f)
	if err != nil {
		t.Fatalf("wait for event %+v: %v", f, err)
	}
	return ev
}

// deviceCert issues dev-7 of project acme from the intermediate of a CA
// whose root the project trusts; the key is SEC 1 DER, as
// generate_device_certificate.sh writes it.
func deviceCert(t *testing.T, c *cloud.Cloud, cn string) Credentials {
	t.Helper()
	own, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.TrustRoot(testCtx(t), "acme", own.Root.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	cert, key, err := own.Issuing.Issue(cn, "acme", fakeca.ECDSAP256, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{Chain: [][]byte{cert.Raw, own.Issuing.Cert.Raw}, KeyDER: keyDER}
}

func addPSK(t *testing.T, c *cloud.Cloud, dev string, key []byte) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := c.Registry.Device(ctx, "acme", dev); err != nil {
		if _, err := c.Registry.CreateDevice(ctx, "acme", dev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", dev, dev+"@acme", key); err != nil {
		t.Fatal(err)
	}
}

// noSecrets fails if the board log holds a secret in a usual encoding.
func noSecrets(t *testing.T, log string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s)} {
			if strings.Contains(log, form) {
				t.Errorf("a secret (fp %s) reached the board log", hil.Fingerprint(s))
			}
		}
	}
}

// TestCertificateProvisioning follows Golioth's forum guide and
// certificate_provisioning HIL test: fs mkdir, log halt, SMP upload of
// crt.der and key.der, log go, reboot; the board connects with the
// certificate and the cloud provisions it on the spot. The files survive
// an emulator restart on the same flash file.
func TestCertificateProvisioning(t *testing.T) {
	c := newTestCloud(t)
	cred := deviceCert(t, c, "dev-7")
	flashPath := filepath.Join(t.TempDir(), "nrf1.flash")
	b := startBoard(t, c, flashPath, nil)
	ctx := testCtx(t)

	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Could not stat /lfs1/credentials/crt.der, err: -2`)
	b.expect(t, `No PSK credentials in settings`)
	seq := lastSeq(t, c)
	if err := b.drv.Provision(ctx, cred); err != nil {
		t.Fatal(err)
	}
	line, err := b.drv.WaitOnline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\[\d\d:\d\d:\d\d\.\d{3},\d{3}\] <inf> golioth_certificate_provisioning: Golioth client connected$`).MatchString(line) {
		t.Errorf("online line = %q", line)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: "provision.auto", Device: "dev-7", AfterSeq: seq})
	if ev.Outcome != registry.OutcomeOK || ev.Project != "acme" {
		t.Fatalf("event = %+v", ev)
	}
	wantCrt := bytes.Join(cred.Chain, nil)
	if got, err := b.emu.ReadFile(CertPath); err != nil || !bytes.Equal(got, wantCrt) {
		t.Fatalf("crt.der on the board: %d bytes, %v", len(got), err)
	}
	got, err := b.drv.SMP().Download(ctx, KeyPath)
	if err != nil || !bytes.Equal(got, cred.KeyDER) {
		t.Fatalf("key.der downloaded over SMP: %d bytes, %v", len(got), err)
	}
	ls := b.exec(t, "fs ls "+CredentialsDir)
	if ls != "crt.der\nkey.der" {
		t.Errorf("fs ls = %q", ls)
	}
	noSecrets(t, b.log.String(), cred.KeyDER)
	if !strings.Contains(b.log.String(), "<redacted fp=") {
		t.Error("the key went over SMP but the log shows no redaction")
	}
	b.close(t)

	// Restart on the same flash: nothing to provision, the board comes
	// back with its certificate.
	// Mark the event log before the board starts: it connects within
	// milliseconds of booting.
	seq = lastSeq(t, c)
	b2 := startBoard(t, c, flashPath, nil)
	if err := b2.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	b2.expect(t, `Read \d+ bytes from /lfs1/credentials/key.der`)
	if _, err := b2.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, c, registry.Filter{Kind: "auth.cert", Device: "dev-7", AfterSeq: seq})
	if ev.Outcome != registry.OutcomeOK {
		t.Fatalf("after restart: %+v", ev)
	}
	if got, err := b2.emu.ReadFile(KeyPath); err != nil || !bytes.Equal(got, cred.KeyDER) {
		t.Fatalf("key.der after restart: %v", err)
	}
}

// TestPSKSettings provisions a PSK with Golioth's settings shell, and it
// survives a restart on the same flash.
func TestPSKSettings(t *testing.T) {
	c := newTestCloud(t)
	psk := []byte("secret-key-0001")
	addPSK(t, c, "dev1", psk)
	flashPath := filepath.Join(t.TempDir(), "nrf1.flash")
	b := startBoard(t, c, flashPath, nil)
	ctx := testCtx(t)
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	seq := lastSeq(t, c)
	if err := b.drv.Provision(ctx, Credentials{PSKIdentity: registry.PSKIdentity("dev1", "acme"), PSK: psk}); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Session PSK-ID: dev1@acme`)
	if _, err := b.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: "auth.psk", Device: "dev1", AfterSeq: seq})
	if ev.Outcome != registry.OutcomeOK || ev.Credential != "dev1@acme" {
		t.Fatalf("event = %+v", ev)
	}
	out := b.exec(t, "settings get golioth/psk")
	if out != "[hidden, fp "+hil.Fingerprint(psk)+"]" {
		t.Errorf("settings get golioth/psk = %q", out)
	}
	info := b.exec(t, "device info")
	if !strings.Contains(info, "psk:        id dev1@acme, key fp "+hil.Fingerprint(psk)) || !strings.Contains(info, "golioth:    connected") {
		t.Errorf("device info:\n%s", info)
	}
	noSecrets(t, b.log.String(), psk)
	b.close(t)

	// Mark the event log before the board starts: it connects within
	// milliseconds of booting.
	seq = lastSeq(t, c)
	b2 := startBoard(t, c, flashPath, nil)
	if err := b2.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, c, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev1", AfterSeq: seq})
}

// TestUploadInterleavedWithLogs uploads the certificate without "log
// halt" while the firmware logs every few milliseconds: the SMP frames
// and the log lines share the UART and the upload still lands intact.
func TestUploadInterleavedWithLogs(t *testing.T) {
	c := newTestCloud(t)
	psk := []byte("secret-key-0002")
	addPSK(t, c, "dev2", psk)
	cred := deviceCert(t, c, "dev-8")
	b := startBoard(t, c, filepath.Join(t.TempDir(), "nrf1.flash"), func(o *EmulatorOptions) {
		o.HelloInterval = 2 * time.Millisecond
	})
	ctx := testCtx(t)
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Provision(ctx, Credentials{PSKIdentity: "dev2@acme", PSK: psk}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Sending hello! 3\n`)

	// Shell commands work while the log runs: a person typing slowly sees
	// log lines between their keys, and the line they typed is redrawn.
	for range 10 {
		if out := b.exec(t, "settings get golioth/psk-id"); !strings.Contains(out, "dev2@acme") {
			t.Fatalf("settings get while logging: %q", out)
		}
	}
	if _, err := b.con.Write([]byte("settings get golio")); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Sending hello! \d+\n`+regexp.QuoteMeta(Prompt+"settings get golio"))
	if _, err := b.con.Write([]byte("th/psk-id\n")); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `th/psk-id\n(?:[^\n]*\n)*?dev2@acme\n`)

	b.exec(t, "fs mkdir "+CredentialsDir)
	// More packets, and newtmgr's pause between frames: the upload takes
	// long enough for many log lines.
	b.drv.MTU = 128
	b.drv.SMP().FrameGap = 5 * time.Millisecond
	if err := b.drv.Upload(ctx, CertPath, cred.Chain[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Upload(ctx, KeyPath, cred.KeyDER); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{CertPath: cred.Chain[0], KeyPath: cred.KeyDER} {
		h, err := b.drv.SMP().Hash(ctx, path, smp.HashSHA256)
		sum := sha256.Sum256(want)
		if err != nil || !bytes.Equal(h.Output, sum[:]) {
			t.Fatalf("%s: hash %+v, %v", path, h, err)
		}
	}
	b.expect(t, `Sending hello! \d+\n`)
	// The board log shows log lines between the first SMP request and
	// the last SMP response.
	lines := strings.Split(b.log.String(), "\n")
	first, last := -1, -1
	for i, l := range lines {
		if strings.Contains(l, " > \\x06") && first < 0 {
			first = i
		}
		if strings.Contains(l, " < ") && (strings.Contains(l, "\\x06") || strings.Contains(l, "\\x04")) {
			last = i
		}
	}
	hellos := 0
	for i := max(first, 0); i < last; i++ {
		if strings.Contains(lines[i], "Sending hello!") {
			hellos++
		}
	}
	if first < 0 || hellos == 0 {
		t.Fatalf("no log line between SMP frames (first request at line %d, last response at %d)", first, last)
	}
	t.Logf("%d log lines interleaved with the upload", hellos)
	// Only the leaf this time: its intermediate is not on the board, so
	// the cloud cannot verify it ...
	seq := lastSeq(t, c)
	if err := b.drv.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Certificate CN=dev-8 O=acme`)
	ev := waitEvent(t, c, registry.Filter{Kind: "auth.cert", AfterSeq: seq})
	if ev.Outcome != registry.OutcomeFail {
		t.Fatalf("leaf without its intermediate: %+v", ev)
	}
	// ... with the chain appended to crt.der it can.
	seq = lastSeq(t, c)
	if err := b.drv.Upload(ctx, CertPath, bytes.Join(cred.Chain, nil)); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, c, registry.Filter{Kind: "provision.auto", Outcome: registry.OutcomeOK, Device: "dev-8", AfterSeq: seq})
}

// TestPowerCutDuringPSKWrite cuts power while the new PSK identity is
// written: the board reboots, the flash keeps the old credential, and the
// board connects with it.
func TestPowerCutDuringPSKWrite(t *testing.T) {
	c := newTestCloud(t)
	old := []byte("secret-key-0003")
	addPSK(t, c, "dev3", old)
	b := startBoard(t, c, filepath.Join(t.TempDir(), "nrf1.flash"), nil)
	ctx := testCtx(t)
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Provision(ctx, Credentials{PSKIdentity: "dev3@acme", PSK: old}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	// The first connection's event is in the log before the mark, so
	// only a reconnection can satisfy the waits below.
	seq := waitEvent(t, c, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev3"}).Seq

	b.emu.CutPowerAt("set:" + SettingPSKID)
	err := b.drv.Provision(ctx, Credentials{PSKIdentity: "dev4@acme", PSK: []byte("secret-key-0004")})
	if !errors.Is(err, hil.ErrMustNotMatch) {
		t.Fatalf("provisioning through a power cut: %v", err)
	}
	// The failed command consumed the banner; the board boots on.
	if _, err := b.drv.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, c, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev3", AfterSeq: seq})
	if out := b.exec(t, "settings get golioth/psk-id"); out != "dev3@acme" {
		t.Fatalf("psk-id after the cut = %q", out)
	}
	if !strings.Contains(b.emu.Status(), `last="power cut"`) {
		t.Errorf("status = %s", b.emu.Status())
	}

	// A power cycle and the reset button keep the flash too.
	for name, do := range map[string]func(){"power cycle": b.emu.PowerCycle, "reset": b.emu.Reset} {
		seq = lastSeq(t, c)
		do()
		if err := b.drv.WaitBoot(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := b.drv.WaitOnline(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		waitEvent(t, c, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev3", AfterSeq: seq})
		if !strings.Contains(b.emu.Status(), `last="`+name+`"`) {
			t.Errorf("status = %s", b.emu.Status())
		}
	}
}

// TestShell checks the shell's answers to what a person might type.
func TestShell(t *testing.T) {
	c := newTestCloud(t)
	b := startBoard(t, c, "", nil)
	ctx := testCtx(t)
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cmd, want string
		fails     bool
	}{
		{cmd: "frobnicate now", want: "frobnicate: command not found", fails: true},
		{cmd: "fs frob", want: "fs: unknown parameter: frob", fails: true},
		{cmd: "fs mkdir", want: "fs mkdir: wrong parameter count", fails: true},
		{cmd: "kernel reboot", want: "kernel reboot - Reboot\nSubcommands:\n  cold    : Cold reboot\n  warm    : Warm reboot\nkernel reboot: missing subcommand", fails: true},
		{cmd: `settings set "unterminated`, want: "Unterminated quote", fails: true},
		{cmd: "fs ls /", want: "lfs1/"},
		{cmd: "fs mkdir /lfs1/credentials", want: ""},
		{cmd: "fs mkdir /lfs1/credentials", want: "Error creating dir[-17]"},
		{cmd: "fs mkdir /lfs1/a/b", want: "Error creating dir[-2]"},
		{cmd: "fs mkdir /nope", want: "Error creating dir[-2]"},
		{cmd: "fs cd /lfs1", want: ""},
		{cmd: "fs pwd", want: "/lfs1"},
		{cmd: "fs ls", want: "credentials/"},
		{cmd: "fs rm /lfs1", want: "Failed to remove /lfs1 (-22)"},
		{cmd: "fs rm credentials", want: ""},
		{cmd: "fs ls /lfs1/credentials", want: "Unable to open /lfs1/credentials (err -2)"},
		{cmd: `settings set wifi/ssid "My Net"`, want: "Setting wifi/ssid to My Net\nSetting wifi/ssid saved as My Net"},
		{cmd: "settings get wifi/ssid --json", want: `{"status": "success", "value": "My Net"}`},
		{cmd: "settings get nothing", want: "Setting not found"},
		{cmd: "settings delete wifi/ssid", want: ""},
		{cmd: "settings list", want: ""},
		{cmd: "log halt", want: ""},
		{cmd: "log go", want: ""},
		{cmd: "kernel version", want: "Zephyr version 3.5.99"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			out, err := b.drv.Exec(ctx, tc.cmd)
			if (err != nil) != tc.fails || !errors.Is(err, ErrCommand) && tc.fails {
				t.Fatalf("err = %v, want failure %t", err, tc.fails)
			}
			if out != tc.want {
				t.Fatalf("output %q, want %q", out, tc.want)
			}
		})
	}
	// Line editing: backspace, a stray escape sequence, \r\n.
	if _, err := b.con.Write([]byte("kernel verx\x7fsion\x1b[A\r\n")); err != nil {
		t.Fatal(err)
	}
	b.expect(t, `Zephyr version 3.5.99\n`)
	// Junk and a damaged SMP frame do not hurt; the shell still answers.
	if _, err := b.con.Write([]byte("\x00\xff\x06\x09AAAA!!\n\x04\x14garbage\n\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.SMP().Echo(ctx, "ping"); err != nil {
		t.Fatalf("smp echo after junk: %v", err)
	}
	if out := b.exec(t, "kernel version"); out != "Zephyr version 3.5.99" {
		t.Fatalf("after junk: %q", out)
	}
	// Without credentials the driver refuses to wait for nothing.
	if err := b.drv.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(ctx); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("WaitOnline without credentials: %v", err)
	}
	// SMP os reset reboots the board.
	if err := b.drv.SMP().Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestProvisionRefuses checks what the driver will not send.
func TestProvisionRefuses(t *testing.T) {
	c := newTestCloud(t)
	b := startBoard(t, c, "", nil)
	ctx := testCtx(t)
	for name, cr := range map[string]Credentials{
		"nothing":     {},
		"binary PSK":  {PSKIdentity: "d@acme", PSK: []byte{0, 1, 2, 3, 4, 5, 6, 7}},
		"no identity": {PSK: []byte("secret-key-0005")},
		"cert no key": {Chain: [][]byte{{0x30, 0}}},
		"short PSK":   {PSKIdentity: "d@acme", PSK: []byte("abc")},
	} {
		t.Run(name, func(t *testing.T) {
			err := b.drv.Provision(ctx, cr)
			if !errors.Is(err, ErrBadCredential) && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "secret-key") {
				t.Fatalf("error shows the key: %v", err)
			}
		})
	}
	// Without a redactor no secret is sent.
	bare := NewDriver(b.con, nil)
	defer bare.Close()
	if err := bare.Provision(ctx, Credentials{PSKIdentity: "d@acme", PSK: []byte("secret-key-0006")}); !errors.Is(err, ErrNoRedactor) {
		t.Fatalf("without a redactor: %v", err)
	}
}

// fuzzUART feeds fuzz input to the emulator and discards its output.
type fuzzUART struct{ r io.Reader }

func (u fuzzUART) Read(p []byte) (int, error)  { return u.r.Read(p) }
func (u fuzzUART) Write(p []byte) (int, error) { return len(p), nil }

// FuzzShell feeds arbitrary bytes to the board's UART (shell and SMP):
// nothing panics or hangs, and the board still boots.
func FuzzShell(f *testing.F) {
	f.Add([]byte("fs mkdir /lfs1/credentials\nlog halt\nlog go\nsettings set golioth/psk-id a@b\n"))
	f.Add([]byte("kernel reboot cold\nfs ls /\nfs rm /lfs1\ndevice info\nhelp\n"))
	f.Add([]byte("\x01fs mkdir /lfs1/c\nsettings set a b\nsettings get a\n"))
	f.Add([]byte("settings set \"x\\\"y\" 'v w'\r\n\x7f\x1b[A\x03fs cd ..\nfs pwd\n"))
	frames, _ := smp.EncodeFrames([]byte{2, 0, 0, 0, 0, 0, 0, 5})
	f.Add(append([]byte("uart junk "), frames...))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, formatted, err := openFlash("")
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[0]&1 == 1 {
			fl.arm("any") // the first flash write loses power
		}
		e := newEmulator(EmulatorOptions{Name: "fuzz", HelloInterval: -1, KeepaliveInterval: -1}, fl, formatted,
			fuzzUART{bytes.NewReader(data)}, func() error { return nil })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.start(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-e.readerDone:
		case <-ctx.Done():
			t.Fatal("the emulator did not finish reading its input")
		}
		closed := make(chan error, 1)
		go func() { closed <- e.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("Close hangs:\n%s", buf[:runtime.Stack(buf, true)])
		}
	})
}
