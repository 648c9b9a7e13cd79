package dtlspsk

import (
	"testing"
	"time"
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
