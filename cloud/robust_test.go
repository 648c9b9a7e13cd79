package cloud_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

// pskCloud starts a cloud with project acme and device dev1 holding the
// PSK key under identity dev1@acme.
func pskCloud(t *testing.T, opts cloud.Options, psk string) (*cloud.Cloud, sim.Credential) {
	t.Helper()
	c := newCloud(t, opts)
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	key := []byte(psk)
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", key); err != nil {
		t.Fatal(err)
	}
	return c, sim.Credential{PSKIdentity: "dev1@acme", PSK: key}
}

// rawDTLS opens a DTLS session without a CoAP layer, to send exact bytes.
func rawDTLS(t *testing.T, addr string, cred sim.Credential) *dtls.Conn {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dtls.DialWithOptions("udp", ra,
		dtls.WithPSK(func([]byte) ([]byte, error) { return cred.PSK, nil }),
		dtls.WithPSKIdentityHint([]byte(cred.PSKIdentity)),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func exchange(t *testing.T, conn *dtls.Conn, msg []byte) []byte {
	t.Helper()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer to % x: %v", msg, err)
	}
	return buf[:n]
}

// Golioth's Zephyr SDK keeps the session alive with a NON 0.00 that has no
// token; the cloud answers with a Reset carrying the same message id. A
// CoAP ping (CON 0.00) gets a Reset too (RFC 7252 section 4.3).
func TestEmptyMessagesGetReset(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "robust-secret-01")
	conn := rawDTLS(t, c.Addrs().CoAPS, cred)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"NON 0.00", []byte{0x50, 0x00, 0x12, 0x34}},
		{"CON 0.00 (ping)", []byte{0x40, 0x00, 0x56, 0x78}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, conn, tc.msg)
			want := []byte{0x70, 0x00, tc.msg[2], tc.msg[3]} // RST, 0.00, same MID
			if !bytes.Equal(got, want) {
				t.Fatalf("answer = % x, want % x", got, want)
			}
		})
	}
}

// Sessions that receive nothing for the idle time are closed and the
// closing is an event.
func TestIdleSessionClosed(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{IdleTimeout: 300 * time.Millisecond}, "robust-secret-01")
	ctx := ctxT(t)
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := waitEvent(t, c, registry.Filter{Kind: "session.closed", Device: "dev1"})
	if !strings.Contains(ev.Reason, "idle") {
		t.Fatalf("reason = %q", ev.Reason)
	}
	if n := cloud.CoAPSessions(c); n != 0 {
		t.Fatalf("%d sessions still live", n)
	}
}

// Garbage never takes the endpoint down: stray datagrams, truncated and
// forged records, malformed and oversized CoAP messages, malformed CSRs.
// The registry keeps what it had and other devices keep working.
func TestBadInputKeepsServing(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "robust-secret-01")
	ctx := ctxT(t)
	addr := c.Addrs().CoAPS
	before, err := c.Registry.Devices(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	// Plain UDP garbage, and records that look like DTLS but are not.
	ua, _ := net.ResolveUDPAddr("udp", addr)
	u, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	garbage := [][]byte{
		{},
		{0x00},
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		bytes.Repeat([]byte{0xff}, 1500),
		{22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},                   // handshake header claiming 64 KiB
		{22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 200},           // truncated ClientHello
		{23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}, // application data, no session
	}
	for _, g := range garbage {
		if _, err := u.Write(g); err != nil {
			t.Fatal(err)
		}
	}

	// Inside an authenticated session: malformed CoAP.
	conn := rawDTLS(t, addr, cred)
	for _, msg := range [][]byte{
		{0x40},                         // truncated header
		{0x80, 0x01, 0x00, 0x01},       // version 2
		{0x4f, 0x01, 0x00, 0x01},       // token length 15
		{0x40, 0x01, 0x00, 0x02, 0xdd}, // option delta from an extended byte that is missing
		append([]byte{0x40, 0x02, 0x00, 0x03, 0xb2, '.', 'd', 0xff}, bytes.Repeat([]byte("x"), 70<<10)...), // oversized POST
	} {
		_, _ = conn.Write(msg)
	}
	// A malformed CSR over EST answers 4.00 and records nothing but the
	// failure.
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: addr, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, csr := range [][]byte{nil, []byte("not a csr"), bytes.Repeat([]byte{0x30}, 300)} {
		if _, err := s.Enroll(ctx, csr, false); err == nil || !strings.Contains(err.Error(), "BadRequest") {
			t.Fatalf("malformed CSR: %v", err)
		}
	}
	// The state store refuses what is not JSON.
	if err := s.PutState(ctx, "x", []byte("{not json")); err == nil {
		t.Fatal("non-JSON state accepted")
	}

	// Still serving: a fresh device session works end to end.
	s2, err := sim.Dial(ctx, sim.DialOptions{Addr: addr, Credential: cred})
	if err != nil {
		t.Fatalf("endpoint stopped serving: %v", err)
	}
	defer s2.Close()
	if h, err := s2.Hello(ctx); err != nil || h.Device != "dev1" {
		t.Fatalf("hello after garbage = %+v, %v", h, err)
	}
	after, err := c.Registry.Devices(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("devices changed: %d → %d", len(before), len(after))
	}
	creds, err := c.Registry.Credentials(ctx, "acme", "dev1")
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials changed: %v, %v", creds, err)
	}
	if _, err := c.Registry.GetState(ctx, "acme", "dev1", "x"); err == nil {
		t.Fatal("rejected state was stored")
	}
}
