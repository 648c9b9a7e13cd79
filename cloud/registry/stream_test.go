package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func devReg(t *testing.T, c *clock) *Registry {
	t.Helper()
	r := openFile(t, tempDB(t), c)
	ctx := ctxT(t)
	if _, err := r.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"dev1", "dev2"} {
		if _, err := r.CreateDevice(ctx, "acme", d); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestStreamRecords(t *testing.T) {
	c := newClock()
	r := devReg(t, c)
	ctx := ctxT(t)
	ev := Event{Project: "acme", Device: "dev1", Kind: EventStreamRecord}
	a, err := r.AddStreamRecord(ctx, StreamRecord{Project: "acme", Device: "dev1", Path: "/", ContentFormat: 50, Data: []byte(`{"a":1}`)}, ev)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	b, err := r.AddStreamRecord(ctx, StreamRecord{Project: "acme", Device: "dev1", Path: "/data//temp/", ContentFormat: 60, Data: []byte{0xa1, 0x61, 0x74, 0x01}}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "" || b.Path != "data/temp" || b.ID <= a.ID || !b.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("records %+v %+v", a, b)
	}
	all, err := r.StreamRecords(ctx, StreamFilter{Project: "acme", Device: "dev1"})
	if err != nil || len(all) != 2 || all[0].ID != a.ID || string(all[0].Data) != `{"a":1}` || all[1].ContentFormat != 60 {
		t.Fatalf("all = %+v, %v", all, err)
	}
	for name, f := range map[string]StreamFilter{
		"path":  {Project: "acme", Device: "dev1", Path: "data/temp"},
		"since": {Project: "acme", Since: t0.Add(time.Second)},
		"limit": {Device: "dev1", Limit: 1},
	} {
		got, err := r.StreamRecords(ctx, f)
		if err != nil || len(got) != 1 || got[0].ID != b.ID {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	if evs, _ := r.Events(ctx, Filter{Kind: EventStreamRecord}); len(evs) != 2 {
		t.Fatalf("events = %v", evs)
	}
	// Nothing stored for a device that does not exist, too big, bad path.
	if _, err := r.AddStreamRecord(ctx, StreamRecord{Project: "acme", Device: "ghost", Data: []byte("1")}, ev); !errors.Is(err, ErrNotFound) {
		t.Errorf("ghost device: %v", err)
	}
	if _, err := r.AddStreamRecord(ctx, StreamRecord{Project: "acme", Device: "dev1", Data: make([]byte, MaxStreamRecord+1)}, ev); !errors.Is(err, ErrInvalid) {
		t.Errorf("too big: %v", err)
	}
	if _, err := r.AddStreamRecord(ctx, StreamRecord{Project: "acme", Device: "dev1", Path: "a\x01"}, ev); !errors.Is(err, ErrInvalid) {
		t.Errorf("control character: %v", err)
	}
	if all, _ := r.StreamRecords(ctx, StreamFilter{}); len(all) != 2 {
		t.Fatalf("records after refusals: %d", len(all))
	}
	if evs, _ := r.Events(ctx, Filter{Kind: EventStreamRecord}); len(evs) != 2 {
		t.Fatalf("events after refusals = %v", evs)
	}
}

func TestLogs(t *testing.T) {
	c := newClock()
	r := devReg(t, c)
	ctx := ctxT(t)
	// Many concurrent writers share the group commit; each gets its own
	// entry and event.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			_, _, err := r.AddLog(ctx, LogEntry{Project: "acme", Device: "dev1", Level: LogInfo, Module: "app", Msg: fmt.Sprintf("hello %d", i)})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e, ev, err := r.AddLog(ctx, LogEntry{Project: "acme", Device: "dev2", Level: LogWarn, Module: "golioth_coap_client", Msg: "line\nbreak", Fields: []byte(`{"uptime":12}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != EventDeviceLog || ev.Seq == 0 || ev.Reason != "warn golioth_coap_client: line break" || e.ID == 0 {
		t.Fatalf("entry %+v event %+v", e, ev)
	}
	got, err := r.Logs(ctx, LogFilter{Project: "acme", Device: "dev2"})
	if err != nil || len(got) != 1 || got[0].Msg != "line\nbreak" || string(got[0].Fields) != `{"uptime":12}` || !got[0].Time.Equal(t0) {
		t.Fatalf("dev2 logs = %+v, %v", got, err)
	}
	got, err = r.Logs(ctx, LogFilter{Device: "dev1", Limit: 5})
	if err != nil || len(got) != 5 || got[0].ID >= got[4].ID || string(got[0].Fields) != "{}" {
		t.Fatalf("dev1 newest 5 = %+v, %v", got, err)
	}
	if evs, _ := r.Events(ctx, Filter{Kind: EventDeviceLog}); len(evs) != 51 {
		t.Fatalf("%d log events", len(evs))
	}
	for name, bad := range map[string]LogEntry{
		"ghost":      {Project: "acme", Device: "ghost", Msg: "x"},
		"not utf-8":  {Project: "acme", Device: "dev1", Msg: "\xff"},
		"huge":       {Project: "acme", Device: "dev1", Msg: string(make([]byte, MaxLogMsg+1))},
		"fields":     {Project: "acme", Device: "dev1", Fields: []byte(`[1]`)},
		"bad fields": {Project: "acme", Device: "dev1", Fields: []byte(`{`)},
	} {
		if _, _, err := r.AddLog(ctx, bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	if evs, _ := r.Events(ctx, Filter{Kind: EventDeviceLog}); len(evs) != 51 {
		t.Fatalf("%d log events after refusals", len(evs))
	}
}

func TestSettings(t *testing.T) {
	c := newClock()
	r := devReg(t, c)
	ctx := ctxT(t)
	put := func(device, key, value string) int64 {
		t.Helper()
		v, err := r.PutSetting(ctx, Setting{Project: "acme", Device: device, Key: key, Value: []byte(value)}, Event{Project: "acme", Device: device, Kind: EventSettingsSet})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v, _ := r.SettingsVersion(ctx, "acme"); v != 0 {
		t.Fatalf("version before any change = %d", v)
	}
	v1 := put("", "LOOP_DELAY_S", "10")
	if v1 != t0.UnixMilli() {
		t.Fatalf("first version %d, want the time in ms %d", v1, t0.UnixMilli())
	}
	// The clock has not moved: the version still increases.
	v2 := put("", "NAME", ` "x" `)
	v3 := put("dev1", "LOOP_DELAY_S", "2.5")
	if v2 != v1+1 || v3 != v2+1 {
		t.Fatalf("versions %d %d %d", v1, v2, v3)
	}
	eff, ver, err := r.EffectiveSettings(ctx, "acme", "dev1")
	if err != nil || ver != v3 || len(eff) != 2 || eff[0].Key != "LOOP_DELAY_S" || string(eff[0].Value) != "2.5" || eff[0].Device != "dev1" || string(eff[1].Value) != `"x"` {
		t.Fatalf("dev1 effective = %+v %d, %v", eff, ver, err)
	}
	eff, _, _ = r.EffectiveSettings(ctx, "acme", "dev2")
	if len(eff) != 2 || string(eff[0].Value) != "10" {
		t.Fatalf("dev2 effective = %+v", eff)
	}
	proj, _, _ := r.Settings(ctx, "acme", "")
	own, _, _ := r.Settings(ctx, "acme", "dev1")
	if len(proj) != 2 || len(own) != 1 {
		t.Fatalf("project %+v own %+v", proj, own)
	}
	c.Advance(time.Hour)
	v4, err := r.DeleteSetting(ctx, "acme", "dev1", "LOOP_DELAY_S")
	if err != nil || v4 != t0.Add(time.Hour).UnixMilli() {
		t.Fatalf("delete: %d, %v", v4, err)
	}
	if _, err := r.DeleteSetting(ctx, "acme", "dev1", "LOOP_DELAY_S"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	// The clock going back never lowers the version.
	c.Advance(-2 * time.Hour)
	if v5 := put("", "NAME", `"y"`); v5 != v4+1 {
		t.Fatalf("version after the clock went back: %d, want %d", v5, v4+1)
	}
	for name, s := range map[string]Setting{
		"lower case": {Project: "acme", Key: "loop", Value: []byte("1")},
		"long key":   {Project: "acme", Key: string(make([]byte, 64)), Value: []byte("1")},
		"object":     {Project: "acme", Key: "K", Value: []byte(`{"a":1}`)},
		"null":       {Project: "acme", Key: "K", Value: []byte(`null`)},
		"not json":   {Project: "acme", Key: "K", Value: []byte(`yes`)},
		"ghost":      {Project: "acme", Device: "ghost", Key: "K", Value: []byte("1")},
		"no project": {Project: "nope", Key: "K", Value: []byte("1")},
		"empty key":  {Project: "acme", Key: "", Value: []byte("1")},
	} {
		if _, err := r.PutSetting(ctx, s); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	st, err := r.AddSettingsStatus(ctx, SettingsStatus{Project: "acme", Device: "dev1", Version: v4, Errors: []SettingError{{Key: "NAME", Code: 1}}},
		Event{Project: "acme", Device: "dev1", Kind: EventSettingsStatus})
	if err != nil || st.ID == 0 {
		t.Fatal(st, err)
	}
	if _, err := r.AddSettingsStatus(ctx, SettingsStatus{Project: "acme", Device: "dev1", Version: v4 + 1}); err != nil {
		t.Fatal(err)
	}
	sts, err := r.SettingsStatuses(ctx, "acme", "dev1", 0)
	if err != nil || len(sts) != 2 || sts[0].Errors[0] != (SettingError{Key: "NAME", Code: 1}) || len(sts[1].Errors) != 0 || sts[1].Version != v4+1 {
		t.Fatalf("statuses = %+v, %v", sts, err)
	}
}

// A setting keeps the type of its project-wide value: a whole number set
// for one device where the project's value is a float is a float (Golioth's
// HIL settings test sets TEST_FLOAT to 10 for a device and expects the
// float 10), and an integer setting stays an integer.
func TestSettingKeepsProjectType(t *testing.T) {
	r := devReg(t, newClock())
	ctx := ctxT(t)
	for _, s := range []Setting{
		{Project: "acme", Key: "TEST_FLOAT", Value: []byte("1.23")},
		{Project: "acme", Device: "dev1", Key: "TEST_FLOAT", Value: []byte("10")},
		{Project: "acme", Key: "TEST_INT", Value: []byte("1")},
		{Project: "acme", Device: "dev1", Key: "TEST_INT", Value: []byte("-7")},
		{Project: "acme", Key: "NEG", Value: []byte("-2e3")},
		{Project: "acme", Device: "dev1", Key: "NEG", Value: []byte("-4")},
	} {
		if _, err := r.PutSetting(ctx, s, Event{Project: "acme", Device: s.Device, Kind: EventSettingsSet}); err != nil {
			t.Fatal(err)
		}
	}
	eff, _, err := r.EffectiveSettings(ctx, "acme", "dev1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range eff {
		got[s.Key] = string(s.Value)
	}
	want := map[string]string{"TEST_FLOAT": "10.0", "TEST_INT": "-7", "NEG": "-4.0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %s, want %s (all: %v)", k, got[k], v, got)
		}
	}
}
