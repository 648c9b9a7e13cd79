package linux_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/boards/linux"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/peer"
)

// buildFirmware compiles testdata/fw.c into a temporary directory.
func buildFirmware(t *testing.T) string {
	t.Helper()
	cc := peer.Require(t, "cc")
	src, err := filepath.Abs("testdata/fw.c")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "fw")
	peer.Run(t, t.TempDir(), cc, "-o", out, src)
	return out
}

type bench struct {
	b      *boards.Board
	run    string
	red    *hil.Redactor
	ctx    context.Context
	cancel context.CancelFunc
}

func open(t *testing.T, spec hil.BoardSpec) *bench {
	t.Helper()
	spec.Kind = "linux"
	if spec.Name == "" {
		spec.Name = "fw"
	}
	m := &hil.Map{Boards: []hil.BoardSpec{spec}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := boards.CheckMap(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	run := t.TempDir()
	red := hil.NewRedactor()
	b, err := boards.Open(ctx, boards.Options{Spec: m.Boards[0], RunDir: run, Redactor: red, ServerCA: []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n")})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		cancel()
	})
	return &bench{b: b, run: run, red: red, ctx: ctx, cancel: cancel}
}

func (tb *bench) expect(t *testing.T, re string) hil.Match {
	t.Helper()
	m, err := tb.b.Console.Expect(tb.ctx, re, hil.ExpectOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (tb *bench) proc() *linux.Process { return tb.b.Driver().(*linux.Driver).Process() }

func (tb *bench) log(t *testing.T) string {
	t.Helper()
	if err := tb.b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(tb.run, "boards", tb.b.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The PSK goes in through env placeholders as raw bytes, the console
// matches without colours and logs them, and the PSK never reaches the log.
func TestProvisionEnvExpectSend(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw, Args: []string{"unit"}, Env: map[string]string{"FW_PSK_ID": "{psk_id}", "FW_PSK": "{psk}"}})
	if err := tb.b.WaitBoot(tb.ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(tb.proc().Waiting(), linux.ErrNoCredential) || tb.proc().Pid() != 0 {
		t.Fatalf("started without its credentials: waiting %v, pid %d", tb.proc().Waiting(), tb.proc().Pid())
	}
	tb.expect(t, `firmware not started: .*\{psk_id\}`)
	psk := []byte("secret-key-0001")
	if err := tb.b.Provision(tb.ctx, boards.Credentials{PSKIdentity: "dev1@acme", PSK: psk}); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `boot: unit tty=1\n`)
	tb.expect(t, `psk_id=dev1@acme\n`)
	if m := tb.expect(t, `psk=(\S+) len=(\d+)`); m.Groups[0] != string(psk) || m.Groups[1] != "15" {
		t.Fatalf("the firmware got %q", m.Text)
	}
	tb.expect(t, `(?m)^green ready\n`) // the colour codes are gone
	if err := tb.b.Console.Send("hello there"); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `echo: hello there\n`)
	if err := tb.b.Console.Send("connect"); err != nil {
		t.Fatal(err)
	}
	line, err := tb.b.WaitOnline(tb.ctx)
	if err != nil || line != "Golioth CoAP client connected" {
		t.Fatalf("online: %q, %v", line, err)
	}
	stored, err := os.Stat(filepath.Join(tb.proc().Workdir(), "credloop", "psk"))
	if err != nil || stored.Mode().Perm() != 0o600 {
		t.Fatalf("stored PSK: %v, %v", stored, err)
	}
	log := tb.log(t)
	if strings.Contains(log, string(psk)) {
		t.Fatalf("the PSK is in the board log:\n%s", log)
	}
	for _, want := range []string{"< psk=<redacted fp=" + hil.Fingerprint(psk), `< \x1b[32mgreen ready\x1b[0m`, "> hello there", "< [credloop] firmware started: fw (pid "} {
		if !strings.Contains(log, want) {
			t.Errorf("the board log lacks %q:\n%s", want, log)
		}
	}
}

// Certificate placeholders are paths of PEM files written 0600, and files
// get the PEM itself.
func TestProvisionCertificateFiles(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw, Env: map[string]string{"FW_CERT": "{cert}"},
		Files: map[string]string{"certs/client.crt.pem": "{cert}", "certs/client.key.pem": "{key}", "root.pem": "{ca}"}})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cr := boards.Credentials{Chain: [][]byte{[]byte("leaf-der"), []byte("intermediate-der")}, KeyDER: keyDER}
	if err := tb.b.Provision(tb.ctx, cr); err != nil {
		t.Fatal(err)
	}
	m := tb.expect(t, `cert=(\S+)\n`)
	wd := tb.proc().Workdir()
	if m.Groups[0] != filepath.Join(wd, "credloop", "client.crt.pem") {
		t.Fatalf("{cert} = %s", m.Groups[0])
	}
	for name, want := range map[string]string{"certs/client.crt.pem": "-----BEGIN CERTIFICATE-----", "certs/client.key.pem": "-----BEGIN EC PRIVATE KEY-----", "root.pem": "ca"} {
		st, err := os.Stat(filepath.Join(wd, name))
		data, _ := os.ReadFile(filepath.Join(wd, name))
		if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(string(data), want) {
			t.Errorf("%s: %v %v, content %.40q", name, st, err, data)
		}
	}
	if n := strings.Count(string(must(os.ReadFile(filepath.Join(wd, "certs/client.crt.pem")))), "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("the chain has %d certificates", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A reset keeps the working directory; a power cycle clears the volatile
// paths; both start a new process.
func TestResetAndPowerCycle(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw, Volatile: []string{"ram"}})
	tb.expect(t, `green ready`)
	for _, cmd := range []string{"write keep.txt", "write ram/state"} {
		if err := tb.b.Console.Send(cmd); err != nil {
			t.Fatal(err)
		}
		tb.expect(t, "wrote "+strings.TrimPrefix(cmd, "write ")+"\n")
	}
	wd := tb.proc().Workdir()
	pid := tb.proc().Pid()
	if err := tb.b.Reset(tb.ctx); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `firmware stopped \(reset\): signal: terminated`)
	tb.expect(t, `boot: fw`)
	if tb.proc().Pid() == pid || gone(pid) == false {
		t.Fatalf("reset kept pid %d", pid)
	}
	for _, f := range []string{"keep.txt", "ram/state"} {
		if _, err := os.Stat(filepath.Join(wd, f)); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	}
	if err := tb.b.PowerCycle(tb.ctx); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `firmware stopped \(power cycle\): signal: killed`)
	tb.expect(t, `boot: fw`)
	if _, err := os.Stat(filepath.Join(wd, "keep.txt")); err != nil {
		t.Fatalf("after power cycle: %v", err)
	}
	if _, err := os.Stat(filepath.Join(wd, "ram")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the volatile path survived a power cycle: %v", err)
	}
}

// A firmware that ignores SIGTERM is killed after the grace period on
// reset, and at once by a power cut, which leaves it off.
func TestStopGraceAndPowerCut(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw, StopGrace: "100ms"})
	tb.expect(t, `green ready`)
	if err := tb.b.Console.Send("ignore-term"); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `ignoring SIGTERM`)
	if err := tb.b.Reset(tb.ctx); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `firmware stopped \(reset\): signal: killed`)
	tb.expect(t, `green ready`)
	if err := tb.b.Console.Send("ignore-term"); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `ignoring SIGTERM`)
	if err := tb.b.CutPowerAt("set:x"); !errors.Is(err, boards.ErrUnsupported) {
		t.Fatalf("power cut at a flash write: %v", err)
	}
	pid := tb.proc().Pid()
	if err := tb.b.CutPowerAt(linux.PowerCutNow); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) || tb.proc().Pid() != 0 {
		t.Fatalf("pid %d survived the power cut", pid)
	}
	_, err := tb.b.Console.Expect(tb.ctx, "never", hil.ExpectOptions{Timeout: 20 * time.Second})
	var ee *linux.ExitError
	if !errors.As(err, &ee) || !ee.PowerCut || ee.Status != "signal: killed" {
		t.Fatalf("expect after a power cut: %v", err)
	}
	if err := tb.b.Console.Send("x"); !errors.Is(err, linux.ErrNotRunning) {
		t.Fatalf("send to a board without power: %v", err)
	}
	if err := tb.b.PowerCycle(tb.ctx); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `green ready`)
}

// A firmware that exits on its own fails waits with its exit status at
// once, says so in the log, and a reset starts it again.
func TestExitStatusReported(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw})
	tb.expect(t, `green ready`)
	if err := tb.b.Console.Send("exit 3"); err != nil {
		t.Fatal(err)
	}
	_, err := tb.b.WaitOnline(tb.ctx)
	if !errors.Is(err, linux.ErrExited) || !errors.Is(err, hil.ErrStopped) || !strings.Contains(err.Error(), "firmware exited: exit status 3") {
		t.Fatalf("online: %v", err)
	}
	if err := tb.b.WaitBoot(tb.ctx); !errors.Is(err, linux.ErrExited) {
		t.Fatalf("boot: %v", err)
	}
	if _, err := tb.b.Console.Expect(tb.ctx, "never", hil.ExpectOptions{Timeout: 20 * time.Second}); !errors.Is(err, linux.ErrExited) {
		t.Fatalf("expect: %v", err)
	}
	if err := tb.b.Reset(tb.ctx); err != nil {
		t.Fatal(err)
	}
	tb.expect(t, `green ready`)
	if err := tb.b.WaitBoot(tb.ctx); err != nil {
		t.Fatalf("boot after reset: %v", err)
	}
	if log := tb.log(t); !strings.Contains(log, "< [credloop] firmware exited: exit status 3") {
		t.Fatalf("the log does not report the exit:\n%s", log)
	}
}

// Close leaves neither the firmware nor what it forked behind.
func TestCloseLeavesNoProcess(t *testing.T) {
	fw := buildFirmware(t)
	tb := open(t, hil.BoardSpec{Exec: fw})
	tb.expect(t, `green ready`)
	if err := tb.b.Console.Send("spawn"); err != nil {
		t.Fatal(err)
	}
	m := tb.expect(t, `child (\d+)\n`)
	child, _ := strconv.Atoi(m.Groups[0])
	pid := tb.proc().Pid()
	if pid == 0 || child == 0 || gone(pid) || gone(child) {
		t.Fatalf("pid %d, child %d", pid, child)
	}
	if err := tb.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tb.b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if !gone(pid) || !gone(child) {
		t.Fatalf("left behind: pid %d gone %v, child %d gone %v", pid, gone(pid), child, gone(child))
	}
}

// gone reports whether pid has no live process: none, or a zombie that
// only its reaper still holds.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// A missing executable fails the start with the path.
func TestMissingExecutable(t *testing.T) {
	spec := hil.BoardSpec{Name: "fw", Kind: "linux", Exec: filepath.Join(t.TempDir(), "nope")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := boards.Open(ctx, boards.Options{Spec: spec, RunDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
}
