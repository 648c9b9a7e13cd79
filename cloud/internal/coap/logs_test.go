package coap

import (
	"errors"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
)

func TestDecodeLog(t *testing.T) {
	for _, level := range []string{"error", "warn", "info", "debug"} {
		e, err := decodeLog(message.AppCBOR, sdkLog(level, "golioth_basics", "Sending hello! 3"))
		if err != nil || e.Level != level || e.Module != "golioth_basics" || e.Msg != "Sending hello! 3" || e.Fields != nil {
			t.Fatalf("%s: %+v, %v", level, e, err)
		}
	}
	// Definite-length map with an extra field, and the same as JSON.
	extra := []byte{0xa4}
	for _, kv := range [][2]string{{"level", "info"}, {"module", "m"}, {"msg", "x"}} {
		extra = append(extra, cborText(kv[0])...)
		extra = append(extra, cborText(kv[1])...)
	}
	extra = append(extra, cborText("uptime")...)
	extra = append(extra, cborInt64(1234)...)
	e, err := decodeLog(message.AppCBOR, extra)
	if err != nil || string(e.Fields) != `{"uptime":1234}` {
		t.Fatalf("extra field: %+v, %v", e, err)
	}
	e, err = decodeLog(message.AppJSON, []byte(`{"level":"warn","module":"m","msg":"hi","n":1.5}`))
	if err != nil || e.Level != "warn" || string(e.Fields) != `{"n":1.5}` {
		t.Fatalf("JSON: %+v, %v", e, err)
	}
	for name, body := range map[string][]byte{
		"empty":          nil,
		"truncated":      sdkLog("info", "m", "x")[:10],
		"not a map":      cborText("hello"),
		"no msg":         {0xbf, 0x65, 'l', 'e', 'v', 'e', 'l', 0x64, 'i', 'n', 'f', 'o', 0xff},
		"bad level":      sdkLog("fatal", "m", "x"),
		"msg not text":   append(append([]byte{0xa1}, cborText("msg")...), 0x01),
		"duplicate key":  append(append(append(append([]byte{0xa2}, cborText("msg")...), cborText("a")...), cborText("msg")...), cborText("b")...),
		"trailing bytes": append(sdkLog("info", "m", "x"), 0x00),
		"int keys":       {0xa1, 0x01, 0x02},
		"invalid utf-8":  append(append([]byte{0xa1}, cborText("msg")...), 0x61, 0xff),
	} {
		if _, err := decodeLog(message.AppCBOR, body); !errors.Is(err, errPayload) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := decodeLog(message.AppCBOR, sdkLog("info", "m", strings.Repeat("x", maxLogBody))); !errors.Is(err, errPayload) {
		t.Errorf("oversize: %v", err)
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add([]byte(sdkLog("info", "golioth_basics", "Hello, Golioth!")), true)
	f.Add([]byte(`{"level":"warn","module":"m","msg":"hi"}`), false)
	f.Add([]byte{0xbf, 0xff}, true)
	f.Fuzz(func(t *testing.T, body []byte, asCBOR bool) {
		cf := message.AppJSON
		if asCBOR {
			cf = message.AppCBOR
		}
		e, err := decodeLog(cf, body)
		if err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v is not errPayload", err)
			}
			return
		}
		if !logLevels[e.Level] {
			t.Fatalf("accepted level %q", e.Level)
		}
	})
}
