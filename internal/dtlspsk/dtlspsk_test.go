package dtlspsk

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

func TestHMACMatchesStdlib(t *testing.T) {
	h := newHMAC()
	for _, n := range []int{1, 16, 36, 64, 65, 200} {
		key := bytes.Repeat([]byte{byte(n)}, n)
		h.setKey(key)
		h.reset()
		h.write([]byte("message"))
		got := h.sum(nil)
		std := hmac.New(sha256.New, key)
		std.Write([]byte("message"))
		if want := std.Sum(nil); !bytes.Equal(got, want) {
			t.Errorf("key of %d bytes: %x, want %x", n, got, want)
		}
	}
}

func TestPRFMatchesPion(t *testing.T) {
	h := newHMAC()
	var a, b [32]byte
	cr, sr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	pre := appendPremaster(nil, testKey)
	if want := prf.PSKPreMasterSecret(testKey); !bytes.Equal(pre, want) {
		t.Fatalf("premaster %x, want %x", pre, want)
	}
	tests := []struct {
		name   string
		mine   func() []byte
		theirs func() ([]byte, error)
	}{
		{"master secret", func() []byte {
			out := make([]byte, 48)
			h.setKey(pre)
			h.prf(out, labelMaster, cr, sr, &a, &b)
			return out
		}, func() ([]byte, error) { return prf.MasterSecret(pre, cr, sr, sha256.New) }},
		{"extended master secret", func() []byte {
			out := make([]byte, 48)
			h.setKey(pre)
			h.prf(out, labelExtendedMaster, sr, nil, &a, &b)
			return out
		}, func() ([]byte, error) { return prf.ExtendedMasterSecret(pre, sr, sha256.New) }},
		{"key expansion (100 bytes)", func() []byte {
			out := make([]byte, 100)
			h.setKey(cr)
			h.prf(out, labelKeyExpansion, sr, cr, &a, &b)
			return out
		}, func() ([]byte, error) {
			return prf.PHash(cr, append(append(append([]byte{}, labelKeyExpansion...), sr...), cr...), 100, sha256.New)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := tt.theirs()
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.mine(); !bytes.Equal(got, want) {
				t.Errorf("got %x\nwant %x", got, want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	var w window
	steps := []struct {
		seq  uint64
		want bool
	}{
		{5, true}, {5, false}, {4, true}, {70, true}, {6, false} /* below window */, {7, true}, {7, false},
		{69, true}, {70, false}, {1 << 40, true}, {1<<40 - 63, true}, {1<<40 - 64, false},
	}
	for i, s := range steps {
		got := w.check(s.seq)
		if got != s.want {
			t.Fatalf("step %d: check(%d) = %v, want %v", i, s.seq, got, s.want)
		}
		if got {
			w.mark(s.seq)
		}
	}
}

func TestSealOpen(t *testing.T) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM, TLS_PSK_WITH_AES_128_CCM_8} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			var w, r cipherState
			key, iv := bytes.Repeat([]byte{7}, 16), []byte{1, 2, 3, 4}
			if err := w.init(suite, key, iv); err != nil {
				t.Fatal(err)
			}
			if err := r.init(suite, key, iv); err != nil {
				t.Fatal(err)
			}
			rec := w.seal(make([]byte, 0, 128), typeApplicationData, 1, 42, []byte("pre"), []byte("fix"))
			if want := recordHeaderLen + explicitNonceLen + 6 + suiteTagLen(suite); len(rec) != want {
				t.Fatalf("record of %d bytes, want %d", len(rec), want)
			}
			parsed, rest, err := parseRecord(rec)
			if err != nil || len(rest) != 0 || parsed.epoch != 1 || parsed.seq != 42 || parsed.typ != typeApplicationData {
				t.Fatalf("parse: %+v %v", parsed, err)
			}
			tampered := bytes.Clone(rec)
			pt, err := r.open(&parsed)
			if err != nil || string(pt) != "prefix" {
				t.Fatalf("open = %q, %v", pt, err)
			}
			tampered[len(tampered)-1] ^= 1
			parsed, _, _ = parseRecord(tampered)
			if _, err := r.open(&parsed); err == nil {
				t.Fatal("tampered record opened")
			}
		})
	}
}

func TestReassembly(t *testing.T) {
	msg := []byte("0123456789abcdefghij")
	tests := []struct {
		name  string
		parts [][2]int // [off, end)
		want  bool
	}{
		{"whole", [][2]int{{0, 20}}, true},
		{"in order", [][2]int{{0, 5}, {5, 12}, {12, 20}}, true},
		{"reversed", [][2]int{{12, 20}, {5, 12}, {0, 5}}, true},
		{"overlapping duplicates", [][2]int{{0, 8}, {4, 10}, {0, 8}, {9, 20}}, true},
		{"gap", [][2]int{{0, 5}, {6, 20}}, false},
		{"empty fragments only", [][2]int{{3, 3}, {0, 0}}, false},
		{"too many holes then filled", [][2]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}, {16, 17}, {0, 20}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reassembler
			for _, p := range tt.parts {
				f := fragment{typ: hsServerHello, length: len(msg), seq: 1, off: p[0], body: msg[p[0]:p[1]]}
				if !r.add(&f, 0) {
					t.Fatalf("fragment %v refused", p)
				}
			}
			m := r.next(1)
			if (m != nil) != tt.want {
				t.Fatalf("complete = %v, want %v", m != nil, tt.want)
			}
			if m != nil && !bytes.Equal(m.body, msg) {
				t.Fatalf("body %q", m.body)
			}
		})
	}
	t.Run("conflicting header", func(t *testing.T) {
		var r reassembler
		f := fragment{typ: hsServerHello, length: 20, seq: 1, body: msg[:4]}
		r.add(&f, 0)
		g := fragment{typ: hsServerKeyExchange, length: 20, seq: 1, body: msg[:4]}
		if r.add(&g, 0) {
			t.Fatal("fragment of another type with the same message_seq was accepted")
		}
	})
	t.Run("empty message", func(t *testing.T) {
		var r reassembler
		f := fragment{typ: hsServerHelloDone, length: 0, seq: 3}
		r.add(&f, 0)
		if r.next(3) == nil {
			t.Fatal("ServerHelloDone not complete")
		}
	})
}

func TestParseServerHello(t *testing.T) {
	random := bytes.Repeat([]byte{9}, 32)
	hello := func(version []byte, sid int, suite uint16, comp byte, ext []byte) []byte {
		b := append([]byte{}, version...)
		b = append(b, random...)
		b = append(b, byte(sid))
		b = append(b, make([]byte, sid)...)
		b = append(b, byte(suite>>8), byte(suite), comp)
		return append(b, ext...)
	}
	v12 := []byte{0xfe, 0xfd}
	offered := []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}
	tests := []struct {
		name      string
		in        []byte
		wantAlert AlertDescription
		wantEMS   bool
	}{
		{"no extensions", hello(v12, 0, 0xa8, 0, nil), 255, false},
		{"ems and reneg", hello(v12, 32, 0xa8, 0, []byte{0, 9, 0, 0x17, 0, 0, 0xff, 1, 0, 1, 0}), 255, true},
		{"DTLS 1.0", hello([]byte{0xfe, 0xff}, 0, 0xa8, 0, nil), AlertProtocolVersion, false},
		{"suite not offered", hello(v12, 0, 0xc0a8, 0, nil), AlertIllegalParameter, false},
		{"compression", hello(v12, 0, 0xa8, 1, nil), AlertIllegalParameter, false},
		{"session id too long", hello(v12, 33, 0xa8, 0, nil), AlertDecodeError, false},
		{"truncated", hello(v12, 0, 0xa8, 0, nil)[:36], AlertDecodeError, false},
		{"extensions length wrong", hello(v12, 0, 0xa8, 0, []byte{0, 5, 0, 0x17, 0, 0}), AlertDecodeError, false},
		{"unsolicited extension", hello(v12, 0, 0xa8, 0, []byte{0, 4, 0, 0x0b, 0, 0}), AlertUnsupportedExtension, false},
		{"ems not empty", hello(v12, 0, 0xa8, 0, []byte{0, 5, 0, 0x17, 0, 1, 0}), AlertDecodeError, false},
		{"ems twice", hello(v12, 0, 0xa8, 0, []byte{0, 8, 0, 0x17, 0, 0, 0, 0x17, 0, 0}), AlertDecodeError, false},
		{"reneg not empty", hello(v12, 0, 0xa8, 0, []byte{0, 6, 0xff, 1, 0, 2, 1, 0}), AlertHandshakeFailure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh, err := parseServerHello(tt.in, offered)
			var pe *protocolError
			switch {
			case tt.wantAlert == 255 && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantAlert == 255:
				if sh.ems != tt.wantEMS || sh.suite != 0xa8 || !bytes.Equal(sh.random[:], random) {
					t.Fatalf("parsed %+v", sh)
				}
			case !errors.As(err, &pe) || !errors.Is(err, ErrProtocol):
				t.Fatalf("err = %v, want a protocol violation", err)
			case pe.alert != tt.wantAlert:
				t.Fatalf("alert = %s, want %s (%v)", pe.alert, tt.wantAlert, err)
			}
		})
	}
}

func TestParseSmallMessages(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) ([]byte, error)
		in    []byte
		want  string // "" means an error
	}{
		{"hvr", parseHelloVerifyRequest, []byte{0xfe, 0xff, 3, 'a', 'b', 'c'}, "abc"},
		{"hvr 1.2", parseHelloVerifyRequest, []byte{0xfe, 0xfd, 1, 'z'}, "z"},
		{"hvr short cookie", parseHelloVerifyRequest, []byte{0xfe, 0xff, 4, 'a'}, ""},
		{"hvr trailing", parseHelloVerifyRequest, []byte{0xfe, 0xff, 0, 'a'}, ""},
		{"hvr tls version", parseHelloVerifyRequest, []byte{3, 3, 0}, ""},
		{"hvr empty", parseHelloVerifyRequest, nil, ""},
		{"ske", parseServerKeyExchange, []byte{0, 4, 'h', 'i', 'n', 't'}, "hint"},
		{"ske long", parseServerKeyExchange, []byte{0, 5, 'h', 'i', 'n', 't'}, ""},
		{"ske one byte", parseServerKeyExchange, []byte{0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want a protocol violation", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseRecordAndFragment(t *testing.T) {
	rec := []byte{22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 1, 2, 0, 2, 'h', 'i', 23}
	r, rest, err := parseRecord(rec)
	if err != nil || r.epoch != 1 || r.seq != 258 || string(r.payload) != "hi" || len(rest) != 1 {
		t.Fatalf("%+v %q %v", r, rest, err)
	}
	for _, bad := range [][]byte{rec[:12], {22, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, rec[:14]} {
		if _, _, err := parseRecord(bad); err == nil {
			t.Errorf("parseRecord(% x) accepted", bad)
		}
	}
	frag := []byte{2, 0, 0, 10, 0, 1, 0, 0, 4, 0, 0, 2, 'x', 'y'}
	f, rest, err := parseFragment(frag)
	if err != nil || f.typ != 2 || f.length != 10 || f.seq != 1 || f.off != 4 || string(f.body) != "xy" || len(rest) != 0 {
		t.Fatalf("%+v %v", f, err)
	}
	for _, bad := range [][]byte{frag[:11], frag[:13], {2, 0, 0, 4, 0, 1, 0, 0, 3, 0, 0, 2, 'x', 'y'}, {2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}} {
		if _, _, err := parseFragment(bad); err == nil {
			t.Errorf("parseFragment(% x) accepted", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	secret := []byte("super-secret-psk-value")
	cfg := Config{Identity: "dev1@proj", Key: secret}
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, &cfg, cfg, &cfg)} {
		if strings.Contains(s, string(secret)) || strings.Contains(s, hex.EncodeToString(secret)) || strings.Contains(s, fmt.Sprint(secret)) {
			t.Fatalf("key leaked: %s", s)
		}
		if !strings.Contains(s, Fingerprint(secret)) {
			t.Fatalf("no fingerprint in %s", s)
		}
	}
	bad := []*Config{
		nil,
		{Identity: "x"},
		{Identity: "x", Key: make([]byte, 70000)},
		{Identity: strings.Repeat("x", 70000), Key: secret},
		{Identity: "x", Key: secret, MTU: 100},
		{Identity: "x", Key: secret, CipherSuites: []uint16{0xc02b}},
	}
	for i, c := range bad {
		_, err := Dial(context.Background(), "127.0.0.1:1", c)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("config %d: err = %v, want ErrConfig", i, err)
		}
		if err != nil && strings.Contains(err.Error(), string(secret)) {
			t.Errorf("config %d: key in error %q", i, err)
		}
	}
}

func TestAlertError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &AlertError{Level: AlertFatal, Description: AlertHandshakeFailure})
	if got, want := err.Error(), "wrapped: dtlspsk: remote alert: handshake_failure (fatal)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got := AlertDescription(200).String(); got != "alert(200)" {
		t.Errorf("unknown description = %q", got)
	}
}

// scriptConn is a net.Conn that hands the client recorded datagrams.
type scriptConn struct {
	in     [][]byte
	writes int
}

func (s *scriptConn) Read(b []byte) (int, error) {
	if len(s.in) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(b, s.in[0])
	s.in = s.in[1:]
	return n, nil
}
func (s *scriptConn) Write(b []byte) (int, error)      { s.writes++; return len(b), nil }
func (s *scriptConn) Close() error                     { return nil }
func (s *scriptConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func TestLocalAlertSent(t *testing.T) {
	// A ServerHello choosing a suite that was not offered: the client
	// answers with a fatal illegal_parameter alert and returns ErrProtocol.
	body := append([]byte{0xfe, 0xfd}, make([]byte, 32)...)
	body = append(body, 0, 0xc0, 0x2b, 0)
	msg := appendHeader(nil, hsServerHello, len(body), 0)
	msg = append(msg, body...)
	dgram := appendPlain(nil, typeHandshake, 0, nil, msg)
	sc := &scriptConn{in: [][]byte{dgram}}
	ctx := testContext(t, 5*time.Second)
	_, err := Client(ctx, sc, &Config{Identity: "x", Key: testKey})
	if !errors.Is(err, ErrProtocol) || strings.Contains(err.Error(), "alert") {
		t.Fatalf("err = %v, want a protocol violation that does not read as a remote alert", err)
	}
	if sc.writes != 2 { // ClientHello, alert
		t.Fatalf("%d datagrams written, want ClientHello and an alert", sc.writes)
	}
}

func TestShortBufferAndTooLarge(t *testing.T) {
	srv := startPion(t, pionConfig("dev1@proj", testKey))
	ctx := testContext(t, 10*time.Second)
	c, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, maxPlaintext+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized write: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	n, err := c.Read(buf)
	if !errors.Is(err, ErrShortBuffer) || string(buf[:n]) != "0123" {
		t.Fatalf("read = %q, %v", buf[:n], err)
	}
	echo(t, c, "still fine")
}

func TestCancel(t *testing.T) {
	// A server that never answers: cancelling the context ends the
	// handshake even though no deadline is set.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, pc.LocalAddr().String(), &Config{Identity: "x", Key: testKey})
		done <- err
	}()
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := pc.ReadFrom(buf); err != nil { // the ClientHello arrived
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handshake did not stop on cancel")
	}
}
