package dtlspsk

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The server side: the same record layer, key schedule and pooled
// handshake state as the client, for a listener that wants a DTLS 1.2
// PSK session to cost a few KiB and no goroutine once established.
//
// Flights (RFC 6347 4.2.4): the client's ClientHello is answered by a
// HelloVerifyRequest (flight 2, stateless apart from the cookie kept
// here); the ClientHello with the cookie by ServerHello, an optional
// ServerKeyExchange with the identity hint, and ServerHelloDone (flight 4,
// retransmitted on a doubling timer); the client's ClientKeyExchange,
// ChangeCipherSpec and Finished by ChangeCipherSpec and Finished (flight
// 6). Flight 6 has no timer: when the client repeats flight 5 because it
// was lost, Conn.Read sends it again, until the client's first
// application record shows it arrived.

// ServerConfig configures the server side. A ServerConfig may be shared
// by concurrent handshakes and must not be modified while they run.
type ServerConfig struct {
	// PSK returns the key for the identity of a ClientKeyExchange. An
	// error ends the handshake with a fatal alert: the description of an
	// *AlertError it wraps, unknown_psk_identity otherwise; Server returns
	// an error wrapping it. identity is only valid during the call: its
	// buffer is reused by later handshakes.
	PSK func(identity []byte) ([]byte, error)
	// CipherSuites are the suites accepted; the first of the client's
	// offers that is among them is chosen. nil means all three.
	CipherSuites []uint16
	// Hint is the PSK identity hint; "" sends no ServerKeyExchange.
	Hint string
	// MTU bounds the datagrams of the server's flights; 0 means 1200.
	MTU int
	// RetransmitTimeout is the first retransmission timer of flight 4,
	// doubled on each retransmission up to 60 s; 0 means 1 s.
	RetransmitTimeout time.Duration
	// Rand is the source of the server random and the cookie; nil means
	// crypto/rand. It must be safe for concurrent use if the ServerConfig
	// is shared.
	Rand io.Reader
}

var allSuites = []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM, TLS_PSK_WITH_AES_128_CCM_8}

func (cfg *ServerConfig) suites() []uint16 {
	if len(cfg.CipherSuites) == 0 {
		return allSuites
	}
	return cfg.CipherSuites
}

func (cfg *ServerConfig) validate() error {
	switch {
	case cfg == nil:
		return fmt.Errorf("%w: nil", ErrConfig)
	case cfg.PSK == nil:
		return fmt.Errorf("%w: no PSK callback", ErrConfig)
	case len(cfg.Hint) > 0xffff:
		return fmt.Errorf("%w: identity hint of %d bytes, at most 65535", ErrConfig, len(cfg.Hint))
	case cfg.MTU != 0 && (cfg.MTU < MinMTU || cfg.MTU > 65507):
		return fmt.Errorf("%w: MTU %d, want %d..65507", ErrConfig, cfg.MTU, MinMTU)
	}
	for _, s := range cfg.CipherSuites {
		if suiteTagLen(s) == 0 {
			return fmt.Errorf("%w: cipher suite %s is not supported", ErrConfig, CipherSuiteName(s))
		}
	}
	return nil
}

// Supports reports whether a server with cfg can serve a client that sent
// ch: it offers one of the accepted suites and DTLS 1.2.
func (cfg *ServerConfig) Supports(ch *ClientHello) bool {
	return ch.Version == versionMajor<<8|versionMinor && chooseSuite(ch.CipherSuites, cfg.suites()) != 0
}

func chooseSuite(offered, accepted []uint16) uint16 {
	for _, o := range offered {
		for _, a := range accepted {
			if o == a {
				return o
			}
		}
	}
	return 0
}

var (
	// ErrKeyMismatch is wrapped by the error of a handshake whose client
	// Finished did not decrypt: the client holds another key for the
	// identity it sent. The client is sent bad_record_mac.
	ErrKeyMismatch = errors.New("dtlspsk: the client's Finished did not decrypt with the key for its identity")
	// ErrPSKRejected is wrapped, with the callback's error, by the error
	// of a handshake whose ServerConfig.PSK refused the identity.
	ErrPSKRejected = errors.New("dtlspsk: PSK identity refused")
)

// Server runs the server side of a handshake over nc, a connected
// datagram socket that reads one datagram per Read (as a per-peer
// connection of a UDP listener), until it completes or ctx ends. first,
// if not nil, is a datagram already read from nc (the ClientHello a
// listener looked at). On failure nc is left open for the caller to
// close. Server uses nc's read deadline and clears it on success.
//
// Read on the returned Conn reads each datagram straight into the
// caller's buffer when it holds at least 256 bytes, so a session blocked
// in Read holds no buffer of its own.
func Server(ctx context.Context, nc net.Conn, first []byte, cfg *ServerConfig) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Conn{nc: nc, mtu: DefaultMTU, server: true}
	if cfg.MTU != 0 {
		c.mtu = cfg.MTU
	}
	c.rbufArr = recvBufs.Get().(*[ReceiveBufferSize]byte)
	c.rbuf = c.rbufArr[:]
	hs := serverHandshakes.Get().(*serverHandshake)
	hs.c, hs.cfg = c, cfg
	err := hs.run(ctx, first)
	if err == nil {
		c.state = State{CipherSuite: hs.suite, ExtendedMasterSecret: hs.ems, Identity: string(hs.identity)}
	}
	hs.release()
	if len(c.pending) > 0 {
		// Records that followed the client's Finished in its datagram.
		c.spill = append(c.spill[:0], c.pending...)
	}
	c.pending, c.rbuf = c.spill, nil
	recvBufs.Put(c.rbufArr)
	c.rbufArr = nil
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Server handshake states.
const (
	sStateHello   = iota // awaiting a ClientHello with the cookie
	sStateFlight5        // flight 4 sent; ClientKeyExchange and Finished next
	sStateDone
)

var serverStateNames = [...]string{"ClientHello", "client Finished", "done"}

const cookieLen = 16

// maxFragmentedHello bounds a ClientHello that arrives in fragments
// (PSK ClientHellos are a few hundred bytes; a whole one in a datagram is
// parsed in place whatever its length).
const maxFragmentedHello = 4096

// maxIdentityLen bounds the PSK identity accepted (RFC 4279 5.3: at most
// 128 bytes should be supported; credloop's are "<device>@<project>").
const maxIdentityLen = 1024

type serverHandshake struct {
	flight
	cfg *ServerConfig

	state   int
	recvSeq uint16 // next message_seq expected from the client
	hvrSent bool

	transcript   hash.Hash
	mac          *hmacSHA256
	hello        ClientHello
	clientRandom [32]byte
	serverRandom [32]byte
	cookie       [cookieLen]byte
	identity     []byte

	suite  uint16
	ems    bool
	reneg  bool
	keyed  bool // keys derived from the ClientKeyExchange
	master [48]byte
	keys   [40]byte
	sum    [sha256.Size]byte
	a, b   [sha256.Size]byte
	verify [verifyDataLen]byte
	hdr    [handshakeHeaderLen]byte
	pre    []byte

	out     []byte // flight 4, whole messages
	sends   int
	rto     time.Duration
	next    time.Time // zero: no timer
	dupSent bool

	reasm reassembler
}

var serverHandshakes = sync.Pool{New: func() any {
	return &serverHandshake{transcript: sha256.New(), mac: newHMAC()}
}}

func (hs *serverHandshake) release() {
	clear(hs.master[:])
	clear(hs.keys[:])
	clear(hs.pre[:cap(hs.pre)])
	clear(hs.sum[:])
	clear(hs.verify[:])
	hs.mac.wipe()
	hs.transcript.Reset()
	hs.reasm.reset()
	*hs = serverHandshake{
		transcript: hs.transcript,
		mac:        hs.mac,
		hello:      ClientHello{CipherSuites: hs.hello.CipherSuites[:0]},
		identity:   keep(hs.identity),
		pre:        hs.pre[:0],
		out:        keep(hs.out),
		flight:     flight{dgram: keep(hs.dgram)},
		reasm:      hs.reasm,
	}
	serverHandshakes.Put(hs)
}

func (hs *serverHandshake) run(ctx context.Context, first []byte) (err error) {
	c := hs.c
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() && err == nil {
				err = hs.ctxErr(ctx)
			}
		}()
	}
	deadline, hasDeadline := ctx.Deadline()
	if _, err := io.ReadFull(hs.rand(), hs.cookie[:]); err != nil {
		return fmt.Errorf("dtlspsk: cookie: %w", err)
	}
	if first != nil {
		if err := hs.datagram(first); err != nil {
			return hs.failed(err)
		}
	}
	for hs.state != sStateDone {
		now := time.Now()
		if ctx.Err() != nil || hasDeadline && !now.Before(deadline) {
			return hs.ctxErr(ctx)
		}
		if !hs.next.IsZero() && !now.Before(hs.next) {
			hs.rto = min(2*hs.rto, maxRetransmitTimeout)
			hs.dupSent = false
			if err := hs.transmit(now); err != nil {
				return err
			}
		}
		dl := hs.next
		if hasDeadline && (dl.IsZero() || deadline.Before(dl)) {
			dl = deadline
		}
		if err := c.nc.SetReadDeadline(dl); err != nil {
			return fmt.Errorf("dtlspsk: handshake: %w", err)
		}
		if ctx.Err() != nil {
			return hs.ctxErr(ctx)
		}
		n, err := c.nc.Read(c.rbuf)
		if err != nil {
			if ctx.Err() != nil {
				return hs.ctxErr(ctx)
			}
			var ne net.Error
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, io.ErrShortBuffer) {
				continue // a datagram over 8 KiB: no handshake record of ours
			}
			return fmt.Errorf("dtlspsk: handshake (awaiting %s): %w", serverStateNames[hs.state], err)
		}
		if err := hs.datagram(c.rbuf[:n]); err != nil {
			return hs.failed(err)
		}
	}
	return c.nc.SetReadDeadline(time.Time{})
}

func (hs *serverHandshake) rand() io.Reader {
	if hs.cfg.Rand == nil {
		return rand.Reader
	}
	return hs.cfg.Rand
}

// failed sends the alert a protocol error calls for.
func (hs *serverHandshake) failed(err error) error {
	var pe *protocolError
	if errors.As(err, &pe) {
		// Before the client's Finished decrypted, it cannot read an
		// encrypted alert: send it in the clear.
		hs.c.sendAlert(false, AlertFatal, pe.alert)
	}
	return err
}

func (hs *serverHandshake) ctxErr(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return fmt.Errorf("dtlspsk: handshake (awaiting %s, %d transmissions of the last flight): %w",
		serverStateNames[min(hs.state, len(serverStateNames)-1)], hs.sends, cause)
}

// transmit sends flight 4 with fresh record sequence numbers.
func (hs *serverHandshake) transmit(now time.Time) error {
	hs.sends++
	hs.next = now.Add(hs.rto)
	hs.dgram = hs.dgram[:0]
	for out := hs.out; len(out) >= handshakeHeaderLen; {
		n := handshakeHeaderLen + be24(out[1:4])
		if err := hs.putMessage(0, out[:n]); err != nil {
			return err
		}
		out = out[n:]
	}
	return hs.flush()
}

// datagram processes one datagram from the client.
func (hs *serverHandshake) datagram(b []byte) error {
	c := hs.c
	for len(b) > 0 {
		r, rest, err := parseRecord(b)
		if err != nil {
			return nil
		}
		b = rest
		p := r.payload
		switch {
		case r.epoch == 0:
			if hs.state == sStateHello {
				// Before the cookie no state is kept: a repeated
				// ClientHello is answered again, whatever its sequence.
				if r.typ == typeHandshake {
					if err := hs.clientHelloRecord(&r); err != nil || hs.state == sStateDone {
						return err
					}
				}
				continue
			}
			if !c.rwin[0].check(r.seq) {
				continue
			}
		case r.epoch == 1 && hs.keyed:
			if !c.rwin[1].check(r.seq) {
				continue
			}
			if p, err = c.rd.open(&r); err != nil {
				if r.typ == typeHandshake && hs.state == sStateFlight5 {
					// The Finished right after our keys came from the
					// ClientKeyExchange: a different PSK on each side.
					c.sendAlert(false, AlertFatal, AlertBadRecordMAC)
					return fmt.Errorf("%w (identity %q)", ErrKeyMismatch, printable(hs.identity))
				}
				continue
			}
		default:
			continue
		}
		c.rwin[r.epoch].mark(r.seq)
		switch r.typ {
		case typeAlert:
			if len(p) == 2 && (AlertLevel(p[0]) == AlertFatal || AlertDescription(p[1]) == AlertCloseNotify) {
				return fmt.Errorf("dtlspsk: handshake (awaiting %s): %w", serverStateNames[hs.state], &AlertError{Level: AlertLevel(p[0]), Description: AlertDescription(p[1])})
			}
		case typeHandshake:
			if err := hs.fragments(r.epoch, p); err != nil {
				return err
			}
			if hs.state == sStateDone {
				c.pending = b
				return nil
			}
		}
	}
	return nil
}

// clientHelloRecord handles an epoch-0 handshake record while no
// ClientHello with the cookie has been accepted.
func (hs *serverHandshake) clientHelloRecord(r *record) error {
	f, _, err := parseFragment(r.payload)
	if err != nil || f.typ != hsClientHello {
		return nil
	}
	if f.off != 0 || len(f.body) != f.length {
		// A fragmented ClientHello: reassemble it in the slots, if it is
		// no longer than a real one. Before the cookie a few datagrams
		// must not make the server hold 16 KiB for each slot.
		if f.length > maxFragmentedHello || !hs.reasm.add(&f, 0) {
			return nil
		}
		m := hs.reasm.next(f.seq)
		if m == nil {
			return nil
		}
		m.used = false
		return hs.clientHello(r.seq, m.seq, m.body)
	}
	return hs.clientHello(r.seq, f.seq, f.body)
}

func (hs *serverHandshake) clientHello(recSeq uint64, msgSeq uint16, body []byte) error {
	ch := &hs.hello
	if err := parseClientHello(body, ch); err != nil {
		return err
	}
	if ch.Version != versionMajor<<8|versionMinor {
		return violation(AlertProtocolVersion, "client version %d.%d, want DTLS 1.2", ch.Version>>8, ch.Version&0xff)
	}
	if len(ch.Cookie) != cookieLen || !hs.hvrSent || subtle.ConstantTimeCompare(ch.Cookie, hs.cookie[:]) != 1 {
		// RFC 6347 4.2.1: the HelloVerifyRequest takes the record sequence
		// number of the ClientHello it answers.
		hs.hvrSent = true
		hs.clientRandom = ch.Random
		hs.c.wseq[0] = max(hs.c.wseq[0], recSeq)
		hs.out = appendHelloVerifyRequest(hs.out[:0], hs.cookie[:])
		if err := hs.put(0, typeHandshake, nil, hs.out); err != nil {
			return err
		}
		return hs.flush()
	}
	if ch.Random != hs.clientRandom {
		return violation(AlertIllegalParameter, "ClientHello random changed after HelloVerifyRequest")
	}
	hs.suite = chooseSuite(ch.CipherSuites, hs.cfg.suites())
	if hs.suite == 0 {
		return violation(AlertHandshakeFailure, "no cipher suite in common (client offered %d)", len(ch.CipherSuites))
	}
	hs.ems, hs.reneg = ch.ExtendedMasterSecret, ch.SecureRenegotiation
	if _, err := io.ReadFull(hs.rand(), hs.serverRandom[:]); err != nil {
		return fmt.Errorf("dtlspsk: server random: %w", err)
	}
	// The transcript starts with this ClientHello, unfragmented.
	hs.hdr[0] = hsClientHello
	put24(hs.hdr[1:4], len(body))
	hs.hdr[4], hs.hdr[5] = byte(msgSeq>>8), byte(msgSeq)
	put24(hs.hdr[6:9], 0)
	put24(hs.hdr[9:12], len(body))
	hs.transcript.Write(hs.hdr[:])
	hs.transcript.Write(body)
	hs.recvSeq = msgSeq + 1
	hs.reasm.reset()

	// Flight 4. After a HelloVerifyRequest (message_seq 0) the server's
	// messages continue at 1.
	seq := uint16(1)
	hs.out = appendServerHello(hs.out[:0], seq, &hs.serverRandom, hs.suite, hs.ems, hs.reneg)
	seq++
	if hs.cfg.Hint != "" {
		hs.out = appendServerKeyExchange(hs.out, seq, hs.cfg.Hint)
		seq++
	}
	hs.out = appendHeader(hs.out, hsServerHelloDone, 0, seq)
	hs.transcript.Write(hs.out)
	hs.state = sStateFlight5
	hs.rto = DefaultRetransmitTimeout
	if hs.cfg.RetransmitTimeout > 0 {
		hs.rto = hs.cfg.RetransmitTimeout
	}
	hs.sends = 0
	return hs.transmit(time.Now())
}

func (hs *serverHandshake) fragments(epoch uint16, p []byte) error {
	for len(p) > 0 {
		f, rest, err := parseFragment(p)
		if err != nil {
			return nil
		}
		p = rest
		if err := hs.fragment(epoch, &f); err != nil || hs.state == sStateDone {
			return err
		}
	}
	return nil
}

func (hs *serverHandshake) fragment(epoch uint16, f *fragment) error {
	if f.seq < hs.recvSeq {
		// The client repeats its ClientHello: flight 4 was lost.
		if f.typ == hsClientHello && f.seq == hs.recvSeq-1 && !hs.keyed && !hs.dupSent {
			hs.dupSent = true
			return hs.transmit(time.Now())
		}
		return nil
	}
	if int(f.seq) >= int(hs.recvSeq)+numSlots {
		return nil
	}
	// Finished comes encrypted, everything before it in the clear.
	if (f.typ == hsFinished) != (epoch == 1) {
		return nil
	}
	if !hs.reasm.add(f, epoch) {
		return nil
	}
	for hs.state != sStateDone {
		m := hs.reasm.next(hs.recvSeq)
		if m == nil {
			return nil
		}
		seq := m.seq
		err := hs.message(m)
		m.used = false
		hs.recvSeq = seq + 1
		hs.reasm.forget(hs.recvSeq)
		if err != nil {
			return err
		}
	}
	return nil
}

func (hs *serverHandshake) message(m *inMessage) error {
	switch {
	case !hs.keyed && m.typ == hsClientKeyExchange:
		return hs.clientKeyExchange(m)
	case hs.keyed && m.typ == hsFinished:
		return hs.finished(m)
	}
	return violation(AlertUnexpectedMessage, "handshake message type %d while awaiting %s", m.typ,
		map[bool]string{false: "ClientKeyExchange", true: "Finished"}[hs.keyed])
}

func (hs *serverHandshake) clientKeyExchange(m *inMessage) error {
	identity, err := parseClientKeyExchange(m.body)
	if err != nil {
		return err
	}
	if len(identity) > maxIdentityLen {
		return violation(AlertIllegalParameter, "PSK identity of %d bytes", len(identity))
	}
	hs.identity = append(hs.identity[:0], identity...)
	key, err := hs.cfg.PSK(hs.identity)
	if err != nil {
		desc := AlertUnknownPSKIdentity
		var ae *AlertError
		if errors.As(err, &ae) {
			desc = ae.Description
		}
		hs.c.sendAlert(false, AlertFatal, desc)
		return fmt.Errorf("%w: %w", ErrPSKRejected, err)
	}
	if len(key) == 0 || len(key) > 0xffff {
		hs.c.sendAlert(false, AlertFatal, AlertInternalError)
		return fmt.Errorf("%w: a key of %d bytes", ErrPSKRejected, len(key))
	}
	hashMessage(hs.transcript, &hs.hdr, m)

	c := hs.c
	hs.pre = appendPremaster(hs.pre[:0], key)
	hs.mac.setKey(hs.pre)
	clear(hs.pre)
	if hs.ems {
		hs.transcript.Sum(hs.sum[:0])
		hs.mac.prf(hs.master[:], labelExtendedMaster, hs.sum[:], nil, &hs.a, &hs.b)
	} else {
		hs.mac.prf(hs.master[:], labelMaster, hs.clientRandom[:], hs.serverRandom[:], &hs.a, &hs.b)
	}
	hs.mac.setKey(hs.master[:])
	hs.mac.prf(hs.keys[:], labelKeyExpansion, hs.serverRandom[:], hs.clientRandom[:], &hs.a, &hs.b)
	if err := c.rd.init(hs.suite, hs.keys[0:16], hs.keys[32:36]); err != nil {
		return fmt.Errorf("dtlspsk: %w", err)
	}
	if err := c.wr.init(hs.suite, hs.keys[16:32], hs.keys[36:40]); err != nil {
		return fmt.Errorf("dtlspsk: %w", err)
	}
	clear(hs.keys[:])
	hs.keyed = true
	return nil
}

func (hs *serverHandshake) finished(m *inMessage) error {
	if m.length != verifyDataLen {
		return violation(AlertDecodeError, "Finished of %d bytes", m.length)
	}
	hs.transcript.Sum(hs.sum[:0])
	hs.mac.prf(hs.verify[:], labelClientFinished, hs.sum[:], nil, &hs.a, &hs.b)
	if !hmac.Equal(hs.verify[:], m.body) {
		return violation(AlertDecryptError, "client Finished does not verify")
	}
	hashMessage(hs.transcript, &hs.hdr, m)
	hs.transcript.Sum(hs.sum[:0])
	hs.mac.prf(hs.verify[:], labelServerFinished, hs.sum[:], nil, &hs.a, &hs.b)
	c := hs.c
	c.finSeq = hs.lastOutSeq() + 1 // after ServerHelloDone
	copy(c.srvFin[handshakeHeaderLen:], hs.verify[:])
	c.finPending = true
	hs.next = time.Time{}
	hs.state = sStateDone
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendFinalFlight()
}

// lastOutSeq is the message_seq of flight 4's last message.
func (hs *serverHandshake) lastOutSeq() uint16 {
	var seq uint16
	for out := hs.out; len(out) >= handshakeHeaderLen; {
		seq = uint16(out[4])<<8 | uint16(out[5])
		out = out[handshakeHeaderLen+be24(out[1:4]):]
	}
	return seq
}

// sendFinalFlight sends ChangeCipherSpec and the server Finished (flight
// 6) with fresh record sequence numbers (wmu held).
func (c *Conn) sendFinalFlight() error {
	if c.finSends >= maxFinalFlights {
		return nil
	}
	c.finSends++
	hdr := c.srvFin[:handshakeHeaderLen]
	clear(hdr)
	hdr[0] = hsFinished
	put24(hdr[1:4], verifyDataLen)
	hdr[4], hdr[5] = byte(c.finSeq>>8), byte(c.finSeq)
	put24(hdr[9:12], verifyDataLen)
	var buf [recordHeaderLen + 1 + recordHeaderLen + explicitNonceLen + len(c.srvFin) + 16]byte
	dg, err := c.appendRecord(buf[:0], 0, typeChangeCipherSpec, nil, ccsPayload)
	if err != nil {
		return err
	}
	if dg, err = c.appendRecord(dg, 1, typeHandshake, nil, c.srvFin[:]); err != nil {
		return err
	}
	if _, err := c.nc.Write(dg); err != nil {
		return fmt.Errorf("dtlspsk: handshake: %w", err)
	}
	return nil
}

// maxFinalFlights bounds how often flight 6 is sent for one session (the
// first time and repetitions for a client that repeats flight 5).
const maxFinalFlights = 8

// printable quotes at most 64 bytes of an identity for an error.
func printable(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
