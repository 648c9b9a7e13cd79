package smp

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderMarshal(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		want []byte
	}{
		// docs/protocols.md, mcumgr SMP: a v0 fs upload is 02 00 LL LL 00 08 SS 00.
		{"v0 fs upload", Header{Op: OpWrite, Len: 0x0123, Group: GroupFS, Seq: 0x42, ID: CmdFSFile},
			[]byte{0x02, 0x00, 0x01, 0x23, 0x00, 0x08, 0x42, 0x00}},
		// With version 1 ("SMP v2") byte 0 is 0x0A.
		{"v1 fs upload", Header{Version: Version1, Op: OpWrite, Len: 0x0123, Group: GroupFS, Seq: 0x42, ID: CmdFSFile},
			[]byte{0x0A, 0x00, 0x01, 0x23, 0x00, 0x08, 0x42, 0x00}},
		{"v1 read", Header{Version: Version1, Op: OpRead, Group: GroupFS, ID: CmdFSStatus},
			[]byte{0x08, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01}},
		{"v0 write-rsp os reset", Header{Op: OpWriteRsp, Len: 1, Group: GroupOS, Seq: 0xFF, ID: CmdOSReset},
			[]byte{0x03, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x05}},
		{"flags and big group", Header{Op: OpReadRsp, Flags: 0x80, Len: 0xFFFF, Group: 0x1234, Seq: 1, ID: 9},
			[]byte{0x01, 0x80, 0xFF, 0xFF, 0x12, 0x34, 0x01, 0x09}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.h.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Marshal = % x, want % x", got, tt.want)
			}
			back, err := UnmarshalHeader(got)
			if err != nil {
				t.Fatal(err)
			}
			if back != tt.h {
				t.Fatalf("UnmarshalHeader = %+v, want %+v", back, tt.h)
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	if _, err := (Header{Version: 4}).Marshal(); !errors.Is(err, ErrHeaderField) {
		t.Errorf("version 4: %v", err)
	}
	if _, err := (Header{Op: 8}).Marshal(); !errors.Is(err, ErrHeaderField) {
		t.Errorf("op 8: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortHeader},
		{"seven bytes", []byte{2, 0, 0, 0, 0, 8, 0}, ErrShortHeader},
		{"reserved bit 7", []byte{0x82, 0, 0, 0, 0, 8, 0, 0}, ErrReservedBit},
		{"reserved bit 5", []byte{0x22, 0, 0, 0, 0, 8, 0, 0}, ErrReservedBit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := UnmarshalHeader(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPacket(t *testing.T) {
	p := Packet{Header: Header{Op: OpWrite, Seq: 7, Len: 99}, Body: []byte{0xa0}}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x02, 0, 0, 1, 0, 0, 7, 0, 0xa0} // Len comes from the body
	if !bytes.Equal(b, want) {
		t.Fatalf("Marshal = % x, want % x", b, want)
	}
	q, err := UnmarshalPacket(b)
	if err != nil || q.Header.Len != 1 || !bytes.Equal(q.Body, []byte{0xa0}) {
		t.Fatalf("UnmarshalPacket = %+v, %v", q, err)
	}
	if _, err := UnmarshalPacket(append(b, 0)); !errors.Is(err, ErrLength) {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := UnmarshalPacket(b[:8]); !errors.Is(err, ErrLength) {
		t.Errorf("missing body: %v", err)
	}
	if _, err := (Packet{Body: make([]byte, 0x10000)}).Marshal(); !errors.Is(err, ErrHeaderField) {
		t.Errorf("64 KiB body: %v", err)
	}
}

func TestOpResponse(t *testing.T) {
	for op, want := range map[Op]Op{OpRead: OpReadRsp, OpWrite: OpWriteRsp, 5: OpWriteRsp} {
		if got := op.Response(); got != want {
			t.Errorf("%v.Response() = %v, want %v", op, got, want)
		}
	}
}

func TestCRC16(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"", 0x0000},
		{"123456789", 0x31C3}, // CRC-16/XMODEM check value
		{"A", 0x58E5},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := CRC16([]byte(tt.in)); got != tt.want {
				t.Fatalf("CRC16(%q) = %#04x, want %#04x", tt.in, got, tt.want)
			}
			if got := bitwiseCRC([]byte(tt.in)); got != tt.want {
				t.Fatalf("bitwise reference = %#04x, want %#04x", got, tt.want)
			}
			// The receiver's check: CRC over data and its CRC is 0.
			c := CRC16([]byte(tt.in))
			if got := CRC16Update(c, []byte{byte(c >> 8), byte(c)}); got != 0 {
				t.Fatalf("residue %#04x, want 0", got)
			}
		})
	}
	// Not CCITT-FALSE: that would be 0x29B1 for "123456789".
}

// bitwiseCRC is CRC-16/XMODEM written out bit by bit, as a reference.
func bitwiseCRC(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
