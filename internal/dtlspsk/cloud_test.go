package dtlspsk

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
)

// coapGet is a CoAP CON GET with message ID mid and a one-byte token; path
// is one Uri-Path segment ("" for /).
func coapGet(mid uint16, token byte, path string) []byte {
	msg := []byte{0x41, 0x01, byte(mid >> 8), byte(mid), token}
	if path != "" {
		msg = append(msg, 0xb0|byte(len(path))) // option 11 Uri-Path, len < 13
		msg = append(msg, path...)
	}
	return msg
}

// checkCoAPContent sends a GET and expects a piggybacked 2.05 Content.
func checkCoAPContent(t *testing.T, c *Conn, path string) []byte {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := coapGet(0x1234, 0xab, path)
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	resp := buf[:n]
	switch {
	case n < 5:
		t.Fatalf("response of %d bytes: % x", n, resp)
	case resp[0] != 0x61: // version 1, ACK, token length 1
		t.Fatalf("response header 0x%02x, want a piggybacked ACK (0x61): % x", resp[0], resp)
	case resp[1] != 0x45:
		t.Fatalf("response code %d.%02d, want 2.05: % x", resp[1]>>5, resp[1]&0x1f, resp)
	case resp[2] != req[2] || resp[3] != req[3] || resp[4] != req[4]:
		t.Fatalf("response message ID/token do not match the request: % x", resp)
	}
	return resp
}

func startCloud(t *testing.T, identity string, key []byte) *cloud.Cloud {
	t.Helper()
	c, err := cloud.New(cloud.Options{HTTPSAddr: "-", MQTTAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Registry.CreateProject(ctx, "proj"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "proj", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "proj", "dev1", identity, key); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCloudCoAPS(t *testing.T) {
	cl := startCloud(t, "dev1@proj", testKey)
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_CCM} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			ctx := testContext(t, 10*time.Second)
			c, err := Dial(ctx, cl.Addrs().CoAPS, &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: []uint16{suite}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.State().CipherSuite; got != suite {
				t.Errorf("suite = %s", CipherSuiteName(got))
			}
			resp := checkCoAPContent(t, c, "hello")
			if !bytes.Contains(resp, []byte(`"device":"dev1"`)) {
				t.Errorf("hello body does not name the device: %q", resp)
			}
		})
	}
}

func TestCloudRejects(t *testing.T) {
	cl := startCloud(t, "dev1@proj", testKey)
	tests := []struct {
		name     string
		identity string
		key      []byte
		want     AlertDescription
	}{
		// The cloud tells a client whose Finished does not decrypt at once.
		{name: "wrong key", identity: "dev1@proj", key: []byte("not the key"), want: AlertBadRecordMAC},
		{name: "unknown identity", identity: "ghost@proj", key: testKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t, 10*time.Second)
			_, err := Dial(ctx, cl.Addrs().CoAPS, &Config{Identity: tt.identity, Key: tt.key})
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Level != AlertFatal {
				t.Fatalf("err = %v, want a fatal *AlertError", err)
			}
			if tt.want != 0 && ae.Description != tt.want {
				t.Errorf("alert = %s, want %s", ae.Description, tt.want)
			}
		})
	}
}
