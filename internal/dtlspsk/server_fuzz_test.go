package dtlspsk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	pionhs "github.com/pion/dtls/v3/pkg/protocol/handshake"
)

// memConn is an in-memory datagram net.Conn. Read returns one queued
// datagram at a time (truncated to the buffer, as a UDP socket does) and
// honours SetReadDeadline, also when the deadline moves while Read
// blocks; Write hands a copy to the peer, if any, and records it.
type memConn struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when in, deadline or closed change
	in       [][]byte
	deadline time.Time
	closed   bool
	peer     *memConn
	// script: once in is drained, Read waits out at most idleWaits read
	// deadlines no further than maxIdleWait away and then returns
	// net.ErrClosed, so that scripted input ends instead of blocking.
	script    bool
	idleWaits int
	logReads  bool
	reads     [][]byte // datagrams returned by Read, if logReads
	writes    [][]byte
}

const maxIdleWait = 20 * time.Millisecond

func newScript(in [][]byte, idleWaits int) *memConn {
	return &memConn{changed: make(chan struct{}), in: in, script: true, idleWaits: idleWaits}
}

// memPipe returns the two ends of an in-memory datagram link.
func memPipe() (*memConn, *memConn) {
	a := &memConn{changed: make(chan struct{})}
	b := &memConn{changed: make(chan struct{}), peer: a}
	a.peer = b
	return a, b
}

// notify wakes blocked readers (mu held).
func (c *memConn) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// push queues datagrams for Read.
func (c *memConn) push(ds ...[]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in = append(c.in, ds...)
	c.notify()
}

func (c *memConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if len(c.in) > 0 {
			d := c.in[0]
			c.in = c.in[1:]
			if c.logReads {
				c.reads = append(c.reads, d)
			}
			c.mu.Unlock()
			return copy(b, d), nil
		}
		dl, changed, now := c.deadline, c.changed, time.Now()
		if !dl.IsZero() && !now.Before(dl) {
			if c.script {
				if c.idleWaits--; c.idleWaits < 0 {
					c.mu.Unlock()
					return 0, net.ErrClosed
				}
			}
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		if c.script && (c.idleWaits <= 0 || dl.IsZero() || dl.Sub(now) > maxIdleWait) {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		c.mu.Unlock()
		if dl.IsZero() {
			<-changed
			continue
		}
		tm := time.NewTimer(dl.Sub(now))
		select {
		case <-changed:
		case <-tm.C:
		}
		tm.Stop()
	}
}

func (c *memConn) Write(b []byte) (int, error) {
	d := bytes.Clone(b)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.writes = append(c.writes, d)
	peer := c.peer
	c.mu.Unlock()
	if peer != nil {
		peer.push(d)
	}
	return len(b), nil
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.notify()
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.notify()
	return nil
}

func (c *memConn) SetDeadline(t time.Time) error    { return c.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5684} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }

func (c *memConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// replayCookie and the server random come from serverRand, so that a
// recorded client replays to the end of the handshake.
var replayCookie = bytes.Repeat([]byte{0x33}, cookieLen)

func serverRand() io.Reader {
	return bytes.NewReader(append(bytes.Clone(replayCookie), bytes.Repeat([]byte{0x44}, 32)...))
}

// replayConfig accepts dev1@proj with testKey, with the fixed server
// randomness; it counts the PSK callbacks in *calls.
func replayConfig(calls *[]string, rto time.Duration) *ServerConfig {
	return &ServerConfig{
		PSK: func(id []byte) ([]byte, error) {
			if calls != nil {
				*calls = append(*calls, string(id))
			}
			if string(id) != "dev1@proj" {
				return nil, errors.New("unknown identity")
			}
			return testKey, nil
		},
		Rand:              serverRand(),
		RetransmitTimeout: rto,
	}
}

// serverSession is a recorded session of our client with Server: the
// datagrams the client sent (ClientHello, ClientHello with the cookie,
// flight 5, the application records of sessionMessages, close_notify)
// and the ones the server sent.
type serverSession struct {
	up, down [][]byte
	fin      []byte // the client's encrypted Finished record, verbatim
	// Records sealed with the client's keys but never sent (sequence
	// numbers between the last message and close_notify): a fatal alert,
	// a handshake message, an empty application record.
	alert, handshake, empty []byte
}

var sessionMessages = []string{"first message", "second message", strings.Repeat("third ", 100)}

func recordServerSession(tb testing.TB, suite uint16) *serverSession {
	tb.Helper()
	cl, sv := memPipe()
	sv.logReads = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Server(ctx, sv, nil, replayConfig(nil, 5*time.Second))
		done <- result{c, err}
	}()
	cc, err := Client(ctx, cl, &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: []uint16{suite},
		Rand: fixedRand(), RetransmitTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	r := <-done
	if r.err != nil {
		tb.Fatalf("server: %v", r.err)
	}
	sc := r.c
	defer sc.Close()
	buf := make([]byte, 2048)
	_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, m := range sessionMessages {
		if _, err := cc.Write([]byte(m)); err != nil {
			tb.Fatal(err)
		}
		n, err := sc.Read(buf)
		if err != nil || string(buf[:n]) != m {
			tb.Fatalf("server read %q, %v; want %q", buf[:n], err, m)
		}
	}
	// Records for the fuzz seeds, sealed before close_notify takes the
	// client's next sequence number; they are not delivered.
	seal := func(typ byte, p []byte) []byte {
		rec, err := cc.appendRecord(nil, 1, typ, nil, p)
		if err != nil {
			tb.Fatal(err)
		}
		return rec
	}
	s := &serverSession{
		alert:     seal(typeAlert, []byte{byte(AlertFatal), byte(AlertInternalError)}),
		handshake: seal(typeHandshake, appendHeader(nil, hsFinished, 0, 99)),
		empty:     seal(typeApplicationData, nil),
	}
	if err := cc.Close(); err != nil {
		tb.Fatal(err)
	}
	if n, err := sc.Read(buf); err != io.EOF {
		tb.Fatalf("server read %q, %v after close_notify; want EOF", buf[:n], err)
	}
	sv.mu.Lock()
	s.up = slices.Clone(sv.reads)
	sv.mu.Unlock()
	s.down = sv.written()
	if want := 3 + len(sessionMessages) + 1; len(s.up) != want {
		tb.Fatalf("client sent %d datagrams, want %d (a flight was retransmitted?)", len(s.up), want)
	}
	for rest := s.up[2]; len(rest) > 0; {
		r, next, err := parseRecord(rest)
		if err != nil {
			tb.Fatal(err)
		}
		if r.epoch == 1 {
			s.fin = rest[:len(rest)-len(next)]
		}
		rest = next
	}
	if s.fin == nil {
		tb.Fatal("no Finished record in flight 5")
	}
	return s
}

// Real ClientHellos (first datagrams) of OpenSSL 3.0's s_client and
// libcoap 4.3's coap-client-openssl, PSK only, captured on loopback.
var (
	opensslClientHello = mustHex("16feff000000000000000000780100006c000000000000006cfefd14e9be054f64d2abaa2f07e5fb3fa390d55c6f6b52679d08cdfab92b86376a650000000800a8c0a4c0a800ff0100003a002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602")
	libcoapClientHello = mustHex("16feff000000000000000000fc010000f000000000000000f0fefd0884ce6f4e5b311349337fc5374ac672b640cf1463fec8524e941f74cb53d53e0000006200ad00abccaeccadccacc0abc0a7c06fc06d00a9ccabc0a9c0a5c06b00ac00aac0aac0a6c06ec06c00a8c0a8c0a4c06ac038c03600b700b300950091c09bc099c09700af008dc095c037c03500b600b200940090c09ac098c09600ae008cc09400ff010000640000000e000c0000093132372e302e302e31000b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// capturePionHellos returns pion's first ClientHello and its ClientHello
// with the cookie, which is replayCookie so that Server accepts it.
func capturePionHellos(tb testing.TB) [][]byte {
	tb.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	cpc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := dtls.ClientWithOptions(cpc, pc.LocalAddr(),
		dtls.WithPSK(func([]byte) ([]byte, error) { return testKey, nil }),
		dtls.WithPSKIdentityHint([]byte("dev1@proj")),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
	)
	if err != nil {
		_ = cpc.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.HandshakeContext(ctx)
	}()
	defer func() {
		cancel()
		_ = c.Close()
		<-done
	}()
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var hellos [][]byte
	for len(hellos) < 2 {
		n, from, err := pc.ReadFromUDP(buf)
		if err != nil {
			tb.Fatalf("capturing pion's ClientHello: %v", err)
		}
		ch, err := ParseClientHello(buf[:n])
		if err != nil {
			tb.Fatalf("pion's ClientHello: %v", err)
		}
		switch {
		case len(hellos) == 0 && len(ch.Cookie) == 0:
			hellos = append(hellos, bytes.Clone(buf[:n]))
			hvr := appendPlain(nil, typeHandshake, 0, nil, appendHelloVerifyRequest(nil, replayCookie))
			if _, err := pc.WriteToUDP(hvr, from); err != nil {
				tb.Fatal(err)
			}
		case len(hellos) == 1 && len(ch.Cookie) > 0:
			hellos = append(hellos, bytes.Clone(buf[:n]))
		}
	}
	return hellos
}

// clientHelloBody returns the ClientHello body of a datagram's first
// record, or b itself when it is not one.
func clientHelloBody(b []byte) []byte {
	r, _, err := parseRecord(b)
	if err != nil {
		return b
	}
	f, _, err := parseFragment(r.payload)
	if err != nil || f.typ != hsClientHello {
		return b
	}
	return f.body
}

func FuzzParseClientHello(f *testing.F) {
	var random [32]byte
	copy(random[:], "0123456789abcdef0123456789abcdef")
	for _, cookie := range [][]byte{nil, replayCookie} {
		msg := appendClientHello(nil, 0, &random, cookie, allSuites)
		f.Add(appendPlain(nil, typeHandshake, 0, nil, msg))
		f.Add(msg[handshakeHeaderLen:])
	}
	for _, d := range capturePionHellos(f) {
		f.Add(d)
	}
	f.Add(opensslClientHello)
	f.Add(libcoapClientHello)
	f.Add(clientHelloBody(libcoapClientHello))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ch, err := ParseClientHello(b); err == nil {
			body := clientHelloBody(b)
			if len(body) == len(b) {
				t.Fatal("ParseClientHello accepted a datagram that is not a handshake record")
			}
			checkAliases(t, b, ch.Cookie)
			var ref ClientHello
			if err := parseClientHello(body, &ref); err != nil || !sameHello(ch, &ref) {
				t.Fatalf("ParseClientHello = %+v, parseClientHello of its body = %+v, %v", ch, ref, err)
			}
		}
		checkClientHello(t, clientHelloBody(b))
	})
}

// checkClientHello parses body into a ClientHello left dirty by an
// earlier parse and checks the result against the wire format.
func checkClientHello(t *testing.T, body []byte) {
	t.Helper()
	ch := &ClientHello{Version: 1, Cookie: []byte("old"), CipherSuites: []uint16{1, 2, 3, 4, 5, 6, 7, 8},
		ExtendedMasterSecret: true, SecureRenegotiation: true}
	err := parseClientHello(body, ch)
	if err != nil {
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v does not name an alert", err)
		}
		return
	}
	var fresh ClientHello
	if err := parseClientHello(body, &fresh); err != nil || !sameHello(ch, &fresh) {
		t.Fatalf("reused ClientHello %+v, fresh one %+v, %v", ch, fresh, err)
	}
	if ch.Version != binary.BigEndian.Uint16(body) || !bytes.Equal(ch.Random[:], body[2:34]) {
		t.Fatalf("version/random %+v from % x", ch, body[:34])
	}
	sid := int(body[34])
	off := 35 + sid
	if sid > maxSessionIDLen || int(body[off]) != len(ch.Cookie) || !bytes.Equal(ch.Cookie, body[off+1:off+1+len(ch.Cookie)]) {
		t.Fatalf("cookie % x from % x", ch.Cookie, body)
	}
	checkAliases(t, body, ch.Cookie)
	off += 1 + len(ch.Cookie)
	n := int(binary.BigEndian.Uint16(body[off:]))
	if len(ch.CipherSuites) != n/2 || n == 0 {
		t.Fatalf("%d suites from %d bytes", len(ch.CipherSuites), n)
	}
	for i, s := range ch.CipherSuites {
		if s != binary.BigEndian.Uint16(body[off+2+2*i:]) {
			t.Fatalf("suite %d is 0x%04x", i, s)
		}
	}
	if ch.Offers(scsvRenegotiation) && !ch.SecureRenegotiation {
		t.Fatal("SCSV offered, secure renegotiation not noted")
	}
	off += 2 + n
	if comp := body[off+1 : off+1+int(body[off])]; !slices.Contains(comp, 0) {
		t.Fatalf("accepted compression methods % x", comp)
	}
	// Where pion's parser accepts the message as well, they agree.
	var pm pionhs.MessageClientHello
	if pm.Unmarshal(body) == nil {
		pr := pm.Random.MarshalFixed()
		if !bytes.Equal(pm.Cookie, ch.Cookie) || pr != ch.Random || !slices.Equal(pm.CipherSuiteIDs, ch.CipherSuites) {
			t.Fatalf("pion reads cookie % x, suites %x; we read % x, %x", pm.Cookie, pm.CipherSuiteIDs, ch.Cookie, ch.CipherSuites)
		}
	}
}

func sameHello(a, b *ClientHello) bool {
	return a.Version == b.Version && a.Random == b.Random && bytes.Equal(a.Cookie, b.Cookie) &&
		slices.Equal(a.CipherSuites, b.CipherSuites) && a.ExtendedMasterSecret == b.ExtendedMasterSecret &&
		a.SecureRenegotiation == b.SecureRenegotiation
}

// checkAliases checks that sub lies inside b, by changing b.
func checkAliases(t *testing.T, b, sub []byte) {
	t.Helper()
	if len(sub) == 0 {
		return
	}
	old := sub[0]
	for i := range b {
		b[i] ^= 0xff
		hit := sub[0] != old
		b[i] ^= 0xff
		if hit {
			return
		}
	}
	t.Fatal("the cookie does not alias the input")
}

// runScripted runs Server on scripted datagrams, failing the test if it
// does not return in time, and checks what it wrote.
func runScripted(t *testing.T, in [][]byte, idleWaits int, calls *[]string) (*Conn, *memConn, error) {
	t.Helper()
	sc := newScript(in, idleWaits)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Server(ctx, sc, nil, replayConfig(calls, time.Millisecond))
		done <- result{c, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Server did not return within 10 s of a 2 s deadline")
	}
	for _, d := range sc.written() {
		for len(d) > 0 {
			rec, rest, err := parseRecord(d)
			if err != nil || rec.version != versionMajor<<8|versionMinor {
				t.Fatalf("the server wrote a bad record: %v: % x", err, d)
			}
			d = rest
		}
	}
	if r.err != nil && strings.Contains(r.err.Error(), string(testKey)) {
		t.Fatalf("the key in an error: %v", r.err)
	}
	return r.c, sc, r.err
}

// checkSuccess fails unless a successful handshake saw the real client's
// Finished: random input must never complete one.
func checkSuccess(t *testing.T, c *Conn, input []byte, calls []string, sessions ...*serverSession) {
	t.Helper()
	if c == nil {
		return
	}
	genuine := false
	for _, s := range sessions {
		genuine = genuine || bytes.Contains(input, s.fin)
	}
	if !genuine || len(calls) == 0 || calls[len(calls)-1] != "dev1@proj" || c.State().Identity != "dev1@proj" {
		t.Fatalf("handshake completed without the client's Finished (identity %q, PSK calls %q)", c.State().Identity, calls)
	}
}

// fuzzIdleWaits maps a fuzz input to the retransmission timeouts a scripted
// handshake waits out once its datagrams are read; most inputs wait none,
// which keeps the targets fast.
func fuzzIdleWaits(idle uint8) int { return max(0, int(idle%8)-5) }

// FuzzServerHandshake feeds datagrams (uint16 length || bytes each) to a
// server handshake. Seeds include sessions of our client and pion's
// ClientHellos whose cookie the fixed server randomness accepts.
func FuzzServerHandshake(f *testing.F) {
	gcm := recordServerSession(f, TLS_PSK_WITH_AES_128_GCM_SHA256)
	ccm8 := recordServerSession(f, TLS_PSK_WITH_AES_128_CCM_8)
	pion := capturePionHellos(f)
	f.Add(uint8(0), joinDatagrams(gcm.up[:3]))
	f.Add(uint8(7), joinDatagrams(ccm8.up))
	f.Add(uint8(6), joinDatagrams(gcm.up[:2]))
	f.Add(uint8(7), joinDatagrams(pion))
	f.Add(uint8(0), joinDatagrams([][]byte{opensslClientHello, libcoapClientHello}))
	f.Add(uint8(0), joinDatagrams([][]byte{bytes.Join(gcm.up[:3], nil)}))
	f.Fuzz(func(t *testing.T, idle uint8, b []byte) {
		var calls []string
		c, _, err := runScripted(t, splitDatagrams(b), fuzzIdleWaits(idle), &calls)
		if err == nil {
			defer c.Close()
			checkSuccess(t, c, b, calls, gcm, ccm8)
		}
	})
}

// FuzzServerFlight5 is FuzzServerHandshake after our client's two
// ClientHellos: every input starts in the state awaiting flight 5.
func FuzzServerFlight5(f *testing.F) {
	s := recordServerSession(f, TLS_PSK_WITH_AES_128_GCM_SHA256)
	f5 := s.up[2]
	f.Add(uint8(0), joinDatagrams([][]byte{f5}))
	var recs [][]byte
	for rest := f5; len(rest) > 0; {
		_, next, err := parseRecord(rest)
		if err != nil {
			f.Fatal(err)
		}
		recs = append(recs, rest[:len(rest)-len(next)])
		rest = next
	}
	f.Add(uint8(6), joinDatagrams(recs))                                                  // one record per datagram
	f.Add(uint8(6), joinDatagrams([][]byte{recs[2], recs[0], recs[1], recs[2]}))          // Finished first
	f.Add(uint8(7), joinDatagrams([][]byte{s.up[1], f5}))                                 // a repeated ClientHello
	f.Add(uint8(0), joinDatagrams([][]byte{bytes.Join([][]byte{recs[0], s.alert}, nil)})) // an encrypted fatal alert
	bad := bytes.Clone(f5)
	bad[len(bad)-1] ^= 1
	f.Add(uint8(0), joinDatagrams([][]byte{bad}))
	cke := appendClientKeyExchange(nil, 2, "nobody@proj")
	f.Add(uint8(0), joinDatagrams([][]byte{appendPlain(nil, typeHandshake, 2, nil, cke)}))
	// The ClientKeyExchange in two fragments, the second first.
	frag := func(off, n int) []byte {
		h := bytes.Clone(cke[:handshakeHeaderLen])
		put24(h[6:9], off)
		put24(h[9:12], n)
		return appendPlain(nil, typeHandshake, uint64(5+off), h, cke[handshakeHeaderLen+off:handshakeHeaderLen+off+n])
	}
	f.Add(uint8(0), joinDatagrams([][]byte{frag(4, 9), frag(0, 4)}))
	f.Fuzz(func(t *testing.T, idle uint8, b []byte) {
		var calls []string
		in := append([][]byte{s.up[0], s.up[1]}, splitDatagrams(b)...)
		c, _, err := runScripted(t, in, fuzzIdleWaits(idle), &calls)
		if err == nil {
			defer c.Close()
			checkSuccess(t, c, b, calls, s)
		}
	})
}

// FuzzServerConnRead feeds datagrams to Read of a server Conn after a
// replayed handshake: Read returns only what the client sent, each
// record at most once, and repeats flight 6 a bounded number of times.
func FuzzServerConnRead(f *testing.F) {
	sessions := map[bool]*serverSession{
		false: recordServerSession(f, TLS_PSK_WITH_AES_128_GCM_SHA256),
		true:  recordServerSession(f, TLS_PSK_WITH_AES_128_CCM_8),
	}
	for ccm8, s := range sessions {
		f.Add(ccm8, uint16(2048), joinDatagrams(s.up[3:]))
		f.Add(ccm8, uint16(100), joinDatagrams(append(slices.Clone(s.up[3:5]), s.up[3], s.up[4])))
		f.Add(ccm8, uint16(300), joinDatagrams([][]byte{bytes.Join(s.up[3:6], nil), s.up[5]}))
		f.Add(ccm8, uint16(1500), joinDatagrams([][]byte{s.up[2], s.up[2], s.handshake, s.up[3], s.up[2]}))
		f.Add(ccm8, uint16(256), joinDatagrams([][]byte{s.empty, s.up[4], s.alert, s.up[5]}))
		f.Add(ccm8, uint16(5), joinDatagrams([][]byte{append(bytes.Clone(s.up[3]), s.up[6]...)}))
	}
	f.Fuzz(func(t *testing.T, ccm8 bool, size uint16, b []byte) {
		s := sessions[ccm8]
		c, sc, err := runScripted(t, slices.Clone(s.up[:3]), 0, nil)
		if err != nil {
			t.Fatalf("replayed handshake: %v", err)
		}
		defer c.Close()
		handshakeWrites := len(sc.written())
		sc.push(splitDatagrams(b)...)
		buf := make([]byte, 1+int(size)%2048)
		seen := make([]bool, len(sessionMessages))
		for {
			n, err := c.Read(buf)
			if n > 0 {
				i := slices.IndexFunc(sessionMessages, func(m string) bool {
					return strings.HasPrefix(m, string(buf[:n])) && (err == ErrShortBuffer || len(m) == n)
				})
				if i < 0 || seen[i] {
					t.Fatalf("Read returned %q (%v), which the client did not send or sent once", buf[:n], err)
				}
				seen[i] = true
			}
			if err != nil && err != ErrShortBuffer {
				break
			}
		}
		if resent := len(sc.written()) - handshakeWrites; resent > maxFinalFlights-1 {
			t.Fatalf("flight 6 sent %d more times", resent)
		}
	})
}

// TestServerReplay checks that the recorded sessions replay to the end,
// which the fuzz targets rely on, and that Server's output is repeatable.
func TestServerReplay(t *testing.T) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM_8} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			s := recordServerSession(t, suite)
			var calls []string
			c, sc, err := runScripted(t, slices.Clone(s.up), 0, &calls)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkSuccess(t, c, bytes.Join(s.up, nil), calls, s)
			if got := sc.written(); len(got) != 3 || !bytes.Equal(got[0], s.down[0]) || !bytes.Equal(got[1], s.down[1]) || !bytes.Equal(got[2], s.down[2]) {
				t.Fatalf("replayed server flights differ from the recorded ones:\n% x\n% x", got, s.down)
			}
			buf := make([]byte, 2048)
			for _, m := range sessionMessages {
				if n, err := c.Read(buf); err != nil || string(buf[:n]) != m {
					t.Fatalf("read %q, %v; want %q", buf[:n], err, m)
				}
			}
			if _, err := c.Read(buf); err != io.EOF {
				t.Fatalf("read after close_notify: %v", err)
			}
		})
	}
}

// A handshake that hears nothing ends with its context: a deadline or a
// cancellation wakes the blocked read.
func TestServerHandshakeContext(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		nc := &memConn{changed: make(chan struct{})}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := Server(ctx, nc, nil, replayConfig(nil, 0))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline", err)
		}
	})
	t.Run("cancel in flight 5", func(t *testing.T) {
		s := recordServerSession(t, TLS_PSK_WITH_AES_128_GCM_SHA256)
		cl, nc := memPipe()
		nc.push(s.up[:2]...)
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		cause := errors.New("listener closing")
		done := make(chan error, 1)
		go func() {
			_, err := Server(ctx, nc, nil, replayConfig(nil, time.Hour))
			done <- err
		}()
		// Cancel once flight 4 is out: the server then waits on a read
		// whose deadline is its hour-long retransmission timer.
		_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		for _, want := range []byte{hsHelloVerifyRequest, hsServerHello} {
			n, err := cl.Read(buf)
			if err != nil || n < recordHeaderLen+1 || buf[recordHeaderLen] != want {
				t.Fatalf("server sent % x, %v; want handshake type %d", buf[:n], err, want)
			}
		}
		cancel(cause)
		select {
		case err := <-done:
			if !errors.Is(err, cause) || !strings.Contains(err.Error(), "client Finished") {
				t.Fatalf("err = %v, want the cause while awaiting the client Finished", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("cancelling did not end the handshake")
		}
	})
}

// fragmentHello splits the ClientHello of a datagram into parts records
// (record sequence numbers from seq), last fragment first if reverse.
func fragmentHello(t *testing.T, d []byte, parts int, seq uint64, reverse bool) [][]byte {
	t.Helper()
	r, _, err := parseRecord(d)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := parseFragment(r.payload)
	if err != nil || f.typ != hsClientHello || len(f.body) != f.length {
		t.Fatalf("not a whole ClientHello: %v", err)
	}
	var recs [][]byte
	step := (len(f.body) + parts - 1) / parts
	for off := 0; off < len(f.body); off += step {
		n := min(step, len(f.body)-off)
		h := appendHeader(nil, hsClientHello, f.length, f.seq)
		put24(h[6:9], off)
		put24(h[9:12], n)
		recs = append(recs, appendPlain(nil, typeHandshake, seq, h, f.body[off:off+n]))
		seq++
	}
	if reverse {
		slices.Reverse(recs)
	}
	return recs
}

// Fragmented ClientHellos are put together, and the transcript covers the
// whole message: the recorded flight 5 still verifies.
func TestServerFragmentedClientHello(t *testing.T) {
	s := recordServerSession(t, TLS_PSK_WITH_AES_128_GCM_SHA256)
	for _, tt := range []struct {
		name string
		in   func() [][]byte
	}{
		{"second hello in one datagram, reversed", func() [][]byte {
			return [][]byte{s.up[0], bytes.Join(fragmentHello(t, s.up[1], 3, 1, true), nil), s.up[2]}
		}},
		{"both hellos one fragment per datagram", func() [][]byte {
			in := fragmentHello(t, s.up[0], 4, 0, false)
			in = append(in, fragmentHello(t, s.up[1], 5, 4, true)...)
			return append(in, s.up[2])
		}},
		{"a fragment repeated and overlapping", func() [][]byte {
			// Record sequence numbers the client's flight 5 does not use.
			frags := fragmentHello(t, s.up[1], 2, 50, false)
			return [][]byte{s.up[0], frags[0], frags[0], s.up[1], frags[1], s.up[2]}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			in := tt.in()
			c, _, err := runScripted(t, in, 0, &calls)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkSuccess(t, c, bytes.Join(in, nil), calls, s)
		})
	}
}

// Before the cookie the server keeps next to no state: fragments of a
// ClientHello longer than any real one are dropped rather than buffered
// (up to 16 KiB for each of the reassembly slots), while a whole one that
// long is still answered.
func TestServerFragmentedHelloLimit(t *testing.T) {
	var random [32]byte
	msg := appendClientHello(nil, 0, &random, nil, allSuites)
	body := msg[handshakeHeaderLen:]
	// Pad with an extension (padding, RFC 7685) to 5000 bytes.
	pad := 5000 - len(body) - 4
	body = append(body, 0x00, 0x15, byte(pad>>8), byte(pad))
	body = append(body, make([]byte, pad)...)
	extLen := len(body) - (len(msg) - handshakeHeaderLen) + 9
	binary.BigEndian.PutUint16(body[len(msg)-handshakeHeaderLen-11:], uint16(extLen))
	long := appendPlain(nil, typeHandshake, 0, appendHeader(nil, hsClientHello, len(body), 0), body)
	if _, err := ParseClientHello(long); err != nil {
		t.Fatalf("the padded ClientHello does not parse: %v", err)
	}
	for _, tt := range []struct {
		name string
		in   [][]byte
		hvr  bool
	}{
		{"whole", [][]byte{long}, true},
		{"fragmented", fragmentHello(t, long, 8, 0, false), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, sc, err := runScripted(t, tt.in, 0, nil)
			if err == nil {
				t.Fatal("handshake completed")
			}
			if got := len(sc.written()) == 1; got != tt.hvr {
				t.Fatalf("%d datagrams written, want a HelloVerifyRequest: %v", len(sc.written()), tt.hvr)
			}
		})
	}
	// Fragments claiming the largest message do not allocate.
	frag := appendHeader(nil, hsClientHello, maxMessageLen, 0)
	put24(frag[9:12], 1)
	d := appendPlain(nil, typeHandshake, 0, frag, []byte{0xfe})
	hs := new(serverHandshake)
	allocs := testing.AllocsPerRun(20, func() {
		hs.reasm.reset()
		for seq := range uint16(numSlots) {
			binary.BigEndian.PutUint16(d[recordHeaderLen+4:], seq)
			r, _, _ := parseRecord(d)
			_ = hs.clientHelloRecord(&r)
		}
	})
	if allocs > 0 {
		t.Errorf("%.0f allocations for %d one-byte fragments of %d-byte ClientHellos", allocs, numSlots, maxMessageLen)
	}
}
