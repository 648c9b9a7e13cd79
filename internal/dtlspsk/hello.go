package dtlspsk

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Extensions and signalling values a server looks for in a ClientHello.
const (
	// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 3.3).
	scsvRenegotiation = 0x00ff
	maxSessionIDLen   = 32
	maxClientSuites   = 1 << 15
)

// ClientHello is what a server learns from a client's ClientHello.
type ClientHello struct {
	// Version is the client_version (0xfefd for DTLS 1.2).
	Version uint16
	Random  [32]byte
	// Cookie aliases the datagram that was parsed.
	Cookie []byte
	// CipherSuites are offered in the client's order of preference.
	CipherSuites []uint16
	// ExtendedMasterSecret: the client sent extended_master_secret (RFC 7627).
	ExtendedMasterSecret bool
	// SecureRenegotiation: the client sent an empty renegotiation_info or
	// the SCSV (RFC 5746), so the server echoes renegotiation_info.
	SecureRenegotiation bool
}

// Offers reports whether the client offered suite.
func (ch *ClientHello) Offers(suite uint16) bool { return slices.Contains(ch.CipherSuites, suite) }

var errNotClientHello = errors.New("dtlspsk: the datagram does not begin with a whole, unfragmented ClientHello")

// ParseClientHello reads the ClientHello a new association starts with:
// the first record of the datagram must be an epoch-0 handshake record
// holding the whole message. A listener uses it to choose, before any
// state is kept, which DTLS implementation serves the client.
func ParseClientHello(datagram []byte) (*ClientHello, error) {
	r, _, err := parseRecord(datagram)
	if err != nil {
		return nil, err
	}
	if r.typ != typeHandshake || r.epoch != 0 {
		return nil, errNotClientHello
	}
	f, _, err := parseFragment(r.payload)
	if err != nil {
		return nil, err
	}
	if f.typ != hsClientHello || f.off != 0 || len(f.body) != f.length {
		return nil, errNotClientHello
	}
	ch := new(ClientHello)
	if err := parseClientHello(f.body, ch); err != nil {
		return nil, err
	}
	return ch, nil
}

// parseClientHello parses a ClientHello body (RFC 6347 4.2.1, RFC 5246
// 7.4.1.2) into ch; Cookie aliases b, CipherSuites reuses ch's slice.
func parseClientHello(b []byte, ch *ClientHello) error {
	suites := ch.CipherSuites[:0]
	*ch = ClientHello{CipherSuites: suites}
	if len(b) < 2+32+1 {
		return violation(AlertDecodeError, "ClientHello of %d bytes", len(b))
	}
	ch.Version = binary.BigEndian.Uint16(b)
	copy(ch.Random[:], b[2:34])
	b = b[34:]
	sid := int(b[0])
	if sid > maxSessionIDLen || len(b) < 1+sid+1 {
		return violation(AlertDecodeError, "ClientHello session id of %d bytes", sid)
	}
	b = b[1+sid:]
	n := int(b[0])
	if len(b) < 1+n+2 {
		return violation(AlertDecodeError, "ClientHello cookie of %d bytes", n)
	}
	ch.Cookie = b[1 : 1+n]
	b = b[1+n:]
	n = int(binary.BigEndian.Uint16(b))
	if n%2 != 0 || n == 0 || len(b) < 2+n+1 {
		return violation(AlertDecodeError, "ClientHello cipher suites of %d bytes", n)
	}
	for i := 2; i < 2+n; i += 2 {
		s := binary.BigEndian.Uint16(b[i:])
		if s == scsvRenegotiation {
			ch.SecureRenegotiation = true
		}
		suites = append(suites, s)
	}
	ch.CipherSuites = suites
	b = b[2+n:]
	n = int(b[0])
	if n == 0 || len(b) < 1+n {
		return violation(AlertDecodeError, "ClientHello compression methods of %d bytes", n)
	}
	if !slices.Contains(b[1:1+n], 0) {
		return violation(AlertIllegalParameter, "ClientHello without the null compression method")
	}
	b = b[1+n:]
	if len(b) == 0 {
		return nil
	}
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return violation(AlertDecodeError, "ClientHello extensions length")
	}
	b = b[2:]
	for len(b) > 0 {
		if len(b) < 4 {
			return violation(AlertDecodeError, "ClientHello extension header")
		}
		typ, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b)-4 < n {
			return violation(AlertDecodeError, "ClientHello extension 0x%04x length %d", typ, n)
		}
		data := b[4 : 4+n]
		b = b[4+n:]
		switch typ {
		case extExtendedMasterSecret:
			if n != 0 {
				return violation(AlertDecodeError, "ClientHello extended_master_secret not empty")
			}
			ch.ExtendedMasterSecret = true
		case extRenegotiationInfo:
			// An initial handshake's renegotiated_connection is empty.
			if n != 1 || data[0] != 0 {
				return violation(AlertHandshakeFailure, "ClientHello renegotiation_info not empty")
			}
			ch.SecureRenegotiation = true
		}
		// Other extensions (supported_groups, signature_algorithms,
		// server_name, connection_id, ...) are not answered, which the
		// client reads as declined.
	}
	return nil
}

// appendHelloVerifyRequest appends a HelloVerifyRequest (message_seq 0).
// Its server_version is DTLS 1.0 whatever is negotiated later (RFC 6347
// 4.2.1).
func appendHelloVerifyRequest(dst, cookie []byte) []byte {
	dst = appendHeader(dst, hsHelloVerifyRequest, 3+len(cookie), 0)
	dst = append(dst, versionMajor, 0xff, byte(len(cookie)))
	return append(dst, cookie...)
}

// appendServerHello appends a ServerHello with no session id (no
// resumption) and the extensions the client asked for.
func appendServerHello(dst []byte, seq uint16, random *[32]byte, suite uint16, ems, reneg bool) []byte {
	start := len(dst)
	dst = appendHeader(dst, hsServerHello, 0, seq)
	dst = append(dst, versionMajor, versionMinor)
	dst = append(dst, random[:]...)
	dst = append(dst, 0) // session_id
	dst = binary.BigEndian.AppendUint16(dst, suite)
	dst = append(dst, 0) // compression: null
	ext := 0
	if ems {
		ext += 4
	}
	if reneg {
		ext += 5
	}
	if ext > 0 {
		dst = binary.BigEndian.AppendUint16(dst, uint16(ext))
		if ems {
			dst = append(dst, 0x00, 0x17, 0, 0)
		}
		if reneg {
			dst = append(dst, 0xff, 0x01, 0, 1, 0)
		}
	}
	n := len(dst) - start - handshakeHeaderLen
	put24(dst[start+1:], n)
	put24(dst[start+9:], n)
	return dst
}

// appendServerKeyExchange appends a PSK ServerKeyExchange carrying the
// identity hint (RFC 4279 2).
func appendServerKeyExchange(dst []byte, seq uint16, hint string) []byte {
	dst = appendHeader(dst, hsServerKeyExchange, 2+len(hint), seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(hint)))
	return append(dst, hint...)
}

// parseClientKeyExchange returns the PSK identity (aliasing b).
func parseClientKeyExchange(b []byte) ([]byte, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, violation(AlertDecodeError, "ClientKeyExchange of %d bytes is not a PSK identity", len(b))
	}
	return b[2:], nil
}
