package coap

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestCBORJSON(t *testing.T) {
	for _, tc := range []struct {
		cbor []byte
		json string
	}{
		{[]byte{0xf6}, "null"},
		{[]byte{0xf5}, "true"},
		{[]byte{0x18, 0x2a}, "42"},
		{[]byte{0x38, 0x63}, "-100"},
		{[]byte{0xfb, 0xc0, 0x6d, 0x48, 0, 0, 0, 0, 0}, "-234.25"},
		{[]byte{0xf9, 0x3c, 0x00}, "1"}, // half-precision 1.0
		{[]byte{0x62, 'h', 'i'}, `"hi"`},
		{[]byte{0x82, 0x01, 0x61, 'x'}, `[1,"x"]`},
		{[]byte{0xa2, 0x61, 'b', 0x01, 0x61, 'a', 0xf6}, `{"a":null,"b":1}`},
		{[]byte{0xbf, 0x61, 'a', 0x9f, 0x01, 0xff, 0xff}, `{"a":[1]}`}, // indefinite lengths
		{[]byte{0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "18446744073709551615"},
	} {
		got, err := cborToJSON(tc.cbor)
		if err != nil || string(got) != tc.json {
			t.Errorf("cborToJSON(% x) = %s, %v; want %s", tc.cbor, got, err, tc.json)
		}
	}
	for _, bad := range [][]byte{
		{}, {0xa1, 0x01, 0x02}, {0x42, 1, 2}, {0xc1, 0x01}, {0xf7}, {0x01, 0x02},
		{0xf9, 0x7e, 0x00},                                     // NaN
		{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},               // duplicate key
		{0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // -2^64
	} {
		if got, err := cborToJSON(bad); !errors.Is(err, errConvert) {
			t.Errorf("cborToJSON(% x) = %s, %v; want an error", bad, got, err)
		}
	}
	for _, tc := range []struct {
		json string
		cbor []byte
	}{
		{"27", []byte{0x18, 27}},
		{"null", []byte{0xf6}},
		{`{"b":1,"a":"x"}`, []byte{0xa2, 0x61, 'a', 0x61, 'x', 0x61, 'b', 0x01}},
		{"-234.25", []byte{0xfb, 0xc0, 0x6d, 0x48, 0, 0, 0, 0, 0}},
	} {
		got, err := jsonToCBOR([]byte(tc.json))
		if err != nil || !bytes.Equal(got, tc.cbor) {
			t.Errorf("jsonToCBOR(%s) = % x, %v; want % x", tc.json, got, err, tc.cbor)
		}
	}
	for _, bad := range []string{"", "{", "1e999", "[1,]"} {
		if _, err := jsonToCBOR([]byte(bad)); !errors.Is(err, errConvert) {
			t.Errorf("jsonToCBOR(%q): %v, want an error", bad, err)
		}
	}
}

// FuzzCBORJSON: any input either fails with errConvert or converts to
// valid JSON that converts to CBOR and back to the same JSON.
func FuzzCBORJSON(f *testing.F) {
	for _, s := range [][]byte{{0xf6}, {0x18, 0x2a}, {0xa1, 0x61, 'a', 0x82, 0x01, 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, {0xbf, 0xff}, {0xf9, 0x3c, 0x00}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := cborToJSON(b)
		if err != nil {
			if !errors.Is(err, errConvert) {
				t.Fatalf("error not errConvert: %v", err)
			}
			return
		}
		if !json.Valid(j) {
			t.Fatalf("cborToJSON(% x) = %s, not JSON", b, j)
		}
		c, err := jsonToCBOR(j)
		if err != nil {
			t.Fatalf("jsonToCBOR(%s): %v", j, err)
		}
		j2, err := cborToJSON(c)
		if err != nil || !bytes.Equal(j, j2) {
			t.Fatalf("round trip of %s: %s, %v", j, j2, err)
		}
	})
}
