package smp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// echoHi is a v0 echo request {"d":"hi"} with sequence 0x42, framed by hand
// (CRC-16/XMODEM 0x7061 computed with Python's binascii.crc_hqx).
var (
	echoHiPkt   = []byte{0x02, 0x00, 0x00, 0x06, 0x00, 0x00, 0x42, 0x00, 0xa1, 0x61, 0x64, 0x62, 0x68, 0x69}
	echoHiFrame = "\x06\x09ABACAAAGAABCAKFhZGJoaXBh\n"
)

func TestEncodeFramesVector(t *testing.T) {
	got, err := EncodeFrames(echoHiPkt)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != echoHiFrame {
		t.Fatalf("EncodeFrames = %q, want %q", got, echoHiFrame)
	}
}

// framedByHand builds the framing of pkt from its definition, without the
// package's encoder: BE16(len+2) ‖ pkt ‖ BE16(crc), base64, 124 characters
// a frame.
func framedByHand(pkt []byte) []string {
	raw := binary.BigEndian.AppendUint16(nil, uint16(len(pkt)+2))
	raw = append(raw, pkt...)
	raw = binary.BigEndian.AppendUint16(raw, bitwiseCRC(pkt))
	b64 := base64.StdEncoding.EncodeToString(raw)
	var frames []string
	for i := 0; i < len(b64); i += 124 {
		marker := "\x04\x14"
		if i == 0 {
			marker = "\x06\x09"
		}
		frames = append(frames, marker+b64[i:min(i+124, len(b64))]+"\n")
	}
	return frames
}

func TestFramesSplitAt127(t *testing.T) {
	tests := []struct {
		name     string
		pktLen   int
		wantLens []int // frame lengths in bytes
	}{
		{"tiny", 8, []int{2 + 16 + 1}},
		{"fills one frame exactly", 89, []int{127}}, // 89+4 = 93 raw = 124 base64
		{"one byte over", 90, []int{127, 2 + 4 + 1}},
		{"100 bytes", 100, []int{127, 2 + 16 + 1}},
		{"two full frames", 182, []int{127, 127}},
		{"2 KiB", 2048, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := make([]byte, tt.pktLen)
			for i := range pkt {
				pkt[i] = byte(i*7 + 3)
			}
			frames, err := Frames(pkt)
			if err != nil {
				t.Fatal(err)
			}
			want := framedByHand(pkt)
			if len(frames) != len(want) {
				t.Fatalf("%d frames, want %d", len(frames), len(want))
			}
			for i, f := range frames {
				if string(f) != want[i] {
					t.Fatalf("frame %d = %q, want %q", i, f, want[i])
				}
				if len(f) > MaxFrame {
					t.Fatalf("frame %d is %d bytes > %d", i, len(f), MaxFrame)
				}
				if n := len(f) - 3; n%4 != 0 {
					t.Fatalf("frame %d has %d base64 characters, not a multiple of 4", i, n)
				}
				if tt.wantLens != nil && len(f) != tt.wantLens[i] {
					t.Fatalf("frame %d is %d bytes, want %d", i, len(f), tt.wantLens[i])
				}
			}
			got, err := NewDecoder(bytes.NewReader(bytes.Join(frames, nil)), DecoderOptions{}).ReadPacket()
			if err != nil || !bytes.Equal(got, pkt) {
				t.Fatalf("decode = %x, %v", got, err)
			}
		})
	}
	if _, err := Frames(make([]byte, MaxPacket+1)); !errors.Is(err, ErrPacketSize) {
		t.Errorf("oversized packet: %v", err)
	}
}

type decoded struct {
	pkts    [][]byte
	errs    []error
	console string
	final   error
}

func decodeAll(r io.Reader, opts DecoderOptions) decoded {
	var con bytes.Buffer
	opts.Console = &con
	d := NewDecoder(r, opts)
	var out decoded
	for {
		pkt, err := d.ReadPacket()
		var fe *FrameError
		switch {
		case errors.As(err, &fe):
			out.errs = append(out.errs, fe.Err)
		case err != nil:
			out.final = err
			out.console = con.String()
			return out
		default:
			out.pkts = append(out.pkts, pkt)
		}
	}
}

func TestDecoder(t *testing.T) {
	frame := echoHiFrame
	// Zephyr may cut frames shorter than 124 characters (it keeps the CRC
	// whole); any split on a 4-character boundary must decode.
	long := make([]byte, 150)
	for i := range long {
		long[i] = byte(i)
	}
	lf := framedByHand(long)
	all := strings.Join(lf, "")
	b64 := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(all, "\x06\x09", ""), "\x04\x14", ""), "\n", "")
	shortSplit := "\x06\x09" + b64[:120] + "\n\x04\x14" + b64[120:200] + "\n\x04\x14" + b64[200:] + "\n"

	corrupt := []byte(frame)
	corrupt[12] = 'D' // still base64 (was 'B'), a packet byte changes
	tooLong := "\x06\x09" + strings.Repeat("AAAA", 32) + "\n"

	tests := []struct {
		name    string
		in      string
		opts    DecoderOptions
		pkts    [][]byte
		errs    []error
		console string
	}{
		{"console only", "uart:~$ kernel version\r\nZephyr version 3.7.0\r\n", DecoderOptions{}, nil, nil,
			"uart:~$ kernel version\r\nZephyr version 3.7.0\r\n"},
		{"one frame", frame, DecoderOptions{}, [][]byte{echoHiPkt}, nil, ""},
		{"between log lines", "[00:00:01.000,000] <inf> app: hi\r\n" + frame + "[00:00:02.000,000] <inf> app: bye\r\n",
			DecoderOptions{}, [][]byte{echoHiPkt}, nil,
			"[00:00:01.000,000] <inf> app: hi\r\n[00:00:02.000,000] <inf> app: bye\r\n"},
		{"after a prompt without newline", "uart:~$ " + frame + "uart:~$ ", DecoderOptions{}, [][]byte{echoHiPkt}, nil,
			"uart:~$ uart:~$ "},
		{"CRLF line end", strings.TrimSuffix(frame, "\n") + "\r\n", DecoderOptions{}, [][]byte{echoHiPkt}, nil, ""},
		{"two packets", frame + frame, DecoderOptions{}, [][]byte{echoHiPkt, echoHiPkt}, nil, ""},
		{"multi-frame", all, DecoderOptions{}, [][]byte{long}, nil, ""},
		{"multi-frame with text between frames", lf[0] + "log line\n" + lf[1], DecoderOptions{}, [][]byte{long}, nil, "log line\n"},
		{"zephyr-style shorter frames", shortSplit, DecoderOptions{}, [][]byte{long}, nil, ""},
		{"corrupted CRC then good", string(corrupt) + frame, DecoderOptions{}, [][]byte{echoHiPkt}, []error{ErrCRC}, ""},
		{"orphan continuation", lf[1] + frame, DecoderOptions{}, [][]byte{echoHiPkt}, []error{ErrOrphanFrame}, ""},
		{"first frame restarts reassembly", lf[0] + frame, DecoderOptions{}, [][]byte{echoHiPkt}, nil, ""},
		{"bad base64", "\x06\x09AB!D\n" + frame, DecoderOptions{}, [][]byte{echoHiPkt}, []error{ErrBase64}, ""},
		{"base64 not in groups of 4", "\x06\x09ABACAAA\n", DecoderOptions{}, nil, []error{ErrBase64}, ""},
		{"frame too long", tooLong + frame, DecoderOptions{}, [][]byte{echoHiPkt}, []error{ErrFrameTooLong}, ""},
		{"longer frames allowed by option", "\x06\x09" + b64 + "\n", DecoderOptions{MaxFrame: 300}, [][]byte{long}, nil, ""},
		{"too long for the net_buf", all, DecoderOptions{MaxBody: 100}, nil, []error{ErrPacketTooLong, ErrOrphanFrame}, ""},
		{"more data than the prefix", "\x06\x09" + base64.StdEncoding.EncodeToString([]byte{0, 2, 0, 0, 0}) + "\n",
			DecoderOptions{}, nil, []error{ErrFrameLength}, ""},
		{"prefix too small for a CRC", "\x06\x09" + base64.StdEncoding.EncodeToString([]byte{0, 1, 0}) + "\n",
			DecoderOptions{}, nil, []error{ErrShortFrame}, ""},
		{"first frame of one byte", "\x06\x09AA==\n", DecoderOptions{}, nil, []error{ErrShortFrame}, ""},
		{"marker bytes in text", "a\x06b\x04c\x06\x14d\x04\x09e", DecoderOptions{}, nil, nil, "a\x06b\x04c\x06\x14d\x04\x09e"},
		{"held marker byte flushed at EOF", "end\x06", DecoderOptions{}, nil, nil, "end\x06"},
		{"double marker byte", "\x06\x06\x09" + frame[2:], DecoderOptions{}, [][]byte{echoHiPkt}, nil, "\x06"},
		{"unterminated frame at EOF", "x" + strings.TrimSuffix(frame, "\n"), DecoderOptions{}, nil, nil, "x"},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"bytewise": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"halves":   func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got := decodeAll(mk(tt.in), tt.opts)
				if got.final != io.EOF {
					t.Fatalf("final error %v, want EOF", got.final)
				}
				if len(got.pkts) != len(tt.pkts) {
					t.Fatalf("%d packets, want %d", len(got.pkts), len(tt.pkts))
				}
				for i := range got.pkts {
					if !bytes.Equal(got.pkts[i], tt.pkts[i]) {
						t.Fatalf("packet %d = %x, want %x", i, got.pkts[i], tt.pkts[i])
					}
				}
				if len(got.errs) != len(tt.errs) {
					t.Fatalf("frame errors %v, want %v", got.errs, tt.errs)
				}
				for i := range got.errs {
					if !errors.Is(got.errs[i], tt.errs[i]) {
						t.Fatalf("frame error %d = %v, want %v", i, got.errs[i], tt.errs[i])
					}
				}
				if got.console != tt.console {
					t.Fatalf("console %q, want %q", got.console, tt.console)
				}
			})
		}
	}
}

func TestDecoderStickyError(t *testing.T) {
	d := NewDecoder(iotest.ErrReader(io.ErrClosedPipe), DecoderOptions{})
	for range 2 {
		if _, err := d.ReadPacket(); err != io.ErrClosedPipe {
			t.Fatalf("err = %v, want %v", err, io.ErrClosedPipe)
		}
	}
}

// A packet and the reader's error in the same Read: the packet first.
func TestDecoderDataWithError(t *testing.T) {
	d := NewDecoder(iotest.DataErrReader(strings.NewReader(echoHiFrame+"tail")), DecoderOptions{})
	pkt, err := d.ReadPacket()
	if err != nil || !bytes.Equal(pkt, echoHiPkt) {
		t.Fatalf("ReadPacket = %x, %v", pkt, err)
	}
	if _, err := d.ReadPacket(); err != io.EOF {
		t.Fatalf("second ReadPacket err = %v, want EOF", err)
	}
}
