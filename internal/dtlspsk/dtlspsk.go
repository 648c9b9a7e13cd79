// Package dtlspsk is credloop's own DTLS 1.2 PSK implementation, client
// and server, minimal and allocation-light.
//
// Who uses it: the load generator (credloop bench) dials with the client,
// so that it costs far less per handshake than the server it measures
// (pion/dtls spends about as much CPU and as many allocations on the
// client side as on the server side); and the cloud's CoAP endpoint
// serves PSK clients with the server by default (cloud.Options.DTLSPSKStack
// "credloop"; "pion" switches it off), where it costs about half of
// pion's server CPU per handshake and keeps an established session in a
// few KiB with no goroutine or receive buffer of its own.
//
// Both sides run the whole handshake in the calling goroutine (no
// goroutines per connection), share one record layer, key schedule and
// flight writer, reuse pooled buffers and hash states, and allocate a few
// dozen objects per handshake, most of them for the socket and the AEAD.
//
// Implemented: PSK only (RFC 4279 plain PSK key exchange), DTLS 1.2 only
// (RFC 6347), cipher suites TLS_PSK_WITH_AES_128_GCM_SHA256,
// TLS_PSK_WITH_AES_128_CCM and TLS_PSK_WITH_AES_128_CCM_8, the extended
// master secret (RFC 7627) when the peer agrees, HelloVerifyRequest
// cookies (the server sends one to every ClientHello without it),
// fragmented and reordered handshake messages, duplicate records, lost
// flights (retransmission with a doubling timer), the PSK identity hint,
// and fatal alerts both ways (the server's PSK callback chooses the alert
// of a refusal; a Finished that does not decrypt gets bad_record_mac).
// Not implemented: certificates, (EC)DHE, CBC suites, DTLS 1.0 or 1.3,
// renegotiation, session resumption, connection IDs; a server given a
// ClientHello it cannot serve refuses it, so a caller that must serve
// those (the cloud) looks at the ClientHello first (ParseClientHello,
// ServerConfig.Supports) and hands the client to another stack.
package dtlspsk

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Cipher suites this client implements.
const (
	TLS_PSK_WITH_AES_128_GCM_SHA256 uint16 = 0x00a8 // RFC 5487
	TLS_PSK_WITH_AES_128_CCM        uint16 = 0xc0a4 // RFC 6655
	TLS_PSK_WITH_AES_128_CCM_8      uint16 = 0xc0a8 // RFC 6655
)

// CipherSuiteName returns the IANA name of a suite, or its number in hex.
func CipherSuiteName(id uint16) string {
	switch id {
	case TLS_PSK_WITH_AES_128_GCM_SHA256:
		return "TLS_PSK_WITH_AES_128_GCM_SHA256"
	case TLS_PSK_WITH_AES_128_CCM:
		return "TLS_PSK_WITH_AES_128_CCM"
	case TLS_PSK_WITH_AES_128_CCM_8:
		return "TLS_PSK_WITH_AES_128_CCM_8"
	}
	return fmt.Sprintf("0x%04x", id)
}

var defaultSuites = []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}

// Defaults and limits of Config.
const (
	DefaultMTU               = 1200
	MinMTU                   = 256
	DefaultRetransmitTimeout = time.Second
	// ReceiveBufferSize is the largest datagram read; larger ones are
	// truncated by the socket and their records dropped.
	ReceiveBufferSize = 8192
)

var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("dtlspsk: invalid config")
	// ErrTooLarge is returned by Write for more than 16384 bytes.
	ErrTooLarge = errors.New("dtlspsk: write larger than a record (16384 bytes)")
	// ErrShortBuffer is returned by Read when a record does not fit the
	// buffer; the part that fits is returned, the rest is lost. (A server
	// Conn reads a datagram straight into a buffer of 256 bytes or more:
	// a datagram larger than that buffer is dropped, as a UDP socket
	// would, and Read waits for the next.)
	ErrShortBuffer = errors.New("dtlspsk: read buffer smaller than the record")
)

// Config configures a client. A Config may be shared by many concurrent
// handshakes and must not be modified while they run.
type Config struct {
	// Identity is the PSK identity sent in ClientKeyExchange (credloop:
	// "<device>@<project>").
	Identity string
	// Key is the pre-shared key, 1..65535 bytes. It never appears in an
	// error, a log or String(); a fingerprint does.
	Key []byte
	// CipherSuites are offered in this order; nil means
	// {TLS_PSK_WITH_AES_128_GCM_SHA256}.
	CipherSuites []uint16
	// MTU bounds the datagrams of the handshake flights; 0 means 1200.
	MTU int
	// RetransmitTimeout is the first retransmission timer of a flight,
	// doubled on each retransmission up to 60 s; 0 means 1 s (RFC 6347
	// 4.2.4.1).
	RetransmitTimeout time.Duration
	// Rand is the source of the client random; nil means crypto/rand. It
	// must be safe for concurrent use if the Config is shared.
	Rand io.Reader
}

func (cfg *Config) suites() []uint16 {
	if len(cfg.CipherSuites) == 0 {
		return defaultSuites
	}
	return cfg.CipherSuites
}

func (cfg *Config) mtu() int {
	if cfg.MTU == 0 {
		return DefaultMTU
	}
	return cfg.MTU
}

func (cfg *Config) retransmitTimeout() time.Duration {
	if cfg.RetransmitTimeout <= 0 {
		return DefaultRetransmitTimeout
	}
	return cfg.RetransmitTimeout
}

func (cfg *Config) rand() io.Reader {
	if cfg.Rand == nil {
		return rand.Reader
	}
	return cfg.Rand
}

// validate reports why cfg cannot be used.
func (cfg *Config) validate() error {
	switch {
	case cfg == nil:
		return fmt.Errorf("%w: nil", ErrConfig)
	case len(cfg.Identity) > 0xffff:
		return fmt.Errorf("%w: identity of %d bytes, at most 65535", ErrConfig, len(cfg.Identity))
	case len(cfg.Key) == 0 || len(cfg.Key) > 0xffff:
		return fmt.Errorf("%w: key of %d bytes, want 1..65535", ErrConfig, len(cfg.Key))
	case cfg.MTU != 0 && (cfg.MTU < MinMTU || cfg.MTU > 65507):
		return fmt.Errorf("%w: MTU %d, want %d..65507", ErrConfig, cfg.MTU, MinMTU)
	case len(cfg.CipherSuites) > 64:
		return fmt.Errorf("%w: %d cipher suites", ErrConfig, len(cfg.CipherSuites))
	}
	for _, s := range cfg.CipherSuites {
		if suiteTagLen(s) == 0 {
			return fmt.Errorf("%w: cipher suite %s is not supported", ErrConfig, CipherSuiteName(s))
		}
	}
	return nil
}

// String shows the identity and a fingerprint of the key, never the key.
func (cfg Config) String() string {
	names := make([]string, 0, len(cfg.suites()))
	for _, s := range cfg.suites() {
		names = append(names, CipherSuiteName(s))
	}
	return fmt.Sprintf("dtlspsk.Config{Identity: %q, Key: %s, CipherSuites: %v, MTU: %d}",
		cfg.Identity, Fingerprint(cfg.Key), names, cfg.mtu())
}

// GoString is String, so that %#v does not print the key either.
func (cfg Config) GoString() string { return cfg.String() }

// Fingerprint is "sha256:" and the first 8 hex digits of SHA-256(key), for
// logs and errors that must name a key without showing it.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// State describes an established connection.
type State struct {
	CipherSuite          uint16
	ExtendedMasterSecret bool
	// IdentityHint is the server's PSK identity hint ("" if it sent none).
	IdentityHint string
	// Identity is the client's PSK identity (server side).
	Identity string
}

// Conn is an established DTLS connection. It implements net.Conn: each
// Write is one application-data record in one datagram, each Read returns
// one record's plaintext. Read and Write may be called concurrently.
type Conn struct {
	nc    net.Conn
	mtu   int
	state State

	rmu     sync.Mutex
	rbufArr *[ReceiveBufferSize]byte // held only while reading or while pending holds records
	rbuf    []byte
	rclosed bool   // Close ran: Read returns net.ErrClosed
	pending []byte // records left in the last datagram read
	rerr    error  // sticky: close_notify or a fatal alert
	rd      cipherState
	rwin    [2]window

	wmu    sync.Mutex
	abuf   [64]byte // alert records
	wr     cipherState
	wseq   [2]uint64
	closed bool

	// Server side: Read goes straight into the caller's buffer, and the
	// final flight (ChangeCipherSpec, Finished) is sent again while the
	// client repeats its own because ours was lost.
	server     bool
	spill      []byte // records after the one returned, when read into the caller's buffer
	srvFin     [handshakeHeaderLen + verifyDataLen]byte
	finSeq     uint16
	finPending bool // no application record from the client yet
	finSends   int

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*Conn)(nil)

var recvBufs = sync.Pool{New: func() any { return new([ReceiveBufferSize]byte) }}

// Dial connects a UDP socket to addr ("host:port") and runs the handshake
// until it completes or ctx ends. The socket is closed if it fails.
func Dial(ctx context.Context, addr string, cfg *Config) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var nc net.Conn
	var err error
	if ap, perr := netip.ParseAddrPort(addr); perr == nil {
		nc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "udp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dtlspsk: dial: %w", err)
	}
	c, err := Client(ctx, nc, cfg)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

// Client runs the handshake over nc, a connected datagram socket (as from
// net.DialUDP; each Read must return one datagram), until it completes or
// ctx ends, and returns the
// connection. On failure nc is left open for the caller to close. Client
// uses nc's read deadline during the handshake and clears it on success.
func Client(ctx context.Context, nc net.Conn, cfg *Config) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Conn{nc: nc, mtu: cfg.mtu()}
	c.rbufArr = recvBufs.Get().(*[ReceiveBufferSize]byte)
	c.rbuf = c.rbufArr[:]
	hs := getHandshake(c, cfg)
	err := hs.run(ctx)
	if err == nil {
		c.state = State{CipherSuite: hs.suite, ExtendedMasterSecret: hs.ems}
		if len(hs.hint) > 0 {
			c.state.IdentityHint = string(hs.hint)
		}
	}
	hs.release()
	// Between reads an idle connection holds no receive buffer: a fleet
	// of idle devices costs a socket and keys each, not 8 KiB more.
	c.pending, c.rbuf = nil, nil
	recvBufs.Put(c.rbufArr)
	c.rbufArr = nil
	if err != nil {
		return nil, err
	}
	return c, nil
}

// releaseIdle returns the receive buffer to the pool once no record of
// the last datagram is left (rmu held).
func (c *Conn) releaseIdle() {
	if len(c.pending) == 0 && c.rbufArr != nil {
		c.pending, c.rbuf = nil, nil
		recvBufs.Put(c.rbufArr)
		c.rbufArr = nil
	}
}

// appendRecord appends one record of prefix || p in epoch (0 plaintext, 1
// encrypted) with the next write sequence number of that epoch.
func (c *Conn) appendRecord(dst []byte, epoch uint16, typ byte, prefix, p []byte) ([]byte, error) {
	seq := c.wseq[epoch]
	if seq > maxSeq {
		return dst, errSeqExhausted
	}
	c.wseq[epoch]++
	if epoch == 0 {
		return appendPlain(dst, typ, seq, prefix, p), nil
	}
	return c.wr.seal(dst, typ, epoch, seq, prefix, p), nil
}

// sendAlert sends an alert, encrypted once the client has changed cipher
// spec; errors are ignored (the connection is failing anyway).
func (c *Conn) sendAlert(encrypted bool, level AlertLevel, desc AlertDescription) {
	epoch := uint16(0)
	if encrypted {
		epoch = 1
	}
	b, err := c.appendRecord(c.abuf[:0], epoch, typeAlert, nil, []byte{byte(level), byte(desc)})
	if err == nil {
		_, _ = c.nc.Write(b)
	}
}

// State returns the negotiated parameters.
func (c *Conn) State() State { return c.state }

// Read returns the plaintext of the next application-data record, skipping
// other records and records that fail to decrypt or are replayed. After
// the peer's close_notify it returns io.EOF, after a fatal alert an
// *AlertError, from then on. Socket errors (deadline, closed) pass
// through.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	defer c.releaseIdle() // after the plaintext (in the buffer) was copied out
	for {
		if c.rerr != nil {
			return 0, c.rerr
		}
		var data []byte
		direct := false
		switch {
		case len(c.pending) > 0:
			data, c.pending = c.pending, nil
		case c.rclosed:
			return 0, net.ErrClosed
		case c.server && len(b) >= minDirectRead:
			// Straight into the caller's buffer: a session waiting for its
			// next datagram holds no buffer of its own.
			n, err := c.nc.Read(b)
			if errors.Is(err, io.ErrShortBuffer) {
				continue // larger than any record the caller could take
			}
			if err != nil {
				return 0, err
			}
			data, direct = b[:n], true
		default:
			if c.rbufArr == nil {
				c.rbufArr = recvBufs.Get().(*[ReceiveBufferSize]byte)
				c.rbuf = c.rbufArr[:]
			}
			n, err := c.nc.Read(c.rbuf)
			if err != nil {
				return 0, err
			}
			data = c.rbuf[:n]
		}
		resent := false
		for len(data) > 0 && c.rerr == nil {
			r, rest, err := parseRecord(data)
			if err != nil {
				break
			}
			data = rest
			p, ok := c.record(&r, &resent)
			if !ok {
				continue
			}
			if len(data) > 0 {
				if direct {
					c.spill = append(c.spill[:0], data...)
					data = c.spill
				}
				c.pending = data
			}
			n := copy(b, p)
			if n < len(p) {
				return n, ErrShortBuffer
			}
			return n, nil
		}
	}
}

// minDirectRead is the smallest caller buffer a server Read reads a
// datagram into.
const minDirectRead = 256

// record handles one record after the handshake and returns the
// plaintext of an application-data record.
func (c *Conn) record(r *record, resent *bool) ([]byte, bool) {
	if r.epoch == 0 {
		// The client repeating ClientKeyExchange: our final flight was lost.
		if c.server && c.finPending && r.typ == typeHandshake && c.rwin[0].check(r.seq) {
			c.rwin[0].mark(r.seq)
			c.resendFinal(resent)
		}
		return nil, false
	}
	if r.epoch != 1 || !c.rwin[1].check(r.seq) {
		return nil, false
	}
	p, err := c.rd.open(r)
	if err != nil {
		return nil, false
	}
	c.rwin[1].mark(r.seq)
	switch r.typ {
	case typeApplicationData:
		c.finPending = false // the peer has its keys: it got our Finished
		return p, len(p) > 0
	case typeAlert:
		if len(p) != 2 {
			return nil, false
		}
		switch {
		case AlertDescription(p[1]) == AlertCloseNotify:
			c.rerr = io.EOF
		case AlertLevel(p[0]) == AlertFatal:
			c.rerr = &AlertError{Level: AlertFatal, Description: AlertDescription(p[1])}
		}
	case typeHandshake:
		// The client repeating its Finished; a client ignores the server
		// repeating its last flight (no renegotiation).
		if c.server && c.finPending {
			c.resendFinal(resent)
		}
	}
	return nil, false
}

// resendFinal sends the final flight again, once per datagram received.
func (c *Conn) resendFinal(resent *bool) {
	if *resent {
		return
	}
	*resent = true
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.closed {
		_ = c.sendFinalFlight()
	}
}

// Write sends b as one application-data record in one datagram.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) > maxPlaintext {
		return 0, ErrTooLarge
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	// A pooled buffer: an idle connection holds none.
	wb := sendBufs.Get().(*[]byte)
	defer sendBufs.Put(wb)
	if need := recordHeaderLen + explicitNonceLen + len(b) + c.wr.aead.Overhead(); cap(*wb) < need {
		*wb = make([]byte, 0, need)
	}
	rec, err := c.appendRecord((*wb)[:0], 1, typeApplicationData, nil, b)
	if err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(rec); err != nil {
		return 0, err
	}
	return len(b), nil
}

var sendBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Close sends close_notify (best effort) and closes the socket; it is
// idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.closed = true
		c.sendAlert(true, AlertWarning, AlertCloseNotify)
		c.wmu.Unlock()
		c.closeErr = c.nc.Close()
		// The socket is closed, so a blocked Read has returned; the buffer
		// can go back to the pool.
		c.rmu.Lock()
		c.rclosed = true
		c.pending, c.rbuf = nil, nil
		if c.rbufArr != nil {
			recvBufs.Put(c.rbufArr)
			c.rbufArr = nil
		}
		c.rmu.Unlock()
	})
	return c.closeErr
}

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
