package coap

import (
	"encoding/binary"
)

// CBOR as Golioth's firmware SDK writes it with zcbor (not canonical):
// maps and arrays of indefinite length (0xbf ... 0xff, 0x9f ... 0xff),
// text strings and integers with the shortest head.

func cborHead(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= 0xff:
		return []byte{m | 24, byte(n)}
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
}

func cborText(s string) []byte { return append(cborHead(3, uint64(len(s))), s...) }

func cborInt64(v int64) []byte {
	if v < 0 {
		return cborHead(1, uint64(-1-v))
	}
	return cborHead(0, uint64(v))
}

// sdkLog is the payload of golioth_log_internal (log.c).
func sdkLog(level, module, msg string) []byte {
	b := []byte{0xbf}
	b = append(b, cborText("level")...)
	b = append(b, cborText(level)...)
	b = append(b, cborText("module")...)
	b = append(b, cborText(module)...)
	b = append(b, cborText("msg")...)
	b = append(b, cborText(msg)...)
	return append(b, 0xff)
}

// sdkStatus is the payload of finalize_and_send_response (settings.c):
// the errors array only when there are errors, then the version.
func sdkStatus(version int64, errs ...struct {
	Key  string
	Code int64
}) []byte {
	b := []byte{0xbf}
	if len(errs) > 0 {
		b = append(b, cborText("errors")...)
		b = append(b, 0x9f)
		for _, e := range errs {
			b = append(b, 0xbf)
			b = append(b, cborText("setting_key")...)
			b = append(b, cborText(e.Key)...)
			b = append(b, cborText("error_code")...)
			b = append(b, cborInt64(e.Code)...)
			b = append(b, 0xff)
		}
		b = append(b, 0xff)
	}
	b = append(b, cborText("version")...)
	b = append(b, cborInt64(version)...)
	return append(b, 0xff)
}
