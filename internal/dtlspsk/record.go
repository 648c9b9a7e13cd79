package dtlspsk

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// Record layer constants (RFC 6347 4.1, RFC 5246 6.2).
const (
	recordHeaderLen  = 13
	explicitNonceLen = 8
	maxPlaintext     = 1 << 14
	// maxRecordLen bounds a record's fragment: TLSCiphertext may be up to
	// 2^14 + 2048 bytes.
	maxRecordLen = maxPlaintext + 2048
	maxSeq       = 1<<48 - 1

	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23

	versionMajor = 0xfe
	versionMinor = 0xfd // DTLS 1.2
)

var (
	errShortRecord   = errors.New("dtlspsk: record shorter than its header")
	errRecordVersion = errors.New("dtlspsk: record version is not DTLS")
	errRecordLength  = errors.New("dtlspsk: record length exceeds the datagram or the limit")
	errShortCipher   = errors.New("dtlspsk: encrypted record too short")
	errSeqExhausted  = errors.New("dtlspsk: record sequence numbers exhausted")
)

// record is one DTLS record; payload aliases the datagram.
type record struct {
	typ     byte
	version uint16
	epoch   uint16
	seq     uint64
	payload []byte
}

// parseRecord splits the first record off a datagram. A datagram may
// carry several records; a bad header makes the rest of it unusable.
func parseRecord(b []byte) (r record, rest []byte, err error) {
	if len(b) < recordHeaderLen {
		return record{}, nil, errShortRecord
	}
	if b[1] != versionMajor {
		return record{}, nil, errRecordVersion
	}
	r.typ = b[0]
	r.version = binary.BigEndian.Uint16(b[1:3])
	r.epoch = binary.BigEndian.Uint16(b[3:5])
	r.seq = uint64(b[5])<<40 | uint64(b[6])<<32 | uint64(binary.BigEndian.Uint32(b[7:11]))
	n := int(binary.BigEndian.Uint16(b[11:13]))
	if n > maxRecordLen || n > len(b)-recordHeaderLen {
		return record{}, nil, errRecordLength
	}
	r.payload = b[recordHeaderLen : recordHeaderLen+n]
	return r, b[recordHeaderLen+n:], nil
}

// putSeq writes epoch || 48-bit sequence number.
func putSeq(b []byte, epoch uint16, seq uint64) {
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint16(b, epoch)
}

// window is the 64-record anti-replay window of one epoch (RFC 6347 4.1.2.6).
type window struct {
	top  uint64
	bits uint64 // bit i: top-i was received
	seen bool
}

// check reports whether seq is new (not below the window, not seen).
func (w *window) check(seq uint64) bool {
	if !w.seen || seq > w.top {
		return true
	}
	d := w.top - seq
	return d < 64 && w.bits&(1<<d) == 0
}

// mark records seq as received; call it only after check and decryption.
func (w *window) mark(seq uint64) {
	switch {
	case !w.seen:
		w.seen, w.top, w.bits = true, seq, 1
	case seq > w.top:
		if d := seq - w.top; d >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<d | 1
		}
		w.top = seq
	default:
		w.bits |= 1 << (w.top - seq)
	}
}

// cipherState is one direction of epoch 1.
type cipherState struct {
	aead  cipher.AEAD
	iv    [4]byte // implicit salt (client_write_IV / server_write_IV)
	nonce [12]byte
	aad   [13]byte
}

// suiteTagLen is the AEAD tag length of a supported suite, 0 if unsupported.
func suiteTagLen(id uint16) int {
	switch id {
	case TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM:
		return 16
	case TLS_PSK_WITH_AES_128_CCM_8:
		return 8
	}
	return 0
}

func (s *cipherState) init(suite uint16, key, iv []byte) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	switch suite {
	case TLS_PSK_WITH_AES_128_GCM_SHA256:
		s.aead, err = cipher.NewGCM(block)
	case TLS_PSK_WITH_AES_128_CCM:
		s.aead, err = ccm.NewCCM(block, 16, 12)
	case TLS_PSK_WITH_AES_128_CCM_8:
		s.aead, err = ccm.NewCCM(block, 8, 12)
	default:
		err = errors.New("dtlspsk: unsupported cipher suite")
	}
	copy(s.iv[:], iv)
	return err
}

// seal appends a record of plaintext (prefix || p) in epoch 1 to dst. The
// explicit nonce is epoch || seq. dst must have room for the overhead to
// stay allocation-free.
func (s *cipherState) seal(dst []byte, typ byte, epoch uint16, seq uint64, prefix, p []byte) []byte {
	start := len(dst)
	dst = append(dst, typ, versionMajor, versionMinor, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	putSeq(dst[start+3:], epoch, seq)
	dst = append(dst, dst[start+3:start+11]...) // explicit nonce
	pt := len(dst)
	dst = append(dst, prefix...)
	dst = append(dst, p...)
	n := len(dst) - pt
	copy(s.nonce[:4], s.iv[:])
	copy(s.nonce[4:], dst[start+3:start+11])
	copy(s.aad[:8], dst[start+3:start+11])
	s.aad[8], s.aad[9], s.aad[10] = typ, versionMajor, versionMinor
	binary.BigEndian.PutUint16(s.aad[11:], uint16(n))
	dst = s.aead.Seal(dst[:pt], s.nonce[:], dst[pt:], s.aad[:])
	binary.BigEndian.PutUint16(dst[start+11:], uint16(len(dst)-start-recordHeaderLen))
	return dst
}

// open decrypts r's payload in place and returns the plaintext.
func (s *cipherState) open(r *record) ([]byte, error) {
	p := r.payload
	if len(p) < explicitNonceLen+s.aead.Overhead() {
		return nil, errShortCipher
	}
	n := len(p) - explicitNonceLen - s.aead.Overhead()
	copy(s.nonce[:4], s.iv[:])
	copy(s.nonce[4:], p[:explicitNonceLen])
	putSeq(s.aad[:8], r.epoch, r.seq)
	s.aad[8] = r.typ
	binary.BigEndian.PutUint16(s.aad[9:], r.version)
	binary.BigEndian.PutUint16(s.aad[11:], uint16(n))
	return s.aead.Open(p[explicitNonceLen:explicitNonceLen], s.nonce[:], p[explicitNonceLen:], s.aad[:])
}

// appendPlain appends an epoch-0 record of prefix || p to dst.
func appendPlain(dst []byte, typ byte, seq uint64, prefix, p []byte) []byte {
	start := len(dst)
	dst = append(dst, typ, versionMajor, versionMinor, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	putSeq(dst[start+3:], 0, seq)
	binary.BigEndian.PutUint16(dst[start+11:], uint16(len(prefix)+len(p)))
	dst = append(dst, prefix...)
	return append(dst, p...)
}
