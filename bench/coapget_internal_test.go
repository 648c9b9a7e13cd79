package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// The request coapRequest writes is what go-coap decodes: a CON GET with
// the token, the message id and the Uri-Path segments.
func TestCoAPRequestDecodes(t *testing.T) {
	for _, tt := range []struct {
		path string
		want string
	}{
		{"/hello", "/hello"},
		{"/", ""}, // no Uri-Path option
		{"", ""},
		{"/.well-known/core", "/.well-known/core"},
		{"/a/" + string(bytes.Repeat([]byte("x"), 40)), "/a/" + string(bytes.Repeat([]byte("x"), 40))},
	} {
		t.Run(tt.path, func(t *testing.T) {
			b, err := coapRequest(0x1234, []byte{1, 2, 3, 4}, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			m := pool.NewMessage(context.Background())
			if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, b); err != nil {
				t.Fatalf("go-coap cannot decode % x: %v", b, err)
			}
			if m.Code().String() != "GET" || m.MessageID() != 0x1234 || !bytes.Equal(m.Token(), []byte{1, 2, 3, 4}) {
				t.Fatalf("decoded %v", m)
			}
			if p, _ := m.Path(); p != tt.want {
				t.Fatalf("path %q, want %q", p, tt.want)
			}
		})
	}
	if _, err := coapRequest(1, make([]byte, 9), "/"); !errors.Is(err, ErrCoAP) {
		t.Errorf("9-byte token: %v", err)
	}
}

// coapGet against a scripted UDP peer: piggybacked response, separate
// response after an empty ACK (which it must ACK), an error code, a
// reset, and a first request lost (retransmission).
func TestCoAPGet(t *testing.T) {
	ack := func(req []byte, code byte) []byte {
		return append([]byte{0x60 | req[0]&0x0f, code, req[2], req[3]}, req[4:4+int(req[0]&0x0f)]...)
	}
	for _, tt := range []struct {
		name  string
		serve func(req []byte, n int) [][]byte // replies to the n-th datagram received
		ok    bool
	}{
		{"piggybacked", func(req []byte, _ int) [][]byte { return [][]byte{ack(req, 0x45)} }, true},
		{"separate", func(req []byte, n int) [][]byte {
			if n > 0 {
				return nil // the client's ACK of the separate response
			}
			sep := append([]byte{0x40 | req[0]&0x0f, 0x45, 0x77, 0x77}, req[4:4+int(req[0]&0x0f)]...)
			return [][]byte{{0x60, 0, req[2], req[3]}, sep}
		}, true},
		{"not found", func(req []byte, _ int) [][]byte { return [][]byte{ack(req, 0x84)} }, false},
		{"reset", func(req []byte, _ int) [][]byte { return [][]byte{{0x70, 0, req[2], req[3]}} }, false},
		{"first lost", func(req []byte, n int) [][]byte {
			if n == 0 {
				return nil
			}
			return [][]byte{ack(req, 0x45)}
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			go func() {
				buf := make([]byte, 1500)
				for n := 0; ; n++ {
					k, from, err := srv.ReadFrom(buf)
					if err != nil {
						return
					}
					for _, r := range tt.serve(append([]byte(nil), buf[:k]...), n) {
						_, _ = srv.WriteTo(r, from)
					}
				}
			}()
			c, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = coapGet(ctx, c, 0x0102, []byte{9, 9}, "/hello")
			if (err == nil) != tt.ok {
				t.Fatalf("coapGet: %v, want ok=%t", err, tt.ok)
			}
		})
	}
}

// A cancelled context ends a wait for a response at once.
func TestCoAPGetCancel(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		buf := make([]byte, 64)
		_, _, _ = srv.ReadFrom(buf) // the request has been sent
		cancel()
	}()
	if err := coapGet(ctx, c, 1, nil, "/"); !errors.Is(err, context.Canceled) {
		t.Fatalf("coapGet: %v, want context.Canceled", err)
	}
}

func FuzzParseCoAPResponse(f *testing.F) {
	f.Add([]byte{0x61, 0x45, 0x01, 0x02, 0x09})
	f.Add([]byte{0x70, 0x00, 0x01, 0x02})
	f.Add([]byte{0x4f, 0x45, 0, 0})
	f.Add([]byte{0x61})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseCoAPResponse(b)
		if err != nil {
			return
		}
		if len(r.token) > 8 || r.typ > 3 || 4+len(r.token) > len(b) {
			t.Fatalf("parsed %+v from % x", r, b)
		}
	})
}
