// Package scenario is credloop's scenario language: a testscript command
// set that starts the cloud, drives simulated devices, moves a virtual
// clock and waits on the registry's event log, and the runner behind
// `credloop run`.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

type worldKey struct{}

// Clock is a virtual clock: real time plus an offset that scenarios move
// forward (or set) to test expiry and renewal without waiting.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.offset = time.Until(t)
	c.mu.Unlock()
}

// world is the state of one running scenario: its directory (CA and
// registry, shared with `exec credloop` through $CREDLOOP_DIR), its clock,
// the cloud when started, and the simulated devices.
type world struct {
	work     string
	dir      string
	clock    *Clock
	cloud    *cloud.Cloud
	addr     string // kept across restarts so devices find the cloud again
	mqttAddr string
	httpAddr string
	idle     time.Duration
	logFile  *os.File
	mark     int64          // awaits only see events after this sequence number
	claimed  map[int64]bool // events an await has already matched
	devices  map[string]device
	consoles map[string]*os.File
	boards   map[string]*boards.Board
	hw       *hil.Map      // the hardware map, when a run was given one
	redactor *hil.Redactor // secrets the scenario hands to boards

	// pskStack is the DTLS PSK stack of every cloud started; empty: the
	// cloud's default.
	pskStack cloud.DTLSPSKStack

	// observations are the simulated devices' LightDB observations, by
	// "NAME PATH" (lightdb.go).
	observations map[string]*sim.Observation
}

func setup(env *testscript.Env, hw *hil.Map, pskStack cloud.DTLSPSKStack) error {
	w := &world{
		pskStack: pskStack,
		boards:   map[string]*boards.Board{},
		hw:       hw,
		redactor: hil.NewRedactor(),
		work:     env.WorkDir,
		dir:      filepath.Join(env.WorkDir, "lab"),
		clock:    &Clock{},
		devices:  map[string]device{},
		consoles: map[string]*os.File{},
		claimed:  map[int64]bool{},
	}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return err
	}
	env.Setenv("CREDLOOP_DIR", w.dir)
	env.Values[worldKey{}] = w
	env.Defer(w.close)
	return nil
}

func getWorld(ts *testscript.TestScript) *world {
	return ts.Value(worldKey{}).(*world)
}

func (w *world) close() {
	for _, d := range w.devices {
		d.Stop()
	}
	for _, b := range w.boards {
		_ = b.Close()
	}
	if w.cloud != nil {
		_ = w.cloud.Close()
		w.cloud = nil
	}
	for _, f := range w.consoles {
		_ = f.Close()
	}
	if w.logFile != nil {
		_ = w.logFile.Close()
	}
}

func (w *world) startCloud() error {
	if w.cloud != nil {
		return errors.New("the cloud is already running")
	}
	if w.logFile == nil {
		f, err := os.OpenFile(filepath.Join(w.work, "cloud.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		w.logFile = f
	}
	or := func(a string) string {
		if a == "" {
			return "127.0.0.1:0"
		}
		return a
	}
	opts := cloud.Options{
		Dir:         w.dir,
		CoAPAddr:    or(w.addr),
		MQTTAddr:    or(w.mqttAddr),
		HTTPSAddr:   or(w.httpAddr),
		IdleTimeout: w.idle,
		Now:         w.clock.Now,
		Logger:      slog.New(slog.NewTextHandler(w.logFile, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	opts.DTLSPSKStack = w.pskStack
	c, err := cloud.New(opts)
	if err != nil {
		return err
	}
	w.cloud = c
	w.addr, w.mqttAddr, w.httpAddr = c.Addrs().CoAPS, c.Addrs().MQTTS, c.Addrs().HTTPS
	return nil
}

func (w *world) stopCloud() error {
	if w.cloud == nil {
		return errors.New("the cloud is not running")
	}
	err := w.cloud.Close()
	w.cloud = nil
	return err
}

// withRegistry runs f with the running cloud's registry, or with the
// directory's registry opened for the occasion.
func (w *world) withRegistry(f func(*registry.Registry) error) error {
	if w.cloud != nil {
		return f(w.cloud.Registry)
	}
	r, err := registry.Open(cloud.RegistryPath(w.dir), registry.Options{Now: w.clock.Now})
	if err != nil {
		return err
	}
	defer r.Close()
	return f(r)
}

// device is what every simulated device offers, whatever its transport.
type device interface {
	ID() string
	Start(ctx context.Context) error
	Reboot(ctx context.Context) error
	PowerCycle(ctx context.Context) error
	Stop()
	Online() bool
	Status() string
	// Done is closed when the current session ends.
	Done() <-chan struct{}
}

var (
	_ device = (*sim.Device)(nil)
	_ device = (*sim.MQTTDevice)(nil)
)

// modelOf is the credential model a device runs.
func modelOf(d device) *devicemodel.Device {
	switch d := d.(type) {
	case *sim.Device:
		return simmodel.Of(d)
	case *sim.MQTTDevice:
		return simmodel.Of(d)
	}
	return nil
}

func (w *world) device(name string) (device, error) {
	d, ok := w.devices[name]
	if !ok {
		names := make([]string, 0, len(w.devices))
		for n := range w.devices {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("no simulated device %q (have: %v); create it with `sim add`", name, names)
	}
	return d, nil
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
