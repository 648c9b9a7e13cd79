package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/sim"
)

// Onboarding modes.
const (
	// OnboardJITP: a new certificate from a CA registered for JITP
	// connects over MQTT/TLS, is closed without CONNACK, reconnects and
	// gets CONNACK 0.
	OnboardJITP = "jitp"
	// OnboardEST: a new device opens a DTLS PSK session and enrolls with
	// EST-coaps sen.
	OnboardEST = "est"
)

// Workload names of this file and fleet.go.
const (
	WorkloadOnboard = "onboard"
	WorkloadFleet   = "fleet"
)

// DefaultOnboardPrefix prefixes onboarded device ids when
// OnboardOptions.Prefix is empty.
const DefaultOnboardPrefix = "onboard"

// Errors of the onboard and fleet workloads.
var (
	// ErrExhausted: an operation asked for a device beyond the prepared
	// ones (more operations than Devices).
	ErrExhausted = errors.New("bench: no prepared device left")
	// ErrJITP: the broker did not behave as JITP: it accepted the first
	// connect of a new certificate, or closed the retry without CONNACK.
	ErrJITP = errors.New("bench: not a JITP onboarding")
)

// OnboardOptions configures the onboard workload.
type OnboardOptions struct {
	// Mode is OnboardJITP (default) or OnboardEST.
	Mode string
	// Devices is the size of the whole fleet: the number of operations
	// expected over all shards, warmup included (required, > 0). Each
	// operation onboards a new device; operation i of this shard onboards
	// device number first+i of Shard.Devices(Devices).
	Devices int
	// Shard selects this process's slice of the device numbers.
	Shard Shard
	// Cloud, when set, is the target and its registry and CA are used for
	// the setup (JITP CA registration, PSKs). Otherwise Target is used;
	// when both are empty an embedded cloud is started and cleanup closes
	// it.
	Cloud *cloud.Cloud
	// Target is an external server: host:port of MQTT/TLS (jitp) or
	// DTLS/CoAP (est). Its setup is the caller's: register CA for JITP
	// (jitp) or give every device its PSK (est, see PSKSecret).
	Target string
	// Registry, with Target, is the target's registry, for the setup.
	Registry *registry.Registry
	// CA issues the device certificates (jitp), with no O in their
	// subject. Default: a fresh ECDSA P-256 root, registered for JITP when
	// a registry is known.
	CA *cloud.CA
	// RootCAs verifies the server certificate. Default: the embedded
	// cloud's root; with an external Target and no RootCAs the server
	// certificate is not verified.
	RootCAs *x509.CertPool
	// Project the devices belong to (default Project).
	Project string
	// Prefix of the device ids: Prefix-NNNNNNN (default
	// DefaultOnboardPrefix).
	Prefix string
	// PSKSecret derives every device's PSK (est): HMAC-SHA256(PSKSecret,
	// identity), first 16 bytes. Default: random (then the target must be
	// set up through Cloud or Registry).
	PSKSecret []byte
	// Ahead is how many devices are prepared (key, certificate or CSR,
	// registry setup) before Onboard returns; the rest are prepared in the
	// background, never more than Ahead before the operation that uses
	// them. Zero prepares the whole slice first, so that preparation never
	// competes with the measured operations.
	Ahead int
	// Workers prepare devices in parallel (default GOMAXPROCS).
	Workers int
	Now     func() time.Time
	Rand    io.Reader
}

// Onboard prepares the onboard workload. Its Op (for Options.Op)
// onboards one new device per operation; Cleanup stops the background
// preparation and closes an embedded cloud. The registry writes of
// onboarding (JITP: certificate registration, thing creation, attachment,
// activation; EST: issuance and certificate registration) are part of the
// measured latency; preparation (keys, certificates or CSRs, PSK
// registration) is not. Operations beyond the prepared devices fail with
// ErrExhausted, so size Devices to rate × (warmup + duration) or more.
func Onboard(ctx context.Context, o OnboardOptions) (*Workload, error) {
	if o.Mode == "" {
		o.Mode = OnboardJITP
	}
	if o.Mode != OnboardJITP && o.Mode != OnboardEST {
		return nil, fmt.Errorf("%w: onboard mode %q (want %s or %s)", ErrOptions, o.Mode, OnboardJITP, OnboardEST)
	}
	if o.Devices <= 0 {
		return nil, fmt.Errorf("%w: onboard needs Devices > 0", ErrOptions)
	}
	if o.Project == "" {
		o.Project = Project
	}
	if o.Prefix == "" {
		o.Prefix = DefaultOnboardPrefix
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if len(o.PSKSecret) == 0 {
		o.PSKSecret = make([]byte, 32)
		if _, err := io.ReadFull(o.Rand, o.PSKSecret); err != nil {
			return nil, fmt.Errorf("bench: onboard: %w", err)
		}
	}
	t, err := openTarget(o.Cloud, o.Target, o.Registry, o.RootCAs, o.Mode == OnboardJITP, o.Now, o.Rand)
	if err != nil {
		return nil, err
	}
	if o.Mode == OnboardJITP {
		if err := t.pinServer(ctx); err != nil {
			t.close()
			return nil, err
		}
	}
	if t.reg != nil {
		if err := ensureProjectIn(ctx, t.reg, o.Project); err != nil {
			t.close()
			return nil, err
		}
	}
	first, count := o.Shard.Devices(o.Devices)
	if count == 0 {
		t.close()
		return nil, fmt.Errorf("%w: shard %s of %d devices is empty", ErrOptions, o.Shard, o.Devices)
	}
	name := func(k int) string { return fmt.Sprintf("%s-%07d", o.Prefix, first+k) }

	var prep func(ctx context.Context, k int) (any, error)
	var run func(ctx context.Context, k int, v any) error
	switch o.Mode {
	case OnboardJITP:
		ca := o.CA
		if ca == nil {
			ca, err = cloud.NewCA(cloud.CAOptions{Name: "credloop bench JITP CA", NoIntermediate: true, Now: o.Now, Rand: o.Rand})
			if err != nil {
				t.close()
				return nil, fmt.Errorf("bench: onboard: %w", err)
			}
			if t.reg != nil {
				if _, err := t.reg.RegisterCA(ctx, o.Project, ca.Issuer().Raw, registry.CAModeJITP, ""); err != nil {
					t.close()
					return nil, fmt.Errorf("bench: onboard: register JITP CA: %w", err)
				}
			}
		}
		prep = func(_ context.Context, k int) (any, error) {
			// The chain is the leaf, then the intermediate when there is one.
			dc, err := ca.IssueDevice("", name(k))
			if err != nil {
				return nil, err
			}
			return dc.TLS, nil
		}
		run = func(ctx context.Context, k int, v any) error {
			return jitpOnboard(ctx, t.mqtt, t.tlsConfig(v.(tls.Certificate)), name(k))
		}
	case OnboardEST:
		type estDevice struct {
			psk []byte
			csr []byte
		}
		prep = func(ctx context.Context, k int) (any, error) {
			dev := name(k)
			id := registry.PSKIdentity(dev, o.Project)
			psk := derivePSK(o.PSKSecret, id)
			if t.reg != nil {
				if err := ensureDeviceIn(ctx, t.reg, o.Project, dev); err != nil {
					return nil, err
				}
				if _, err := t.reg.AddPSK(ctx, o.Project, dev, id, psk); err != nil && !errors.Is(err, registry.ErrExists) {
					return nil, fmt.Errorf("psk for %s: %w", dev, err)
				}
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
			if err != nil {
				return nil, err
			}
			csr, err := x509.CreateCertificateRequest(o.Rand, &x509.CertificateRequest{Subject: pkix.Name{CommonName: dev, Organization: []string{o.Project}}}, key)
			if err != nil {
				return nil, err
			}
			return estDevice{psk: psk, csr: csr}, nil
		}
		run = func(ctx context.Context, k int, v any) error {
			d := v.(estDevice)
			s, err := sim.Dial(ctx, sim.DialOptions{Addr: t.coaps, Credential: sim.Credential{PSKIdentity: registry.PSKIdentity(name(k), o.Project), PSK: d.psk}, HandshakeTimeout: handshakeTimeout(ctx)})
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.Enroll(ctx, d.csr, false)
			return err
		}
	}
	q, err := startPrep(ctx, count, o.Ahead, o.Workers, prep)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("bench: onboard: prepare: %w", err)
	}
	w := &Workload{Name: WorkloadOnboard, Devices: count}
	w.Op = func(ctx context.Context, i int64) error {
		if i < 0 || i >= int64(count) {
			return fmt.Errorf("%w: operation %d, %d prepared", ErrExhausted, i, count)
		}
		v, err := q.take(ctx, int(i))
		if err != nil {
			return err
		}
		return run(ctx, int(i), v)
	}
	w.Cleanup = func() error {
		q.stop()
		t.close()
		return nil
	}
	if o.Mode == OnboardJITP {
		// Two mutual handshakes per device.
		w.CeilingName = "mutual_handshake / 2"
		w.Ceiling = func(c Ceilings) float64 { return c.MutualHandshake / 2 }
	} else {
		w.CeilingName = "csr_issue, all cores"
		w.Ceiling = csrIssueCores
	}
	return w, nil
}

// handshakeTimeout is what remains of ctx's deadline (0: the default).
func handshakeTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Nanosecond
	}
	return 0
}

// derivePSK is HMAC-SHA256(secret, identity) cut to 16 bytes.
func derivePSK(secret []byte, identity string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(identity))
	return m.Sum(nil)[:16]
}

func ensureProjectIn(ctx context.Context, reg *registry.Registry, project string) error {
	if _, err := reg.CreateProject(ctx, project); err != nil && !errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("bench: project %s: %w", project, err)
	}
	return nil
}

func ensureDeviceIn(ctx context.Context, reg *registry.Registry, project, dev string) error {
	if _, err := reg.CreateDevice(ctx, project, dev); err != nil && !errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("device %s: %w", dev, err)
	}
	return nil
}

// target is where a workload connects, and what it knows about it.
type target struct {
	mqtt, coaps string
	reg         *registry.Registry
	roots       *x509.CertPool
	serverName  string // with roots from the cloud: its certificate's name
	pin         []byte // the server's certificate, once verified
	embedded    bool
	close       func()
}

// tlsConfig is a device's TLS configuration: TLS 1.2 and P-256, as
// device stacks speak them; the server's chain verified against roots,
// or, once pinServer has run, its certificate pinned.
func (t *target) tlsConfig(cert tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		Certificates:       []tls.Certificate{cert},
		RootCAs:            t.roots,
		ServerName:         t.serverName,
		InsecureSkipVerify: t.roots == nil,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS12,
		CurvePreferences:   []tls.CurveID{tls.CurveP256}, // what P-256 accelerators (CC310, ATECC608) give devices
	}
	if t.pin != nil {
		pinTLS(cfg, t.pin)
	}
	return cfg
}

// pinServer verifies the MQTT server's chain once and pins its
// certificate, so that operations measure the server rather than the
// client re-verifying the same chain. The probe presents a throwaway
// certificate the server may well refuse: only the server's half of the
// handshake matters.
func (t *target) pinServer(ctx context.Context) error {
	if t.roots == nil || t.mqtt == "" {
		return nil
	}
	ca, err := fakeca.NewRoot("credloop bench probe", fakeca.ECDSAP256, time.Hour, fakeca.Options{})
	if err != nil {
		return fmt.Errorf("bench: probe certificate: %w", err)
	}
	cfg := t.tlsConfig(tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.Key, Leaf: ca.Cert})
	var leaf []byte
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			leaf = cs.PeerCertificates[0].Raw
		}
		return nil
	}
	d := tls.Dialer{Config: cfg}
	pctx, cancel := context.WithTimeout(ctx, DefaultOpTimeout)
	defer cancel()
	c, err := d.DialContext(pctx, "tcp", t.mqtt)
	if c != nil {
		c.Close()
	}
	if leaf == nil {
		return fmt.Errorf("bench: verify the server certificate: %w", err)
	}
	t.pin = leaf
	return nil
}

// openTarget resolves the target: c, else addr (for the MQTT endpoint when
// mqtt, the CoAP one otherwise), else an embedded cloud started here.
func openTarget(c *cloud.Cloud, addr string, reg *registry.Registry, roots *x509.CertPool, mqtt bool,
	now func() time.Time, rnd io.Reader) (*target, error) {
	t := &target{reg: reg, roots: roots, close: func() {}}
	if c == nil && addr == "" {
		o := cloud.Options{HTTPSAddr: "-", Now: now, Rand: rnd, IdleTimeout: time.Hour}
		if mqtt {
			o.CoAPAddr = "-"
		} else {
			o.MQTTAddr = "-"
		}
		var (
			err      error
			closeAll func() error
		)
		if c, closeAll, err = EmbeddedCloud(o); err != nil {
			return nil, err
		}
		t.embedded = true
		t.close = func() { _ = closeAll() }
	}
	if c != nil {
		a := c.Addrs()
		t.mqtt, t.coaps, t.reg = a.MQTTS, a.CoAPS, c.Registry
		if t.roots == nil {
			t.roots = x509.NewCertPool()
			t.roots.AddCert(c.CA().Root())
		}
	} else {
		t.mqtt, t.coaps = addr, addr
	}
	if (mqtt && t.mqtt == "") || (!mqtt && t.coaps == "") {
		t.close()
		return nil, fmt.Errorf("%w: the cloud has no endpoint for this workload", ErrOptions)
	}
	if t.roots != nil {
		t.serverName = "localhost" // the cloud's server certificate names it
	}
	return t, nil
}

// jitpOnboard connects twice: the first connect must be closed without
// CONNACK, the second must get CONNACK 0.
func jitpOnboard(ctx context.Context, addr string, cfg *tls.Config, clientID string) error {
	accepted, err := jitpConnect(ctx, addr, cfg, clientID)
	if err != nil {
		return fmt.Errorf("bench: jitp first connect: %w", err)
	}
	if accepted {
		return fmt.Errorf("%w: first connect of a new certificate was accepted", ErrJITP)
	}
	accepted, err = jitpConnect(ctx, addr, cfg, clientID)
	if err != nil {
		return fmt.Errorf("bench: jitp retry: %w", err)
	}
	if !accepted {
		return fmt.Errorf("%w: retry closed without CONNACK", ErrJITP)
	}
	return nil
}

// jitpConnect sends an MQTT 3.1.1 CONNECT over TLS and reports whether
// CONNACK 0 came back (true, then DISCONNECT is sent) or the server closed
// the connection without CONNACK (false). Any other answer is an error.
func jitpConnect(ctx context.Context, addr string, cfg *tls.Config, clientID string) (bool, error) {
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(jitpConnectPacket(clientID)); err != nil {
		return false, ctxErr(ctx, err)
	}
	var ack [4]byte
	n, err := io.ReadFull(nc, ack[:])
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return false, nil
	case err != nil:
		return false, ctxErr(ctx, err)
	}
	if err := parseConnack(ack[:]); err != nil {
		return false, err
	}
	_, _ = nc.Write([]byte{0xe0, 0}) // DISCONNECT
	return true, nil
}

// jitpConnectPacket is an MQTT 3.1.1 CONNECT: clean session, keepalive
// 60 s, client id as given (at most 65535 bytes, which device ids are).
func jitpConnectPacket(clientID string) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(clientID) >> 8), byte(len(clientID))}
	p := []byte{0x10}
	for rem := len(vh) + len(clientID); ; {
		b := byte(rem % 128)
		rem /= 128
		if rem > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if rem == 0 {
			break
		}
	}
	return append(append(p, vh...), clientID...)
}

// ctxErr prefers the context's error to the deadline it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ctx.Err(), err)
	}
	return err
}

// prepQueue prepares items 0..n-1 in order with a bounded lead over their
// consumers.
type prepQueue struct {
	slots  []chan any
	errs   []error
	lead   chan struct{} // nil: no bound
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPrep prepares the first ahead items (all when ahead is 0 or >= n)
// before returning and the rest in the background.
func startPrep(ctx context.Context, n, ahead, workers int, prep func(context.Context, int) (any, error)) (*prepQueue, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if ahead <= 0 || ahead > n {
		ahead = n
	}
	pctx, cancel := context.WithCancel(context.Background())
	q := &prepQueue{slots: make([]chan any, n), errs: make([]error, n), cancel: cancel}
	for i := range q.slots {
		q.slots[i] = make(chan any, 1)
	}
	if ahead < n {
		q.lead = make(chan struct{}, ahead)
	}
	var (
		next     atomic.Int64
		prepared atomic.Int64
		firstErr atomic.Value
		ready    = make(chan struct{})
	)
	for w := 0; w < workers; w++ {
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			for pctx.Err() == nil {
				// The lead token is taken before the index, so that the
				// prepared items are always the lowest unconsumed ones.
				if q.lead != nil {
					select {
					case q.lead <- struct{}{}:
					case <-pctx.Done():
						return
					}
				}
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				v, err := prep(pctx, k)
				if err != nil {
					q.errs[k] = err
					firstErr.CompareAndSwap(nil, err)
				}
				q.slots[k] <- v
				if prepared.Add(1) == int64(ahead) {
					close(ready)
				}
			}
		}()
	}
	select {
	case <-ready:
	case <-ctx.Done():
		q.stop()
		return nil, ctx.Err()
	}
	if err, _ := firstErr.Load().(error); err != nil {
		q.stop()
		return nil, err
	}
	return q, nil
}

// take waits for item k, which each k is taken once.
func (q *prepQueue) take(ctx context.Context, k int) (any, error) {
	select {
	case v := <-q.slots[k]:
		if q.lead != nil {
			<-q.lead
		}
		if err := q.errs[k]; err != nil {
			return nil, fmt.Errorf("bench: prepare item %d: %w", k, err)
		}
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *prepQueue) stop() {
	q.cancel()
	q.wg.Wait()
}
