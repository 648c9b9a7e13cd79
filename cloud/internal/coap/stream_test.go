package coap

import (
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
)

func TestCheckStreamPayload(t *testing.T) {
	ok := []struct {
		cf   message.MediaType
		data []byte
	}{
		{message.AppJSON, []byte(`{"my_stream_int":15}`)},
		{message.AppJSON, []byte(` 42 `)},
		{message.AppCBOR, []byte{0xbf, 0x61, 't', 0x01, 0xff}},
		{message.AppCBOR, []byte{0x01}},
	}
	for _, c := range ok {
		if err := checkStreamPayload(c.cf, c.data); err != nil {
			t.Errorf("% x as %v: %v", c.data, c.cf, err)
		}
	}
	bad := []struct {
		cf   message.MediaType
		data []byte
	}{
		{message.AppJSON, nil},
		{message.AppJSON, []byte(`{"a":`)},
		{message.AppJSON, []byte(`{} {}`)},
		{message.AppCBOR, []byte{0xbf, 0x61, 't'}},
		{message.AppCBOR, []byte{0x01, 0x02}},
		{message.AppOctets, []byte{0x01}},
	}
	for _, c := range bad {
		if err := checkStreamPayload(c.cf, c.data); !errors.Is(err, errPayload) {
			t.Errorf("% x as %v: %v", c.data, c.cf, err)
		}
	}
}

func FuzzCheckStreamPayload(f *testing.F) {
	f.Add([]byte(`{"my_stream_int":15}`), false)
	f.Add([]byte{0xa1, 0x61, 't', 0xf9, 0x3c, 0x00}, true)
	f.Fuzz(func(t *testing.T, data []byte, asCBOR bool) {
		cf := message.AppJSON
		if asCBOR {
			cf = message.AppCBOR
		}
		if err := checkStreamPayload(cf, data); err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v is not errPayload", err)
			}
			return
		}
		// What is accepted decodes whole.
		var v any
		if asCBOR {
			if err := cbor.Unmarshal(data, &v); err != nil {
				t.Fatalf("accepted CBOR does not decode: %v", err)
			}
		}
	})
}
