// Package smp speaks Zephyr's mcumgr Simple Management Protocol over a serial console.
package smp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the size of an SMP header in bytes.
const HeaderSize = 8

// Op is the operation in an SMP header (the low three bits of byte 0).
type Op uint8

// Operations (newtmgr nmxact/nmp/defs.go; Zephyr MGMT_OP_*).
const (
	OpRead     Op = 0
	OpReadRsp  Op = 1
	OpWrite    Op = 2
	OpWriteRsp Op = 3
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpReadRsp:
		return "read-rsp"
	case OpWrite:
		return "write"
	case OpWriteRsp:
		return "write-rsp"
	}
	return fmt.Sprintf("op%d", uint8(o))
}

// Response returns the response operation for a request operation, the way
// Zephyr's smp_rsp_op does: read answers read-rsp, anything else write-rsp.
func (o Op) Response() Op {
	if o == OpRead {
		return OpReadRsp
	}
	return OpWriteRsp
}

// Header versions (bits 3-4 of byte 0).
const (
	// Version0 is the original ("legacy") protocol: errors are {"rc": n}.
	Version0 uint8 = 0
	// Version1 is what Zephyr calls "SMP version 2": group errors are
	// {"err": {"group": g, "rc": n}}.
	Version1 uint8 = 1
)

// Management groups (Zephyr enum mcumgr_group_t).
const (
	GroupOS       uint16 = 0
	GroupImage    uint16 = 1
	GroupStat     uint16 = 2
	GroupSettings uint16 = 3
	GroupLog      uint16 = 4
	GroupCrash    uint16 = 5
	GroupSplit    uint16 = 6
	GroupRun      uint16 = 7
	GroupFS       uint16 = 8
	GroupShell    uint16 = 9
	GroupEnum     uint16 = 10
)

// Command IDs of the groups this package implements.
const (
	// os group (0)
	CmdOSEcho  uint8 = 0
	CmdOSReset uint8 = 5

	// fs group (8), Zephyr fs_mgmt.h
	CmdFSFile      uint8 = 0 // upload (write) and download (read)
	CmdFSStatus    uint8 = 1
	CmdFSHash      uint8 = 2
	CmdFSHashTypes uint8 = 3
	CmdFSCloseFile uint8 = 4
)

// Header errors.
var (
	ErrShortHeader = errors.New("smp: header shorter than 8 bytes")
	ErrReservedBit = errors.New("smp: reserved header bits set")
	ErrHeaderField = errors.New("smp: header field out of range")
	ErrLength      = errors.New("smp: length does not match header")
)

// Header is the 8-byte big-endian SMP header:
//
//	byte 0   Res(3) | Ver(2) | OP(3)
//	byte 1   flags
//	byte 2-3 data length
//	byte 4-5 group ID
//	byte 6   sequence number
//	byte 7   command ID
type Header struct {
	Version uint8 // 0 or 1 (0..3 encodable)
	Op      Op    // 0..7 encodable
	Flags   uint8
	Len     uint16 // length of the CBOR body that follows
	Group   uint16
	Seq     uint8
	ID      uint8
}

// Marshal returns the 8 header bytes.
func (h Header) Marshal() ([]byte, error) {
	return h.AppendMarshal(make([]byte, 0, HeaderSize))
}

// AppendMarshal appends the 8 header bytes to b.
func (h Header) AppendMarshal(b []byte) ([]byte, error) {
	if h.Version > 3 {
		return b, fmt.Errorf("%w: version %d > 3", ErrHeaderField, h.Version)
	}
	if h.Op > 7 {
		return b, fmt.Errorf("%w: op %d > 7", ErrHeaderField, h.Op)
	}
	b = append(b, h.Version<<3|uint8(h.Op), h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Len)
	b = binary.BigEndian.AppendUint16(b, h.Group)
	return append(b, h.Seq, h.ID), nil
}

// UnmarshalHeader parses the first 8 bytes of b. Bytes after the header are
// not looked at.
func UnmarshalHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w (%d bytes)", ErrShortHeader, len(b))
	}
	if b[0]&0xE0 != 0 {
		return Header{}, fmt.Errorf("%w: byte 0 is 0x%02x", ErrReservedBit, b[0])
	}
	return Header{
		Version: b[0] >> 3 & 0x3,
		Op:      Op(b[0] & 0x7),
		Flags:   b[1],
		Len:     binary.BigEndian.Uint16(b[2:4]),
		Group:   binary.BigEndian.Uint16(b[4:6]),
		Seq:     b[6],
		ID:      b[7],
	}, nil
}

func (h Header) String() string {
	return fmt.Sprintf("v%d %s group %d id %d seq %d len %d", h.Version, h.Op, h.Group, h.ID, h.Seq, h.Len)
}

// Packet is one SMP message: a header and its CBOR body.
type Packet struct {
	Header Header
	Body   []byte
}

// Marshal returns header and body; the header's Len is set from the body.
func (p Packet) Marshal() ([]byte, error) {
	if len(p.Body) > 0xFFFF {
		return nil, fmt.Errorf("%w: body of %d bytes does not fit 16 bits", ErrHeaderField, len(p.Body))
	}
	h := p.Header
	h.Len = uint16(len(p.Body))
	b, err := h.AppendMarshal(make([]byte, 0, HeaderSize+len(p.Body)))
	if err != nil {
		return nil, err
	}
	return append(b, p.Body...), nil
}

// UnmarshalPacket parses one packet; b must hold exactly the header and the
// Len bytes it announces.
func UnmarshalPacket(b []byte) (Packet, error) {
	h, err := UnmarshalHeader(b)
	if err != nil {
		return Packet{}, err
	}
	if len(b)-HeaderSize != int(h.Len) {
		return Packet{}, fmt.Errorf("%w: header says %d body bytes, packet has %d", ErrLength, h.Len, len(b)-HeaderSize)
	}
	return Packet{Header: h, Body: b[HeaderSize:]}, nil
}
