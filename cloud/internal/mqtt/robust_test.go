package mqtt

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

// Bad input on the wire: no client certificate, not TLS at all, malformed
// MQTT after a good handshake, an oversized packet. Each is refused or
// closed, with a reason where there is a connection attempt to record,
// and the broker keeps serving the others.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	good := e.mustConnect(e.device(ca, "good"), "good")
	good.subscribe(t, "devices/good/#")
	id := e.device(ca, "dev1")
	addr := e.srv.Addr().String()
	tlsDial := func(withCert bool) (*tls.Conn, error) {
		cfg := &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}
		if withCert {
			cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{id.cert.Raw}, PrivateKey: id.key}}
		}
		d := &net.Dialer{Timeout: wait}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(wait))
		}
		return c, err
	}
	// closed reports whether the server closed c (a read ends without
	// data).
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(make([]byte, 64))
		return n == 0 && err != nil && !isTimeout(err)
	}

	for _, tc := range []struct {
		name   string
		run    func(t *testing.T)
		reason string // of the auth.mqtt event, "" for none
	}{
		{"no client certificate", func(t *testing.T) {
			c, err := tlsDial(false)
			if err == nil {
				defer c.Close()
				if !closed(c) {
					t.Fatal("not closed")
				}
			}
		}, "no client certificate"},
		{"not TLS", func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, wait)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			if !closed(c) {
				t.Fatal("not closed")
			}
		}, "handshake failed: "},
		{"malformed MQTT", func(t *testing.T) {
			c, err := tlsDial(true)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}) // CONNECT with a 5-byte remaining length
			if !closed(c) {
				t.Fatal("not closed")
			}
		}, ""},
		{"oversized packet", func(t *testing.T) {
			c, err := e.connect(id, "dev1")
			if err != nil {
				t.Fatal(err)
			}
			c.publish(t, "devices/dev1/ok", nil)
			big := bytes.Repeat([]byte("x"), MaxPayload+16<<10)
			c.Publish("devices/dev1/big", 0, false, big) // over the packet limit: the broker hangs up
			select {
			case <-c.lost:
			case <-time.After(wait):
				t.Fatal("oversized packet did not end the connection")
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := e.mark()
			tc.run(t)
			if tc.reason != "" {
				ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT})
				if ev.Outcome != registry.OutcomeFail || !strings.HasPrefix(ev.Reason, tc.reason) {
					t.Fatalf("event = %+v", ev)
				}
			}
			// The others are still served.
			good.publish(t, "devices/good/ping", []byte(tc.name))
			if m := good.next(t); string(m.Payload()) != tc.name {
				t.Fatalf("good got %q", m.Payload())
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout() && err != io.EOF
}

// Close is idempotent, ends live connections and waits.
func TestClose(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	c := e.mustConnect(e.device(ca, "dev1"), "dev1")
	raw, err := net.DialTimeout("tcp", e.srv.Addr().String(), wait) // stuck before its handshake
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.lost:
	case <-time.After(wait):
		t.Fatal("client not disconnected")
	}
	if _, err := net.DialTimeout("tcp", e.srv.Addr().String(), wait); err == nil {
		t.Fatal("still accepting")
	}
}
