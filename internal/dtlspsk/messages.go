package dtlspsk

import (
	"encoding/binary"
	"errors"
)

// Handshake message types (RFC 5246 7.4, RFC 6347 4.2.1).
const (
	handshakeHeaderLen = 12

	hsHelloRequest       = 0
	hsClientHello        = 1
	hsServerHello        = 2
	hsHelloVerifyRequest = 3
	hsServerKeyExchange  = 12
	hsServerHelloDone    = 14
	hsClientKeyExchange  = 16
	hsFinished           = 20

	// maxMessageLen bounds a server handshake message this client buffers;
	// PSK servers send a few hundred bytes at most.
	maxMessageLen = 1 << 14
	maxCookieLen  = 255
	verifyDataLen = 12
)

// Extensions (RFC 7627, RFC 5746).
const (
	extExtendedMasterSecret = 0x0017
	extRenegotiationInfo    = 0xff01
)

var (
	errShortFragment  = errors.New("dtlspsk: handshake fragment shorter than its header")
	errFragmentBounds = errors.New("dtlspsk: handshake fragment outside its message")
	errMessageTooLong = errors.New("dtlspsk: handshake message too long")
)

// fragment is one handshake fragment (RFC 6347 4.2.2); body aliases the
// record.
type fragment struct {
	typ    byte
	length int
	seq    uint16
	off    int
	body   []byte
}

func be24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

func put24(b []byte, v int) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }

// parseFragment splits the first handshake fragment off a record payload.
func parseFragment(b []byte) (f fragment, rest []byte, err error) {
	if len(b) < handshakeHeaderLen {
		return fragment{}, nil, errShortFragment
	}
	f.typ = b[0]
	f.length = be24(b[1:4])
	f.seq = binary.BigEndian.Uint16(b[4:6])
	f.off = be24(b[6:9])
	n := be24(b[9:12])
	if f.length > maxMessageLen {
		return fragment{}, nil, errMessageTooLong
	}
	if f.off+n > f.length || n > len(b)-handshakeHeaderLen {
		return fragment{}, nil, errFragmentBounds
	}
	f.body = b[handshakeHeaderLen : handshakeHeaderLen+n]
	return f, b[handshakeHeaderLen+n:], nil
}

// appendHeader appends the unfragmented 12-byte header of a message whose
// body is length bytes long: the form that is sent and that is hashed.
func appendHeader(dst []byte, typ byte, length int, seq uint16) []byte {
	var h [handshakeHeaderLen]byte
	h[0] = typ
	put24(h[1:4], length)
	binary.BigEndian.PutUint16(h[4:6], seq)
	put24(h[9:12], length)
	return append(dst, h[:]...)
}

// appendClientHello appends a complete ClientHello message.
func appendClientHello(dst []byte, seq uint16, random *[32]byte, cookie []byte, suites []uint16) []byte {
	start := len(dst)
	dst = appendHeader(dst, hsClientHello, 0, seq)
	dst = append(dst, versionMajor, versionMinor)
	dst = append(dst, random[:]...)
	dst = append(dst, 0) // session_id: none, no resumption
	dst = append(dst, byte(len(cookie)))
	dst = append(dst, cookie...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(2*len(suites)))
	for _, s := range suites {
		dst = binary.BigEndian.AppendUint16(dst, s)
	}
	dst = append(dst, 1, 0) // compression_methods: null
	dst = append(dst,
		0, 9, // extensions length
		0x00, 0x17, 0, 0, // extended_master_secret
		0xff, 0x01, 0, 1, 0, // renegotiation_info, renegotiated_connection empty
	)
	n := len(dst) - start - handshakeHeaderLen
	put24(dst[start+1:], n)
	put24(dst[start+9:], n)
	return dst
}

// appendClientKeyExchange appends a PSK ClientKeyExchange (RFC 4279 2).
func appendClientKeyExchange(dst []byte, seq uint16, identity string) []byte {
	dst = appendHeader(dst, hsClientKeyExchange, 2+len(identity), seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(identity)))
	return append(dst, identity...)
}

// appendPremaster appends the plain-PSK premaster secret (RFC 4279 2):
// uint16(N) || N zero bytes || uint16(N) || psk.
func appendPremaster(dst, psk []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(psk)))
	for range psk {
		dst = append(dst, 0)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(psk)))
	return append(dst, psk...)
}

// parseHelloVerifyRequest returns the cookie (aliasing b).
func parseHelloVerifyRequest(b []byte) ([]byte, error) {
	if len(b) < 3 {
		return nil, violation(AlertDecodeError, "HelloVerifyRequest of %d bytes", len(b))
	}
	if b[0] != versionMajor || (b[1] != versionMinor && b[1] != 0xff) {
		return nil, violation(AlertProtocolVersion, "HelloVerifyRequest version %d.%d", b[0], b[1])
	}
	n := int(b[2])
	if len(b) != 3+n {
		return nil, violation(AlertDecodeError, "HelloVerifyRequest cookie length %d in %d bytes", n, len(b))
	}
	return b[3:], nil
}

// serverHello holds what this client needs from a ServerHello.
type serverHello struct {
	random [32]byte
	suite  uint16
	ems    bool // extended_master_secret echoed
	reneg  bool // renegotiation_info echoed (RFC 5746 secure renegotiation)
}

// parseServerHello checks a ServerHello against what was offered.
func parseServerHello(b []byte, offered []uint16) (serverHello, error) {
	var sh serverHello
	if len(b) < 2+32+1 {
		return sh, violation(AlertDecodeError, "ServerHello of %d bytes", len(b))
	}
	if b[0] != versionMajor || b[1] != versionMinor {
		return sh, violation(AlertProtocolVersion, "server chose version %d.%d, want DTLS 1.2", b[0], b[1])
	}
	copy(sh.random[:], b[2:34])
	sid := int(b[34])
	b = b[35:]
	if sid > 32 || len(b) < sid+3 {
		return sh, violation(AlertDecodeError, "ServerHello session id of %d bytes", sid)
	}
	b = b[sid:]
	sh.suite = binary.BigEndian.Uint16(b)
	if b[2] != 0 {
		return sh, violation(AlertIllegalParameter, "server chose compression method %d", b[2])
	}
	b = b[3:]
	found := false
	for _, s := range offered {
		found = found || s == sh.suite
	}
	if !found {
		return sh, violation(AlertIllegalParameter, "server chose cipher suite 0x%04x, which was not offered", sh.suite)
	}
	if len(b) == 0 {
		return sh, nil
	}
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return sh, violation(AlertDecodeError, "ServerHello extensions length")
	}
	b = b[2:]
	for len(b) > 0 {
		if len(b) < 4 {
			return sh, violation(AlertDecodeError, "ServerHello extension header")
		}
		typ, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b)-4 < n {
			return sh, violation(AlertDecodeError, "ServerHello extension 0x%04x length %d", typ, n)
		}
		data := b[4 : 4+n]
		b = b[4+n:]
		switch typ {
		case extExtendedMasterSecret:
			if sh.ems || n != 0 {
				return sh, violation(AlertDecodeError, "ServerHello extended_master_secret repeated or not empty")
			}
			sh.ems = true
		case extRenegotiationInfo:
			// An initial handshake's renegotiated_connection is empty.
			if sh.reneg || n != 1 || data[0] != 0 {
				return sh, violation(AlertHandshakeFailure, "ServerHello renegotiation_info repeated or not empty")
			}
			sh.reneg = true
		default:
			return sh, violation(AlertUnsupportedExtension, "ServerHello extension 0x%04x was not offered", typ)
		}
	}
	return sh, nil
}

// parseServerKeyExchange returns the PSK identity hint (aliasing b).
func parseServerKeyExchange(b []byte) ([]byte, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, violation(AlertDecodeError, "ServerKeyExchange of %d bytes is not a PSK identity hint", len(b))
	}
	return b[2:], nil
}
