package sim_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
	"github.com/credloop/credloop/sim"
)

// freeUDPPort finds a port p such that p and p+1 are both free (libcoap
// binds both).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c2, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		c.Close()
		if err == nil {
			c2.Close()
			return p
		}
	}
	t.Fatal("no pair of free UDP ports")
	return 0
}

// A simulated device completes a PSK handshake and a GET against libcoap's
// own server, proving our client side speaks DTLS/CoAP like libcoap does.
func TestDeviceAgainstLibcoapServer(t *testing.T) {
	server := peer.Require(t, "coap-server-openssl")
	port := freeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-k", "interop-secret-1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// libcoap serves plain CoAP on -p PORT and DTLS on PORT+1.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
	cred := sim.Credential{PSKIdentity: "dev1@acme", PSK: []byte("interop-secret-1")}

	// Readiness: the server is ready when a handshake completes. Each
	// attempt is bounded; the whole wait by ctx.
	var s *sim.Session
	for s == nil {
		select {
		case err := <-exited:
			t.Fatalf("coap-server-openssl exited: %v", err)
		default:
		}
		var err error
		s, err = sim.Dial(ctx, sim.DialOptions{Addr: addr, Credential: cred, HandshakeTimeout: 500 * time.Millisecond})
		if err != nil && ctx.Err() != nil {
			t.Fatalf("libcoap server never completed a handshake: %v", err)
		}
	}
	defer s.Close()
	if s.CipherSuite() == "" {
		t.Fatal("no cipher suite negotiated")
	}
	// libcoap's example server answers GET / with its banner.
	body, err := s.GetRaw(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(body) == 0 {
		t.Fatal("empty answer from libcoap server")
	}
	t.Logf("libcoap server says: %q (suite %s)", body, s.CipherSuite())

	// And a wrong key fails the handshake.
	_, err = sim.Dial(ctx, sim.DialOptions{Addr: addr, Credential: sim.Credential{PSKIdentity: "dev1@acme", PSK: []byte("wrong-secret-000")}, HandshakeTimeout: 2 * time.Second})
	if !errors.Is(err, sim.ErrHandshake) {
		t.Fatalf("wrong key: err = %v", err)
	}
}
