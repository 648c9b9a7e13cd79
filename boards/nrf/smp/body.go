package smp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Body errors.
var (
	ErrBody     = errors.New("smp: bad CBOR body")
	ErrNotFound = errors.New("smp: no such file") // matched by *Error for ENOENT and the fs group's not-found codes
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Definite lengths, struct fields in declaration order, like
	// mcumgr-cli (Zephyr's zcbor accepts either); a nil []byte is an
	// empty bstr, never null.
	encMode, err = cbor.EncOptions{Sort: cbor.SortNone, NilContainers: cbor.NilContainerAsEmpty}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	// Zephyr (zcbor, non-canonical) sends indefinite-length maps, so
	// those must decode. Limits keep hostile input cheap.
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthAllowed,
		MaxNestedLevels:   8,
		MaxArrayElements:  256,
		MaxMapPairs:       256,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err) // static options
	}
}

// EncodeBody encodes v (normally one of the request or response structs
// of this package, or a map) as an SMP CBOR body.
func EncodeBody(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBody, err)
	}
	return b, nil
}

// DecodeBody decodes an SMP CBOR body into v. The body must be exactly one
// CBOR map; unknown keys are ignored (as zcbor_map_decode_bulk does),
// duplicate keys and wrong value types are errors.
func DecodeBody(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrBody)
	}
	if b[0]>>5 != 5 { // major type 5: map
		return fmt.Errorf("%w: not a map (initial byte 0x%02x)", ErrBody, b[0])
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBody, err)
	}
	return nil
}

// fs group bodies (Zephyr smp_group_8.rst, fs_mgmt.c; newtmgr nmxact/nmp/fs.go).

// UploadRequest is fs command 0, write. Len is required when Off is 0.
type UploadRequest struct {
	Off  uint64  `cbor:"off"`
	Data []byte  `cbor:"data"`
	Name string  `cbor:"name"`
	Len  *uint64 `cbor:"len,omitempty"`
}

// UploadResponse answers an upload with the offset the device expects
// next. Len is set (with the fs error FILE_OFFSET_NOT_VALID) to the size
// the device has when the request's offset did not match it.
type UploadResponse struct {
	Off *uint64 `cbor:"off,omitempty"`
	Len *uint64 `cbor:"len,omitempty"`
}

// DownloadRequest is fs command 0, read.
type DownloadRequest struct {
	Off  uint64 `cbor:"off"`
	Name string `cbor:"name"`
}

// DownloadResponse carries one chunk; Len (the file size) comes with the
// chunk at offset 0 only.
type DownloadResponse struct {
	Off  *uint64 `cbor:"off,omitempty"`
	Data []byte  `cbor:"data"`
	Len  *uint64 `cbor:"len,omitempty"`
}

// StatusRequest is fs command 1, read.
type StatusRequest struct {
	Name string `cbor:"name"`
}

// StatusResponse holds the file size.
type StatusResponse struct {
	Len *uint64 `cbor:"len,omitempty"`
}

// HashRequest is fs command 2, read. An empty Type means the device's
// default (crc32 when Zephyr has it). Off and Len select a range; a nil
// Len means to the end of the file.
type HashRequest struct {
	Name string  `cbor:"name"`
	Type string  `cbor:"type,omitempty"`
	Off  uint64  `cbor:"off,omitempty"`
	Len  *uint64 `cbor:"len,omitempty"`
}

// HashResponse is the wire form of a hash answer: Output is a uint for
// crc32 and a bstr for sha256.
type HashResponse struct {
	Type   string          `cbor:"type"`
	Off    uint64          `cbor:"off,omitempty"`
	Len    uint64          `cbor:"len"`
	Output cbor.RawMessage `cbor:"output"`
}

// Hash types Zephyr's fs group knows.
const (
	HashCRC32  = "crc32"  // IEEE CRC-32, sent as an unsigned integer
	HashSHA256 = "sha256" // sent as a 32-byte string
)

// HashResult is a decoded hash answer. Output holds the digest bytes; a
// numeric checksum (crc32) is given big-endian in 4 bytes.
type HashResult struct {
	Type   string
	Off    uint64
	Len    uint64
	Output []byte
}

func (r HashResponse) result() (HashResult, error) {
	res := HashResult{Type: r.Type, Off: r.Off, Len: r.Len}
	if len(r.Output) == 0 {
		return res, fmt.Errorf("%w: hash response without output", ErrBody)
	}
	var n uint64
	if err := decMode.Unmarshal(r.Output, &n); err == nil {
		if n > 0xFFFFFFFF {
			res.Output = binary.BigEndian.AppendUint64(nil, n)
		} else {
			res.Output = binary.BigEndian.AppendUint32(nil, uint32(n))
		}
		return res, nil
	}
	var b []byte
	if err := decMode.Unmarshal(r.Output, &b); err != nil {
		return res, fmt.Errorf("%w: hash output is neither uint nor bstr", ErrBody)
	}
	res.Output = b
	return res, nil
}

// os group bodies.

// EchoRequest is os command 0; Zephyr answers read and write alike.
type EchoRequest struct {
	D string `cbor:"d"`
}

// EchoResponse returns the echoed string.
type EchoResponse struct {
	R string `cbor:"r"`
}

// ResetRequest is os command 5, write. Force asks newer Zephyr to reset
// even when an application hook objects.
type ResetRequest struct {
	Force bool `cbor:"force,omitempty"`
}

// Status fields every response may carry.
type statusBody struct {
	RC     *int64      `cbor:"rc,omitempty"`
	Err    *groupError `cbor:"err,omitempty"`
	Reason string      `cbor:"rsn,omitempty"`
}

type groupError struct {
	Group uint64 `cbor:"group"`
	RC    int64  `cbor:"rc"`
}

// RC is an mcumgr result code (Zephyr enum mcumgr_err_t), the value of "rc".
type RC int

// Result codes (docs/protocols.md): 0..5 from Zephyr's SMP protocol docs; 6..13 and 256 from
// Zephyr include/zephyr/mgmt/mcumgr/mgmt/mgmt_defines.h.
const (
	EOK               RC = 0
	EUNKNOWN          RC = 1
	ENOMEM            RC = 2
	EINVAL            RC = 3
	ETIMEOUT          RC = 4
	ENOENT            RC = 5
	EBADSTATE         RC = 6
	EMSGSIZE          RC = 7
	ENOTSUP           RC = 8
	ECORRUPT          RC = 9
	EBUSY             RC = 10
	EACCESSDENIED     RC = 11
	UnsupportedTooOld RC = 12
	UnsupportedTooNew RC = 13
	EPERUSER          RC = 256
)

var rcNames = map[RC]string{
	EOK: "EOK", EUNKNOWN: "EUNKNOWN", ENOMEM: "ENOMEM", EINVAL: "EINVAL",
	ETIMEOUT: "ETIMEOUT", ENOENT: "ENOENT", EBADSTATE: "EBADSTATE",
	EMSGSIZE: "EMSGSIZE", ENOTSUP: "ENOTSUP", ECORRUPT: "ECORRUPT",
	EBUSY: "EBUSY", EACCESSDENIED: "EACCESSDENIED",
	UnsupportedTooOld: "UNSUPPORTED_TOO_OLD", UnsupportedTooNew: "UNSUPPORTED_TOO_NEW",
	EPERUSER: "EPERUSER",
}

func (rc RC) String() string {
	if s, ok := rcNames[rc]; ok {
		return s
	}
	if rc > EPERUSER {
		return fmt.Sprintf("EPERUSER+%d", int(rc-EPERUSER))
	}
	return fmt.Sprintf("rc%d", int(rc))
}

// FSErr is an fs group error code (Zephyr enum fs_mgmt_err_code_t), sent
// in SMP v2 as {"err": {"group": 8, "rc": n}}.
type FSErr int

// fs group error codes.
const (
	FSOK                       FSErr = 0
	FSUnknown                  FSErr = 1
	FSFileInvalidName          FSErr = 2
	FSFileNotFound             FSErr = 3
	FSFileIsDirectory          FSErr = 4
	FSFileOpenFailed           FSErr = 5
	FSFileSeekFailed           FSErr = 6
	FSFileReadFailed           FSErr = 7
	FSFileTruncateFailed       FSErr = 8
	FSFileDeleteFailed         FSErr = 9
	FSFileWriteFailed          FSErr = 10
	FSFileOffsetNotValid       FSErr = 11
	FSFileOffsetLargerThanFile FSErr = 12
	FSChecksumHashNotFound     FSErr = 13
	FSMountPointNotFound       FSErr = 14
	FSReadOnlyFilesystem       FSErr = 15
	FSFileEmpty                FSErr = 16
)

var fsNames = []string{
	"OK", "UNKNOWN", "FILE_INVALID_NAME", "FILE_NOT_FOUND", "FILE_IS_DIRECTORY",
	"FILE_OPEN_FAILED", "FILE_SEEK_FAILED", "FILE_READ_FAILED",
	"FILE_TRUNCATE_FAILED", "FILE_DELETE_FAILED", "FILE_WRITE_FAILED",
	"FILE_OFFSET_NOT_VALID", "FILE_OFFSET_LARGER_THAN_FILE",
	"CHECKSUM_HASH_NOT_FOUND", "MOUNT_POINT_NOT_FOUND", "READ_ONLY_FILESYSTEM",
	"FILE_EMPTY",
}

func (e FSErr) String() string {
	if e >= 0 && int(e) < len(fsNames) {
		return fsNames[e]
	}
	return fmt.Sprintf("fs%d", int(e))
}

// legacy returns the rc Zephyr sends instead of this group error to a
// version 0 request (fs_mgmt_translate_error_code).
func (e FSErr) legacy() RC {
	switch e {
	case FSFileInvalidName, FSChecksumHashNotFound:
		return EINVAL
	case FSFileNotFound, FSMountPointNotFound:
		return ENOENT
	}
	return EUNKNOWN
}

// Error is an error reported by the device in a response body.
type Error struct {
	// RC is the code: an mcumgr RC when GroupErr is false, otherwise the
	// group's own code (an FSErr for the fs group).
	RC int
	// GroupErr is true for an SMP v2 {"err": {"group", "rc"}} answer.
	GroupErr bool
	Group    uint16
	// Reason is the optional "rsn" text.
	Reason string
}

func (e *Error) Error() string {
	var s string
	switch {
	case !e.GroupErr:
		s = fmt.Sprintf("smp: device returned rc %d (%s)", e.RC, RC(e.RC))
	case e.Group == GroupFS:
		s = fmt.Sprintf("smp: device returned fs error %d (%s)", e.RC, FSErr(e.RC))
	default:
		s = fmt.Sprintf("smp: device returned group %d error %d", e.Group, e.RC)
	}
	if e.Reason != "" {
		s += fmt.Sprintf(": %q", e.Reason)
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) true for ENOENT and the fs group's
// FILE_NOT_FOUND and MOUNT_POINT_NOT_FOUND.
func (e *Error) Is(target error) bool {
	if target != ErrNotFound {
		return false
	}
	if !e.GroupErr {
		return RC(e.RC) == ENOENT
	}
	return e.Group == GroupFS && (FSErr(e.RC) == FSFileNotFound || FSErr(e.RC) == FSMountPointNotFound)
}

// ResponseError returns the device's error in a response body, nil when the
// body reports success (no "rc", "rc": 0, and no "err" or "err" with rc 0),
// or an ErrBody error when the body is not a CBOR map.
func ResponseError(body []byte) error {
	var s statusBody
	if err := DecodeBody(body, &s); err != nil {
		return err
	}
	if s.Err != nil && s.Err.RC != 0 {
		if s.Err.Group > 0xFFFF || s.Err.RC < 0 || s.Err.RC > 0xFFFF {
			return fmt.Errorf("%w: err {group %d, rc %d} out of range", ErrBody, s.Err.Group, s.Err.RC)
		}
		return &Error{RC: int(s.Err.RC), GroupErr: true, Group: uint16(s.Err.Group), Reason: s.Reason}
	}
	if s.RC != nil && *s.RC != 0 {
		if *s.RC < -1<<31 || *s.RC > 1<<31-1 {
			return fmt.Errorf("%w: rc %d out of range", ErrBody, *s.RC)
		}
		return &Error{RC: int(*s.RC), Reason: s.Reason}
	}
	return nil
}
