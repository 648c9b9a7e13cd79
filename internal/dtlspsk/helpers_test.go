package dtlspsk

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

var testKey = []byte("0123456789abcdef")

// pionServer is a pion/dtls PSK echo server on loopback.
type pionServer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// pionConfig is a server configuration accepting identity with key, with
// extra options (a hint, an MTU, ...) applied after it.
func pionConfig(identity string, key []byte, extra ...dtls.ServerOption) []dtls.ServerOption {
	return append([]dtls.ServerOption{
		dtls.WithPSK(func(id []byte) ([]byte, error) {
			if string(id) != identity {
				return nil, errors.New("unknown identity")
			}
			return key, nil
		}),
		dtls.WithCipherSuites(
			dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
			dtls.TLS_PSK_WITH_AES_128_CCM,
			dtls.TLS_PSK_WITH_AES_128_CCM_8,
		),
	}, extra...)
}

// startPion runs a pion server that echoes every record back; it stops at
// the end of the test or benchmark.
func startPion(tb testing.TB, opts []dtls.ServerOption) *pionServer {
	tb.Helper()
	ln, err := dtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	s := &pionServer{addr: ln.Addr().String(), ln: ln, open: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					_ = c.Close()
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
				}()
				s.serve(c.(*dtls.Conn))
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func (s *pionServer) serve(c *dtls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.HandshakeContext(ctx) != nil {
		return
	}
	buf := make([]byte, 2048)
	for {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *pionServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// testContext is the test's context bounded by d.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// echo writes msg and expects it back.
func echo(t *testing.T, c *Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := string(buf[:n]); got != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// proxy relays datagrams between one client and a server, dropping the
// datagrams whose 1-based index (per direction) is listed.
type proxy struct {
	front    *net.UDPConn
	back     *net.UDPConn
	dropUp   map[int]bool // client to server
	dropDown map[int]bool // server to client
	dup      bool         // send every datagram twice
	mu       sync.Mutex
	client   *net.UDPAddr
	up, down int
	dropped  int
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, server string, dropUp, dropDown []int, dup bool) *proxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{front: front, back: back, dropUp: map[int]bool{}, dropDown: map[int]bool{}, dup: dup}
	for _, i := range dropUp {
		p.dropUp[i] = true
	}
	for _, i := range dropDown {
		p.dropDown[i] = true
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = from
			p.up++
			drop := p.dropUp[p.up]
			if drop {
				p.dropped++
			}
			p.mu.Unlock()
			if !drop {
				_, _ = back.Write(buf[:n])
				if p.dup {
					_, _ = back.Write(buf[:n])
				}
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors from an earlier write
			}
			p.mu.Lock()
			p.down++
			drop := p.dropDown[p.down]
			if drop {
				p.dropped++
			}
			client := p.client
			p.mu.Unlock()
			if !drop && client != nil {
				_, _ = front.WriteToUDP(buf[:n], client)
				if p.dup {
					_, _ = front.WriteToUDP(buf[:n], client)
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = front.Close()
		_ = back.Close()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.front.LocalAddr().String() }

func (p *proxy) counts() (up, down, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up, p.down, p.dropped
}
