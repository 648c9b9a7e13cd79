package dtlspsk

import (
	"context"
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

// Handshake states of the client.
const (
	stateHello    = iota // ClientHello sent; HelloVerifyRequest or ServerHello next
	stateServer          // ServerHello received; ServerKeyExchange or ServerHelloDone next
	stateFinished        // CKE, CCS, Finished sent; the server's Finished next
	stateDone
)

// ccsPayload is the ChangeCipherSpec message.
var ccsPayload = []byte{1}

var stateNames = [...]string{"ServerHello", "ServerHelloDone", "server Finished", "done"}

const (
	maxRetransmitTimeout = 60 * time.Second
	maxHelloVerify       = 4 // HelloVerifyRequests followed before giving up
)

// handshake is the per-handshake state; it is pooled and zeroed of
// secrets when returned.
type handshake struct {
	flight
	cfg *Config

	state   int
	sendSeq uint16 // next message_seq this client sends
	recvSeq uint16 // next message_seq expected from the server
	hvr     int    // HelloVerifyRequests seen

	transcript   hash.Hash
	mac          *hmacSHA256
	clientRandom [32]byte
	serverRandom [32]byte
	cookie       []byte
	cookieBuf    [maxCookieLen]byte
	hint         []byte
	gotHint      bool

	suite  uint16
	ems    bool
	master [48]byte
	keys   [40]byte // client key, server key, client IV, server IV
	sum    [sha256.Size]byte
	a, b   [sha256.Size]byte
	verify [verifyDataLen]byte
	hdr    [handshakeHeaderLen]byte
	pre    []byte // premaster scratch

	// The current flight: out holds its epoch-0 handshake messages whole
	// (ClientHello, or ClientKeyExchange); ccs and fin add the
	// ChangeCipherSpec and the epoch-1 Finished. It is re-recorded with
	// fresh record sequence numbers on every transmission.
	out     []byte
	ccs     bool
	fin     []byte
	sends   int // transmissions of the current flight
	rto     time.Duration
	next    time.Time // when the current flight is retransmitted
	dupSent bool      // already retransmitted for a duplicate server flight

	reasm reassembler
}

var handshakes = sync.Pool{New: func() any {
	return &handshake{transcript: sha256.New(), mac: newHMAC()}
}}

func getHandshake(c *Conn, cfg *Config) *handshake {
	hs := handshakes.Get().(*handshake)
	hs.c, hs.cfg = c, cfg
	return hs
}

// release wipes secrets and returns hs to the pool.
func (hs *handshake) release() {
	clear(hs.master[:])
	clear(hs.keys[:])
	clear(hs.pre[:cap(hs.pre)])
	clear(hs.sum[:])
	clear(hs.verify[:])
	hs.mac.wipe()
	hs.transcript.Reset()
	hs.reasm.reset()
	*hs = handshake{
		transcript: hs.transcript,
		mac:        hs.mac,
		pre:        hs.pre[:0],
		out:        keep(hs.out),
		fin:        hs.fin[:0],
		flight:     flight{dgram: keep(hs.dgram)},
		reasm:      hs.reasm,
	}
	handshakes.Put(hs)
}

// keep returns b emptied, or nil if it grew too large to pool.
func keep(b []byte) []byte {
	if cap(b) > 1<<16 {
		return nil
	}
	return b[:0]
}

// run drives the handshake until it completes, fails, or ctx ends.
func (hs *handshake) run(ctx context.Context) (err error) {
	c := hs.c
	if ctx.Done() != nil {
		// Wake a blocked read when ctx is cancelled (a deadline alone is
		// enforced through the read deadline below).
		stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() && err == nil {
				// The callback ran or is running: its deadline may land after
				// ours; report the cancellation instead of a poisoned Conn.
				err = hs.ctxErr(ctx)
			}
		}()
	}
	deadline, hasDeadline := ctx.Deadline()

	if _, err := io.ReadFull(hs.cfg.rand(), hs.clientRandom[:]); err != nil {
		return fmt.Errorf("dtlspsk: client random: %w", err)
	}
	hs.out = appendClientHello(hs.out[:0], hs.sendSeq, &hs.clientRandom, nil, hs.cfg.suites())
	if err := hs.newFlight(); err != nil {
		return err
	}
	for hs.state != stateDone {
		now := time.Now()
		if ctx.Err() != nil || hasDeadline && !now.Before(deadline) {
			return hs.ctxErr(ctx)
		}
		if !now.Before(hs.next) {
			if err := hs.retransmit(now); err != nil {
				return err
			}
		}
		dl := hs.next
		if hasDeadline && deadline.Before(dl) {
			dl = deadline
		}
		if err := c.nc.SetReadDeadline(dl); err != nil {
			return fmt.Errorf("dtlspsk: handshake: %w", err)
		}
		if ctx.Err() != nil { // cancelled before the deadline above was set
			return hs.ctxErr(ctx)
		}
		n, err := c.nc.Read(c.rbuf)
		if err != nil {
			if ctx.Err() != nil {
				return hs.ctxErr(ctx)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dtlspsk: handshake (awaiting %s): %w", stateNames[hs.state], err)
		}
		if err := hs.datagram(c.rbuf[:n]); err != nil {
			var pe *protocolError
			if errors.As(err, &pe) {
				c.sendAlert(hs.state == stateFinished, AlertFatal, pe.alert)
			}
			return err
		}
	}
	return c.nc.SetReadDeadline(time.Time{})
}

func (hs *handshake) ctxErr(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil { // the deadline passed before ctx noticed
		cause = context.DeadlineExceeded
	}
	return fmt.Errorf("dtlspsk: handshake (awaiting %s, %d transmissions of the last flight): %w",
		stateNames[min(hs.state, len(stateNames)-1)], hs.sends, cause)
}

// newFlight sends the flight just built and arms the retransmission timer
// (RFC 6347 4.2.4: initial 1 s, doubling up to 60 s).
func (hs *handshake) newFlight() error {
	hs.rto = hs.cfg.retransmitTimeout()
	hs.sends = 0
	hs.dupSent = false
	return hs.transmit(time.Now())
}

func (hs *handshake) retransmit(now time.Time) error {
	hs.rto = min(2*hs.rto, maxRetransmitTimeout)
	hs.dupSent = false
	return hs.transmit(now)
}

// transmit records the current flight with fresh sequence numbers, packs
// it into datagrams of at most MTU bytes, and sends them.
func (hs *handshake) transmit(now time.Time) error {
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
	if hs.ccs {
		if err := hs.put(0, typeChangeCipherSpec, nil, ccsPayload); err != nil {
			return err
		}
	}
	if len(hs.fin) > 0 {
		if err := hs.putMessage(1, hs.fin); err != nil {
			return err
		}
	}
	return hs.flush()
}

// flight assembles records into datagrams of at most the connection's
// MTU and sends them; the client's and the server's handshakes share it.
type flight struct {
	c     *Conn
	dgram []byte
}

func (hs *flight) flush() error {
	if len(hs.dgram) == 0 {
		return nil
	}
	_, err := hs.c.nc.Write(hs.dgram)
	hs.dgram = hs.dgram[:0]
	if err != nil {
		return fmt.Errorf("dtlspsk: handshake: %w", err)
	}
	return nil
}

// putMessage adds a handshake message, fragmenting it to fit the MTU.
func (hs *flight) putMessage(epoch uint16, msg []byte) error {
	c := hs.c
	overhead := recordHeaderLen + handshakeHeaderLen
	if epoch == 1 {
		overhead += explicitNonceLen + c.wr.aead.Overhead()
	}
	var hdr [handshakeHeaderLen]byte
	copy(hdr[:], msg[:handshakeHeaderLen])
	body := msg[handshakeHeaderLen:]
	off := 0
	for {
		rem := len(body) - off
		room := c.mtu - len(hs.dgram) - overhead
		if rem > room && len(hs.dgram) > 0 {
			if err := hs.flush(); err != nil {
				return err
			}
			continue
		}
		n := min(rem, room)
		put24(hdr[6:9], off)
		put24(hdr[9:12], n)
		if err := hs.put(epoch, typeHandshake, hdr[:], body[off:off+n]); err != nil {
			return err
		}
		off += n
		if off >= len(body) {
			return nil
		}
	}
}

// put adds one record to the datagram being assembled, sending that
// first if the record would not fit.
func (hs *flight) put(epoch uint16, typ byte, prefix, p []byte) error {
	c := hs.c
	need := recordHeaderLen + len(prefix) + len(p)
	if epoch == 1 {
		need += explicitNonceLen + c.wr.aead.Overhead()
	}
	if len(hs.dgram) > 0 && len(hs.dgram)+need > c.mtu {
		if err := hs.flush(); err != nil {
			return err
		}
	}
	var err error
	hs.dgram, err = c.appendRecord(hs.dgram, epoch, typ, prefix, p)
	return err
}

// datagram processes one datagram from the server.
func (hs *handshake) datagram(b []byte) error {
	c := hs.c
	for len(b) > 0 {
		r, rest, err := parseRecord(b)
		if err != nil {
			return nil // garbage: drop the rest of the datagram
		}
		b = rest
		p := r.payload
		switch {
		case r.epoch == 0:
			if !c.rwin[0].check(r.seq) {
				continue
			}
		case r.epoch == 1 && hs.state == stateFinished:
			if !c.rwin[1].check(r.seq) {
				continue
			}
			if p, err = c.rd.open(&r); err != nil {
				continue // records that fail to decrypt are discarded
			}
		default:
			continue
		}
		c.rwin[r.epoch].mark(r.seq)
		switch r.typ {
		case typeAlert:
			if err := hs.alert(p); err != nil {
				return err
			}
		case typeHandshake:
			if err := hs.fragments(r.epoch, p); err != nil {
				return err
			}
		}
		if hs.state == stateDone {
			c.pending = b // application data may follow in this datagram
			return nil
		}
	}
	return nil
}

// alert handles an alert during the handshake: fatal ones and
// close_notify end it, other warnings are ignored.
func (hs *handshake) alert(p []byte) error {
	if len(p) != 2 {
		return nil
	}
	level, desc := AlertLevel(p[0]), AlertDescription(p[1])
	if level == AlertFatal || desc == AlertCloseNotify {
		return fmt.Errorf("dtlspsk: handshake (awaiting %s): %w", stateNames[hs.state], &AlertError{Level: level, Description: desc})
	}
	return nil
}

func (hs *handshake) fragments(epoch uint16, p []byte) error {
	for len(p) > 0 {
		f, rest, err := parseFragment(p)
		if err != nil {
			return nil
		}
		p = rest
		if err := hs.fragment(epoch, &f); err != nil || hs.state == stateDone {
			return err
		}
	}
	return nil
}

func (hs *handshake) fragment(epoch uint16, f *fragment) error {
	if f.seq < hs.recvSeq {
		// A message already processed: the server retransmits its last
		// flight, so ours was probably lost (RFC 6347 4.2.4).
		if hs.state == stateFinished && epoch == 0 && f.typ == hsServerHelloDone &&
			f.seq == hs.recvSeq-1 && !hs.dupSent {
			hs.dupSent = true
			return hs.transmit(time.Now())
		}
		return nil
	}
	if int(f.seq) >= int(hs.recvSeq)+numSlots {
		return nil
	}
	// Once Finished is due, only the encrypted epoch carries new messages.
	if (hs.state == stateFinished) != (epoch == 1) {
		return nil
	}
	if !hs.reasm.add(f, epoch) {
		return nil
	}
	for hs.state != stateDone {
		var m *inMessage
		if hs.state == stateHello {
			m = hs.reasm.hello()
		} else {
			m = hs.reasm.next(hs.recvSeq)
		}
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

// hashMessage adds a reassembled handshake message to a transcript in its
// unfragmented form; hdr is scratch.
func hashMessage(transcript hash.Hash, hdr *[handshakeHeaderLen]byte, m *inMessage) {
	hdr[0] = m.typ
	put24(hdr[1:4], m.length)
	hdr[4], hdr[5] = byte(m.seq>>8), byte(m.seq)
	put24(hdr[6:9], 0)
	put24(hdr[9:12], m.length)
	transcript.Write(hdr[:])
	transcript.Write(m.body)
}

// message processes a complete server message in order.
func (hs *handshake) message(m *inMessage) error {
	switch hs.state {
	case stateHello:
		if m.typ == hsHelloVerifyRequest {
			return hs.helloVerifyRequest(m.body)
		}
		return hs.serverHello(m)
	case stateServer:
		switch m.typ {
		case hsServerKeyExchange:
			if hs.gotHint {
				return violation(AlertUnexpectedMessage, "second ServerKeyExchange")
			}
			hint, err := parseServerKeyExchange(m.body)
			if err != nil {
				return err
			}
			hs.hint, hs.gotHint = append(hs.hint[:0], hint...), true
			hashMessage(hs.transcript, &hs.hdr, m)
			return nil
		case hsServerHelloDone:
			if m.length != 0 {
				return violation(AlertDecodeError, "ServerHelloDone of %d bytes", m.length)
			}
			hashMessage(hs.transcript, &hs.hdr, m)
			return hs.finish()
		case hsHelloRequest:
			return nil // ignored during a handshake (RFC 5246 7.4.1.1)
		}
		return violation(AlertUnexpectedMessage, "handshake message type %d after ServerHello (PSK servers send no certificates)", m.typ)
	case stateFinished:
		if m.typ != hsFinished {
			return violation(AlertUnexpectedMessage, "handshake message type %d instead of Finished", m.typ)
		}
		if m.length != verifyDataLen {
			return violation(AlertDecodeError, "Finished of %d bytes", m.length)
		}
		hs.transcript.Sum(hs.sum[:0])
		hs.mac.prf(hs.verify[:], labelServerFinished, hs.sum[:], nil, &hs.a, &hs.b)
		if subtle.ConstantTimeCompare(hs.verify[:], m.body) != 1 {
			return violation(AlertDecryptError, "server Finished does not verify")
		}
		hs.state = stateDone
		return nil
	}
	return nil
}

func (hs *handshake) helloVerifyRequest(body []byte) error {
	cookie, err := parseHelloVerifyRequest(body)
	if err != nil {
		return err
	}
	hs.hvr++
	if hs.hvr > maxHelloVerify {
		return violation(AlertHandshakeFailure, "%d HelloVerifyRequests", hs.hvr)
	}
	hs.cookie = append(hs.cookieBuf[:0], cookie...)
	// The HelloVerifyRequest and the ClientHello it answers stay out of
	// the transcript (RFC 6347 4.2.1); the same random is sent again.
	hs.sendSeq++
	hs.out = appendClientHello(hs.out[:0], hs.sendSeq, &hs.clientRandom, hs.cookie, hs.cfg.suites())
	return hs.newFlight()
}

func (hs *handshake) serverHello(m *inMessage) error {
	sh, err := parseServerHello(m.body, hs.cfg.suites())
	if err != nil {
		return err
	}
	hs.serverRandom, hs.suite, hs.ems = sh.random, sh.suite, sh.ems
	hs.sendSeq++ // past the ClientHello's message_seq
	// The transcript starts with the ClientHello this answers.
	hs.transcript.Write(hs.out)
	hashMessage(hs.transcript, &hs.hdr, m)
	hs.state = stateServer
	// No new flight: the ClientHello stays the one retransmitted until
	// the server's flight is complete.
	return nil
}

// finish derives the keys and sends ClientKeyExchange, ChangeCipherSpec
// and Finished.
func (hs *handshake) finish() error {
	c, cfg := hs.c, hs.cfg
	hs.out = appendClientKeyExchange(hs.out[:0], hs.sendSeq, cfg.Identity)
	hs.sendSeq++
	hs.transcript.Write(hs.out)

	hs.pre = appendPremaster(hs.pre[:0], cfg.Key)
	hs.mac.setKey(hs.pre)
	clear(hs.pre)
	if hs.ems {
		// session_hash: the transcript through ClientKeyExchange (RFC 7627 3).
		hs.transcript.Sum(hs.sum[:0])
		hs.mac.prf(hs.master[:], labelExtendedMaster, hs.sum[:], nil, &hs.a, &hs.b)
	} else {
		hs.mac.prf(hs.master[:], labelMaster, hs.clientRandom[:], hs.serverRandom[:], &hs.a, &hs.b)
	}
	hs.mac.setKey(hs.master[:])
	hs.mac.prf(hs.keys[:], labelKeyExpansion, hs.serverRandom[:], hs.clientRandom[:], &hs.a, &hs.b)
	if err := c.wr.init(hs.suite, hs.keys[0:16], hs.keys[32:36]); err != nil {
		return fmt.Errorf("dtlspsk: %w", err)
	}
	if err := c.rd.init(hs.suite, hs.keys[16:32], hs.keys[36:40]); err != nil {
		return fmt.Errorf("dtlspsk: %w", err)
	}
	clear(hs.keys[:])

	hs.transcript.Sum(hs.sum[:0])
	hs.mac.prf(hs.verify[:], labelClientFinished, hs.sum[:], nil, &hs.a, &hs.b)
	hs.fin = appendHeader(hs.fin[:0], hsFinished, verifyDataLen, hs.sendSeq)
	hs.fin = append(hs.fin, hs.verify[:]...)
	hs.sendSeq++
	hs.transcript.Write(hs.fin)
	hs.ccs = true
	hs.state = stateFinished
	return hs.newFlight()
}
