// Package coap is the cloud's CoAP-over-DTLS endpoint: Golioth-style PSK
// and certificate authentication with auto-provisioning, a per-device state
// store, and EST over CoAPS (RFC 9148) for enrollment and rotation.
package coap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/pkg/runner/periodic"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Options configures a Server. The zero value of every field but Registry
// and Authority means a sensible default.
type Options struct {
	// Addr is the UDP address to listen on; default "127.0.0.1:0".
	Addr string
	// Registry holds projects, devices, credentials and the event log.
	Registry *registry.Registry
	// Authority signs the server certificate and EST enrollments.
	Authority *fakeca.Authority
	// Hosts are the names and addresses put in the server certificate's
	// SANs, in addition to localhost, 127.0.0.1 and ::1.
	Hosts []string
	// IdleTimeout closes a DTLS session that received nothing for this
	// long; default 120 s (Golioth devices send a keepalive every 9 s).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds one DTLS handshake; default 10 s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the handshakes in flight; more are dropped.
	// Default 1024.
	MaxHandshakes int
	// MaxMessageSize bounds a CoAP message after block-wise reassembly;
	// default 64 KiB.
	MaxMessageSize uint32
	// CertValidity is the validity of certificates issued over EST;
	// default 365 days.
	CertValidity time.Duration
	// PSKStack names the DTLS implementation that serves PSK clients;
	// default PSKStackCredloop.
	PSKStack PSKStack
	// NonConfirmableNotify sends Observe notifications as NON messages;
	// by default they are CON, retransmitted until acknowledged
	// (observe.go).
	NonConfirmableNotify bool
	// RecordHello records /hello and keepalive requests as coap.request
	// events too; every other request is always recorded (record.go).
	RecordHello bool
	Now         func() time.Time
	// Rand is the randomness of handshakes and issued serials (default
	// crypto/rand); concurrent handshakes share it, so it must be safe
	// for concurrent use.
	Rand   io.Reader
	Logger *slog.Logger
}

// PSKStack names the DTLS implementation that serves PSK clients.
type PSKStack string

const (
	// PSKStackCredloop: credloop's own DTLS 1.2 PSK server
	// (internal/dtlspsk) serves every PSK client whose first acceptable
	// suite is AES-128-GCM, CCM or CCM_8; pion serves the others.
	PSKStackCredloop PSKStack = "credloop"
	// PSKStackPion: pion/dtls serves every client.
	PSKStackPion PSKStack = "pion"
)

// ErrPSKStack is returned by Listen for an unknown Options.PSKStack.
var ErrPSKStack = errors.New("coap: unknown DTLS PSK stack")

// Server is a running CoAP/DTLS endpoint.
type Server struct {
	opts       Options
	reg        *registry.Registry
	log        *slog.Logger
	serverCert tls.Certificate
	l          *listener
	coap       *server.Server
	done       chan struct{}
	stopTick   chan struct{}
	closeOnce  sync.Once
	closeErr   error
	observe    *observers
	// recording holds a slot per request event waiting for its commit
	// (record.go); recordWG waits for them on Close.
	recording chan struct{}
	recordWG  sync.WaitGroup
	recordMu  sync.Mutex      // orders recordWG.Add before Close's Wait
	recClosed bool            // under recordMu: Close has begun waiting
	verifier  fakeca.Verifier // client chains, remembering verified intermediates
	// checks counts Revalidate and Drop calls: a handshake that sees it
	// unchanged from before its registry checks until its session is
	// visible to them needs no second look at the registry.
	checks atomic.Uint64
	// ownHandshakes and pionHandshakes count the handshakes each DTLS
	// implementation was given.
	ownHandshakes, pionHandshakes atomic.Uint64
	// rpcota is the state of the RPC service (rpc.go).
	rpcota rpcotaState
}

// Handshakes reports how many handshakes credloop's own PSK server and
// pion were given since Listen.
func (s *Server) Handshakes() (own, pion uint64) {
	return s.ownHandshakes.Load(), s.pionHandshakes.Load()
}

// Listen binds the endpoint and starts serving. Close stops it.
func Listen(opts Options) (*Server, error) {
	if opts.Registry == nil || opts.Authority == nil {
		return nil, errors.New("coap: Options.Registry and Options.Authority are required")
	}
	switch opts.PSKStack {
	case "":
		opts.PSKStack = PSKStackCredloop
	case PSKStackCredloop, PSKStackPion:
	default:
		return nil, fmt.Errorf("%w %q (want %q or %q)", ErrPSKStack, string(opts.PSKStack), PSKStackCredloop, PSKStackPion)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = 1024
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = 64 << 10
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
	s := &Server{opts: opts, reg: opts.Registry, log: opts.Logger.With("endpoint", "coaps"), done: make(chan struct{}), stopTick: make(chan struct{})}
	s.observe = newObservers(s)
	s.recording = make(chan struct{}, maxRecording)
	s.observable(".d", nil)
	s.observable(".c", nil) // settings.go
	s.observable(".rpc", s.renderRPC)
	s.observable(".u/desired", nil)
	// Expirations (idle sessions, retransmissions) are checked on this
	// tick; go-coap's default is every 4 s, too coarse for short idle
	// timeouts.
	tick := min(max(opts.IdleTimeout/4, 50*time.Millisecond), time.Second)

	cert, err := endpoint.ServerCert(opts.Authority.Issuing, opts.Addr, opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("coap: server certificate: %w", err)
	}
	s.serverCert = cert

	l, err := newListener(s, opts.Addr)
	if err != nil {
		return nil, err
	}
	s.l = l
	s.log.Debug("listening", "addr", l.parent.Addr().String(), "psk_stack", string(opts.PSKStack))
	s.coap = server.New(
		options.WithHandlerFunc(udpClient.HandlerFunc(s.serveRecorded)),
		options.WithRequestMonitor(udpClient.RequestMonitorFunc(s.monitor)),
		options.WithInactivityMonitor(opts.IdleTimeout, options.UDPOnInactive(s.onIdle)),
		// Block-wise transfers are ours (block.go).
		options.WithBlockwise(false, blockwise.SZX1024, transferTimeout),
		options.WithPeriodicRunner(periodic.New(s.stopTick, tick)),
		options.WithMaxMessageSize(opts.MaxMessageSize),
		options.WithErrors(func(err error) { s.log.Debug("coap", "err", err) }),
		options.WithOnNewConn(func(cc *udpClient.Conn) {
			p, ok := peerOf(cc)
			if !ok {
				return
			}
			cc.AddOnClose(func() {
				s.log.Debug("session closed", "project", p.Project, "device", p.Device)
			})
		}),
	)
	go func() {
		defer close(s.done)
		if err := s.coap.Serve(l); err != nil {
			s.log.Error("coap serve", "err", err)
		}
	}()
	s.log.Info("listening", "addr", s.Addr().String())
	return s, nil
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.l.parent.Addr() }

// ServerCertificate is the certificate chain the endpoint presents.
func (s *Server) ServerCertificate() tls.Certificate { return s.serverCert }

// Sessions lists the peers of the live DTLS sessions.
func (s *Server) Sessions() []Peer { return s.l.peers() }

// Drop closes every live session whose peer matches, recording why, and
// returns how many were closed. It is how revocation and disabling reach
// devices that are already connected.
func (s *Server) Drop(match func(Peer) bool, reason string) int {
	s.checks.Add(1)
	dropped := s.l.drop(match)
	for _, p := range dropped {
		s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventSessionClosed, Outcome: "ok", Reason: reason})
	}
	return len(dropped)
}

// Revalidate checks every live session against the registry (device
// enabled, credential ACTIVE, no certificate of its chain revoked) and
// drops those that fail, recording why. It returns how many it dropped.
func (s *Server) Revalidate(ctx context.Context) int {
	s.checks.Add(1)
	n := 0
	for _, p := range s.l.peers() {
		reason := s.revalidate(ctx, p)
		if reason == "" {
			continue
		}
		n += s.Drop(func(q Peer) bool { return q.Addr == p.Addr && q.Credential == p.Credential }, reason)
	}
	return n
}

// Close stops the endpoint and waits for its goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.coap.Stop()
		s.closeErr = s.l.Close()
		<-s.done
		s.observe.close()
		s.recordMu.Lock()
		s.recClosed = true
		s.recordMu.Unlock()
		s.recordWG.Wait()
		close(s.stopTick)
	})
	return s.closeErr
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) record(e registry.Event) { endpoint.Record(s.reg, s.log, e) }

func (s *Server) onIdle(cc *udpClient.Conn) {
	sess, ok := cc.NetConn().(*session)
	if ok {
		// Close the DTLS session first, so that when the event is visible
		// the session is gone.
		_ = sess.Close()
	}
	_ = cc.Close()
	if ok {
		p := sess.peer
		s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventSessionClosed, Outcome: "ok",
			Reason: fmt.Sprintf("idle for %s", s.opts.IdleTimeout)})
	}
}

func peerOf(cc *udpClient.Conn) (Peer, bool) {
	if sess, ok := cc.NetConn().(*session); ok {
		return sess.peer, true
	}
	return Peer{}, false
}

// monitor runs before go-coap processes a message. It answers empty
// messages the way Golioth devices expect: the Zephyr SDK's keepalive is a
// NON 0.00 without token, and a CoAP ping is a CON 0.00; both get a Reset
// (RFC 7252 section 4.3).
func (s *Server) monitor(cc *udpClient.Conn, req *pool.Message) (bool, error) {
	if req.Code() != codes.Empty {
		return false, nil
	}
	switch req.Type() {
	case message.Acknowledgement, message.Reset:
		// The answer to an Observe notification (observe.go).
		if sess, ok := cc.NetConn().(*session); ok {
			return s.observe.answered(sess, req.MessageID(), req.Type() == message.Reset), nil
		}
	case message.NonConfirmable, message.Confirmable:
		rst := cc.AcquireMessage(cc.Context())
		defer cc.ReleaseMessage(rst)
		rst.SetCode(codes.Empty)
		rst.SetType(message.Reset)
		rst.SetMessageID(req.MessageID())
		if err := cc.Session().WriteMessage(rst); err != nil {
			s.log.Debug("write reset", "err", err)
		}
		return true, nil
	}
	return false, nil
}
