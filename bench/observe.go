package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
)

// WorkloadObserve is the name of the observe workload.
const WorkloadObserve = "observe"

// ObserveOptions configures Observe.
type ObserveOptions struct {
	// Devices observe one LightDB State path each (required, > 0).
	Devices int
	// Concurrency bounds handshakes in progress while they connect
	// (default DefaultFleetConcurrency).
	Concurrency int
	// Path is the LightDB State path observed (default "desired/bench").
	Path string
	// NonConfirmable has the cloud send NON notifications (default CON,
	// which every device acknowledges).
	NonConfirmable bool
	// Timeout bounds the wait for the last notification (default 30 s).
	Timeout          time.Duration
	HandshakeTimeout time.Duration
	Rand             io.Reader
	// BeforeChange, when set, runs once every device observes, just
	// before the change (e.g. to start a CPU profile).
	BeforeChange func()
}

// ObserveResult is what Observe measured: the time from the operator's
// change until each device had its notification.
type ObserveResult struct {
	Workload  string           `json:"workload"`
	Devices   int              `json:"devices"`
	Observing int              `json:"observing"`
	Notified  int              `json:"notified"`
	Type      string           `json:"notification_type"`
	Latency   Summary          `json:"latency"`
	LastMS    float64          `json:"last_ms"`
	PerSecond float64          `json:"notifications_per_second"`
	Errors    map[string]int64 `json:"errors,omitempty"`
}

func (r ObserveResult) String() string {
	return fmt.Sprintf("observe: %d devices observing %d, %d notified (%s); after the change p50 %s p99 %s last %.1f ms; %.0f notifications/s; errors %v",
		r.Devices, r.Observing, r.Notified, r.Type, r.Latency.P50, r.Latency.P99, r.LastMS, r.PerSecond, r.Errors)
}

// observeRequest encodes a CON GET of .d/path with Observe: 0.
func observeRequest(mid uint16, token []byte, path string) ([]byte, error) {
	b, err := coapRequest(mid, token, "")
	if err != nil {
		return nil, err
	}
	b = append(b, 0x60) // Observe (6), empty: 0
	last := 6
	for _, seg := range append([]string{".d"}, splitPath(path)...) {
		if len(seg) > 255 {
			return nil, fmt.Errorf("%w: path segment of %d bytes", ErrCoAP, len(seg))
		}
		b = appendOption(b, coapOptURIPath-last, len(seg))
		b = append(b, seg...)
		last = coapOptURIPath
	}
	return b, nil
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > start {
				out = append(out, p[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// observer is one device of the workload.
type benchObserver struct {
	c     *dtlspsk.Conn
	token []byte
}

// Observe starts an embedded cloud, connects Devices devices on the load
// generator's DTLS client, has each observe .d/Path (GET, Observe: 0),
// then makes one operator change that concerns them all (a project-wide
// Cloud.NotifyObservers: every observer's representation is rendered from
// its device's LightDB State and sent) and measures, per device, the time
// until its notification arrived.
func Observe(ctx context.Context, o ObserveOptions) (ObserveResult, error) {
	if o.Devices <= 0 {
		return ObserveResult{}, fmt.Errorf("%w: observe needs Devices > 0", ErrOptions)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultFleetConcurrency
	}
	if o.Path == "" {
		o.Path = "desired/bench"
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(o.Rand, secret); err != nil {
		return ObserveResult{}, fmt.Errorf("bench: observe: %w", err)
	}
	c, closeCloud, err := EmbeddedCloud(cloud.Options{MQTTAddr: "-", HTTPSAddr: "-", NonConfirmableNotify: o.NonConfirmable, IdleTimeout: 10 * time.Minute})
	if err != nil {
		return ObserveResult{}, err
	}
	defer closeCloud()
	reg := c.Registry
	if err := ensureProjectIn(ctx, reg, Project); err != nil {
		return ObserveResult{}, err
	}
	name := func(k int) string { return fmt.Sprintf("obs-%07d", k) }
	ident := func(k int) string { return registry.PSKIdentity(name(k), Project) }
	q, err := startPrep(ctx, o.Devices, 0, 0, func(ctx context.Context, k int) (any, error) {
		psk := derivePSK(secret, ident(k))
		if err := ensureDeviceIn(ctx, reg, Project, name(k)); err != nil {
			return nil, err
		}
		if _, err := reg.AddPSK(ctx, Project, name(k), ident(k), psk); err != nil && !errors.Is(err, registry.ErrExists) {
			return nil, fmt.Errorf("psk for %s: %w", name(k), err)
		}
		return psk, nil
	})
	if err != nil {
		return ObserveResult{}, fmt.Errorf("bench: observe: prepare: %w", err)
	}
	psks := make([][]byte, o.Devices)
	for k := range psks {
		v, err := q.take(ctx, k)
		if err != nil {
			q.stop()
			return ObserveResult{}, err
		}
		psks[k] = v.([]byte)
	}
	q.stop()

	r := ObserveResult{Workload: WorkloadObserve, Devices: o.Devices, Type: "CON"}
	if o.NonConfirmable {
		r.Type = "NON"
	}
	addr := c.Addrs().CoAPS
	obs := make([]*benchObserver, o.Devices)
	errs := map[string]int64{}
	var mu sync.Mutex
	fail := func(what string, err error) {
		mu.Lock()
		errs[what+" "+DefaultClassify(err)]++
		mu.Unlock()
	}
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for k := 0; k < o.Devices && ctx.Err() == nil; k++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer func() { <-sem }()
			hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
			defer cancel()
			conn, err := dtlspsk.Dial(hctx, addr, &dtlspsk.Config{Identity: ident(k), Key: psks[k], CipherSuites: leanSuites})
			if err != nil {
				fail("connect", err)
				return
			}
			token := binary.BigEndian.AppendUint32(nil, uint32(k))
			if err := observeRegister(hctx, conn, token, o.Path); err != nil {
				_ = conn.Close()
				fail("register", err)
				return
			}
			obs[k] = &benchObserver{c: conn, token: token}
		}(k)
	}
	wg.Wait()
	defer func() {
		for _, b := range obs {
			if b != nil {
				_ = b.c.Close()
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	hist := NewHistogram()
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var start time.Time
	ready := make(chan struct{})
	for _, b := range obs {
		if b == nil {
			continue
		}
		r.Observing++
		wg.Add(1)
		go func(b *benchObserver) {
			defer wg.Done()
			<-ready
			err := awaitNotification(wctx, b.c, b.token)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs["notification "+DefaultClassify(err)]++
				return
			}
			hist.Record(d)
		}(b)
	}
	if o.BeforeChange != nil {
		o.BeforeChange()
	}
	start = time.Now()
	close(ready)
	c.NotifyObservers(Project, "", ".d/"+o.Path)
	wg.Wait()
	r.Notified = int(hist.Count())
	r.Latency = hist.Summary()
	r.LastMS = float64(r.Latency.Max) / float64(time.Millisecond)
	if r.Latency.Max > 0 {
		r.PerSecond = float64(r.Notified) / r.Latency.Max.Seconds()
	}
	if len(errs) > 0 {
		r.Errors = errs
	}
	return r, nil
}

// observeRegister sends the registration and waits for its 2.05 answer.
func observeRegister(ctx context.Context, conn *dtlspsk.Conn, token []byte, path string) error {
	req, err := observeRequest(1, token, path)
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(d)
	}
	defer conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write(req); err != nil {
		return err
	}
	buf := make([]byte, coapMaxResponse)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		m, err := parseCoAPResponse(buf[:n])
		if err != nil {
			return err
		}
		if m.mid == 1 && m.typ == coapACK {
			if m.code != 0x45 {
				return fmt.Errorf("%w: registration answered %d.%02d", ErrCoAP, m.code>>5, m.code&0x1f)
			}
			return nil
		}
	}
}

// awaitNotification reads until a notification with token arrives and
// acknowledges it when it is confirmable.
func awaitNotification(ctx context.Context, conn *dtlspsk.Conn, token []byte) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, coapMaxResponse)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		m, err := parseCoAPResponse(buf[:n])
		if err != nil {
			return err
		}
		if string(m.token) != string(token) {
			continue
		}
		if m.typ == coapCON {
			ack := binary.BigEndian.AppendUint16([]byte{0x60, 0}, m.mid)
			if _, err := conn.Write(ack); err != nil {
				return err
			}
		}
		return nil
	}
}
