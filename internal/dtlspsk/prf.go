package dtlspsk

import (
	"crypto/sha256"
	"encoding"
	"hash"
)

// PRF labels (RFC 5246 5, 8.1, 6.3, 7.4.9; RFC 7627 4).
var (
	labelMaster         = []byte("master secret")
	labelExtendedMaster = []byte("extended master secret")
	labelKeyExpansion   = []byte("key expansion")
	labelClientFinished = []byte("client finished")
	labelServerFinished = []byte("server finished")
)

// hmacSHA256 is HMAC-SHA-256 over two reusable digests, so that a pooled
// handshake derives its keys without allocating. As in crypto/hmac, the
// digest states after the padded key are saved once per key, saving two
// compressions per MAC.
type hmacSHA256 struct {
	inner, outer hash.Hash
	innerState   []byte // marshaled inner digest after ipad
	outerState   []byte // marshaled outer digest after opad
	pad          [sha256.BlockSize]byte
	tmp          [sha256.Size]byte
}

func newHMAC() *hmacSHA256 {
	return &hmacSHA256{inner: sha256.New(), outer: sha256.New()}
}

func (h *hmacSHA256) setKey(key []byte) {
	if len(key) > sha256.BlockSize {
		h.inner.Reset()
		h.inner.Write(key)
		key = h.inner.Sum(h.tmp[:0])
	}
	h.innerState = h.padded(h.inner, h.innerState, key, 0x36)
	h.outerState = h.padded(h.outer, h.outerState, key, 0x5c)
	clear(h.pad[:])
	clear(h.tmp[:])
}

// padded absorbs key XOR pad into d and returns its marshaled state.
func (h *hmacSHA256) padded(d hash.Hash, state, key []byte, pad byte) []byte {
	clear(h.pad[:])
	copy(h.pad[:], key)
	for i := range h.pad {
		h.pad[i] ^= pad
	}
	d.Reset()
	d.Write(h.pad[:])
	state, err := d.(encoding.BinaryAppender).AppendBinary(state[:0])
	if err != nil {
		panic("dtlspsk: sha256 state does not marshal: " + err.Error()) // a stdlib invariant, not input
	}
	return state
}

func restore(d hash.Hash, state []byte) {
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic("dtlspsk: sha256 state does not unmarshal: " + err.Error()) // a stdlib invariant, not input
	}
}

func (h *hmacSHA256) reset() { restore(h.inner, h.innerState) }

func (h *hmacSHA256) write(p []byte) { h.inner.Write(p) }

// sum appends the MAC to dst.
func (h *hmacSHA256) sum(dst []byte) []byte {
	in := h.inner.Sum(h.tmp[:0])
	restore(h.outer, h.outerState)
	h.outer.Write(in)
	return h.outer.Sum(dst)
}

// wipe forgets the key.
func (h *hmacSHA256) wipe() {
	clear(h.innerState)
	clear(h.outerState)
	clear(h.pad[:])
	clear(h.tmp[:])
	h.inner.Reset()
	h.outer.Reset()
}

// prf fills out with the TLS 1.2 PRF, P_SHA256(secret, label || seed1 ||
// seed2), with the key already set in h (RFC 5246 5). a and b are scratch.
func (h *hmacSHA256) prf(out, label, seed1, seed2 []byte, a, b *[sha256.Size]byte) {
	// A(1) = HMAC(label || seed)
	h.reset()
	h.write(label)
	h.write(seed1)
	h.write(seed2)
	h.sum(a[:0])
	for {
		h.reset()
		h.write(a[:])
		h.write(label)
		h.write(seed1)
		h.write(seed2)
		h.sum(b[:0])
		n := copy(out, b[:])
		out = out[n:]
		if len(out) == 0 {
			break
		}
		// A(i+1) = HMAC(A(i))
		h.reset()
		h.write(a[:])
		h.sum(a[:0])
	}
	clear(a[:])
	clear(b[:])
}
