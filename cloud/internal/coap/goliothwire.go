package coap

// Wire formats of Golioth's RPC and OTA services, byte for byte as
// Golioth's firmware SDK 0.22.0 decodes and encodes them (src/rpc.c,
// src/ota.c). The SDK encodes with zcbor in its non-canonical mode, so
// the maps it sends are indefinite-length; the decoders here accept both
// forms.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"

	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/cloud/registry"
)

// errWire wraps every decoding failure of a device's payload; the reason
// is what the device is told with its 4.00.
var errWire = errors.New("coap: malformed payload")

// rpcObserveOK is the first answer to an observation of .rpc: the CBOR
// text "OK", which the SDK's on_rpc recognises ("RPC observation
// established") and does not take for a call.
var rpcObserveOK = []byte{0x62, 'O', 'K'}

var (
	wireDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthAllowed,
			MaxNestedLevels:   16,
			MaxArrayElements:  1024,
			MaxMapPairs:       1024,
			FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
			DefaultMapType:    reflect.TypeOf(map[string]any(nil)),
			TagsMd:            cbor.TagsForbidden,
		}.DecMode()
		if err != nil {
			panic(err) // the options above are constant
		}
		return dm
	}()
	wireEnc = func() cbor.EncMode {
		em, err := cbor.EncOptions{Sort: cbor.SortNone, ShortestFloat: cbor.ShortestFloatNone}.EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
)

// rpcCallWire is the notification of a call: {"id", "method", "params"},
// the three entries on_rpc requires (params an array).
type rpcCallWire struct {
	ID     string `cbor:"id"`
	Method string `cbor:"method"`
	Params []any  `cbor:"params"`
}

// encodeRPCCall encodes a call for the device; params is a JSON array.
func encodeRPCCall(callID, method string, params json.RawMessage) ([]byte, error) {
	v, err := jsonToCBORValue(params)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("coap: rpc params are not an array")
	}
	if arr == nil {
		arr = []any{}
	}
	return wireEnc.Marshal(rpcCallWire{ID: callID, Method: method, Params: arr})
}

// jsonToCBORValue decodes JSON keeping integers integers (CBOR major
// types 0 and 1), other numbers float64.
func jsonToCBORValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	var conv func(any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case json.Number:
			if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
				return u
			}
			f, _ := v.Float64()
			return f
		case []any:
			for i := range v {
				v[i] = conv(v[i])
			}
			return v
		case map[string]any:
			for k := range v {
				v[k] = conv(v[k])
			}
			return v
		}
		return v
	}
	return conv(v), nil
}

// rpcStatusWire is the device's answer on .rpc/status, as on_rpc encodes
// it: {"id": tstr, "detail": {...} (only for a registered method),
// "statusCode": uint}.
type rpcStatusWire struct {
	ID         *string         `cbor:"id"`
	StatusCode *uint64         `cbor:"statusCode"`
	Detail     cbor.RawMessage `cbor:"detail"`
}

// rpcStatus is a decoded answer.
type rpcStatus struct {
	CallID string
	Status registry.RPCStatus
	Detail json.RawMessage // JSON object, nil when the device sent none
}

// decodeRPCStatus decodes and checks a device's answer to a call; the
// detail, a CBOR map, comes back as JSON.
func decodeRPCStatus(b []byte) (rpcStatus, error) {
	var w rpcStatusWire
	if err := wireDec.Unmarshal(b, &w); err != nil {
		return rpcStatus{}, fmt.Errorf("%w: not a CBOR map of id, statusCode and detail: %v", errWire, err)
	}
	switch {
	case w.ID == nil:
		return rpcStatus{}, fmt.Errorf("%w: no id", errWire)
	case *w.ID == "" || len(*w.ID) > registry.MaxRPCCallID:
		return rpcStatus{}, fmt.Errorf("%w: id must be 1..%d bytes", errWire, registry.MaxRPCCallID)
	case w.StatusCode == nil:
		return rpcStatus{}, fmt.Errorf("%w: no statusCode", errWire)
	case *w.StatusCode > math.MaxInt32 || !registry.RPCStatus(*w.StatusCode).Valid():
		return rpcStatus{}, fmt.Errorf("%w: statusCode %d is not a Golioth RPC status (0..16)", errWire, *w.StatusCode)
	}
	st := rpcStatus{CallID: *w.ID, Status: registry.RPCStatus(*w.StatusCode)}
	if len(w.Detail) > 0 && !bytes.Equal(w.Detail, []byte{0xf6}) {
		var m map[string]any
		if err := wireDec.Unmarshal(w.Detail, &m); err != nil {
			return rpcStatus{}, fmt.Errorf("%w: detail is not a map with text keys: %v", errWire, err)
		}
		if m == nil {
			m = map[string]any{}
		}
		j, err := json.Marshal(jsonable(m))
		if err != nil {
			return rpcStatus{}, fmt.Errorf("%w: detail has no JSON form: %v", errWire, err)
		}
		if len(j) > registry.MaxRPCDetail {
			return rpcStatus{}, fmt.Errorf("%w: detail is %d bytes as JSON, max %d", errWire, len(j), registry.MaxRPCDetail)
		}
		st.Detail = j
	}
	return st, nil
}

// Manifest and component keys, as ota.c numbers them.
const (
	manifestKeySequence   = 1
	manifestKeyHash       = 2
	manifestKeyComponents = 3
)

type manifestWire struct {
	Sequence   int64           `cbor:"1,keyasint"`
	Hash       string          `cbor:"2,keyasint"`
	Components []componentWire `cbor:"3,keyasint"`
}

type componentWire struct {
	Package string `cbor:"1,keyasint"`
	Version string `cbor:"2,keyasint"`
	Hash    string `cbor:"3,keyasint"`
	Size    int64  `cbor:"4,keyasint"`
	URI     string `cbor:"5,keyasint"`
}

// componentURI is where a device downloads a component, the form
// Golioth's manifests use ("/.u/c/main@1.2.3"); the SDK requests it as
// given, so its Uri-Path is .u, c, main@1.2.3.
func componentURI(pkg, version string) string { return "/.u/c/" + pkg + "@" + version }

// encodeManifest encodes the device's desired releases. With none it is
// the empty map, which the SDK's golioth_ota_payload_as_manifest decodes
// as a manifest without components. The manifest hash (key 2, which the
// SDK does not read) is the SHA-256 of the components' encoding.
func encodeManifest(rels []registry.OTARelease) ([]byte, error) {
	if len(rels) == 0 {
		return []byte{0xa0}, nil
	}
	m := manifestWire{}
	for _, o := range rels {
		m.Sequence = max(m.Sequence, o.Sequence)
		m.Components = append(m.Components, componentWire{
			Package: o.Package, Version: o.Version, Hash: o.Hash, Size: o.Size, URI: componentURI(o.Package, o.Version),
		})
	}
	comps, err := wireEnc.Marshal(m.Components)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(comps)
	m.Hash = hex.EncodeToString(sum[:])
	return wireEnc.Marshal(m)
}

// otaReportWire is golioth_ota_report_state's map: "s" state, "r"
// reason, "pkg" package, and "v" current and "t" target version when the
// application gave them.
type otaReportWire struct {
	State   *uint32 `cbor:"s"`
	Reason  *uint32 `cbor:"r"`
	Package *string `cbor:"pkg"`
	Version *string `cbor:"v"`
	Target  *string `cbor:"t"`
}

// otaReport is a decoded report.
type otaReport struct {
	State, Reason            int
	Package, Version, Target string
}

// decodeOTAReport decodes and checks a device's OTA state report.
func decodeOTAReport(b []byte) (otaReport, error) {
	var w otaReportWire
	if err := wireDec.Unmarshal(b, &w); err != nil {
		return otaReport{}, fmt.Errorf("%w: not a CBOR map of s, r, pkg, v and t: %v", errWire, err)
	}
	switch {
	case w.State == nil:
		return otaReport{}, fmt.Errorf("%w: no state (s)", errWire)
	case w.Reason == nil:
		return otaReport{}, fmt.Errorf("%w: no reason (r)", errWire)
	case w.Package == nil || *w.Package == "":
		return otaReport{}, fmt.Errorf("%w: no package (pkg)", errWire)
	case *w.State > 1<<16 || *w.Reason > 1<<16:
		return otaReport{}, fmt.Errorf("%w: state %d or reason %d out of range", errWire, *w.State, *w.Reason)
	}
	r := otaReport{State: int(*w.State), Reason: int(*w.Reason), Package: *w.Package}
	if w.Version != nil {
		r.Version = *w.Version
	}
	if w.Target != nil {
		r.Target = *w.Target
	}
	for what, s := range map[string]string{"pkg": r.Package, "v": r.Version, "t": r.Target} {
		if len(s) > registry.MaxOTAReportText {
			return otaReport{}, fmt.Errorf("%w: %s longer than %d bytes", errWire, what, registry.MaxOTAReportText)
		}
		for _, c := range s {
			if c < 0x20 || c == 0x7f {
				return otaReport{}, fmt.Errorf("%w: %s has a control character", errWire, what)
			}
		}
	}
	return r, nil
}
