package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/credloop/credloop/cloud/registry"
)

// listenerID names the endpoint's listener inside the broker.
const listenerID = "credloop-mqtts"

// maxHandshakes bounds the TLS handshakes in flight; more connections are
// closed at once rather than queued.
const maxHandshakes = 1024

// drainTimeout bounds how long a connection closed without CONNACK is
// read (and discarded) so that the client's CONNECT does not turn the
// close into a reset.
const drainTimeout = 5 * time.Second

// session is one verified TLS connection handed to the broker; mochi sees
// it as a net.Conn, the hooks recover the peer from it.
type session struct {
	*tls.Conn
	l     *listener
	scope scope

	mu     sync.Mutex
	peer   Peer
	client *mochi.Client
	once   sync.Once
}

func (s *session) Close() error {
	var err error
	s.once.Do(func() {
		err = s.Conn.Close()
		s.l.forget(s)
	})
	return err
}

func (s *session) getPeer() Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// attach records the broker client that CONNECT created.
func (s *session) attach(cl *mochi.Client) {
	s.mu.Lock()
	s.client = cl
	s.peer.ClientID = cl.ID
	s.mu.Unlock()
}

// stop ends the connection: through the broker when CONNECT was accepted
// (so the client is stopped with a cause), else by closing it.
func (s *session) stop(reason string) {
	s.mu.Lock()
	cl := s.client
	s.mu.Unlock()
	if cl != nil {
		cl.Stop(errors.New(reason))
	}
	_ = s.Close()
}

// listener is the broker's network listener: it accepts TCP connections,
// runs each TLS handshake with a configuration of its own (so that a
// failure is attributed to the certificate that caused it), decides by
// the registry what the connection is, and hands only connections that
// may speak MQTT to the broker.
type listener struct {
	srv *Server
	ln  net.Listener
	ctx context.Context
	// cancel ends handshakes and drains in flight.
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	pending  map[net.Conn]struct{} // in handshake or being closed without CONNACK
}

var _ listeners.Listener = (*listener)(nil)

func newListener(srv *Server, addr string) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		srv:      srv,
		ln:       ln,
		ctx:      ctx,
		cancel:   cancel,
		sem:      make(chan struct{}, maxHandshakes),
		sessions: map[*session]struct{}{},
		pending:  map[net.Conn]struct{}{},
	}
	l.wg.Add(1) // Serve
	return l, nil
}

func (l *listener) Init(*slog.Logger) error { return nil }
func (l *listener) ID() string              { return listenerID }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Protocol() string        { return "tcp" }

// Serve accepts connections until the listener closes.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.srv.log.Warn("accept", "err", err)
			select { // e.g. out of file descriptors: back off a little
			case <-time.After(10 * time.Millisecond):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			l.srv.log.Warn("handshake limit reached, dropping", "remote", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		if !l.track(c) {
			<-l.sem
			_ = c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.handle(c, establish)
		}()
	}
}

// track registers a raw connection so that Close can end it; false once
// closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// handle runs one connection: handshake, decision, and either the broker
// (until the client goes) or a close without CONNACK.
func (l *listener) handle(c net.Conn, establish listeners.EstablishFn) {
	defer l.untrack(c)
	checks := l.srv.checks.Load() // before any registry read of this connection
	hs := &handshake{srv: l.srv, remote: c.RemoteAddr()}
	defer hs.release()
	tc := tls.Server(c, l.srv.tlsConfig(hs))
	ctx, cancel := context.WithTimeout(l.ctx, l.srv.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.sem
	if err != nil {
		_ = c.Close()
		if l.ctx.Err() == nil {
			hs.fail(err)
		}
		return
	}
	switch hs.getDecision() {
	case decideRegister:
		registered := l.srv.announce(l.ctx, hs)
		closeWrite(tc, c)
		if registered {
			l.srv.applyTemplate(l.ctx, hs)
		}
		hs.release()
		drain(c, min(drainTimeout, l.srv.opts.HandshakeTimeout))
		return
	case decideConnect:
	default: // cannot happen: verify accepted nothing else
		_ = c.Close()
		return
	}
	sess := &session{Conn: tc, l: l, peer: hs.peer(), scope: hs.scope()}
	sess.peer.Addr = c.RemoteAddr()
	hs.release()
	if f := l.srv.testAfterVerify.Load(); f != nil {
		(*f)()
	}
	if !l.add(sess) {
		_ = sess.Close()
		return
	}
	l.untrack(c)
	// A revocation or a disable that was enforced (Revalidate, Drop)
	// between the handshake's checks and the line above found no session
	// to drop; look again now that the session is visible to them. One
	// enforced later will see the session itself.
	if l.srv.checks.Load() != checks {
		if reason := l.srv.revalidate(l.ctx, sess.getPeer()); reason != "" {
			_ = sess.Close()
			p := sess.getPeer()
			l.srv.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeFail, Reason: reason})
			l.srv.log.Info("connection refused after the handshake", "project", p.Project, "device", p.Device, "credential", short(p.Credential), "reason", reason)
			return
		}
	}
	l.srv.notify()
	err = establish(listenerID, sess)
	_ = sess.Close()
	l.srv.notify()
	p := sess.getPeer()
	l.srv.log.Debug("connection ended", "project", p.Project, "device", p.Device, "client", p.ClientID, "err", err)
	if f := l.srv.testEnded.Load(); f != nil {
		(*f)(p)
	}
}

// add makes a session visible to Drop and Sessions; false once closed.
func (l *listener) add(s *session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.sessions[s] = struct{}{}
	return true
}

func (l *listener) forget(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
}

// Close stops accepting, closes every connection still open (handshakes
// included), waits for their goroutines, and only then lets the broker
// drop what it still holds of its clients. The broker calls it from its
// Close.
//
// The order matters: mochi-mqtt's closeListenerClients holds its clients'
// read lock and takes it again (GetByListener calls Len), so a connection
// ending at that moment, whose Delete waits for the write lock, blocks
// the second read lock and both forever. With every connection ended
// first, nothing deletes a client while the broker walks them.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	_ = l.ln.Close()
	defer closeClients(listenerID)
	l.mu.Lock()
	var conns []net.Conn
	for c := range l.pending {
		conns = append(conns, c)
	}
	var live []*session
	for s := range l.sessions {
		live = append(live, s)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	for _, s := range live {
		s.stop("server closed")
	}
	l.wg.Wait()
}

// wait waits for the accept loop and every connection's goroutine.
func (l *listener) wait() {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		l.Close(func(string) {})
	}
	l.wg.Wait()
}

func (l *listener) peers() []Peer {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Peer, 0, len(l.sessions))
	for s := range l.sessions {
		out = append(out, s.getPeer())
	}
	return out
}

// drop stops every live session whose peer matches and returns their
// peers.
func (l *listener) drop(match func(Peer) bool, reason string) []Peer {
	l.mu.Lock()
	var victims []*session
	for s := range l.sessions {
		if match(s.getPeer()) {
			victims = append(victims, s)
		}
	}
	l.mu.Unlock()
	peers := make([]Peer, 0, len(victims))
	for _, s := range victims {
		s.stop(reason)
		peers = append(peers, s.getPeer())
	}
	return peers
}

// sessionOf returns the session behind a broker client, nil for the
// inline client.
func sessionOf(cl *mochi.Client) *session {
	if cl == nil || cl.Net.Inline {
		return nil
	}
	s, _ := cl.Net.Conn.(*session)
	return s
}
