package dtlspsk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v3/udp"
)

// ownServer is an echo server on dtlspsk.Server behind a UDP listener
// that hands out one connected socket per client address, the way the
// cloud's CoAP endpoint uses it.
type ownServer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	errs chan error // handshake outcomes, nil for success

	mu   sync.Mutex
	open map[*Conn]struct{}
}

func startOwn(tb testing.TB, cfg *ServerConfig) *ownServer {
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
				s.serve(nc, cfg)
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func (s *ownServer) serve(nc net.Conn, cfg *ServerConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := make([]byte, 2048)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := nc.Read(first)
	if err != nil {
		_ = nc.Close()
		return
	}
	if _, err := ParseClientHello(first[:n]); err != nil {
		s.report(err)
		_ = nc.Close()
		return
	}
	c, err := Server(ctx, nc, first[:n], cfg)
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
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if string(buf[:n]) == "identity?" {
			copy(buf, c.State().Identity)
			n = len(c.State().Identity)
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *ownServer) report(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// outcome waits for the next handshake's result.
func (s *ownServer) outcome(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake outcome")
		return nil
	}
}

func (s *ownServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func ownConfig(identity string, key []byte) *ServerConfig {
	return &ServerConfig{PSK: func(id []byte) ([]byte, error) {
		if string(id) != identity {
			return nil, fmt.Errorf("identity %q unknown", id)
		}
		return key, nil
	}}
}

func TestServerWithOwnClient(t *testing.T) {
	for _, tt := range []struct {
		name  string
		offer []uint16
		hint  string
	}{
		{name: "gcm", offer: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}},
		{name: "ccm", offer: []uint16{TLS_PSK_WITH_AES_128_CCM}},
		{name: "ccm8/hint", offer: []uint16{TLS_PSK_WITH_AES_128_CCM_8}, hint: "credloop"},
		{name: "client order", offer: []uint16{TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_GCM_SHA256}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ownConfig("dev1@proj", testKey)
			cfg.Hint = tt.hint
			srv := startOwn(t, cfg)
			ctx := testContext(t, 10*time.Second)
			c, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: tt.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			if st := c.State(); st.CipherSuite != tt.offer[0] || !st.ExtendedMasterSecret || st.IdentityHint != tt.hint {
				t.Errorf("state %+v", st)
			}
			echo(t, c, "hello")
			echo(t, c, strings.Repeat("x", 1000))
			echo(t, c, "again")
		})
	}
}

func TestServerWithPionClient(t *testing.T) {
	for _, tt := range []struct {
		name  string
		suite dtls.CipherSuiteID
		ems   dtls.ExtendedMasterSecretType
	}{
		{"gcm", dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.RequestExtendedMasterSecret},
		{"ccm8/no-ems", dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.DisableExtendedMasterSecret},
		{"ccm/require-ems", dtls.TLS_PSK_WITH_AES_128_CCM, dtls.RequireExtendedMasterSecret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startOwn(t, ownConfig("dev1@proj", testKey))
			ctx := testContext(t, 10*time.Second)
			raddr, _ := net.ResolveUDPAddr("udp", srv.addr)
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := dtls.ClientWithOptions(pc, raddr,
				dtls.WithPSK(func([]byte) ([]byte, error) { return testKey, nil }),
				dtls.WithPSKIdentityHint([]byte("dev1@proj")),
				dtls.WithCipherSuites(tt.suite),
				dtls.WithExtendedMasterSecret(tt.ems),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatal(err)
			}
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			for _, msg := range []string{"hello", strings.Repeat("y", 1100), "identity?"} {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 2048)
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				want := msg
				if msg == "identity?" {
					want = "dev1@proj"
				}
				if string(buf[:n]) != want {
					t.Fatalf("echo %q, want %q", buf[:n], want)
				}
			}
		})
	}
}

func TestServerRejects(t *testing.T) {
	t.Run("unknown identity", func(t *testing.T) {
		srv := startOwn(t, ownConfig("dev1@proj", testKey))
		ctx := testContext(t, 10*time.Second)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "nobody@proj", Key: testKey})
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Description != AlertUnknownPSKIdentity {
			t.Fatalf("client: %v, want unknown_psk_identity", err)
		}
		if err := srv.outcome(t); !errors.Is(err, ErrPSKRejected) || !strings.Contains(err.Error(), "nobody@proj") {
			t.Fatalf("server: %v", err)
		}
	})
	t.Run("callback alert", func(t *testing.T) {
		srv := startOwn(t, &ServerConfig{PSK: func([]byte) ([]byte, error) {
			return nil, fmt.Errorf("device disabled: %w", &AlertError{Level: AlertFatal, Description: AlertAccessDenied})
		}})
		ctx := testContext(t, 10*time.Second)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey})
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Description != AlertAccessDenied {
			t.Fatalf("client: %v, want access_denied", err)
		}
		if err := srv.outcome(t); !errors.Is(err, ErrPSKRejected) {
			t.Fatalf("server: %v", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		srv := startOwn(t, ownConfig("dev1@proj", testKey))
		ctx := testContext(t, 10*time.Second)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: []byte("another key")})
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Description != AlertBadRecordMAC {
			t.Fatalf("client: %v, want bad_record_mac", err)
		}
		serr := srv.outcome(t)
		if !errors.Is(serr, ErrKeyMismatch) {
			t.Fatalf("server: %v", serr)
		}
		if strings.Contains(serr.Error(), string(testKey)) || strings.Contains(err.Error(), "another key") {
			t.Fatal("a key reached an error")
		}
	})
	t.Run("no common suite", func(t *testing.T) {
		cfg := ownConfig("dev1@proj", testKey)
		cfg.CipherSuites = []uint16{TLS_PSK_WITH_AES_128_CCM}
		srv := startOwn(t, cfg)
		ctx := testContext(t, 10*time.Second)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey})
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Description != AlertHandshakeFailure {
			t.Fatalf("client: %v, want handshake_failure", err)
		}
		if err := srv.outcome(t); !errors.Is(err, ErrProtocol) {
			t.Fatalf("server: %v", err)
		}
	})
}

// Lost flights on both sides: the server repeats flight 4 on its timer
// and flight 6 when the client repeats flight 5.
func TestServerLostFlights(t *testing.T) {
	for _, tt := range []struct {
		name             string
		dropUp, dropDown []int
	}{
		// Datagrams count from 1. Up: ClientHello, ClientHello with the
		// cookie, flight 5, application data. Down: HelloVerifyRequest,
		// flight 4, flight 6, the echo.
		{"flight 4 lost", nil, []int{2}},
		{"flight 6 lost", nil, []int{3}},
		{"flight 5 lost", []int{3}, nil},
		{"first hello and flight 6 lost", []int{1}, []int{3}},
		{"flights 4 and 6 lost twice", []int{3}, []int{2, 4, 5}},
		{"echo and its retry lost", []int{4}, []int{3, 4}},
		{"every datagram twice", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ownConfig("dev1@proj", testKey)
			cfg.RetransmitTimeout = 100 * time.Millisecond
			srv := startOwn(t, cfg)
			p := startProxy(t, srv.addr, tt.dropUp, tt.dropDown, tt.name == "every datagram twice")
			ctx := testContext(t, 10*time.Second)
			c, err := Dial(ctx, p.addr(), &Config{Identity: "dev1@proj", Key: testKey, RetransmitTimeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := srv.outcome(t); err != nil {
				t.Fatalf("server: %v", err)
			}
			echo(t, c, "through the loss")
		})
	}
}
