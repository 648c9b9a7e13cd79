package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/sim"
)

// Defaults used when the FleetOptions field is zero.
const (
	DefaultFleetConcurrency = 64
	DefaultFleetPrefix      = "fleet"
)

// FleetOptions configures Fleet.
type FleetOptions struct {
	// Devices is the fleet size over all shards (required, > 0); Shard
	// selects this process's slice.
	Devices int
	Shard   Shard
	// Concurrency bounds handshakes in progress (default
	// DefaultFleetConcurrency).
	Concurrency int
	// Cloud, Target and Registry choose the server as in OnboardOptions;
	// with neither Cloud nor Target an embedded cloud is started and
	// closed before Fleet returns.
	Cloud    *cloud.Cloud
	Target   string
	Registry *registry.Registry
	// Project and Prefix name the devices: Prefix-NNNNNNN@Project is the
	// PSK identity (defaults Project and DefaultFleetPrefix).
	Project string
	Prefix  string
	// PSKSecret derives every device's PSK as in OnboardOptions.
	PSKSecret []byte
	// HandshakeTimeout bounds each connect (default 10 s).
	HandshakeTimeout time.Duration
	// Hold keeps the fleet connected this long after the last connect
	// before measuring; with Keepalive > 0, every session sends a CoAP
	// ping each Keepalive meanwhile (from one goroutine for the fleet);
	// pings that go unanswered count in Errors as "keepalive <cause>".
	Hold      time.Duration
	Keepalive time.Duration
	// PionClient connects the devices with pion/dtls and a go-coap client
	// (sim.Dial, what scenarios use: 6 goroutines per device) instead of
	// the load generator's own client (internal/dtlspsk: no goroutine per
	// device), so the figures hold mostly the server's share.
	PionClient bool
	Rand       io.Reader
}

// fleetConn is one connected device of a fleet.
type fleetConn interface {
	Keepalive(ctx context.Context) error
	Close() error
}

// leanConn is a fleet device on the load generator's own DTLS client.
type leanConn struct {
	c   *dtlspsk.Conn
	mid uint16
}

// Keepalive sends a CoAP ping (CON 0.00) and waits for the Reset.
func (l *leanConn) Keepalive(ctx context.Context) error {
	l.mid++
	return coapPing(ctx, l.c, l.mid)
}

func (l *leanConn) Close() error { return l.c.Close() }

// simConn is a fleet device on sim.Dial.
type simConn struct{ s *sim.Session }

func (c simConn) Keepalive(ctx context.Context) error { return c.s.Keepalive(ctx) }

func (c simConn) Close() error {
	err := c.s.Close()
	select {
	case <-c.s.Done():
	case <-time.After(5 * time.Second):
	}
	return err
}

// dialFleet connects one fleet device.
func dialFleet(ctx context.Context, addr, identity string, psk []byte, timeout time.Duration, pion bool) (fleetConn, error) {
	if pion {
		s, err := sim.Dial(ctx, sim.DialOptions{Addr: addr, HandshakeTimeout: timeout,
			Credential: sim.Credential{PSKIdentity: identity, PSK: psk}})
		if err != nil {
			return nil, err
		}
		return simConn{s}, nil
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dtlspsk.Dial(hctx, addr, &dtlspsk.Config{Identity: identity, Key: psk, CipherSuites: leanSuites})
	if err != nil {
		return nil, err
	}
	return &leanConn{c: c}, nil
}

// FleetResult is what Fleet measured. Memory and goroutine figures are
// differences between the process with the whole slice connected and the
// same process before the first connect (target set up, PSKs registered),
// divided by the devices connected. With Embedded, client and server run
// in this one process and the figures hold both sides of each connection.
type FleetResult struct {
	Workload  string           `json:"workload"`
	Shard     string           `json:"shard,omitempty"`
	Devices   int              `json:"devices"`   // in this shard
	Connected int              `json:"connected"` // sessions established
	Errors    map[string]int64 `json:"errors,omitempty"`
	Embedded  bool             `json:"embedded"`
	Client    string           `json:"client"`   // the devices' DTLS stack
	Measured  string           `json:"measured"` // "client+server in one process" or "client only"

	// Connect latency per device (handshake), and the whole ramp.
	ConnectSummary Summary    `json:"connect"`
	Connect        *Histogram `json:"connect_histogram"`
	RampSeconds    float64    `json:"ramp_seconds"`
	ConnectRate    float64    `json:"connect_rate"` // connected / ramp

	// Process figures before the first connect and with all connected:
	// heap = runtime HeapInuse + StackInuse after a GC; rss = VmRSS from
	// /proc/self/status (0 where there is none).
	HeapBefore       uint64 `json:"heap_stack_before_bytes"`
	HeapAfter        uint64 `json:"heap_stack_after_bytes"`
	RSSBefore        uint64 `json:"rss_before_bytes"`
	RSSAfter         uint64 `json:"rss_after_bytes"`
	GoroutinesBefore int    `json:"goroutines_before"`
	GoroutinesAfter  int    `json:"goroutines_after"`

	KiBPerDevice        float64 `json:"kib_per_device"`     // heap+stack
	RSSKiBPerDevice     float64 `json:"rss_kib_per_device"` // VmRSS
	GoroutinesPerDevice float64 `json:"goroutines_per_device"`
}

// String is a one-line summary.
func (r FleetResult) String() string {
	return fmt.Sprintf("fleet: %d/%d connected (%s; devices on %s), connect p50 %s p99 %s, %.1f KiB/device heap+stack, %.1f KiB/device RSS, %.2f goroutines/device",
		r.Connected, r.Devices, r.Measured, r.Client, r.ConnectSummary.P50, r.ConnectSummary.P99, r.KiBPerDevice, r.RSSKiBPerDevice, r.GoroutinesPerDevice)
}

// Fleet connects this shard's devices over DTLS PSK, at most Concurrency
// at a time, keeps every session open, measures the process with all of
// them connected, then closes them (and an embedded cloud) and returns.
// Failed connects are counted by cause in Errors; the figures per device
// are over the devices that connected. It returns an error only when
// nothing could be measured (bad options, setup failure, ctx done).
func Fleet(ctx context.Context, o FleetOptions) (FleetResult, error) {
	if o.Devices <= 0 {
		return FleetResult{}, fmt.Errorf("%w: fleet needs Devices > 0", ErrOptions)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultFleetConcurrency
	}
	if o.Project == "" {
		o.Project = Project
	}
	if o.Prefix == "" {
		o.Prefix = DefaultFleetPrefix
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if len(o.PSKSecret) == 0 {
		o.PSKSecret = make([]byte, 32)
		if _, err := io.ReadFull(o.Rand, o.PSKSecret); err != nil {
			return FleetResult{}, fmt.Errorf("bench: fleet: %w", err)
		}
	}
	first, count := o.Shard.Devices(o.Devices)
	if count == 0 {
		return FleetResult{}, fmt.Errorf("%w: shard %s of %d devices is empty", ErrOptions, o.Shard, o.Devices)
	}
	t, err := openTarget(o.Cloud, o.Target, o.Registry, nil, false, time.Now, o.Rand)
	if err != nil {
		return FleetResult{}, err
	}
	defer t.close()
	if t.reg != nil {
		if err := ensureProjectIn(ctx, t.reg, o.Project); err != nil {
			return FleetResult{}, err
		}
	}
	name := func(k int) string { return fmt.Sprintf("%s-%07d", o.Prefix, first+k) }
	ident := func(k int) string { return registry.PSKIdentity(name(k), o.Project) }
	q, err := startPrep(ctx, count, 0, 0, func(ctx context.Context, k int) (any, error) {
		psk := derivePSK(o.PSKSecret, ident(k))
		if t.reg != nil {
			if err := ensureDeviceIn(ctx, t.reg, o.Project, name(k)); err != nil {
				return nil, err
			}
			if _, err := t.reg.AddPSK(ctx, o.Project, name(k), ident(k), psk); err != nil && !errors.Is(err, registry.ErrExists) {
				return nil, fmt.Errorf("psk for %s: %w", name(k), err)
			}
		}
		return psk, nil
	})
	if err != nil {
		return FleetResult{}, fmt.Errorf("bench: fleet: prepare: %w", err)
	}
	psks := make([][]byte, count)
	for k := range psks {
		v, err := q.take(ctx, k)
		if err != nil {
			q.stop()
			return FleetResult{}, err
		}
		psks[k] = v.([]byte)
	}
	q.stop()

	r := FleetResult{Workload: WorkloadFleet, Shard: o.Shard.label(), Devices: count, Embedded: t.embedded || o.Cloud != nil,
		Connect: NewHistogram()}
	r.Client = "credloop dtlspsk (no goroutine per device)"
	if o.PionClient {
		r.Client = "pion/dtls + go-coap (sim.Dial)"
	}
	r.Measured = "client only"
	if r.Embedded {
		r.Measured = "client+server in one process"
	}
	r.HeapBefore, r.RSSBefore, r.GoroutinesBefore = processFootprint()

	sessions := make([]fleetConn, count)
	errs := map[string]int64{}
	var mu sync.Mutex
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for k := 0; k < count && ctx.Err() == nil; k++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer func() { <-sem }()
			began := time.Now()
			s, err := dialFleet(ctx, t.coaps, ident(k), psks[k], o.HandshakeTimeout, o.PionClient)
			d := time.Since(began)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[DefaultClassify(err)]++
				return
			}
			sessions[k] = s
			r.Connect.Record(d)
		}(k)
	}
	wg.Wait()
	ramp := time.Since(start)
	defer closeSessions(sessions, o.Concurrency)
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if o.Hold > 0 {
		if err := hold(ctx, sessions, o.Hold, o.Keepalive, errs); err != nil {
			return r, err
		}
	}
	r.HeapAfter, r.RSSAfter, r.GoroutinesAfter = processFootprint()
	r.Connected = int(r.Connect.Count())
	if len(errs) > 0 {
		r.Errors = errs
	}
	r.ConnectSummary = r.Connect.Summary()
	r.RampSeconds = ramp.Seconds()
	if r.RampSeconds > 0 {
		r.ConnectRate = float64(r.Connected) / r.RampSeconds
	}
	if n := float64(r.Connected); n > 0 {
		r.KiBPerDevice = (float64(r.HeapAfter) - float64(r.HeapBefore)) / 1024 / n
		r.RSSKiBPerDevice = (float64(r.RSSAfter) - float64(r.RSSBefore)) / 1024 / n
		r.GoroutinesPerDevice = float64(r.GoroutinesAfter-r.GoroutinesBefore) / n
	}
	return r, nil
}

// hold waits d, pinging every session each keepalive (when > 0).
func hold(ctx context.Context, sessions []fleetConn, d, keepalive time.Duration, errs map[string]int64) error {
	end := time.NewTimer(d)
	defer end.Stop()
	var tick <-chan time.Time
	if keepalive > 0 {
		tk := time.NewTicker(keepalive)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end.C:
			return nil
		case <-tick:
			for _, s := range sessions {
				if s == nil {
					continue
				}
				kctx, cancel := context.WithTimeout(ctx, time.Second)
				if err := s.Keepalive(kctx); err != nil && ctx.Err() == nil {
					errs["keepalive "+DefaultClassify(err)]++
				}
				cancel()
			}
		}
	}
}

// closeSessions closes every session, n at a time.
func closeSessions(sessions []fleetConn, n int) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, s := range sessions {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = s.Close()
		}()
	}
	wg.Wait()
}

// processFootprint returns HeapInuse+StackInuse after a GC, VmRSS and the
// goroutine count.
func processFootprint() (heapStack, rss uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse, vmRSS(), runtime.NumGoroutine()
}

// vmRSS reads VmRSS from /proc/self/status; 0 when unavailable.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseVmRSS(b)
}

// parseVmRSS finds "VmRSS: N kB" in a /proc/PID/status text and returns N
// KiB in bytes; 0 when it is missing or malformed.
func parseVmRSS(status []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "123456 kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > 1<<50 {
			return 0
		}
		return kb * 1024
	}
	return 0
}
