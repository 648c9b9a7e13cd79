//go:build linux

package boards_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// fake is a kind of board registered by this test alone, as a kind's
// package registers itself: its emulator answers "reboot" with a banner
// and "whoami" with its UDID.
func init() {
	boards.Register(boards.Kind{
		Name:    "fake",
		Summary: "a board of the boards tests",
		USB:     []boards.USBID{{VID: "0x1d6b", PID: "2", Why: "Linux Foundation 2.0 root hub"}},
		Reset:   "console:reboot",
		Open: func(c *hil.Console, _ io.ReadWriter, _ *hil.Redactor) (boards.Driver, error) {
			return &fakeDriver{c: c}, nil
		},
		Emulate: func(ctx context.Context, o boards.EmulatorOptions) (boards.Emulator, error) {
			return startFake(o.Name)
		},
	})
	boards.Register(boards.Kind{
		Name: "fakereal",
		Open: func(c *hil.Console, _ io.ReadWriter, _ *hil.Redactor) (boards.Driver, error) {
			return struct{ boards.Driver }{&fakeDriver{c: c}}, nil // no identity
		},
	})
}

type fakeDriver struct {
	c      *hil.Console
	closed int
}

func (d *fakeDriver) WaitBoot(ctx context.Context) error {
	_, err := d.c.Expect(ctx, "BOOT", hil.ExpectOptions{Literal: true, Timeout: 10 * time.Second})
	return err
}
func (d *fakeDriver) WaitOnline(ctx context.Context) (string, error) {
	return "", errors.New("offline")
}
func (d *fakeDriver) Provision(ctx context.Context, cr boards.Credentials) error {
	return errors.New("fake: no credentials")
}
func (d *fakeDriver) Reset(ctx context.Context) error {
	if err := d.c.Send("reboot"); err != nil {
		return err
	}
	return d.WaitBoot(ctx)
}
func (d *fakeDriver) Close() error { d.closed++; return nil }

// UDID and PublicKey make it an Identifier.
func (d *fakeDriver) UDID(ctx context.Context) (string, error) {
	if err := d.c.Send("whoami"); err != nil {
		return "", err
	}
	m, err := d.c.Expect(ctx, `UDID=(\w+)`, hil.ExpectOptions{Timeout: 10 * time.Second})
	if err != nil {
		return "", err
	}
	return m.Groups[0], nil
}
func (d *fakeDriver) PublicKey(ctx context.Context) ([]byte, error) { return []byte{0x30, 0}, nil }

type fakeEmu struct {
	pt     *hil.PTY
	wg     sync.WaitGroup
	mu     sync.Mutex
	cycles int
}

func startFake(name string) (*fakeEmu, error) {
	pt, err := hil.OpenPTY(0)
	if err != nil {
		return nil, err
	}
	e := &fakeEmu{pt: pt}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		sc := bufio.NewScanner(pt.Master)
		for sc.Scan() {
			switch strings.TrimSpace(sc.Text()) {
			case "reboot":
				_, _ = io.WriteString(pt.Master, "BOOT "+name+"\r\n")
			case "whoami":
				_, _ = io.WriteString(pt.Master, "UDID=F00D\r\n")
			}
		}
	}()
	return e, nil
}

func (e *fakeEmu) PortPath() string { return e.pt.Path() }
func (e *fakeEmu) PowerCycle()      { e.mu.Lock(); e.cycles++; e.mu.Unlock() }
func (e *fakeEmu) Close() error {
	err := e.pt.Close()
	e.wg.Wait()
	return err
}

func TestOpenEmulatedThroughTheRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := boards.Open(ctx, boards.Options{Spec: hil.BoardSpec{Name: "f1", Kind: "fake", Emulate: true}, RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Emulated() || b.Kind != "fake" || b.Spec().Reset != "console:reboot" {
		t.Fatalf("board = %+v, spec %+v", b, b.Spec())
	}
	if err := b.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if u, err := b.UDID(ctx); err != nil || u != "F00D" {
		t.Fatalf("UDID = %q, %v", u, err)
	}
	if pem, err := b.PublicKey(ctx); err != nil || !strings.Contains(string(pem), "BEGIN PUBLIC KEY") {
		t.Fatalf("PublicKey = %q, %v", pem, err)
	}
	if err := b.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	// The fake emulator has no power cuts.
	if err := b.CutPowerAt("any"); !errors.Is(err, boards.ErrUnsupported) {
		t.Fatalf("CutPowerAt = %v, want ErrUnsupported", err)
	}
	if _, ok := b.Driver().(*fakeDriver); !ok {
		t.Fatalf("Driver() = %T", b.Driver())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if d := b.Driver().(*fakeDriver); d.closed != 1 {
		t.Fatalf("driver closed %d times", d.closed)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := boards.Open(ctx, boards.Options{Spec: hil.BoardSpec{Name: "x", Kind: "stm32", Emulate: true}}); !errors.Is(err, boards.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := boards.Open(ctx, boards.Options{Spec: hil.BoardSpec{Name: "x", Kind: "fakereal", Emulate: true}}); !errors.Is(err, boards.ErrNoEmulator) {
		t.Fatalf("no emulator: %v", err)
	}
	// A "real" board on a pseudo-terminal: no power cuts, no identity.
	pt, err := hil.OpenPTY(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pt.Close()
	b, err := boards.Open(ctx, boards.Options{Spec: hil.BoardSpec{Name: "r", Kind: "fakereal", Port: pt.Path()}, RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CutPowerAt("any"); !errors.Is(err, boards.ErrNotEmulated) {
		t.Fatalf("CutPowerAt on a real board = %v", err)
	}
	if _, err := b.UDID(ctx); !errors.Is(err, boards.ErrUnsupported) {
		t.Fatalf("UDID of a board without an identity = %v", err)
	}
	if err := b.Reset(ctx); !errors.Is(err, hil.ErrNoReset) {
		t.Fatalf("Reset without a reset method = %v", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	open := func(*hil.Console, io.ReadWriter, *hil.Redactor) (boards.Driver, error) { return nil, nil }
	for name, k := range map[string]boards.Kind{
		"twice":       {Name: "fake", Open: open},
		"no name":     {Open: open},
		"upper case":  {Name: "Fake2", Open: open},
		"no Open":     {Name: "fake3"},
		"PID not hex": {Name: "fake4", Open: open, USB: []boards.USBID{{VID: "1234", PID: "ZZ"}}},
		"VID missing": {Name: "fake5", Open: open, USB: []boards.USBID{{PID: "1234"}}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			boards.Register(k)
		})
	}
	if _, err := boards.Lookup("fake4"); !errors.Is(err, boards.ErrUnknownKind) {
		t.Fatalf("a refused kind was registered: %v", err)
	}
}

func TestGuessKindRegistered(t *testing.T) {
	if k, why := boards.GuessKind("1D6B", "0002"); k != "fake" || why != "Linux Foundation 2.0 root hub" {
		t.Fatalf("GuessKind = %q, %q", k, why)
	}
	if !strings.Contains(boards.USBTable(), "1D6B:0002  fake") {
		t.Fatalf("USBTable:\n%s", boards.USBTable())
	}
}
