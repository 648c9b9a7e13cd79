package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"
)

// The load generator speaks the little CoAP it needs (RFC 7252: one
// confirmable GET, its piggybacked or separate response) directly on the
// DTLS connection: a full CoAP client per handshake (go-coap starts
// several goroutines and timers per connection) would measure the client
// more than the server.

// ErrCoAP reports a malformed CoAP response or an error response code.
var ErrCoAP = errors.New("bench: coap")

// CoAP message types and the codes used here.
const (
	coapCON = 0
	coapACK = 2
	coapRST = 3

	coapGET         = 0x01
	coapOptURIPath  = 11
	coapAckTimeout  = 2 * time.Second // ACK_TIMEOUT
	coapMaxRetrans  = 4               // MAX_RETRANSMIT
	coapMaxResponse = 1500
)

// coapRequest encodes a CON GET with message id mid, token and path
// ("/a/b" gives Uri-Path "a" and "b"; "/" and "" give none).
func coapRequest(mid uint16, token []byte, path string) ([]byte, error) {
	if len(token) > 8 {
		return nil, fmt.Errorf("%w: token of %d bytes", ErrCoAP, len(token))
	}
	b := make([]byte, 0, 4+len(token)+len(path)+8)
	b = append(b, 0x40|coapCON<<4|byte(len(token)), coapGET)
	b = binary.BigEndian.AppendUint16(b, mid)
	b = append(b, token...)
	last := 0
	for seg := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		if seg == "" {
			continue
		}
		if len(seg) > 255 {
			return nil, fmt.Errorf("%w: path segment of %d bytes", ErrCoAP, len(seg))
		}
		b = appendOption(b, coapOptURIPath-last, len(seg))
		b = append(b, seg...)
		last = coapOptURIPath
	}
	return b, nil
}

// appendOption appends an option header for delta and length (< 269).
func appendOption(b []byte, delta, length int) []byte {
	nib := func(v int) (byte, []byte) {
		switch {
		case v < 13:
			return byte(v), nil
		default:
			return 13, []byte{byte(v - 13)}
		}
	}
	d, dx := nib(delta)
	l, lx := nib(length)
	b = append(b, d<<4|l)
	b = append(b, dx...)
	return append(b, lx...)
}

// coapResponse is what parseCoAPResponse found.
type coapResponse struct {
	typ   byte
	code  byte
	mid   uint16
	token []byte
}

// parseCoAPResponse decodes the header and token of a CoAP message; the
// options and payload are not needed here and not decoded.
func parseCoAPResponse(b []byte) (coapResponse, error) {
	if len(b) < 4 {
		return coapResponse{}, fmt.Errorf("%w: message of %d bytes", ErrCoAP, len(b))
	}
	if b[0]>>6 != 1 {
		return coapResponse{}, fmt.Errorf("%w: version %d", ErrCoAP, b[0]>>6)
	}
	tkl := int(b[0] & 0x0f)
	if tkl > 8 || len(b) < 4+tkl {
		return coapResponse{}, fmt.Errorf("%w: token length %d in %d bytes", ErrCoAP, tkl, len(b))
	}
	return coapResponse{typ: b[0] >> 4 & 3, code: b[1], mid: binary.BigEndian.Uint16(b[2:4]), token: b[4 : 4+tkl]}, nil
}

// codeString formats a CoAP code as class.detail ("2.05").
func codeString(c byte) string { return fmt.Sprintf("%d.%02d", c>>5, c&0x1f) }

// coapGet sends a confirmable GET of path on conn and waits for its
// response (piggybacked on the ACK, or separate after an empty ACK),
// retransmitting as RFC 7252 section 4.2 says until ctx ends. A response
// code other than 2.xx is an error.
func coapGet(ctx context.Context, conn net.Conn, mid uint16, token []byte, path string) error {
	req, err := coapRequest(mid, token, path)
	if err != nil {
		return err
	}
	defer conn.SetReadDeadline(time.Time{})
	// Cancelling ctx interrupts a read at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, coapMaxResponse)
	timeout := coapAckTimeout + time.Duration(rand.Int64N(int64(coapAckTimeout/2)))
	acked := false
	for tries := 0; ; tries++ {
		if !acked {
			if tries > coapMaxRetrans {
				return fmt.Errorf("%w: no response after %d retransmissions: %w", ErrCoAP, coapMaxRetrans, os.ErrDeadlineExceeded)
			}
			if _, err := conn.Write(req); err != nil {
				return err
			}
		}
		dl := time.Now().Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		if err := conn.SetReadDeadline(dl); err != nil {
			return err
		}
		timeout *= 2
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return err
				}
				if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
					return fmt.Errorf("%w: %w", ErrCoAP, context.DeadlineExceeded)
				}
				break // retransmit (or keep waiting for a separate response)
			}
			r, err := parseCoAPResponse(buf[:n])
			if err != nil {
				return err
			}
			switch {
			case r.typ == coapRST && r.mid == mid:
				return fmt.Errorf("%w: request reset by the server", ErrCoAP)
			case r.typ == coapACK && r.mid == mid && r.code == 0:
				acked = true // separate response follows
				continue
			case string(r.token) != string(token) || r.typ == coapACK && r.mid != mid:
				continue // not ours (a late duplicate)
			}
			if r.typ == coapCON {
				ack := binary.BigEndian.AppendUint16([]byte{0x40 | coapACK<<4, 0}, r.mid)
				if _, err := conn.Write(ack); err != nil {
					return err
				}
			}
			if r.code>>5 != 2 {
				return fmt.Errorf("%w: response %s", ErrCoAP, codeString(r.code))
			}
			return nil
		}
	}
}

// coapPing sends a CoAP ping (an empty CON, RFC 7252 section 4.3) with
// message id mid and waits for the Reset that answers it.
func coapPing(ctx context.Context, conn net.Conn, mid uint16) error {
	ping := binary.BigEndian.AppendUint16([]byte{0x40, 0}, mid)
	if _, err := conn.Write(ping); err != nil {
		return err
	}
	defer conn.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(d); err != nil {
			return err
		}
	}
	buf := make([]byte, 64)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		r, err := parseCoAPResponse(buf[:n])
		if err != nil {
			return err
		}
		if r.mid == mid && (r.typ == coapRST || r.typ == coapACK) {
			return nil
		}
	}
}
