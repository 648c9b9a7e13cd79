package smp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Serial framing constants (Zephyr include/zephyr/mgmt/mcumgr/transport/serial.h).
const (
	// MaxFrame is the longest serial frame, marker and newline included
	// (MCUMGR_SERIAL_MAX_FRAME).
	MaxFrame = 127
	// maxFrameB64 is the most base64 characters in one frame: 124, which
	// is 93 raw bytes.
	maxFrameB64 = (MaxFrame - 3) / 4 * 4
	maxFrameRaw = maxFrameB64 / 4 * 3
	// MaxPacket is the largest packet the 16-bit length prefix can carry
	// (the prefix counts the packet and its 2-byte CRC).
	MaxPacket = 0xFFFF - 2
)

// Frame markers.
var (
	markerFirst = [2]byte{0x06, 0x09} // MCUMGR_SERIAL_HDR_PKT
	markerCont  = [2]byte{0x04, 0x14} // MCUMGR_SERIAL_HDR_FRAG
)

// Frame errors. A Decoder reports them inside a *FrameError.
var (
	ErrCRC           = errors.New("smp: frame CRC mismatch")
	ErrBase64        = errors.New("smp: frame is not valid base64")
	ErrFrameTooLong  = errors.New("smp: frame longer than the frame limit")
	ErrPacketTooLong = errors.New("smp: packet longer than the packet limit")
	ErrOrphanFrame   = errors.New("smp: continuation frame without a first frame")
	ErrShortFrame    = errors.New("smp: first frame too short for its length prefix")
	ErrFrameLength   = errors.New("smp: frames hold more bytes than the length prefix")
	ErrPacketSize    = errors.New("smp: packet too large to frame")
)

// EncodeFrames returns pkt (header and CBOR body) in mcumgr serial framing:
// the body BE16(len(pkt)+2) ‖ pkt ‖ BE16(CRC16(pkt)) in standard base64 with
// padding, cut into frames of at most MaxFrame bytes. The first frame starts
// 0x06 0x09, the others 0x04 0x14, and each ends with '\n'. Every frame holds
// whole 4-character base64 groups (at most 124 characters, 93 raw bytes), as
// Zephyr decodes each frame on its own. The output is what newtmgr writes.
func EncodeFrames(pkt []byte) ([]byte, error) {
	frames, err := Frames(pkt)
	if err != nil {
		return nil, err
	}
	return bytes.Join(frames, nil), nil
}

// Frames is EncodeFrames with each frame in its own slice, for writers that
// pause between frames.
func Frames(pkt []byte) ([][]byte, error) {
	if len(pkt) > MaxPacket {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrPacketSize, len(pkt), MaxPacket)
	}
	raw := make([]byte, 0, len(pkt)+4)
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(pkt)+2))
	raw = append(raw, pkt...)
	raw = binary.BigEndian.AppendUint16(raw, CRC16(pkt))

	var frames [][]byte
	for off := 0; off < len(raw); off += maxFrameRaw {
		chunk := raw[off:min(off+maxFrameRaw, len(raw))]
		f := make([]byte, 0, 3+base64.StdEncoding.EncodedLen(len(chunk)))
		if off == 0 {
			f = append(f, markerFirst[:]...)
		} else {
			f = append(f, markerCont[:]...)
		}
		f = base64.StdEncoding.AppendEncode(f, chunk)
		frames = append(frames, append(f, '\n'))
	}
	return frames, nil
}

// FrameError reports a frame the Decoder dropped: damaged, too long, out of
// order, or a packet whose CRC did not match. The Decoder stays usable.
type FrameError struct {
	Err error // ErrCRC, ErrBase64, ErrFrameTooLong, ...
}

func (e *FrameError) Error() string { return e.Err.Error() }
func (e *FrameError) Unwrap() error { return e.Err }

// DecoderOptions configures a Decoder. The zero value means defaults.
type DecoderOptions struct {
	// Console receives every byte that is not part of an SMP frame (log
	// lines, shell prompts and echoes). Nil discards them.
	Console io.Writer
	// MaxFrame is the longest frame accepted, marker and newline
	// included (a trailing '\r' is not counted). Default MaxFrame (127).
	MaxFrame int
	// MaxBody caps the reassembled body: length prefix, packet and CRC.
	// Zephyr drops anything larger than its net_buf
	// (MCUMGR_TRANSPORT_NETBUF_SIZE, 384 by default); an emulator sets
	// this to 384 to behave the same way. Default: no cap beyond the
	// 16-bit length prefix.
	MaxBody int
}

type decState uint8

const (
	stText    decState = iota // passing console text
	stMarker                  // saw 0x06 or 0x04, waiting for its second byte
	stFrame                   // inside a frame, collecting base64 up to '\n'
	stDiscard                 // dropping an overlong frame up to '\n'
)

// Decoder picks mcumgr frames out of a serial stream that also carries
// console text, reassembles packets, checks their length and CRC, and passes
// everything else on to DecoderOptions.Console.
//
// Frames are recognised wherever their marker appears, not only at the
// start of a line, since a shell prompt ("uart:~$ ") has no newline after it.
// A 0x06 or 0x04 byte at the end of what has been read so far is held back
// until the next byte shows whether it starts a marker.
type Decoder struct {
	r    io.Reader
	opts DecoderOptions

	buf     [512]byte
	in      []byte // unread part of buf
	state   decState
	mark    byte   // first marker byte while in stMarker
	first   bool   // current frame is a first frame
	frame   []byte // base64 of the current frame
	body    []byte // reassembled raw body (without the length prefix)
	want    int    // packet length from the prefix (packet + CRC); 0 when idle
	console []byte // console bytes not yet written
	err     error  // sticky reader error
}

// NewDecoder returns a Decoder reading r.
func NewDecoder(r io.Reader, opts DecoderOptions) *Decoder {
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = MaxFrame
	}
	return &Decoder{r: r, opts: opts}
}

// ReadPacket returns the next complete packet (header and CBOR body, CRC
// removed). A dropped frame is reported as a *FrameError, after which
// ReadPacket may be called again. An error from the reader (io.EOF, a closed
// port) ends the stream: it is returned, after any held-back console byte is
// flushed, and returned again on every later call.
func (d *Decoder) ReadPacket() ([]byte, error) {
	for {
		if len(d.in) > 0 {
			pkt, err := d.step()
			if pkt != nil || err != nil {
				d.flushConsole()
				return pkt, err
			}
			continue
		}
		if d.err != nil {
			d.finish()
			return nil, d.err
		}
		d.flushConsole()
		n, err := d.r.Read(d.buf[:])
		d.in = d.buf[:n]
		d.err = err
	}
}

// finish flushes console text, including a held marker byte, at the end
// of the stream.
func (d *Decoder) finish() {
	if d.state == stMarker {
		d.console = append(d.console, d.mark)
		d.state = stText
	}
	d.flushConsole()
}

func (d *Decoder) flushConsole() {
	if len(d.console) == 0 {
		return
	}
	if d.opts.Console != nil {
		// A console that fails to write loses text; the SMP stream
		// must not stop because of it.
		_, _ = d.opts.Console.Write(d.console)
	}
	d.console = d.console[:0]
}

// step consumes bytes from d.in until a packet or a frame error comes out
// or the input runs dry.
func (d *Decoder) step() ([]byte, error) {
	limit := d.opts.MaxFrame - 3 // base64 characters between marker and newline
	for len(d.in) > 0 {
		b := d.in[0]
		switch d.state {
		case stText:
			if b == markerFirst[0] || b == markerCont[0] {
				d.mark, d.state = b, stMarker
			} else {
				d.console = append(d.console, b)
			}
		case stMarker:
			switch {
			case d.mark == markerFirst[0] && b == markerFirst[1]:
				d.state, d.first, d.frame = stFrame, true, d.frame[:0]
			case d.mark == markerCont[0] && b == markerCont[1]:
				d.state, d.first, d.frame = stFrame, false, d.frame[:0]
			default:
				// Not a marker: the held byte was console text, and b
				// is looked at again in the text state.
				d.console = append(d.console, d.mark)
				d.state = stText
				continue
			}
		case stFrame:
			if b == '\n' {
				d.in = d.in[1:]
				d.state = stText
				if pkt, err := d.endFrame(limit); pkt != nil || err != nil {
					return pkt, err
				}
				continue
			}
			if len(d.frame) > limit { // room for one trailing '\r' only
				d.in = d.in[1:]
				d.state = stDiscard
				d.reset()
				return nil, &FrameError{Err: fmt.Errorf("%w (%d bytes)", ErrFrameTooLong, d.opts.MaxFrame)}
			}
			d.frame = append(d.frame, b)
		case stDiscard:
			if b == '\n' {
				d.state = stText
			}
		}
		d.in = d.in[1:]
	}
	return nil, nil
}

// reset abandons the packet being reassembled.
func (d *Decoder) reset() {
	d.body = d.body[:0]
	d.want = 0
}

// endFrame decodes the frame just completed and returns a packet when it
// was the last one.
func (d *Decoder) endFrame(limit int) ([]byte, error) {
	f := d.frame
	if n := len(f); n > 0 && f[n-1] == '\r' {
		f = f[:n-1]
	}
	if len(f) > limit {
		d.reset()
		return nil, &FrameError{Err: fmt.Errorf("%w (%d bytes)", ErrFrameTooLong, d.opts.MaxFrame)}
	}
	if !d.first && d.want == 0 {
		return nil, &FrameError{Err: ErrOrphanFrame}
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(f)))
	n, err := base64.StdEncoding.Decode(raw, f)
	if err != nil || len(f)%4 != 0 {
		d.reset()
		return nil, &FrameError{Err: ErrBase64}
	}
	raw = raw[:n]
	if d.first {
		d.reset()
		if len(raw) < 2 {
			return nil, &FrameError{Err: ErrShortFrame}
		}
		d.want = int(binary.BigEndian.Uint16(raw))
		raw = raw[2:]
		if d.want < 2 {
			d.reset()
			return nil, &FrameError{Err: fmt.Errorf("%w: length prefix %d leaves no room for the CRC", ErrShortFrame, d.want)}
		}
		if d.opts.MaxBody > 0 && d.want+2 > d.opts.MaxBody {
			d.reset()
			return nil, &FrameError{Err: fmt.Errorf("%w: %d bytes > %d", ErrPacketTooLong, d.want+2, d.opts.MaxBody)}
		}
	}
	d.body = append(d.body, raw...)
	switch {
	case len(d.body) < d.want:
		return nil, nil
	case len(d.body) > d.want:
		got, want := len(d.body), d.want
		d.reset()
		return nil, &FrameError{Err: fmt.Errorf("%w: %d > %d", ErrFrameLength, got, want)}
	}
	// The CRC over packet and CRC is zero when they match.
	ok := CRC16(d.body) == 0
	pkt := bytes.Clone(d.body[:len(d.body)-2])
	d.reset()
	if !ok {
		return nil, &FrameError{Err: ErrCRC}
	}
	return pkt, nil
}
