package devicemodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"sync"
)

// Store limits. Keys follow the ESP-IDF NVS rule (at most 15 bytes) so that
// anything the model stores can be written into a real NVS partition image.
const (
	MaxKeyLen   = 15
	MaxValueLen = 64 << 10
	// maxEntries bounds an unmarshalled image; a real NVS partition holds far fewer.
	maxEntries = 4096
)

// Store errors.
var (
	ErrPowerCut      = errors.New("devicemodel: power cut during write")
	ErrBadKey        = errors.New("devicemodel: invalid store key")
	ErrValueTooLarge = errors.New("devicemodel: store value too large")
	ErrTxDone        = errors.New("devicemodel: transaction already finished")
	ErrCorrupt       = errors.New("devicemodel: corrupt store image")
)

// Store is the device's non-volatile key/value storage (NVS). Every write is
// atomic: after a power cut a key holds either its old value or its new one,
// never a mix. Update applies several writes all or nothing. A backend that
// is not a MemStore implements Update with NewTx and Tx.Ops.
type Store interface {
	// Get returns a copy of the value stored under key.
	Get(key string) ([]byte, bool)
	// Set stores a copy of val under key.
	Set(key string, val []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key string) error
	// Keys returns all keys, sorted.
	Keys() []string
	// Update runs fn with a transaction and, if fn returns nil, applies
	// its writes atomically. If fn returns an error nothing is written.
	Update(fn func(tx *Tx) error) error
}

// Op is one write recorded by a Tx.
type Op struct {
	Key    string
	Value  []byte // nil for a delete
	Delete bool
}

// Point is the fault-injection point name of the write: "set:<key>" or
// "delete:<key>".
func (o Op) Point() string {
	if o.Delete {
		return "delete:" + o.Key
	}
	return "set:" + o.Key
}

// Tx collects the writes of one Store.Update. Reads through Tx.Get see the
// transaction's own writes. A Tx must not be used after Update returns.
type Tx struct {
	get  func(string) ([]byte, bool)
	ops  []Op
	last map[string]int // index in ops of the last write per key
	done bool
}

// NewTx returns an empty transaction reading through get. Store backends use
// it to implement Update: run fn(tx), then apply tx.Ops() atomically.
func NewTx(get func(key string) ([]byte, bool)) *Tx {
	return &Tx{get: get, last: map[string]int{}}
}

// Get returns the value of key as this transaction would leave it.
func (tx *Tx) Get(key string) ([]byte, bool) {
	if i, ok := tx.last[key]; ok {
		op := tx.ops[i]
		if op.Delete {
			return nil, false
		}
		return bytes.Clone(op.Value), true
	}
	if tx.get == nil {
		return nil, false
	}
	return tx.get(key)
}

// Set records a write of val under key.
func (tx *Tx) Set(key string, val []byte) error {
	if tx.done {
		return ErrTxDone
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if len(val) > MaxValueLen {
		return fmt.Errorf("%w: %q holds %d bytes, limit %d", ErrValueTooLarge, key, len(val), MaxValueLen)
	}
	v := bytes.Clone(val)
	if v == nil {
		v = []byte{}
	}
	tx.record(Op{Key: key, Value: v})
	return nil
}

// Delete records the removal of key.
func (tx *Tx) Delete(key string) error {
	if tx.done {
		return ErrTxDone
	}
	if err := checkKey(key); err != nil {
		return err
	}
	tx.record(Op{Key: key, Delete: true})
	return nil
}

func (tx *Tx) record(op Op) {
	tx.ops = append(tx.ops, op)
	tx.last[op.Key] = len(tx.ops) - 1
}

// Ops returns the recorded writes in order (later writes to the same key
// override earlier ones). The values are copies.
func (tx *Tx) Ops() []Op {
	out := make([]Op, len(tx.ops))
	for i, op := range tx.ops {
		out[i] = Op{Key: op.Key, Value: bytes.Clone(op.Value), Delete: op.Delete}
	}
	return out
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %q (want 1..%d bytes)", ErrBadKey, key, MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %q (printable ASCII only)", ErrBadKey, key)
		}
	}
	return nil
}

// MemStore is an in-memory Store with fault injection. The zero value is an
// empty store ready to use. It is safe for concurrent use; Update is atomic
// (all or nothing) but not isolated from concurrent writers.
type MemStore struct {
	mu  sync.Mutex
	m   map[string][]byte
	cut PowerCut
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

// ArmPowerCut makes the next write whose point matches fail with ErrPowerCut
// without changing anything; the cut then disarms. Points are "set:<key>",
// "delete:<key>", a prefix ending in "*" ("set:psk_*"), or "any" (see
// PowerCut). An Update fails as a whole if any of its writes matches. An
// empty point disarms. After a cut the caller must power cycle the device
// (Device.PowerCycle).
func (s *MemStore) ArmPowerCut(point string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut.Arm(point)
}

// Get implements Store.
func (s *MemStore) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return bytes.Clone(v), ok
}

// Set implements Store.
func (s *MemStore) Set(key string, val []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Set(key, val) })
}

// Delete implements Store.
func (s *MemStore) Delete(key string) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(key) })
}

// Keys implements Store.
func (s *MemStore) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

// Update implements Store. fn runs without the store lock held, so it may
// call s.Get; the writes are then applied under the lock, all or nothing.
func (s *MemStore) Update(fn func(tx *Tx) error) error {
	tx := NewTx(s.Get)
	err := fn(tx)
	tx.done = true
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.cut.CheckOps(tx.ops); err != nil {
		return err
	}
	if s.m == nil && len(tx.ops) > 0 {
		s.m = map[string][]byte{}
	}
	for _, op := range tx.ops {
		if op.Delete {
			delete(s.m, op.Key)
		} else {
			s.m[op.Key] = op.Value
		}
	}
	return nil
}

// Image format (all integers big-endian):
//
//	magic   "CLNV"
//	version 1 byte (1)
//	count   uint32
//	count × { keyLen uint8 | key | valLen uint32 | value }   keys strictly ascending
//	crc     uint32, CRC-32 (IEEE) of everything before it
const (
	imageMagic   = "CLNV"
	imageVersion = 1
	imageHeader  = len(imageMagic) + 1 + 4
)

// MarshalBinary encodes the store contents as a versioned, CRC-checked
// image. The armed power cut is not part of the image.
func (s *MemStore) MarshalBinary() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Sorted(maps.Keys(s.m))
	b := make([]byte, 0, 64)
	b = append(b, imageMagic...)
	b = append(b, imageVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		v := s.m[k]
		b = append(b, byte(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// UnmarshalBinary replaces the store contents with the image in data. A
// corrupt, truncated or unknown image is rejected with an error wrapping
// ErrCorrupt and leaves the store unchanged. It also disarms any power cut.
func (s *MemStore) UnmarshalBinary(data []byte) error {
	m, err := decodeImage(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	s.cut.Disarm()
	return nil
}

func decodeImage(data []byte) (map[string][]byte, error) {
	if len(data) < imageHeader+4 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(data))
	}
	if string(data[:len(imageMagic)]) != imageMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := data[len(imageMagic)]; v != imageVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, v)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	count := binary.BigEndian.Uint32(body[len(imageMagic)+1:])
	if count > maxEntries {
		return nil, fmt.Errorf("%w: %d entries exceeds limit %d", ErrCorrupt, count, maxEntries)
	}
	rest := body[imageHeader:]
	m := make(map[string][]byte, min(int(count), len(rest)/6))
	prev := ""
	for i := range int(count) {
		if len(rest) < 1 {
			return nil, fmt.Errorf("%w: entry %d truncated", ErrCorrupt, i)
		}
		kl := int(rest[0])
		rest = rest[1:]
		if len(rest) < kl+4 {
			return nil, fmt.Errorf("%w: entry %d truncated", ErrCorrupt, i)
		}
		k := string(rest[:kl])
		rest = rest[kl:]
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, i, err)
		}
		if i > 0 && k <= prev {
			return nil, fmt.Errorf("%w: entry %d: keys not strictly ascending", ErrCorrupt, i)
		}
		prev = k
		vl := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if vl > MaxValueLen || uint64(len(rest)) < uint64(vl) {
			return nil, fmt.Errorf("%w: entry %d: bad value length %d", ErrCorrupt, i, vl)
		}
		m[k] = bytes.Clone(rest[:vl])
		rest = rest[vl:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(rest))
	}
	return m, nil
}
