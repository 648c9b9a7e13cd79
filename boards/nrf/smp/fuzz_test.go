package smp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"testing/iotest"
)

func FuzzDecodeFrames(f *testing.F) {
	long := make([]byte, 150)
	for i := range long {
		long[i] = byte(i)
	}
	lf, _ := EncodeFrames(long)
	f.Add([]byte(echoHiFrame))
	f.Add(lf)
	f.Add([]byte("uart:~$ " + echoHiFrame + "log\r\n\x06"))
	f.Add([]byte("\x04\x14AAAA\n\x06\x09AAA=\n\x06\x09//8=\n"))
	f.Add(append([]byte("\x06\x09"), bytes.Repeat([]byte("A"), 200)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := decodeAll(bytes.NewReader(in), DecoderOptions{})
		bytewise := decodeAll(iotest.OneByteReader(bytes.NewReader(in)), DecoderOptions{})
		// How the stream is cut into reads must not matter.
		if !reflect.DeepEqual(whole.pkts, bytewise.pkts) || whole.console != bytewise.console {
			t.Fatalf("read size changes the result:\nwhole %x %q\nbytes %x %q", whole.pkts, whole.console, bytewise.pkts, bytewise.console)
		}
		if len(whole.errs) != len(bytewise.errs) {
			t.Fatalf("frame errors differ: %v vs %v", whole.errs, bytewise.errs)
		}
		if len(whole.console) > len(in) {
			t.Fatal("console text longer than the input")
		}
		for _, p := range whole.pkts {
			if len(p) > len(in) {
				t.Fatal("packet longer than the input")
			}
		}
		// Any packet survives framing, with console text around it.
		if len(in) > MaxPacket {
			return
		}
		framed, err := EncodeFrames(in)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeAll(bytes.NewReader(append(append([]byte("text "), framed...), " more"...)), DecoderOptions{})
		if len(got.pkts) != 1 || !bytes.Equal(got.pkts[0], in) || len(got.errs) != 0 || got.console != "text  more" {
			t.Fatalf("round trip: %x, errs %v, console %q", got.pkts, got.errs, got.console)
		}
	})
}

func FuzzUnmarshalHeader(f *testing.F) {
	f.Add([]byte{0x02, 0x00, 0x01, 0x23, 0x00, 0x08, 0x42, 0x00})
	f.Add([]byte{0x0A, 0x00, 0x01, 0x23, 0x00, 0x08, 0x42, 0x00, 0xa0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x02})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := UnmarshalHeader(in)
		if err != nil {
			if !errors.Is(err, ErrShortHeader) && !errors.Is(err, ErrReservedBit) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		out, err := h.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed header: %v", err)
		}
		if !bytes.Equal(out, in[:HeaderSize]) {
			t.Fatalf("round trip % x -> % x", in[:HeaderSize], out)
		}
		if p, err := UnmarshalPacket(in); err == nil {
			back, err := p.Marshal()
			if err != nil || !bytes.Equal(back, in) {
				t.Fatalf("packet round trip: % x, %v", back, err)
			}
		}
	})
}

func FuzzDecodeBody(f *testing.F) {
	u3 := uint64(3)
	for _, v := range []any{
		UploadRequest{Name: "/lfs1/credentials/crt.der", Data: []byte{1, 2, 3}, Len: &u3},
		UploadRequest{Off: 3, Name: "/lfs1/credentials/crt.der", Data: []byte{4}},
		DownloadRequest{Name: "/lfs1/credentials/crt.der"},
		HashRequest{Name: "/lfs1/credentials/crt.der", Type: HashSHA256},
		EchoRequest{D: "hi"},
	} {
		b, _ := EncodeBody(v)
		f.Add(b)
	}
	f.Add([]byte{0xbf, 0x63, 'o', 'f', 'f', 0x18, 0x40, 0xff})
	f.Add([]byte{0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x03})
	f.Add([]byte{0xa1, 0x66, 'o', 'u', 't', 'p', 'u', 't', 0x1a, 0xcb, 0xf4, 0x39, 0x26})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{
			&UploadRequest{}, &UploadResponse{}, &DownloadRequest{}, &DownloadResponse{},
			&StatusRequest{}, &StatusResponse{}, &HashRequest{}, &HashResponse{},
			&EchoRequest{}, &EchoResponse{}, &ResetRequest{}, &map[string]any{},
		} {
			if err := DecodeBody(body, v); err != nil && !errors.Is(err, ErrBody) {
				t.Fatalf("DecodeBody error without ErrBody: %v", err)
			}
		}
		var hr HashResponse
		if DecodeBody(body, &hr) == nil {
			_, _ = hr.result()
		}
		if err := ResponseError(body); err != nil {
			var e *Error
			if !errors.As(err, &e) && !errors.Is(err, ErrBody) {
				t.Fatalf("ResponseError: %v", err)
			}
		}
		// The device side must answer every request shape without
		// failing, with a well-formed answer.
		m := newTestFS(t)
		_ = m.WriteFile("/lfs1/credentials/crt.der", []byte("123456789"))
		s := NewServer(ServerOptions{FS: m})
		for _, group := range []uint16{GroupOS, GroupFS} {
			for id := range uint8(6) {
				for _, op := range []Op{OpRead, OpWrite} {
					for _, v := range []uint8{Version0, Version1} {
						req := Header{Version: v, Op: op, Group: group, ID: id, Seq: id}
						pkt, err := Packet{Header: req, Body: body}.Marshal()
						if err != nil {
							return
						}
						rsps, _ := s.Handle(pkt)
						if len(rsps) != 1 {
							t.Fatalf("%v: %d answers", req, len(rsps))
						}
						p, err := UnmarshalPacket(rsps[0])
						if err != nil || p.Header.Op != op.Response() || p.Header.Seq != id {
							t.Fatalf("%v: bad answer % x: %v", req, rsps[0], err)
						}
						if err := ResponseError(p.Body); errors.Is(err, ErrBody) {
							t.Fatalf("%v: answer body %x: %v", req, p.Body, err)
						}
					}
				}
			}
		}
	})
}
