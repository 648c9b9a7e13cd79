//go:build linux

package esp32

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/fakeca"
)

// testCtx bounds a whole test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a log that tests read while boards write to it.
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

// testCloud is an in-process cloud with project acme.
type testCloud struct {
	*cloud.Cloud
	ctx context.Context
}

func newCloud(t *testing.T, ctx context.Context) *testCloud {
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
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	return &testCloud{Cloud: c, ctx: ctx}
}

func (c *testCloud) endpoints() Endpoints { return Endpoints(c.Addrs()) }

// mark is the newest event's Seq: later waits see only newer events.
func (c *testCloud) mark(t *testing.T) int64 {
	t.Helper()
	n, err := c.Registry.LastSeq(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// event waits (bounded) for an event after seq.
func (c *testCloud) event(t *testing.T, seq int64, f registry.Filter) registry.Event {
	t.Helper()
	f.AfterSeq = seq
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	ev, err := c.Registry.WaitEvent(ctx, f)
	if err != nil {
		t.Fatalf("no event %+v: %v", f, err)
	}
	return ev
}

// jitpCA makes a device CA registered with acme's MQTT side in JITP mode.
func (c *testCloud) jitpCA(t *testing.T) *fakeca.CA {
	t.Helper()
	ca, err := fakeca.NewRoot("acme devices", fakeca.ECDSAP256, 0, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.RegisterCA(c.ctx, "acme", ca.Cert.Raw, registry.CAModeJITP, ""); err != nil {
		t.Fatal(err)
	}
	return ca
}

// board is an emulated ESP32 opened through its pseudo-terminal with
// go.bug.st/serial, like a USB serial port.
type board struct {
	t       *testing.T
	opts    EmulatorOptions
	emu     *Emulator
	console *hil.Console
	drv     *Driver
	red     *hil.Redactor
	log     *syncBuffer // the console's board log (redacted)
	debug   *syncBuffer // the emulator's own log
}

func flashPath(t *testing.T) string { return filepath.Join(t.TempDir(), "nvs.bin") }

// startBoard starts an emulator and attaches a console and driver to it.
func startBoard(t *testing.T, ctx context.Context, o EmulatorOptions) *board {
	t.Helper()
	b := &board{t: t, opts: o, red: hil.NewRedactor(), log: &syncBuffer{}, debug: &syncBuffer{}}
	b.start(ctx)
	t.Cleanup(func() {
		b.stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("board log:\n%s", b.log)
			t.Logf("emulator log:\n%s", b.debug)
		}
	})
	return b
}

func (b *board) start(ctx context.Context) {
	b.t.Helper()
	o := b.opts
	if o.Name == "" {
		o.Name = "esp32-test"
	}
	o.Log = b.debug
	emu, err := StartEmulator(ctx, o)
	if err != nil {
		b.t.Fatal(err)
	}
	b.emu = emu
	port, err := hil.OpenPort(ctx, hil.PortOptions{Board: o.Name, Resolve: hil.PathResolver(emu.PortPath())})
	if err != nil {
		_ = emu.Close()
		b.t.Fatal(err)
	}
	c, err := hil.NewConsole(port, hil.ConsoleOptions{Name: o.Name, Log: b.log, Redactor: b.red})
	if err != nil {
		_ = port.Close()
		_ = emu.Close()
		b.t.Fatal(err)
	}
	b.console = c
	b.drv = NewDriver(c, port)
	b.drv.UseRedactor(b.red)
}

// stop closes the console and the emulator (the flash file stays).
func (b *board) stop() {
	if b.console != nil {
		if err := b.console.Close(); err != nil {
			b.t.Logf("console close: %v", err)
		}
		b.console = nil
	}
	if b.emu != nil {
		if err := b.emu.Close(); err != nil {
			b.t.Errorf("emulator close: %v", err)
		}
		b.emu = nil
	}
}

// restart closes everything and starts a new emulator on the same flash.
func (b *board) restart(ctx context.Context) {
	b.t.Helper()
	b.stop()
	b.start(ctx)
}

// expect waits for pattern on the console.
func (b *board) expect(ctx context.Context, pattern string) hil.Match {
	b.t.Helper()
	m, err := b.console.Expect(ctx, pattern, hil.ExpectOptions{Timeout: 20 * time.Second})
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

// expectLines waits for each line in order.
func (b *board) expectLines(ctx context.Context, lines ...string) {
	b.t.Helper()
	for _, l := range lines {
		b.expect(ctx, regexp.QuoteMeta(l))
	}
}

func (b *board) online(ctx context.Context) string {
	b.t.Helper()
	line, err := b.drv.WaitOnline(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	return line
}

func (b *board) run(ctx context.Context, line string) string {
	b.t.Helper()
	out, err := b.drv.Run(ctx, line)
	if err != nil {
		b.t.Fatal(err)
	}
	return out
}
