package dtlspsk

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

func TestPionHandshakeEcho(t *testing.T) {
	tests := []struct {
		name    string
		hint    []byte
		ems     dtls.ExtendedMasterSecretType
		offer   []uint16
		want    uint16
		wantEMS bool
	}{
		{name: "gcm/no-hint", offer: nil, want: TLS_PSK_WITH_AES_128_GCM_SHA256, wantEMS: true},
		{name: "gcm/hint", hint: []byte("credloop"), want: TLS_PSK_WITH_AES_128_GCM_SHA256, wantEMS: true},
		{name: "gcm/ems-require", ems: dtls.RequireExtendedMasterSecret, want: TLS_PSK_WITH_AES_128_GCM_SHA256, wantEMS: true},
		{name: "gcm/ems-disable", hint: []byte("h"), ems: dtls.DisableExtendedMasterSecret, want: TLS_PSK_WITH_AES_128_GCM_SHA256},
		{name: "ccm8/hint", hint: []byte("credloop"), offer: []uint16{TLS_PSK_WITH_AES_128_CCM_8}, want: TLS_PSK_WITH_AES_128_CCM_8, wantEMS: true},
		{name: "ccm8/ems-disable", ems: dtls.DisableExtendedMasterSecret, offer: []uint16{TLS_PSK_WITH_AES_128_CCM_8}, want: TLS_PSK_WITH_AES_128_CCM_8},
		{name: "ccm", offer: []uint16{TLS_PSK_WITH_AES_128_CCM}, want: TLS_PSK_WITH_AES_128_CCM, wantEMS: true},
		{name: "several-offered", offer: []uint16{TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_GCM_SHA256}, want: TLS_PSK_WITH_AES_128_CCM_8, wantEMS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startPion(t, pionConfig("dev1@proj", testKey, dtls.WithPSKIdentityHint(tt.hint), dtls.WithExtendedMasterSecret(tt.ems)))
			ctx := testContext(t, 10*time.Second)
			c, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: tt.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.State()
			if st.CipherSuite != tt.want || st.ExtendedMasterSecret != tt.wantEMS || st.IdentityHint != string(tt.hint) {
				t.Errorf("state = %+v, want suite %s, EMS %v, hint %q", st, CipherSuiteName(tt.want), tt.wantEMS, tt.hint)
			}
			echo(t, c, "hello")
			echo(t, c, strings.Repeat("x", 1000))
			echo(t, c, "again")
		})
	}
}

func TestPionRejects(t *testing.T) {
	t.Run("unknown-identity", func(t *testing.T) {
		srv := startPion(t, pionConfig("dev1@proj", testKey))
		ctx := testContext(t, 10*time.Second)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "nobody@proj", Key: testKey})
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Level != AlertFatal {
			t.Fatalf("err = %v, want a fatal *AlertError", err)
		}
		if !strings.Contains(err.Error(), "alert") {
			t.Errorf("error %q does not say alert", err)
		}
	})
	t.Run("wrong-key", func(t *testing.T) {
		// pion drops a Finished it cannot decrypt without a word, so the
		// client can only give up when its context ends.
		srv := startPion(t, pionConfig("dev1@proj", testKey))
		ctx := testContext(t, 1500*time.Millisecond)
		_, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: []byte("another key"), RetransmitTimeout: 200 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		if !strings.Contains(err.Error(), "server Finished") {
			t.Errorf("error %q does not say what it waited for", err)
		}
	})
}

func TestPionCloseNotify(t *testing.T) {
	srv := startPion(t, pionConfig("dev1@proj", testKey))
	ctx := testContext(t, 10*time.Second)
	c, err := Dial(ctx, srv.addr, &Config{Identity: "dev1@proj", Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "ping")
	// Closing the server side sends close_notify.
	srv.close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after server close = %v, want io.EOF", err)
	}
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("second read = %v, want io.EOF again", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

func TestRetransmission(t *testing.T) {
	tests := []struct {
		name     string
		dropUp   []int
		dropDown []int
		dup      bool
	}{
		{name: "HelloVerifyRequest lost", dropDown: []int{1}},
		{name: "server hello flight lost", dropDown: []int{2}},
		{name: "server Finished lost", dropDown: []int{3}},
		{name: "client Finished flight lost", dropUp: []int{3}},
		{name: "first ClientHello lost", dropUp: []int{1}},
		{name: "each server flight lost once", dropDown: []int{1, 3, 5}},
		{name: "every datagram duplicated", dup: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startPion(t, pionConfig("dev1@proj", testKey, dtls.WithPSKIdentityHint([]byte("hint"))))
			p := startProxy(t, srv.addr, tt.dropUp, tt.dropDown, tt.dup)
			ctx := testContext(t, 15*time.Second)
			c, err := Dial(ctx, p.addr(), &Config{Identity: "dev1@proj", Key: testKey, RetransmitTimeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echo(t, c, "after loss")
			up, down, dropped := p.counts()
			t.Logf("datagrams: %d up, %d down, %d dropped", up, down, dropped)
			if dropped != len(tt.dropUp)+len(tt.dropDown) {
				t.Errorf("proxy dropped %d datagrams (up %d, down %d), want %d", dropped, up, down, len(tt.dropUp)+len(tt.dropDown))
			}
		})
	}
}

func TestFragmentation(t *testing.T) {
	// pion fragments its long identity hint to fit a tiny MTU; this client
	// fragments its long identity in ClientKeyExchange.
	identity := strings.Repeat("d", 700) + "@proj"
	hint := strings.Repeat("h", 400)
	srv := startPion(t, pionConfig(identity, testKey, dtls.WithPSKIdentityHint([]byte(hint)), dtls.WithMTU(120)))
	p := startProxy(t, srv.addr, nil, nil, false)
	ctx := testContext(t, 10*time.Second)
	c, err := Dial(ctx, p.addr(), &Config{Identity: identity, Key: testKey, MTU: MinMTU})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.State().IdentityHint != hint {
		t.Errorf("hint of %d bytes, want %d", len(c.State().IdentityHint), len(hint))
	}
	echo(t, c, "fragmented")
	up, down, _ := p.counts()
	t.Logf("%d datagrams up, %d down", up, down)
	if up < 6 || down < 6 {
		t.Errorf("%d datagrams up, %d down: the flights were not fragmented", up, down)
	}
}
