package cloud_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

type settingsDoc struct {
	Version  int64          `cbor:"version"`
	Settings map[string]any `cbor:"settings"`
}

func decodeSettingsDoc(t *testing.T, body []byte) settingsDoc {
	t.Helper()
	var d settingsDoc
	if err := cbor.Unmarshal(body, &d); err != nil {
		t.Fatalf("settings document % x: %v", body, err)
	}
	return d
}

// settingsAt returns the first notification of at least version
// (earlier changes may be notified more than once).
func settingsAt(t *testing.T, ch <-chan notification, version int64) settingsDoc {
	t.Helper()
	for {
		d := decodeSettingsDoc(t, []byte(next(t, ch).body))
		if d.Version >= version {
			return d
		}
	}
}

// sdkSettingsStatus is what finalize_and_send_response (settings.c)
// posts to .c/status: an indefinite-length map, "errors" (left out when
// there are none) an indefinite-length array of maps, then "version".
func sdkSettingsStatus(version int64, errs map[string]int64) []byte {
	text := func(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }
	uint := func(v uint64) []byte {
		switch {
		case v < 24:
			return []byte{byte(v)}
		case v <= 0xffffffff:
			return binary.BigEndian.AppendUint32([]byte{0x1a}, uint32(v))
		}
		return binary.BigEndian.AppendUint64([]byte{0x1b}, v)
	}
	b := []byte{0xbf}
	if len(errs) > 0 {
		b = append(b, text("errors")...)
		b = append(b, 0x9f)
		for k, code := range errs {
			b = append(b, 0xbf)
			b = append(b, text("setting_key")...)
			b = append(b, text(k)...)
			b = append(b, text("error_code")...)
			b = append(b, uint(uint64(code))...)
			b = append(b, 0xff)
		}
		b = append(b, 0xff)
	}
	b = append(b, text("version")...)
	b = append(b, uint(uint64(version))...)
	return append(b, 0xff)
}

// The Settings service as golioth_basics uses it: golioth_settings_init
// observes .c, golioth_settings_register_int GETs it, the device posts
// its status; operator changes reach the observer.
func TestSettingsFromSDK(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "settings-secret-1")
	ctx := ctxT(t)
	a := c.Admin()
	dev := dialSDK(t, c, cred)

	// No settings yet: "settings" is null (settings_decode: "No
	// settings are set").
	code, body, _ := dev.request(codes.GET, dev.nextToken(), ".c", func(m *pool.Message) { m.SetAccept(message.AppCBOR) }, nil)
	if code != codes.Content {
		t.Fatalf("GET .c = %v", code)
	}
	if d := decodeSettingsDoc(t, body); d.Settings != nil || d.Version != 0 {
		t.Fatalf("empty settings = %+v", d)
	}

	v1, err := a.SetSetting(ctx, "acme", "", "LOOP_DELAY_S", []byte("10"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetSetting(ctx, "acme", "", "TEST_FLOAT", []byte("1.5")); err != nil {
		t.Fatal(err)
	}
	ch, cancel := observe(t, dev.cc, ".c", acceptCBOR)
	n := next(t, ch)
	if n.code != codes.Content || n.cf != message.AppCBOR {
		t.Fatalf("registration = %+v", n)
	}
	d := decodeSettingsDoc(t, []byte(n.body))
	if d.Version <= v1 || !reflect.DeepEqual(d.Settings, map[string]any{"LOOP_DELAY_S": uint64(10), "TEST_FLOAT": 1.5}) {
		t.Fatalf("settings = %+v (version after the first set %d)", d, v1)
	}

	// The device applies them and reports one key it does not know.
	if code, diag := dev.post(".c/status", message.AppCBOR, sdkSettingsStatus(d.Version, map[string]int64{"TEST_FLOAT": 1})); code != codes.Changed {
		t.Fatalf("POST .c/status = %v %q", code, diag)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: registry.EventSettingsStatus, Device: "dev1"})
	if ev.Reason == "" {
		t.Fatalf("event %+v", ev)
	}
	sts, err := a.SettingsStatuses(ctx, "acme", "dev1", 0)
	if err != nil || len(sts) != 1 || sts[0].Version != d.Version || !reflect.DeepEqual(sts[0].Errors, []registry.SettingError{{Key: "TEST_FLOAT", Code: 1}}) {
		t.Fatalf("statuses = %+v, %v", sts, err)
	}

	// A device value overrides the project's and is sent at once.
	v3, err := a.SetSetting(ctx, "acme", "dev1", "LOOP_DELAY_S", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	d = settingsAt(t, ch, v3)
	if d.Version != v3 || d.Settings["LOOP_DELAY_S"] != uint64(2) {
		t.Fatalf("after the device override: %+v", d)
	}
	s, err := a.Settings(ctx, "acme", "dev1")
	if err != nil || len(s.Values) != 2 || s.Values[0].Device != "dev1" || s.Values[1].Device != "" || s.Version != v3 {
		t.Fatalf("admin view = %+v, %v", s, err)
	}
	// Deleting it brings the project's back, with a higher version.
	v4, err := a.DeleteSetting(ctx, "acme", "dev1", "LOOP_DELAY_S")
	if err != nil || v4 <= v3 {
		t.Fatalf("delete: %d, %v", v4, err)
	}
	d = settingsAt(t, ch, v4)
	if d.Version != v4 || d.Settings["LOOP_DELAY_S"] != uint64(10) {
		t.Fatalf("after the delete: %+v", d)
	}
	if _, err := a.DeleteSetting(ctx, "acme", "dev1", "LOOP_DELAY_S"); !errors.Is(err, cloud.ErrNoSetting) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := a.SetSetting(ctx, "acme", "", "bad key", []byte("1")); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
	if evs, _ := c.Registry.Events(ctx, registry.Filter{Kind: registry.EventSettingsSet}); len(evs) != 4 {
		t.Fatalf("%d settings.set events, want 4", len(evs))
	}

	// Bad input.
	for name, tc := range map[string]struct {
		path string
		cf   message.MediaType
		body []byte
		want codes.Code
	}{
		"malformed status": {".c/status", message.AppCBOR, []byte{0xbf, 0x67}, codes.BadRequest},
		"no version":       {".c/status", message.AppCBOR, []byte{0xa0}, codes.BadRequest},
		"JSON status":      {".c/status", message.AppJSON, []byte(`{"version":1}`), codes.UnsupportedMediaType},
		"unknown":          {".c/other", message.AppCBOR, []byte{0xa0}, codes.NotFound},
	} {
		if code, diag := dev.post(tc.path, tc.cf, tc.body); code != tc.want || diag == "" {
			t.Errorf("%s: %v %q, want %v", name, code, diag, tc.want)
		}
	}
	if code, _, _ := dev.request(codes.GET, dev.nextToken(), ".c", func(m *pool.Message) { m.SetAccept(message.AppJSON) }, nil); code != codes.NotAcceptable {
		t.Errorf("GET .c Accept JSON = %v", code)
	}
	if sts, _ := a.SettingsStatuses(ctx, "acme", "dev1", 0); len(sts) != 1 {
		t.Errorf("%d statuses after bad input", len(sts))
	}
	cancel()
}

// A setting changed by the CLI in another process reaches the observers
// of a running cloud through the event log.
func TestSettingsFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	c := newCloud(t, cloud.Options{Dir: dir})
	ctx := ctxT(t)
	key := []byte("settings-secret-2")
	if _, err := c.Admin().CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Admin().AddDevice(ctx, "acme", "dev1", cloud.PSK{Key: key}); err != nil {
		t.Fatal(err)
	}
	dev := dialSDK(t, c, sim.Credential{PSKIdentity: "dev1@acme", PSK: key})
	ch, cancel := observe(t, dev.cc, ".c", acceptCBOR)
	defer cancel()
	if d := decodeSettingsDoc(t, []byte(next(t, ch).body)); d.Settings != nil {
		t.Fatalf("first = %+v", d)
	}
	other, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: "by another process"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	start := time.Now()
	v, err := other.SetSetting(ctx, "acme", "", "NAME", []byte(`"hello"`))
	if err != nil {
		t.Fatal(err)
	}
	d := settingsAt(t, ch, v)
	if d.Version != v || d.Settings["NAME"] != "hello" {
		t.Fatalf("notification = %+v", d)
	}
	t.Logf("notified %s after the other process's change", time.Since(start))
}
