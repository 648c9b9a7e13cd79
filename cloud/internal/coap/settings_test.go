package coap

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/cloud/registry"
)

type keyCode = struct {
	Key  string
	Code int64
}

func TestEncodeSettings(t *testing.T) {
	b, err := encodeSettings([]registry.Setting{
		{Key: "LOOP_DELAY_S", Value: json.RawMessage(`10`)},
		{Key: "TEST_FLOAT", Value: json.RawMessage(`10.0`)},
		{Key: "TEST_BIG", Value: json.RawMessage(`8589934592`)},
		{Key: "TEST_NEG", Value: json.RawMessage(`-8589934592`)},
		{Key: "TEST_BOOL", Value: json.RawMessage(`true`)},
		{Key: "TEST_STRING", Value: json.RawMessage(`"foo"`)},
	}, 1652109801583)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := cbor.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"version": uint64(1652109801583),
		"settings": map[any]any{
			"LOOP_DELAY_S": uint64(10), "TEST_FLOAT": float64(10), "TEST_BIG": uint64(1 << 33),
			"TEST_NEG": int64(-1 << 33), "TEST_BOOL": true, "TEST_STRING": "foo",
		},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Fatalf("settings document = %#v, want %#v", doc, want)
	}
	// A float is encoded as a CBOR float (major type 7), which the SDK's
	// float settings need.
	b, _ = encodeSettings([]registry.Setting{{Key: "F", Value: json.RawMessage(`1.5`)}}, 1)
	if b[len(b)-9] != 0xfb {
		t.Fatalf("1.5 encoded as % x", b)
	}
	// No settings: "settings" is null, as settings_decode expects.
	b, _ = encodeSettings(nil, 7)
	doc = nil
	if err := cbor.Unmarshal(b, &doc); err != nil || doc["settings"] != nil || doc["version"] != uint64(7) {
		t.Fatalf("empty settings = %#v, %v", doc, err)
	}
}

func TestDecodeSettingsStatus(t *testing.T) {
	st, err := decodeSettingsStatus(sdkStatus(1652109801583))
	if err != nil || st.Version != 1652109801583 || len(st.Errors) != 0 {
		t.Fatalf("no errors: %+v, %v", st, err)
	}
	st, err = decodeSettingsStatus(sdkStatus(5, keyCode{"TEST_NOT_REGISTERED", 1}, keyCode{"TEST_WRONG_TYPE", 3}))
	if err != nil || st.Version != 5 || !reflect.DeepEqual(st.Errors, []registry.SettingError{{Key: "TEST_NOT_REGISTERED", Code: 1}, {Key: "TEST_WRONG_TYPE", Code: 3}}) {
		t.Fatalf("errors: %+v, %v", st, err)
	}
	for name, body := range map[string][]byte{
		"empty":        nil,
		"no version":   {0xbf, 0xff},
		"truncated":    sdkStatus(5)[:5],
		"version text": append(append([]byte{0xa1}, cborText("version")...), cborText("1")...),
		"errors map":   append(append(append(append([]byte{0xa2}, cborText("version")...), 0x01), cborText("errors")...), 0xa0),
		"error no key": append(append(append(append([]byte{0xa2}, cborText("version")...), 0x01), cborText("errors")...), 0x81, 0xa0),
		"huge version": append(append([]byte{0xa1}, cborText("version")...), 0x1b, 0xff, 0, 0, 0, 0, 0, 0, 0),
		"array":        {0x80},
	} {
		if _, err := decodeSettingsStatus(body); !errors.Is(err, errPayload) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func FuzzDecodeSettingsStatus(f *testing.F) {
	f.Add(sdkStatus(1652109801583))
	f.Add(sdkStatus(5, keyCode{"TEST_INT", 4}))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := decodeSettingsStatus(body)
		if err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v is not errPayload", err)
			}
			return
		}
		for _, e := range st.Errors {
			if len(e.Key) > registry.MaxSettingKey {
				t.Fatalf("accepted key of %d bytes", len(e.Key))
			}
		}
	})
}
