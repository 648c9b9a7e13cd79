package dtlspsk

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v3/udp"
)

// startOwnHandler is startOwn with reply answering each record the client
// sends (nil: no answer) instead of echoing it.
func startOwnHandler(tb testing.TB, cfg *ServerConfig, reply func(c *Conn, req []byte) []byte) *ownServer {
	tb.Helper()
	ln, err := (&udp.ListenConfig{}).Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	s := &ownServer{addr: ln.Addr().String(), ln: ln, errs: make(chan error, 64), open: map[*Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				serveReplies(s, nc, cfg, reply)
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func serveReplies(s *ownServer, nc net.Conn, cfg *ServerConfig, reply func(c *Conn, req []byte) []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Server(ctx, nc, nil, cfg)
	s.report(err)
	if err != nil {
		_ = nc.Close()
		return
	}
	s.mu.Lock()
	s.open[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
	}()
	buf := make([]byte, 2048)
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if resp := reply(c, buf[:n]); resp != nil {
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	}
}

// states returns the State of the server's open sessions.
func (s *ownServer) states() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st []State
	for c := range s.open {
		st = append(st, c.State())
	}
	return st
}

// OpenSSL's s_client against Server: the handshake (with secure
// renegotiation required), the suite, and a line echoed back. -brief
// keeps the master secret out of the output logged on failure.
func TestServerOpenSSLClient(t *testing.T) {
	openssl := peer.Require(t, "openssl")
	for _, tt := range []struct {
		name, cipher string
		suite        uint16
		hint         string
	}{
		{"gcm", "PSK-AES128-GCM-SHA256", TLS_PSK_WITH_AES_128_GCM_SHA256, "credloop"},
		{"ccm", "PSK-AES128-CCM", TLS_PSK_WITH_AES_128_CCM, ""},
		{"ccm8", "PSK-AES128-CCM8", TLS_PSK_WITH_AES_128_CCM_8, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ownConfig("dev1@proj", testKey)
			cfg.Hint = tt.hint
			srv := startOwn(t, cfg)
			ctx := testContext(t, 10*time.Second)
			cl := startChild(t, openssl, "s_client", "-dtls1_2", "-connect", srv.addr,
				"-psk_identity", "dev1@proj", "-psk", hex.EncodeToString(testKey),
				"-cipher", tt.cipher, "-no_legacy_server_connect", "-nocommands", "-ign_eof", "-brief")
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			cl.waitLine(t, ctx, "CONNECTION ESTABLISHED")
			cl.waitLine(t, ctx, "Protocol version: DTLSv1.2")
			cl.waitLine(t, ctx, "Ciphersuite: "+tt.cipher)
			line := "ping over " + tt.name
			if _, err := fmt.Fprintln(cl.stdin, line); err != nil {
				t.Fatal(err)
			}
			cl.waitLine(t, ctx, line)
			st := srv.states()
			if len(st) != 1 || st[0].CipherSuite != tt.suite || !st[0].ExtendedMasterSecret || st[0].Identity != "dev1@proj" {
				t.Errorf("server sessions %+v", st)
			}
		})
	}
}

// Lost flights with s_client: the server's timer repeats flight 4, and
// Read repeats flight 6 when OpenSSL repeats flight 5 (after its 1 s
// timer).
func TestServerOpenSSLClientLoss(t *testing.T) {
	openssl := peer.Require(t, "openssl")
	for _, tt := range []struct {
		name     string
		dropDown []int // server to client: HelloVerifyRequest, flight 4, flight 6, echo
	}{
		{"flight 4 lost", []int{2}},
		{"flight 6 lost", []int{3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ownConfig("dev1@proj", testKey)
			cfg.RetransmitTimeout = 100 * time.Millisecond
			srv := startOwn(t, cfg)
			p := startProxy(t, srv.addr, nil, tt.dropDown, false)
			ctx := testContext(t, 10*time.Second)
			cl := startChild(t, openssl, "s_client", "-dtls1_2", "-connect", p.addr(),
				"-psk_identity", "dev1@proj", "-psk", hex.EncodeToString(testKey),
				"-cipher", "PSK-AES128-GCM-SHA256", "-nocommands", "-ign_eof", "-brief")
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			cl.waitLine(t, ctx, "CONNECTION ESTABLISHED")
			if _, err := fmt.Fprintln(cl.stdin, "after the loss"); err != nil {
				t.Fatal(err)
			}
			cl.waitLine(t, ctx, "after the loss")
			if _, _, dropped := p.counts(); dropped != len(tt.dropDown) {
				t.Errorf("%d datagrams dropped, want %d", dropped, len(tt.dropDown))
			}
		})
	}
}

func TestServerOpenSSLClientRejected(t *testing.T) {
	openssl := peer.Require(t, "openssl")
	for _, tt := range []struct {
		name, identity string
		key            []byte
		want           error
	}{
		{"wrong key", "dev1@proj", []byte("another key 0123"), ErrKeyMismatch},
		{"unknown identity", "nobody@proj", testKey, ErrPSKRejected},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startOwn(t, ownConfig("dev1@proj", testKey))
			ctx := testContext(t, 10*time.Second)
			cl := startChild(t, openssl, "s_client", "-dtls1_2", "-connect", srv.addr,
				"-psk_identity", tt.identity, "-psk", hex.EncodeToString(tt.key),
				"-cipher", "PSK-AES128-GCM-SHA256", "-nocommands", "-ign_eof", "-brief")
			err := srv.outcome(t)
			if !errors.Is(err, tt.want) {
				t.Fatalf("server: %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), string(testKey)) || strings.Contains(err.Error(), hex.EncodeToString(testKey)) {
				t.Fatalf("the key in an error: %v", err)
			}
			select {
			case <-cl.done: // s_client gives up on the alert
			case <-ctx.Done():
				t.Fatal("s_client did not exit after the alert")
			}
		})
	}
}

// coapContent answers a CoAP CON request with a piggybacked 2.05 Content
// whose payload is text and the request's Uri-Path, a CoAP ping with a
// reset; it remembers the sessions' States in *seen.
func coapContent(text string, mu *sync.Mutex, seen *[]State) func(c *Conn, req []byte) []byte {
	return func(c *Conn, req []byte) []byte {
		mu.Lock()
		*seen = append(*seen, c.State())
		mu.Unlock()
		if len(req) < 4 || req[0]>>6 != 1 || req[0]>>4&3 != 0 { // version 1, CON
			return nil
		}
		tkl := int(req[0] & 0x0f)
		if tkl > 8 || len(req) < 4+tkl {
			return nil
		}
		if req[1] == 0 { // ping: reset
			return []byte{0x70, 0, req[2], req[3]}
		}
		path, ok := coapPath(req[4+tkl:])
		if !ok || req[1]>>5 != 0 {
			return []byte{0x60 | byte(tkl), 0x80, req[2], req[3]} // 4.00, no token: malformed
		}
		resp := append([]byte{0x60 | byte(tkl), 0x45, req[2], req[3]}, req[4:4+tkl]...) // ACK 2.05
		resp = append(resp, 0xff)
		return append(resp, text+" /"+path...)
	}
}

// coapPath returns the Uri-Path options of a request's options and
// payload, joined by "/".
func coapPath(b []byte) (string, bool) {
	var segs []string
	num := 0
	ext := func(v int) (int, bool) {
		switch v {
		case 13:
			if len(b) < 1 {
				return 0, false
			}
			v, b = 13+int(b[0]), b[1:]
		case 14:
			if len(b) < 2 {
				return 0, false
			}
			v, b = 269+int(b[0])<<8|int(b[1]), b[2:]
		case 15:
			return 0, false
		}
		return v, true
	}
	for len(b) > 0 && b[0] != 0xff {
		d, l := int(b[0]>>4), int(b[0]&0x0f)
		b = b[1:]
		var ok bool
		if d, ok = ext(d); !ok {
			return "", false
		}
		if l, ok = ext(l); !ok || len(b) < l {
			return "", false
		}
		num += d
		if num == 11 {
			segs = append(segs, string(b[:l]))
		}
		b = b[l:]
	}
	return strings.Join(segs, "/"), true
}

// libcoap's coap-client (OpenSSL build) fetching a resource from a CoAP
// responder on Server, with each suite.
func TestServerLibcoapClient(t *testing.T) {
	client := peer.Require(t, "coap-client-openssl")
	for _, suite := range allSuites {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			var mu sync.Mutex
			var seen []State
			cfg := ownConfig("dev1@proj", testKey)
			cfg.CipherSuites = []uint16{suite}
			srv := startOwnHandler(t, cfg, coapContent("served by credloop", &mu, &seen))
			ctx := testContext(t, 10*time.Second)
			// libcoap takes the key only on the command line (-k); it is a
			// test key of a local child.
			cl := startChild(t, client, "-B", "5", "-w", "-u", "dev1@proj", "-k", string(testKey),
				"coaps://"+srv.addr+"/x/y")
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			cl.waitLine(t, ctx, "served by credloop /x/y")
			select {
			case <-cl.done:
			case <-ctx.Done():
				t.Fatal("coap-client did not exit")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) == 0 || seen[0].CipherSuite != suite || seen[0].Identity != "dev1@proj" {
				t.Errorf("server sessions %+v", seen)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		var mu sync.Mutex
		var seen []State
		srv := startOwnHandler(t, ownConfig("dev1@proj", testKey), coapContent("never", &mu, &seen))
		ctx := testContext(t, 10*time.Second)
		cl := startChild(t, client, "-B", "3", "-u", "dev1@proj", "-k", "not the right key", "coaps://"+srv.addr+"/x")
		if err := srv.outcome(t); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("server: %v, want a key mismatch", err)
		}
		select {
		case <-cl.done:
		case <-ctx.Done():
			t.Fatal("coap-client did not exit")
		}
		if strings.Contains(cl.output(), "never") {
			t.Fatal("a response got through")
		}
	})
}

// A small MTU and a long identity hint: flight 4 goes out in fragments,
// which pion's client and ours put together.
func TestServerFragmentedFlight4(t *testing.T) {
	hint := strings.Repeat("h", 700)
	cfg := ownConfig("dev1@proj", testKey)
	cfg.Hint, cfg.MTU = hint, MinMTU
	srv := startOwn(t, cfg)
	t.Run("own client", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		c, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey, MTU: MinMTU})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := srv.outcome(t); err != nil {
			t.Fatalf("server: %v", err)
		}
		if c.State().IdentityHint != hint {
			t.Errorf("hint of %d bytes", len(c.State().IdentityHint))
		}
		echo(t, c, "through fragments")
	})
	t.Run("pion client", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		raddr, err := net.ResolveUDPAddr("udp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		var gotHint string
		c, err := dtls.ClientWithOptions(pc, raddr,
			dtls.WithPSK(func(h []byte) ([]byte, error) {
				gotHint = string(h)
				return testKey, nil
			}),
			dtls.WithPSKIdentityHint([]byte("dev1@proj")),
			dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		)
		if err != nil {
			_ = pc.Close()
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		if err := srv.outcome(t); err != nil {
			t.Fatalf("server: %v", err)
		}
		if gotHint != hint {
			t.Errorf("pion saw a hint of %d bytes", len(gotHint))
		}
	})
}
