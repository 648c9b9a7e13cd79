package coap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/logging"
	"github.com/pion/transport/v3/udp"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
)

// errListenerClosed is returned by Accept after Close.
var errListenerClosed = errors.New("coap: listener closed")

// session is one authenticated DTLS association: a *dtlspsk.Conn for a
// PSK client, a *dtls.Conn (pion) for certificates. go-coap sees it as a
// net.Conn; handlers recover the authenticated peer from it.
type session struct {
	net.Conn
	peer   Peer
	blocks transfers
	closed chan struct{}
	once   sync.Once
	l      *listener

	// Observe state (observe.go): the session's observers by token and
	// the observer of each notification by message ID.
	obsMu     sync.Mutex
	observers map[string]*observer
	byMID     map[int32]*observer
	obsClosed bool
}

func (s *session) Close() error {
	var err error
	s.once.Do(func() {
		err = s.Conn.Close()
		close(s.closed)
		s.l.forget(s)
		s.l.srv.observe.sessionClosed(s)
	})
	return err
}

// listener accepts UDP "connections", runs each DTLS handshake with a
// configuration of its own (so that a failure can be attributed to the
// identity that caused it), and hands only authenticated sessions to go-coap.
type listener struct {
	srv    *Server
	parent net.Listener
	ready  chan *session
	work   chan net.Conn // new associations for idle handshake workers
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	mu       sync.Mutex
	sessions map[*session]struct{}
}

func newListener(srv *Server, addr string) (*listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coap: resolve %q: %w", addr, err)
	}
	lc := udp.ListenConfig{
		Backlog: 2048,
		// Every device's datagrams arrive on this one socket: a burst of
		// handshakes overflows the default receive buffer (~208 KiB), and
		// each dropped datagram costs its handshake a 1 s retransmission.
		// The kernel caps these at net.core.rmem_max / wmem_max.
		ReadBufferSize:  4 << 20,
		WriteBufferSize: 1 << 20,
		// Only a DTLS handshake record may create a new association; stray
		// datagrams from unknown peers are dropped before any work is done.
		AcceptFilter: func(packet []byte) bool {
			pkts, err := recordlayer.UnpackDatagram(packet)
			if err != nil || len(pkts) < 1 {
				return false
			}
			h := &recordlayer.Header{}
			if err := h.Unmarshal(pkts[0]); err != nil {
				return false
			}
			return h.ContentType == protocol.ContentTypeHandshake
		},
	}
	parent, err := lc.Listen("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		srv:      srv,
		parent:   parent,
		ready:    make(chan *session),
		work:     make(chan net.Conn),
		ctx:      ctx,
		cancel:   cancel,
		sem:      make(chan struct{}, srv.opts.MaxHandshakes),
		sessions: make(map[*session]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.parent.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			l.srv.log.Warn("udp accept", "err", err)
			continue
		}
		select {
		case l.work <- nc: // an idle worker takes it
			continue
		default:
		}
		select {
		case l.sem <- struct{}{}:
		default:
			// Too many handshakes in flight: shed load rather than queue.
			l.srv.log.Warn("handshake limit reached, dropping", "remote", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		l.wg.Add(1)
		go l.worker(nc)
	}
}

// workerIdle is how long a handshake worker waits for another handshake
// before it ends.
const workerIdle = 2 * time.Second

// worker runs the handshake it was started for, then those handed to it
// while it waits, until it has been idle for workerIdle: its stack grows
// to SQLite's deep frames once, not once per handshake. Workers hold a
// slot of the MaxHandshakes limit while they live.
func (l *listener) worker(nc net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		l.handshake(nc)
		idle.Reset(workerIdle)
		select {
		case nc = <-l.work:
		case <-idle.C:
			return
		case <-l.ctx.Done():
			return
		}
	}
}

// firstBufs hold the datagram a new association starts with while its
// ClientHello is looked at.
var firstBufs = sync.Pool{New: func() any { return new([8192]byte) }}

// handshake reads the ClientHello and runs the handshake: credloop's own
// DTLS PSK server (internal/dtlspsk) when the client offers only PSK
// suites it implements, so that an established PSK session costs a few
// KiB and no goroutine of its own; pion otherwise (certificates, or a PSK
// client that could also take a certificate suite), and always when
// Options.PSKStack is PSKStackPion.
func (l *listener) handshake(nc net.Conn) {
	raddr := nc.RemoteAddr()
	checks := l.srv.checks.Load() // before any registry read of this handshake
	hs := &handshakeState{srv: l.srv, remote: raddr, decryptFailed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(l.ctx, l.srv.opts.HandshakeTimeout)
	defer cancel()

	buf := firstBufs.Get().(*[8192]byte)
	_ = nc.SetReadDeadline(time.Now().Add(l.srv.opts.HandshakeTimeout))
	n, err := nc.Read(buf[:])
	if err != nil {
		firstBufs.Put(buf)
		_ = nc.Close()
		return
	}
	first := buf[:n]
	var conn net.Conn
	if l.srv.ownPSK(first) {
		l.srv.ownHandshakes.Add(1)
		conn, err = dtlspsk.Server(ctx, nc, first, l.srv.pskServerConfig(hs))
		firstBufs.Put(buf)
		if errors.Is(err, dtlspsk.ErrKeyMismatch) {
			hs.decryptFailure()
		}
	} else {
		l.srv.pionHandshakes.Add(1)
		conn, err = l.pionHandshake(ctx, nc, append([]byte(nil), first...), hs)
		firstBufs.Put(buf)
	}
	if err != nil {
		_ = nc.Close()
		if l.ctx.Err() != nil {
			return
		}
		hs.fail(err)
		return
	}
	peer, err := l.srv.admit(l.ctx, hs)
	if err != nil {
		_ = conn.Close()
		return
	}
	peer.Addr = raddr
	s := &session{Conn: conn, peer: peer, closed: make(chan struct{}), l: l}
	l.mu.Lock()
	l.sessions[s] = struct{}{}
	l.mu.Unlock()
	// A revocation or a disable that was enforced (Revalidate, Drop)
	// between the handshake's checks and the line above found no session
	// to drop; look again now that the session is visible to them. One
	// enforced later will see the session itself.
	if l.srv.checks.Load() != checks {
		if reason := l.srv.revalidate(l.ctx, peer); reason != "" {
			_ = s.Close()
			l.srv.record(registry.Event{Project: peer.Project, Device: peer.Device, Credential: peer.Credential, Kind: registry.EventSessionClosed, Outcome: "ok", Reason: reason})
			return
		}
	}
	select {
	case l.ready <- s:
	case <-l.ctx.Done():
		_ = s.Close()
	}
}

// pionHandshake runs pion's server over nc, first being the datagram
// already read from it.
func (l *listener) pionHandshake(ctx context.Context, nc net.Conn, first []byte, hs *handshakeState) (*dtls.Conn, error) {
	pc := dtlsnet.PacketConnFromConn(&replayConn{Conn: nc, first: first, hs: hs})
	raddr := nc.RemoteAddr()
	conn, err := dtls.ServerWithOptions(pc, raddr, l.srv.dtlsOptions(hs)...)
	if err != nil {
		l.srv.log.Warn("dtls server", "remote", raddr.String(), "err", err)
		return nil, err
	}
	go func() {
		select {
		case <-hs.decryptFailed:
			// Tell the client at once instead of letting it time out.
			_, _ = pc.WriteTo(badRecordMAC, raddr)
			_ = conn.Close()
		case <-ctx.Done():
		}
	}()
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	// pion's reader must not be ended by the handshake's read deadline.
	_ = nc.SetReadDeadline(time.Time{})
	return conn, nil
}

// replayConn returns first from its first Read, then reads nc. It gives
// pion's fatal alert during the handshake the description of the refusal
// that caused it: pion ends every refusal of its PSK callback with
// internal_error and of its certificate callback with bad_certificate.
type replayConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
	hs    *handshakeState
}

// Write sends b, a datagram of pion's.
func (r *replayConn) Write(b []byte) (int, error) {
	if isPlainFatalAlert(b) {
		if ref := r.hs.getRefusal(); ref != nil && b[alertDescOffset] != byte(ref.Alert) {
			b = append([]byte(nil), b...)
			b[alertDescOffset] = byte(ref.Alert)
		}
	}
	return r.Conn.Write(b)
}

// alertDescOffset is the offset of the description byte in a datagram
// that starts with an alert record (13-byte DTLS record header, then the
// level).
const alertDescOffset = 14

// isPlainFatalAlert reports whether datagram b starts with a fatal alert
// record of epoch 0 (the handshake's, sent in the clear).
func isPlainFatalAlert(b []byte) bool {
	return len(b) > alertDescOffset && b[0] == byte(protocol.ContentTypeAlert) &&
		b[3] == 0 && b[4] == 0 && // epoch 0
		b[11] == 0 && b[12] == 2 && // length 2
		b[13] == 2 // fatal
}

func (r *replayConn) Read(b []byte) (int, error) {
	r.mu.Lock()
	first := r.first
	r.first = nil
	r.mu.Unlock()
	if first != nil {
		if len(b) < len(first) {
			return copy(b, first), io.ErrShortBuffer
		}
		return copy(b, first), nil
	}
	return r.Conn.Read(b)
}

func (l *listener) forget(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
}

// AcceptWithContext implements go-coap's dtls server Listener.
func (l *listener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	select {
	case s := <-l.ready:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, errListenerClosed
	}
}

// Close stops accepting, waits for in-flight handshakes, and closes every
// live session.
func (l *listener) Close() error {
	l.cancel()
	err := l.parent.Close()
	l.wg.Wait()
	l.mu.Lock()
	live := make([]*session, 0, len(l.sessions))
	for s := range l.sessions {
		live = append(live, s)
	}
	l.mu.Unlock()
	for _, s := range live {
		_ = s.Close()
	}
	return err
}

// drop closes every live session whose peer matches and returns their
// peers.
func (l *listener) drop(match func(Peer) bool) []Peer {
	l.mu.Lock()
	var victims []*session
	for s := range l.sessions {
		if match(s.peer) {
			victims = append(victims, s)
		}
	}
	l.mu.Unlock()
	peers := make([]Peer, 0, len(victims))
	for _, s := range victims {
		_ = s.Close()
		peers = append(peers, s.peer)
	}
	return peers
}

func (l *listener) peers() []Peer {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Peer, 0, len(l.sessions))
	for s := range l.sessions {
		out = append(out, s.peer)
	}
	return out
}

// badRecordMAC is a plaintext (epoch 0) fatal bad_record_mac alert. A
// client accepts it during the handshake, before the server's
// ChangeCipherSpec; the sequence number is far above any the server used in
// epoch 0 so the client's replay window lets it through.
var badRecordMAC = []byte{
	21,       // ContentType alert
	254, 253, // DTLS 1.2
	0, 0, // epoch 0
	0, 0, 0x7f, 0xff, 0xff, 0xff, // sequence number
	0, 2, // length
	2,  // fatal
	20, // bad_record_mac
}

// pionLogger adapts pion's per-connection logging: it forwards nothing
// (pion is chatty) but notices the one event we need, a record that fails to
// decrypt during the handshake. DTLS drops such records silently, so a wrong
// PSK would otherwise surface only as a handshake timeout.
type pionLogger struct{ hs *handshakeState }

func (p pionLogger) NewLogger(string) logging.LeveledLogger { return p }
func (p pionLogger) Trace(string)                           {}
func (p pionLogger) Tracef(string, ...any)                  {}
func (p pionLogger) Debug(string)                           {}
func (p pionLogger) Debugf(format string, _ ...any) {
	if strings.Contains(format, "decrypt failed") {
		p.hs.decryptFailure()
	}
}
func (p pionLogger) Info(string)           {}
func (p pionLogger) Infof(string, ...any)  {}
func (p pionLogger) Warn(string)           {}
func (p pionLogger) Warnf(string, ...any)  {}
func (p pionLogger) Error(string)          {}
func (p pionLogger) Errorf(string, ...any) {}
