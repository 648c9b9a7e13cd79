package coap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"

	"github.com/fxamacker/cbor/v2"
)

// LightDB State is stored as JSON; devices may write and read it as CBOR
// (content-format 60), as Golioth's firmware SDK does with
// GOLIOTH_CONTENT_TYPE_CBOR. The conversion covers what both can say:
// maps with text keys, integers, floats, booleans, text, null and arrays.

// errConvert is wrapped by every conversion error; its text is the reason
// given to the device.
var errConvert = errors.New("coap: not convertible")

var cborDec = func() cbor.DecMode {
	// undefined (simple value 23) has no JSON form; the unassigned simple
	// values are refused by default.
	simple, err := cbor.NewSimpleValueRegistryFromDefaults(cbor.WithRejectedSimpleValue(23))
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		SimpleValues:          simple,
		DupMapKey:             cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:       32,
		IndefLength:           cbor.IndefLengthAllowed,
		DefaultMapType:        reflect.TypeOf(map[string]any(nil)),
		IntDec:                cbor.IntDecConvertNone,
		BigIntDec:             cbor.BigIntDecodeValue,
		UTF8:                  cbor.UTF8RejectInvalid,
		TagsMd:                cbor.TagsAllowed,
		NaN:                   cbor.NaNDecodeAllowed,
		Inf:                   cbor.InfDecodeAllowed,
		ByteStringToTime:      cbor.ByteStringToTimeForbidden,
		DefaultByteStringType: reflect.TypeOf([]byte(nil)),
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

var cborEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortBytewiseLexical}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// cborToJSON converts one CBOR data item to compact JSON.
func cborToJSON(b []byte) ([]byte, error) {
	var v any
	if err := cborDec.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: malformed CBOR: %v", errConvert, err)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(buf *bytes.Buffer, v any, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%w: nested too deep", errConvert)
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case uint64:
		buf.WriteString(strconv.FormatUint(x, 10))
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		return writeFloat(buf, x)
	case float32:
		return writeFloat(buf, float64(x))
	case string:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Errorf("%w: %v", errConvert, err)
		}
		buf.Write(b)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, err := json.Marshal(k)
			if err != nil {
				return fmt.Errorf("%w: %v", errConvert, err)
			}
			buf.Write(kb)
			buf.WriteByte(':')
			if err := writeJSON(buf, x[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []byte:
		return fmt.Errorf("%w: a byte string has no JSON form", errConvert)
	case cbor.Tag, cbor.RawTag:
		return fmt.Errorf("%w: a tagged item has no JSON form", errConvert)
	default:
		return fmt.Errorf("%w: a CBOR %T has no JSON form", errConvert, v)
	}
	return nil
}

// writeFloat writes f as a JSON number; an integral float that fits a
// float64 exactly is written as an integer, so that a value read back as
// CBOR converts to the same JSON.
func writeFloat(buf *bytes.Buffer, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: NaN and infinities have no JSON form", errConvert)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		buf.WriteString(strconv.FormatInt(int64(f), 10))
		return nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("%w: %v", errConvert, err)
	}
	buf.Write(b)
	return nil
}

// jsonToCBOR converts one JSON value to CBOR: integers stay integers,
// other numbers become 64-bit floats, maps have their keys sorted.
func jsonToCBOR(b []byte) ([]byte, error) {
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: malformed JSON", errConvert)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %v", errConvert, err)
	}
	v, err := cborValue(v)
	if err != nil {
		return nil, err
	}
	out, err := cborEnc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConvert, err)
	}
	return out, nil
}

func cborValue(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: number %s is out of range", errConvert, x)
		}
		return f, nil
	case []any:
		for i, e := range x {
			c, err := cborValue(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	case map[string]any:
		for k, e := range x {
			c, err := cborValue(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	}
	return v, nil
}
