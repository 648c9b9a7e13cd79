package smp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// Client errors.
var (
	ErrTimeout = errors.New("smp: no response")
	ErrOffset  = errors.New("smp: device reported an unexpected offset")
	ErrMTU     = errors.New("smp: MTU too small")
	ErrNoPort  = errors.New("smp: client has no port")
)

// Client defaults.
const (
	// DefaultMTU is Zephyr's MCUMGR_TRANSPORT_UART_MTU and
	// MCUMGR_TRANSPORT_SHELL_MTU default.
	DefaultMTU = 256
	// DefaultTimeout and DefaultTries are what the Golioth HIL tests pass
	// to mcumgr (--timeout=2 --tries=3).
	DefaultTimeout = 2 * time.Second
	DefaultTries   = 3
)

// Client sends SMP requests over a serial port that may also carry console
// text. Set Port (and any options) and use it through a pointer; it must
// not be copied after first use. Calls are serialised.
//
// From its first call the Client reads Port only while it waits for an
// answer. When an attempt times out the read stays pending and is picked up
// by the next call; it ends when Port returns an error, so close Port when
// done with the Client. A Write to Port that blocks is not interrupted by
// the context.
type Client struct {
	// Port is the serial line (or anything carrying the same bytes).
	Port io.ReadWriter
	// Console receives the console text read while waiting for answers.
	// Nil discards it.
	Console io.Writer
	// Version is the header version of requests: Version0 (legacy, the
	// default, understood by every Zephyr) or Version1 (SMP v2).
	Version uint8
	// Timeout is how long one attempt waits for its answer. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Tries is how many times a request is sent before giving up.
	// Default DefaultTries.
	Tries int
	// FrameGap is a pause between the frames of one packet; newtmgr
	// waits 20 ms. Default 0: all frames in one write.
	FrameGap time.Duration

	mu      sync.Mutex
	dec     *Decoder
	pending chan readResult
	seq     uint8
	err     error // sticky read error
}

type readResult struct {
	pkt []byte
	err error
}

// Do sends one request (req is encoded as the CBOR body) and decodes the
// answer's body into rsp when rsp is not nil. A device error is returned as
// *Error; rsp is still filled in from that answer where it can be.
func (c *Client) Do(ctx context.Context, op Op, group uint16, id uint8, req, rsp any) error {
	_, err := c.do(ctx, op, group, id, req, rsp)
	return err
}

// do is Do that also says how many attempts it took.
func (c *Client) do(ctx context.Context, op Op, group uint16, id uint8, req, rsp any) (int, error) {
	body, err := EncodeBody(req)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Port == nil {
		return 0, ErrNoPort
	}
	if c.dec == nil {
		c.dec = NewDecoder(c.Port, DecoderOptions{Console: c.Console})
	}
	h := Header{Version: c.Version, Op: op, Group: group, Seq: c.seq, ID: id}
	c.seq++
	pkt, err := Packet{Header: h, Body: body}.Marshal()
	if err != nil {
		return 0, err
	}
	frames, err := Frames(pkt)
	if err != nil {
		return 0, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tries := c.Tries
	if tries <= 0 {
		tries = DefaultTries
	}
	// Every attempt sends the same sequence number, so a late answer to
	// an earlier attempt is as good as the answer to the last one.
	for attempt := 1; attempt <= tries; attempt++ {
		if err := c.write(ctx, frames); err != nil {
			return attempt, fmt.Errorf("smp: writing %s: %w", h, err)
		}
		rbody, err := c.await(ctx, h, timeout)
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return attempt, err
		}
		if derr := ResponseError(rbody); derr != nil {
			if rsp != nil {
				_ = DecodeBody(rbody, rsp) // best effort: extra fields of an error answer
			}
			return attempt, derr
		}
		if rsp != nil {
			if err := DecodeBody(rbody, rsp); err != nil {
				return attempt, fmt.Errorf("answer to %s: %w", h, err)
			}
		}
		return attempt, nil
	}
	return tries, fmt.Errorf("%w to %s after %d tries of %v", ErrTimeout, h, tries, timeout)
}

func (c *Client) write(ctx context.Context, frames [][]byte) error {
	if c.FrameGap <= 0 {
		var all []byte
		for _, f := range frames {
			all = append(all, f...)
		}
		_, err := c.Port.Write(all)
		return err
	}
	for i, f := range frames {
		if i > 0 {
			t := time.NewTimer(c.FrameGap)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if _, err := c.Port.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// await waits for the answer to req, skipping damaged frames, stale
// answers and anything else that is not the answer.
func (c *Client) await(ctx context.Context, req Header, timeout time.Duration) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if c.err != nil {
			return nil, c.err
		}
		if c.pending == nil {
			ch := make(chan readResult, 1)
			c.pending = ch
			dec := c.dec
			go func() {
				pkt, err := dec.ReadPacket()
				ch <- readResult{pkt, err}
			}()
		}
		select {
		case r := <-c.pending:
			c.pending = nil
			if r.err != nil {
				var fe *FrameError
				if errors.As(r.err, &fe) {
					continue
				}
				c.err = fmt.Errorf("smp: reading port: %w", r.err)
				return nil, c.err
			}
			p, err := UnmarshalPacket(r.pkt)
			if err != nil {
				continue
			}
			g := p.Header
			if g.Seq != req.Seq || g.Group != req.Group || g.ID != req.ID || g.Op != req.Op.Response() {
				continue
			}
			return p.Body, nil
		case <-t.C:
			return nil, ErrTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Upload writes data to the file name on the device with the fs group,
// in chunks sized so that no request packet (header and CBOR body) is
// longer than mtu bytes (mtu <= 0 means DefaultMTU). Zephyr receives at
// most MCUMGR_TRANSPORT_NETBUF_SIZE (384) bytes, so mtu must stay below
// 380 for it.
//
// A chunk that timed out is sent again; if an earlier attempt did land,
// the device's offset (or file size) shows it and the upload goes on. When
// a retried first chunk leaves the device at an unexpected offset, the
// upload starts over once after closing the device's open file.
//
// Note that Zephyr truncates an existing file only when the first chunk
// carries data: uploading an empty file leaves an old one as it was.
func (c *Client) Upload(ctx context.Context, name string, data []byte, mtu int) error {
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	total := uint64(len(data))
	restarted := false
	var off uint64
	for {
		n, err := chunkSize(name, off, total, mtu)
		if err != nil {
			return err
		}
		req := UploadRequest{Off: off, Data: data[off : off+n], Name: name}
		if off == 0 {
			req.Len = &total
		}
		var rsp UploadResponse
		attempts, err := c.do(ctx, OpWrite, GroupFS, CmdFSFile, req, &rsp)
		want := off + n
		switch {
		case err != nil:
			var se *Error
			if !errors.As(err, &se) || attempts == 1 || off == 0 {
				return fmt.Errorf("smp: upload %s at offset %d: %w", name, off, err)
			}
			// The chunk was sent more than once; an earlier attempt
			// may have been written although its answer was lost.
			landed := se.GroupErr && se.Group == GroupFS && FSErr(se.RC) == FSFileOffsetNotValid &&
				rsp.Len != nil && *rsp.Len == want
			if !landed {
				size, serr := c.Status(ctx, name)
				landed = serr == nil && uint64(size) == want
			}
			if !landed {
				return fmt.Errorf("smp: upload %s at offset %d: %w", name, off, err)
			}
		case rsp.Off == nil || *rsp.Off != want:
			if attempts > 1 && off == 0 && !restarted {
				// Zephyr v3.x adds a retried first chunk to its
				// running offset: close the file and start over.
				restarted = true
				_ = c.Do(ctx, OpWrite, GroupFS, CmdFSCloseFile, struct{}{}, nil)
				continue
			}
			got := "none"
			if rsp.Off != nil {
				got = fmt.Sprint(*rsp.Off)
			}
			return fmt.Errorf("%w: upload %s: offset %s after %d bytes at %d", ErrOffset, name, got, n, off)
		}
		off = want
		if off >= total {
			return nil
		}
	}
}

// chunkSize returns how many data bytes the upload request at off can
// carry within mtu.
func chunkSize(name string, off, total uint64, mtu int) (uint64, error) {
	req := UploadRequest{Off: off, Data: []byte{}, Name: name}
	if off == 0 {
		req.Len = &total
	}
	b, err := EncodeBody(req)
	if err != nil {
		return 0, err
	}
	base := HeaderSize + len(b) // includes the 1-byte head of the empty bstr
	remaining := total - off
	n := uint64(max(mtu-base, 0))
	n = min(n, remaining)
	for n > 0 && uint64(base)+bstrHeadExtra(n)+n > uint64(mtu) {
		n--
	}
	if n == 0 && remaining > 0 {
		return 0, fmt.Errorf("%w: %d bytes leave no room for data next to a %d-byte request", ErrMTU, mtu, base)
	}
	return n, nil
}

// bstrHeadExtra is how many bytes longer the head of an n-byte bstr is than
// that of an empty one.
func bstrHeadExtra(n uint64) uint64 {
	switch {
	case n < 24:
		return 0
	case n <= 0xFF:
		return 1
	case n <= 0xFFFF:
		return 2
	case n <= 0xFFFFFFFF:
		return 4
	}
	return 8
}

// Download reads the file name from the device.
func (c *Client) Download(ctx context.Context, name string) ([]byte, error) {
	out := []byte{}
	var off, total uint64
	for {
		var rsp DownloadResponse
		if err := c.Do(ctx, OpRead, GroupFS, CmdFSFile, DownloadRequest{Off: off, Name: name}, &rsp); err != nil {
			return nil, fmt.Errorf("smp: download %s at offset %d: %w", name, off, err)
		}
		if rsp.Off == nil || *rsp.Off != off {
			return nil, fmt.Errorf("%w: download %s: answer for another offset than %d", ErrOffset, name, off)
		}
		if off == 0 {
			if rsp.Len == nil {
				return nil, fmt.Errorf("%w: download %s: first answer has no len", ErrBody, name)
			}
			total = *rsp.Len
		}
		if uint64(len(rsp.Data)) > total-off {
			return nil, fmt.Errorf("%w: download %s: %d bytes at %d overrun the %d-byte file", ErrOffset, name, len(rsp.Data), off, total)
		}
		out = append(out, rsp.Data...)
		off += uint64(len(rsp.Data))
		if off == total {
			return out, nil
		}
		if len(rsp.Data) == 0 {
			return nil, fmt.Errorf("%w: download %s: no data at %d of %d", ErrOffset, name, off, total)
		}
	}
}

// Status returns the size of the file name on the device.
func (c *Client) Status(ctx context.Context, name string) (int64, error) {
	var rsp StatusResponse
	if err := c.Do(ctx, OpRead, GroupFS, CmdFSStatus, StatusRequest{Name: name}, &rsp); err != nil {
		return 0, fmt.Errorf("smp: status %s: %w", name, err)
	}
	if rsp.Len == nil || *rsp.Len > math.MaxInt64 {
		return 0, fmt.Errorf("%w: status %s: missing or huge len", ErrBody, name)
	}
	return int64(*rsp.Len), nil
}

// Hash asks the device for a checksum or hash of the whole file name.
// typ is HashCRC32, HashSHA256, or "" for the device's default.
func (c *Client) Hash(ctx context.Context, name, typ string) (HashResult, error) {
	var rsp HashResponse
	if err := c.Do(ctx, OpRead, GroupFS, CmdFSHash, HashRequest{Name: name, Type: typ}, &rsp); err != nil {
		return HashResult{}, fmt.Errorf("smp: hash %s: %w", name, err)
	}
	res, err := rsp.result()
	if err != nil {
		return HashResult{}, fmt.Errorf("smp: hash %s: %w", name, err)
	}
	return res, nil
}

// Reset asks the device to reboot (os command 5). The device answers
// first, then resets.
func (c *Client) Reset(ctx context.Context) error {
	if err := c.Do(ctx, OpWrite, GroupOS, CmdOSReset, ResetRequest{}, nil); err != nil {
		return fmt.Errorf("smp: reset: %w", err)
	}
	return nil
}

// Echo sends s to the device and returns what it echoes (os command 0).
func (c *Client) Echo(ctx context.Context, s string) (string, error) {
	var rsp EchoResponse
	if err := c.Do(ctx, OpWrite, GroupOS, CmdOSEcho, EchoRequest{D: s}, &rsp); err != nil {
		return "", fmt.Errorf("smp: echo: %w", err)
	}
	return rsp.R, nil
}
