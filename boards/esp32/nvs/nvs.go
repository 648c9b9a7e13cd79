// Package nvs reads and writes ESP-IDF NVS partition images (format
// version 2) byte for byte as nvs_partition_gen.py writes them.
package nvs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// The format is version 2 of ESP-IDF's non-volatile storage (multi-page
// blobs), as written by esp-idf-nvs-partition-gen's nvs_partition_gen.py
// and read by the nvs_flash component:
//
//   - The partition is a row of 4096-byte pages. Each page has a 32-byte
//     header (state, sequence number, version, CRC), a 32-byte entry-state
//     bitmap (2 bits per entry) and 126 entries of 32 bytes.
//   - An entry holds a namespace index, a type, a span, a chunk index, a
//     CRC, a NUL-padded key of at most 15 bytes and 8 bytes of data.
//     Strings and blob chunks put their bytes in the span−1 entries that
//     follow their header entry.
//   - Namespaces are U8 entries in namespace 0 whose value is the index
//     that the namespace's entries carry.
//   - Every CRC is CRC-32 (IEEE) seeded with 0xFFFFFFFF, which is what
//     zlib.crc32(buf, 0xFFFFFFFF) and esp_rom_crc32_le(0xffffffff, …)
//     compute; it is not Go's crc32.ChecksumIEEE.
//
// Writer lays out entries exactly as nvs_partition_gen does, so an image it
// builds from a CSV file is the generator's image byte for byte. Read
// parses an image, checking every CRC. Store is a mutable key/value view of
// one namespace for the board emulator.

// Layout of a partition.
const (
	PageSize       = 4096 // bytes in a page (one flash sector)
	EntrySize      = 32   // bytes in an entry
	EntriesPerPage = 126  // entries in a page
	MinSize        = 0x3000
	MaxKeyLen      = 15   // bytes in a key or namespace name
	MaxStringLen   = 4000 // bytes in a string, its trailing NUL included
	MaxNamespaces  = 254

	headerSize  = 32
	bitmapOff   = 32
	firstEntry  = 64
	chunkAny    = 0xFF
	maxChunks   = 0x80 // chunk indexes of a blob version stay below VER_1_OFFSET (0x80)
	maxChunkLen = (EntriesPerPage - 1) * EntrySize
)

// Page states (the first 4 bytes of a page, little-endian).
const (
	StateEmpty   PageState = 0xFFFFFFFF
	StateActive  PageState = 0xFFFFFFFE
	StateFull    PageState = 0xFFFFFFFC
	StateFreeing PageState = 0xFFFFFFF8
	StateCorrupt PageState = 0
)

// Page format versions (byte 8 of a page header).
const (
	Version1 = 0xFF // single-page blobs
	Version2 = 0xFE // multi-page blobs: BLOB_DATA chunks and a BLOB_IDX
)

// Errors.
var (
	ErrCorrupt  = errors.New("nvs: corrupt image")
	ErrFull     = errors.New("nvs: partition full")
	ErrBadKey   = errors.New("nvs: invalid key")
	ErrBadValue = errors.New("nvs: invalid value")
	ErrBadSize  = errors.New("nvs: invalid partition size")
	ErrCSV      = errors.New("nvs: bad CSV")
)

// PageState is the state word of a page.
type PageState uint32

func (s PageState) String() string {
	switch s {
	case StateEmpty:
		return "EMPTY"
	case StateActive:
		return "ACTIVE"
	case StateFull:
		return "FULL"
	case StateFreeing:
		return "FREEING"
	case StateCorrupt:
		return "CORRUPT"
	}
	return fmt.Sprintf("0x%08x", uint32(s))
}

// Type is the type of an entry.
type Type uint8

// Entry types. A value read or written as TypeBlob is stored in version 2
// pages as BLOB_DATA chunks followed by a BLOB_IDX entry; version 1 pages
// store it in one BLOB entry.
const (
	TypeU8        Type = 0x01
	TypeI8        Type = 0x11
	TypeU16       Type = 0x02
	TypeI16       Type = 0x12
	TypeU32       Type = 0x04
	TypeI32       Type = 0x14
	TypeU64       Type = 0x08
	TypeI64       Type = 0x18
	TypeString    Type = 0x21 // SZ: NUL-terminated string
	TypeBlob      Type = 0x41 // BLOB (version 1), or a whole version 2 blob
	TypeBlobData  Type = 0x42 // BLOB_DATA: one chunk of a version 2 blob
	TypeBlobIndex Type = 0x48 // BLOB_IDX: size and chunks of a version 2 blob
)

var typeNames = map[Type]string{
	TypeU8: "u8", TypeI8: "i8", TypeU16: "u16", TypeI16: "i16",
	TypeU32: "u32", TypeI32: "i32", TypeU64: "u64", TypeI64: "i64",
	TypeString: "string", TypeBlob: "blob", TypeBlobData: "blob_data", TypeBlobIndex: "blob_index",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Primitive reports whether t is an integer type.
func (t Type) Primitive() bool { return t.Width() > 0 }

// Signed reports whether t is a signed integer type.
func (t Type) Signed() bool { return t.Primitive() && t&0x10 != 0 }

// Width is the size in bytes of an integer type, 0 for other types.
func (t Type) Width() int {
	switch t {
	case TypeU8, TypeI8, TypeU16, TypeI16, TypeU32, TypeI32, TypeU64, TypeI64:
		return int(t & 0x0F)
	}
	return 0
}

// Item is one key/value of a namespace.
type Item struct {
	Namespace string
	Key       string
	// Type is an integer type, TypeString or TypeBlob.
	Type Type
	Uint uint64 // the value of an unsigned integer type
	Int  int64  // the value of a signed integer type
	// Data is the value of a string (without its trailing NUL) or a blob.
	Data []byte
}

// Bytes returns the value as bytes: a string or blob's Data, or an
// integer in little-endian order at its width.
func (it Item) Bytes() []byte {
	if w := it.Type.Width(); w > 0 {
		b := binary.LittleEndian.AppendUint64(nil, it.raw())
		return b[:w]
	}
	return append([]byte{}, it.Data...)
}

// raw is an integer's value as the 64 bits stored little-endian.
func (it Item) raw() uint64 {
	if it.Type.Signed() {
		return uint64(it.Int)
	}
	return it.Uint
}

// Secret reports whether the item's value must not be shown: its key names
// a PSK, key, password or pass phrase.
func (it Item) Secret() bool { return SecretKey(it.Key) }

// SecretKey reports whether the value of key is a secret: the key contains
// "psk", "key", "pass" or "pwd" in any case.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"psk", "key", "pass", "pwd"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// Fingerprint is the first 8 hex characters of the SHA-256 of b: what a
// secret is shown as.
func Fingerprint(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:4])
}

// validate checks what the writer needs of an item.
func (it Item) validate() error {
	if err := checkName("namespace", it.Namespace); err != nil {
		return err
	}
	if err := checkName("key", it.Key); err != nil {
		return err
	}
	switch t := it.Type; {
	case t.Primitive():
		w := uint(8 * t.Width())
		if t.Signed() {
			lo, hi := int64(-1)<<(w-1), int64(1)<<(w-1)-1
			if it.Int < lo || it.Int > hi {
				return fmt.Errorf("%w: %s %q: %d is out of range [%d, %d]", ErrBadValue, t, it.Key, it.Int, lo, hi)
			}
		} else if w < 64 && it.Uint >= 1<<w {
			return fmt.Errorf("%w: %s %q: %d is out of range [0, %d]", ErrBadValue, t, it.Key, it.Uint, uint64(1)<<w-1)
		}
	case t == TypeString:
		if n := len(it.Data) + 1; n > MaxStringLen {
			return fmt.Errorf("%w: string %q is %d bytes with its NUL, limit %d", ErrBadValue, it.Key, n, MaxStringLen)
		}
	case t == TypeBlob:
	default:
		return fmt.Errorf("%w: %q has type %s; want an integer type, string or blob", ErrBadValue, it.Key, t)
	}
	return nil
}

// checkName checks a key or namespace name: 1..15 bytes of printable
// ASCII.
func checkName(what, s string) error {
	if s == "" || len(s) > MaxKeyLen {
		return fmt.Errorf("%w: %s %q is %d bytes, want 1..%d", ErrBadKey, what, s, len(s), MaxKeyLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: %s %q: printable ASCII only", ErrBadKey, what, s)
		}
	}
	return nil
}

// crc is the NVS CRC: CRC-32 (IEEE) seeded with 0xFFFFFFFF.
func crc(b []byte) uint32 { return crc32.Update(0xFFFFFFFF, crc32.IEEETable, b) }

// entryCRC is the CRC of an entry: over bytes 0..4 and 8..32.
func entryCRC(e []byte) uint32 {
	var b [28]byte
	copy(b[:4], e[:4])
	copy(b[4:], e[8:32])
	return crc(b[:])
}
