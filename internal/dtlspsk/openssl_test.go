package dtlspsk

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
)

// freeUDPPorts returns n consecutive free loopback UDP ports.
func freeUDPPorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		first, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := first.LocalAddr().(*net.UDPAddr).Port
		socks := []*net.UDPConn{first}
		ok := true
		for i := 1; i < n && ok; i++ {
			s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + i})
			if err != nil {
				ok = false
				break
			}
			socks = append(socks, s)
		}
		for _, s := range socks {
			_ = s.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free consecutive UDP ports")
	return 0
}

// child is a peer process whose output is collected for failure reports.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan struct{}
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(name, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(ch.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch.mu.Lock()
			ch.out.WriteString(sc.Text() + "\n")
			ch.mu.Unlock()
			select {
			case ch.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(ch.done)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-ch.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, ch.output())
		}
	})
	return ch
}

func (ch *child) output() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.out.String()
}

// waitLine waits for an output line containing s.
func (ch *child) waitLine(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for {
		select {
		case l, ok := <-ch.lines:
			if !ok {
				t.Fatalf("peer exited before printing %q", s)
			}
			if strings.Contains(l, s) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("peer did not print %q: %v", s, ctx.Err())
		}
	}
}

// dialReady retries the handshake until the server answers (readiness by
// probing) or ctx ends. A refused port fails a probe at once.
func dialReady(t *testing.T, ctx context.Context, addr string, cfg *Config, exited <-chan struct{}) *Conn {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := Dial(pctx, addr, cfg)
		cancel()
		if err == nil {
			return c
		}
		var ae *AlertError
		if errors.As(err, &ae) {
			t.Fatalf("server rejected the handshake: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server never completed a handshake: %v", err)
		case <-exited:
			t.Fatalf("server exited: %v", err)
		case <-tick.C:
		}
	}
}

func TestOpenSSLServer(t *testing.T) {
	openssl := peer.Require(t, "openssl")
	tests := []struct {
		name   string
		cipher string
		suite  uint16
		hint   string
	}{
		{name: "gcm", cipher: "PSK-AES128-GCM-SHA256", suite: TLS_PSK_WITH_AES_128_GCM_SHA256, hint: "credloop"},
		{name: "ccm8", cipher: "PSK-AES128-CCM8", suite: TLS_PSK_WITH_AES_128_CCM_8},
		{name: "ccm", cipher: "PSK-AES128-CCM", suite: TLS_PSK_WITH_AES_128_CCM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freeUDPPorts(t, 1)
			args := []string{"s_server", "-dtls1_2", "-accept", "127.0.0.1:" + strconv.Itoa(port),
				"-nocert", "-psk", hex.EncodeToString(testKey), "-psk_identity", "dev1@proj",
				"-cipher", tt.cipher, "-quiet"}
			if tt.hint != "" {
				args = append(args, "-psk_hint", tt.hint)
			}
			srv := startChild(t, openssl, args...)
			ctx := testContext(t, 20*time.Second)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			cfg := &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_CCM}}
			c := dialReady(t, ctx, addr, cfg, srv.done)
			defer c.Close()
			if st := c.State(); st.CipherSuite != tt.suite || st.IdentityHint != tt.hint || !st.ExtendedMasterSecret {
				t.Errorf("state = %+v", st)
			}
			// Client to server: s_server prints what it receives.
			if _, err := c.Write([]byte("from-client\n")); err != nil {
				t.Fatal(err)
			}
			srv.waitLine(t, ctx, "from-client")
			// Server to client: s_server sends what it reads on stdin.
			if _, err := fmt.Fprintf(srv.stdin, "from-server\n"); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "from-server\n" {
				t.Errorf("read %q", got)
			}
		})
	}
}

func TestLibcoapServer(t *testing.T) {
	server := peer.Require(t, "coap-server-openssl")
	port := freeUDPPorts(t, 2) // CoAP on port, CoAPS on port+1
	srv := startChild(t, server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-k", string(testKey), "-v", "4")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM_8} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			ctx := testContext(t, 20*time.Second)
			c := dialReady(t, ctx, addr, &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: []uint16{suite}}, srv.done)
			defer c.Close()
			if st := c.State(); st.CipherSuite != suite || st.IdentityHint != "CoAP" {
				t.Errorf("state = %+v, want %s with libcoap's default hint", st, CipherSuiteName(suite))
			}
			checkCoAPContent(t, c, "")
		})
	}
}
