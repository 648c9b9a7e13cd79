// Package mqtt is the cloud's AWS-IoT-style MQTT/TLS endpoint: mutual TLS against registered CAs with JITP and JITR, fleet provisioning by claim, per-thing ACLs, rotation and revocation.
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Peer roles.
const (
	RoleDevice = "device" // a thing, with a registered ACTIVE certificate
	RoleClaim  = "claim"  // a fleet-provisioning claim certificate
)

// Errors.
var (
	// ErrNotConnected: Rotate found no session of the device subscribed
	// to its rotation topic before its context ended.
	ErrNotConnected = errors.New("mqtt: device not connected")
	// ErrClosed: the server is closed.
	ErrClosed = errors.New("mqtt: server closed")
)

// Peer is the authenticated identity behind an MQTT connection.
type Peer struct {
	Project string
	// Device is the thing name; "" for a claim certificate.
	Device string
	// Role is RoleDevice or RoleClaim.
	Role string
	// Credential is the certificateId: hex SHA-256 of the leaf's DER.
	Credential string
	// CredentialID is the registry id of the certificate (0 for claim).
	CredentialID int64
	// CA is the caCertificateId of the registered CA the chain verified
	// to, "" for a certificate the cloud issued itself.
	CA string
	// Chain is the verified client chain, leaf first.
	Chain []*x509.Certificate
	// ClientID is the MQTT client identifier, "" until CONNECT.
	ClientID string
	Addr     net.Addr
}

// Options configures a Server. The zero value of every field but Registry
// and Authority means a sensible default.
type Options struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0".
	Addr string
	// Registry holds CA registrations, templates, things, certificates,
	// tokens and the event log.
	Registry *registry.Registry
	// Authority signs the server certificate and the certificates the
	// cloud issues (fleet provisioning, rotation). Its root anchors
	// certificates the cloud issued and registered.
	Authority *fakeca.Authority
	// Hosts are names and addresses put in the server certificate's SANs,
	// in addition to localhost, 127.0.0.1 and ::1.
	Hosts []string
	// HandshakeTimeout bounds one TLS handshake (and the registry work
	// that decides a connection); default 10 s.
	HandshakeTimeout time.Duration
	// TokenLifetime is how long a certificateOwnershipToken stays valid;
	// default 1 h (AWS).
	TokenLifetime time.Duration
	// CertValidity is the validity of certificates the cloud issues;
	// default 365 days.
	CertValidity time.Duration
	// Now is the cloud's clock, for chain verification, issuance and
	// token expiry; default time.Now.
	Now func() time.Time
	// Rand supplies private keys the cloud generates; default
	// crypto/rand.Reader. It must be safe for concurrent use.
	Rand   io.Reader
	Logger *slog.Logger
}

// Server is a running MQTT/TLS endpoint.
type Server struct {
	opts       Options
	reg        *registry.Registry
	log        *slog.Logger
	serverCert tls.Certificate
	broker     *mochi.Server
	l          *listener
	subSeq     atomic.Int64
	jit        stripes
	mochiLog   *gate
	// checks counts Revalidate and Drop calls: a connection that sees it
	// unchanged from before its registry checks until its session is
	// visible to them needs no second look at the registry.
	checks   atomic.Uint64
	verifier fakeca.Verifier // client chains, remembering verified intermediates
	caCerts  sync.Map        // CA registration ID -> parsed *x509.Certificate
	// testAfterVerify, when set, runs after a connection's checks and
	// before its session becomes visible (tests race revocations there).
	testAfterVerify atomic.Pointer[func()]
	// testEnded, when set, runs when a connection handed to the broker
	// is over (its will, if any, published).
	testEnded atomic.Pointer[func(Peer)]
	// testRefused, when set, is given the refusal of each failed
	// handshake.
	testRefused atomic.Pointer[func(*endpoint.Refusal)]

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced when sessions or subscriptions change
	brokenCSR map[string]bool

	closeOnce sync.Once
	closeErr  error
}

// Listen binds the endpoint and starts serving. Close stops it.
func Listen(opts Options) (*Server, error) {
	if opts.Registry == nil || opts.Authority == nil {
		return nil, errors.New("mqtt: Options.Registry and Options.Authority are required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = 365 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      opts,
		reg:       opts.Registry,
		log:       opts.Logger.With("endpoint", "mqtts"),
		changed:   make(chan struct{}),
		brokenCSR: map[string]bool{},
		jit:       newStripes(),
		mochiLog:  &gate{},
	}
	cert, err := endpoint.ServerCert(opts.Authority.Issuing, opts.Addr, opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("mqtt: server certificate: %w", err)
	}
	s.serverCert = cert

	caps := mochi.NewDefaultServerCapabilities()
	// Room for a 64 KiB payload plus topic and properties; larger packets
	// end the connection (a v5 client learns the limit in CONNACK).
	caps.MaximumPacketSize = MaxPayload + 8<<10
	s.broker = mochi.New(&mochi.Options{
		InlineClient:           true,
		Capabilities:           caps,
		SysTopicResendInterval: 3600,
		// mochi's own logs are internals (a refused publish is an
		// "error" to it): keep them at debug level.
		Logger: slog.New(debugHandler{s.log.With("component", "mochi").Handler(), s.mochiLog}),
	})
	if err := s.broker.AddHook(&hook{s: s}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	l, err := newListener(s, opts.Addr)
	if err != nil {
		return nil, err
	}
	s.l = l
	if err := s.broker.AddListener(l); err != nil {
		_ = l.ln.Close()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := s.broker.Serve(); err != nil {
		_ = l.ln.Close()
		return nil, fmt.Errorf("mqtt: serve: %w", err)
	}
	s.log.Info("listening", "addr", s.Addr().String())
	return s, nil
}

// Addr is the bound TCP address.
func (s *Server) Addr() net.Addr { return s.l.ln.Addr() }

// ServerCertificate is the certificate chain the endpoint presents.
func (s *Server) ServerCertificate() tls.Certificate { return s.serverCert }

// Sessions lists the peers of the live connections (TLS verified and
// handed to the broker; ClientID is set once CONNECT was accepted).
func (s *Server) Sessions() []Peer { return s.l.peers() }

// Drop closes every live connection whose peer matches, recording a
// session.closed event with the reason, and returns how many it closed.
// It is how revocation and disabling reach connected devices.
func (s *Server) Drop(match func(Peer) bool, reason string) int {
	s.checks.Add(1)
	dropped := s.l.drop(match, reason)
	for _, p := range dropped {
		s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventSessionClosed, Outcome: registry.OutcomeOK, Reason: reason})
	}
	return len(dropped)
}

// Revalidate checks every live connection against the registry (device
// enabled, certificate ACTIVE, nothing of its chain revoked, its CA
// registration still ACTIVE) and drops those that fail, recording why.
// It returns how many it dropped.
func (s *Server) Revalidate(ctx context.Context) int {
	s.checks.Add(1)
	n := 0
	for _, p := range s.l.peers() {
		if reason := s.revalidate(ctx, p); reason != "" {
			n += s.Drop(func(q Peer) bool { return q.Addr == p.Addr && q.Credential == p.Credential }, reason)
		}
	}
	return n
}

// Subscribe calls fn with every message published on a topic that filter
// matches, by clients or by the cloud itself ($aws/events/...), bypassing
// the ACL: an operator's (or a test's) view of the broker. fn runs on the
// publisher's goroutine and must not block. cancel removes the
// subscription.
func (s *Server) Subscribe(filter string, fn func(topic string, payload []byte)) (cancel func(), err error) {
	id := int(s.subSeq.Add(1))
	err = s.broker.Subscribe(filter, id, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, append([]byte(nil), pk.Payload...))
	})
	if err != nil {
		return nil, fmt.Errorf("mqtt: subscribe %q: %w", filter, err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = s.broker.Unsubscribe(filter, id) }) }, nil
}

// Publish sends a message to the topic's subscribers (QoS 1), as an
// operator or a backend would; the ACL is not applied to the cloud itself.
func (s *Server) Publish(topic string, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("mqtt: publish %q: payload of %d bytes exceeds %d", topic, len(payload), MaxPayload)
	}
	if err := s.broker.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("mqtt: publish %q: %w", topic, err)
	}
	return nil
}

// Close stops the endpoint: no new connections, live ones closed, and
// waits for its goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.broker.Close()
		s.l.wait()
		s.mochiLog.close()
		s.notify()
	})
	return s.closeErr
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) record(e registry.Event) { endpoint.Record(s.reg, s.log, e) }

// notify wakes everyone waiting for a change of sessions or
// subscriptions.
func (s *Server) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// debugHandler logs every record at debug level, until its gate closes:
// mochi's event loop may still log after the broker's Close returned.
type debugHandler struct {
	h    slog.Handler
	gate *gate
}

// gate lets log records through until it is shut.
type gate struct {
	mu   sync.RWMutex
	shut bool
}

func (g *gate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	d.gate.mu.RLock()
	defer d.gate.mu.RUnlock()
	if d.gate.shut {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return d.h.Handle(ctx, out)
}

// redact replaces a packet in a mochi log record by its type, topic and
// payload size: payloads may carry private keys (rotation, fleet
// provisioning) and tokens.
func redact(a slog.Attr) slog.Attr {
	switch v := a.Value.Any().(type) {
	case packets.Packet:
		return slog.Group(a.Key, "type", packets.PacketNames[v.FixedHeader.Type], "topic", endpoint.Printable(v.TopicName), "payload_bytes", len(v.Payload))
	case *packets.Packet:
		if v != nil {
			return redact(slog.Any(a.Key, *v))
		}
	}
	return a
}

func (d debugHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return debugHandler{d.h.WithAttrs(a), d.gate}
}

func (d debugHandler) WithGroup(n string) slog.Handler { return debugHandler{d.h.WithGroup(n), d.gate} }

// stripes is a set of mutexes keyed by hash, whose Lock can give up: the
// auto-registration of one certificate runs under its stripe, so that a
// retry (or a concurrent first connect) sees its outcome.
type stripes [64]chan struct{}

func newStripes() stripes {
	var st stripes
	for i := range st {
		st[i] = make(chan struct{}, 1)
	}
	return st
}

// lock takes the stripe of key (a hex fingerprint) and returns its
// unlock, or fails when ctx ends first.
func (st *stripes) lock(ctx context.Context, key string) (func(), error) {
	var h byte
	for i := 0; i < len(key); i++ {
		h = h*31 + key[i]
	}
	ch := st[int(h)%len(st)]
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
