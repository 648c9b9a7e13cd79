package coap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/cloud/registry"
)

// tstr encodes a short CBOR text string (under 24 bytes).
func tstr(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Answers as Golioth's firmware SDK's on_rpc encodes them with zcbor in
// non-canonical mode: indefinite-length maps (0xbf ... 0xff), "id" first,
// then "detail" (registered methods only), then "statusCode".
var rpcStatusCases = []struct {
	name    string
	in      []byte
	want    rpcStatus
	wantErr string
}{
	{
		name: "int value (basic_return_type int)",
		in: cat([]byte{0xbf}, tstr("id"), tstr("c1"),
			tstr("detail"), []byte{0xbf}, tstr("value"), []byte{0x18, 42}, []byte{0xff},
			tstr("statusCode"), []byte{0x00}, []byte{0xff}),
		want: rpcStatus{CallID: "c1", Status: registry.RPCOK, Detail: []byte(`{"value":42}`)},
	},
	{
		name: "float value",
		in: cat([]byte{0xbf}, tstr("id"), tstr("c2"),
			tstr("detail"), []byte{0xbf}, tstr("value"), []byte{0xfb, 0x40, 0x28, 0xae, 0x14, 0x7a, 0xe1, 0x47, 0xae}, []byte{0xff},
			tstr("statusCode"), []byte{0x00}, []byte{0xff}),
		want: rpcStatus{CallID: "c2", Status: registry.RPCOK, Detail: []byte(`{"value":12.34}`)},
	},
	{
		name: "nested object (object_return_type)",
		in: cat([]byte{0xbf}, tstr("id"), tstr("c3"),
			tstr("detail"), []byte{0xbf}, tstr("foo"), []byte{0xbf}, tstr("bar"), []byte{0xbf}, tstr("baz"), []byte{0x19, 0x01, 0x65}, []byte{0xff, 0xff, 0xff},
			tstr("statusCode"), []byte{0x00}, []byte{0xff}),
		want: rpcStatus{CallID: "c3", Status: registry.RPCOK, Detail: []byte(`{"foo":{"bar":{"baz":357}}}`)},
	},
	{
		name: "method not registered: no detail",
		in:   cat([]byte{0xbf}, tstr("id"), tstr("c4"), tstr("statusCode"), []byte{0x05}, []byte{0xff}),
		want: rpcStatus{CallID: "c4", Status: registry.RPCNotFound},
	},
	{
		name: "definite-length map",
		in:   cat([]byte{0xa2}, tstr("id"), tstr("c5"), tstr("statusCode"), []byte{0x03}),
		want: rpcStatus{CallID: "c5", Status: registry.RPCInvalidArgument},
	},
	{
		name: "malformed_response: detail map never closed",
		in: cat([]byte{0xbf}, tstr("id"), tstr("c6"),
			tstr("detail"), []byte{0xbf}, tstr("foo"), []byte{0xbf}, tstr("bar"),
			tstr("statusCode"), []byte{0x00}, []byte{0xff}),
		wantErr: "not a CBOR map",
	},
	{name: "empty", in: nil, wantErr: "not a CBOR map"},
	{name: "the observe OK", in: rpcObserveOK, wantErr: "not a CBOR map"},
	{name: "no id", in: cat([]byte{0xa1}, tstr("statusCode"), []byte{0x00}), wantErr: "no id"},
	{name: "no statusCode", in: cat([]byte{0xa1}, tstr("id"), tstr("c")), wantErr: "no statusCode"},
	{name: "statusCode 17", in: cat([]byte{0xa2}, tstr("id"), tstr("c"), tstr("statusCode"), []byte{0x11}), wantErr: "not a Golioth RPC status"},
	{name: "negative statusCode", in: cat([]byte{0xa2}, tstr("id"), tstr("c"), tstr("statusCode"), []byte{0x20}), wantErr: "not a CBOR map"},
	{name: "id as bytes", in: cat([]byte{0xa2}, tstr("id"), []byte{0x41, 'c'}, tstr("statusCode"), []byte{0x00}), wantErr: "not a CBOR map"},
	{name: "duplicate id", in: cat([]byte{0xa3}, tstr("id"), tstr("c"), tstr("id"), tstr("d"), tstr("statusCode"), []byte{0x00}), wantErr: "not a CBOR map"},
	{name: "detail with an integer key", in: cat([]byte{0xa3}, tstr("id"), tstr("c"), tstr("detail"), []byte{0xa1, 0x01, 0x02}, tstr("statusCode"), []byte{0x00}), wantErr: "detail is not a map"},
	{name: "trailing bytes", in: cat([]byte{0xa2}, tstr("id"), tstr("c"), tstr("statusCode"), []byte{0x00, 0x00}), wantErr: "not a CBOR map"},
	{name: "an array", in: []byte{0x83, 0x01, 0x02, 0x03}, wantErr: "not a CBOR map"},
}

func TestDecodeRPCStatus(t *testing.T) {
	for _, tc := range rpcStatusCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRPCStatus(tc.in)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, errWire) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.CallID != tc.want.CallID || got.Status != tc.want.Status || string(got.Detail) != string(tc.want.Detail) {
				t.Fatalf("got %+v (detail %s), want %+v (detail %s)", got, got.Detail, tc.want, tc.want.Detail)
			}
		})
	}
}

func TestEncodeRPCCall(t *testing.T) {
	b, err := encodeRPCCall("c1", "multiply", []byte(`[2, 1.5, "s", true, null, {"k": -3}]`))
	if err != nil {
		t.Fatal(err)
	}
	// The entries on_rpc requires, in its order, definite-length.
	want := cat([]byte{0xa3}, tstr("id"), tstr("c1"), tstr("method"), tstr("multiply"), tstr("params"),
		[]byte{0x86, 0x02, 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, tstr("s"), []byte{0xf5, 0xf6, 0xa1}, tstr("k"), []byte{0x22})
	if !bytes.Equal(b, want) {
		t.Fatalf("got  %x\nwant %x", b, want)
	}
	if b, err := encodeRPCCall("c2", "m", []byte(`[]`)); err != nil || !bytes.HasSuffix(b, []byte{0x80}) {
		t.Fatalf("empty params %x, %v", b, err)
	}
	if _, err := encodeRPCCall("c3", "m", []byte(`{}`)); err == nil {
		t.Fatal("params object accepted")
	}
}

func TestManifest(t *testing.T) {
	empty, err := encodeManifest(nil)
	if err != nil || !bytes.Equal(empty, []byte{0xa0}) {
		t.Fatalf("empty manifest %x, %v", empty, err)
	}
	hash := strings.Repeat("ab", 32)
	b, err := encodeManifest([]registry.OTARelease{
		{Package: "main", Version: "1.2.3", Sequence: 3, Hash: hash, Size: 4242},
		{Package: "walrus", Version: "0.4.2", Sequence: 5, Hash: hash, Size: 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Decode it the way ota.c does: integer keys 1 (sequence), 3
	// (components: 1 package, 2 version, 3 hash, 4 size, 5 uri).
	var m map[uint64]cbor.RawMessage
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var seq int64
	var comps []map[uint64]any
	if err := cbor.Unmarshal(m[manifestKeySequence], &seq); err != nil || seq != 5 {
		t.Fatalf("sequence %d, %v", seq, err)
	}
	if _, ok := m[manifestKeyHash]; !ok {
		t.Fatal("no manifest hash")
	}
	if err := cbor.Unmarshal(m[manifestKeyComponents], &comps); err != nil || len(comps) != 2 {
		t.Fatalf("components %v, %v", comps, err)
	}
	c := comps[0]
	if c[1] != "main" || c[2] != "1.2.3" || c[3] != hash || c[4] != uint64(4242) || c[5] != "/.u/c/main@1.2.3" {
		t.Fatalf("component %v", c)
	}
	if h, err := hex.DecodeString(c[3].(string)); err != nil || len(h) != 32 {
		t.Fatalf("hash is not 64 hex digits: %v", err)
	}
}

// Reports as golioth_ota_report_state encodes them: an indefinite-length
// map of "s", "r", "pkg" and, when given, "v" and "t".
var otaReportCases = []struct {
	name    string
	in      []byte
	want    otaReport
	wantErr string
}{
	{
		name: "all keys",
		in:   cat([]byte{0xbf}, tstr("s"), []byte{0x01}, tstr("r"), []byte{0x05}, tstr("pkg"), tstr("main"), tstr("v"), tstr("2.3.4"), tstr("t"), tstr("5.6.7"), []byte{0xff}),
		want: otaReport{State: 1, Reason: 5, Package: "main", Version: "2.3.4", Target: "5.6.7"},
	},
	{
		name: "no versions",
		in:   cat([]byte{0xbf}, tstr("s"), []byte{0x00}, tstr("r"), []byte{0x00}, tstr("pkg"), tstr("main"), []byte{0xff}),
		want: otaReport{Package: "main"},
	},
	{name: "no state", in: cat([]byte{0xa2}, tstr("r"), []byte{0x00}, tstr("pkg"), tstr("main")), wantErr: "no state"},
	{name: "no reason", in: cat([]byte{0xa2}, tstr("s"), []byte{0x00}, tstr("pkg"), tstr("main")), wantErr: "no reason"},
	{name: "no package", in: cat([]byte{0xa2}, tstr("s"), []byte{0x00}, tstr("r"), []byte{0x00}), wantErr: "no package"},
	{name: "state as text", in: cat([]byte{0xa3}, tstr("s"), tstr("1"), tstr("r"), []byte{0x00}, tstr("pkg"), tstr("main")), wantErr: "not a CBOR map"},
	{name: "state too large", in: cat([]byte{0xa3}, tstr("s"), []byte{0x1a, 0xff, 0xff, 0xff, 0xff}, tstr("r"), []byte{0x00}, tstr("pkg"), tstr("main")), wantErr: "out of range"},
	{name: "truncated", in: cat([]byte{0xbf}, tstr("s"), []byte{0x01}, tstr("r")), wantErr: "not a CBOR map"},
	{name: "control character", in: cat([]byte{0xa3}, tstr("s"), []byte{0x00}, tstr("r"), []byte{0x00}, tstr("pkg"), tstr("ma\x01n")), wantErr: "control character"},
	{name: "null", in: []byte{0xf6}, wantErr: "no state"},
}

func TestDecodeOTAReport(t *testing.T) {
	for _, tc := range otaReportCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeOTAReport(tc.in)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, errWire) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzDecodeRPCStatus(f *testing.F) {
	for _, tc := range rpcStatusCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeRPCStatus(b)
		if err != nil {
			if !errors.Is(err, errWire) {
				t.Fatalf("error %v does not wrap errWire", err)
			}
			return
		}
		if st.CallID == "" || !st.Status.Valid() || len(st.Detail) > registry.MaxRPCDetail {
			t.Fatalf("accepted %+v", st)
		}
		if st.Detail != nil && (st.Detail[0] != '{') {
			t.Fatalf("detail %s is not an object", st.Detail)
		}
	})
}

func FuzzDecodeOTAReport(f *testing.F) {
	for _, tc := range otaReportCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeOTAReport(b)
		if err != nil {
			if !errors.Is(err, errWire) {
				t.Fatalf("error %v does not wrap errWire", err)
			}
			return
		}
		if r.Package == "" || r.State < 0 || r.Reason < 0 || len(r.Version) > registry.MaxOTAReportText {
			t.Fatalf("accepted %+v", r)
		}
	})
}
