package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
)

// devServicesDir makes a directory with project acme and device dev1,
// two stream records and three log messages.
func devServicesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	mustCLI(t, "project", "create", "acme", "--dir", dir)
	mustCLI(t, "device", "add", "--project", "acme", "dev1", "--psk", "000102030405060708090a0b0c0d0e0f", "--dir", dir)
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	reg := a.Registry()
	if _, err := reg.AddStreamRecord(ctx, registry.StreamRecord{Project: "acme", Device: "dev1", Path: "", ContentFormat: 50, Data: []byte(`{"my_stream_int":15}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddStreamRecord(ctx, registry.StreamRecord{Project: "acme", Device: "dev1", Path: "data/temp", ContentFormat: 60, Data: []byte{0xa1, 0x61, 't', 0x18, 21}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two\nlines", "three"} {
		if _, _, err := reg.AddLog(ctx, registry.LogEntry{Project: "acme", Device: "dev1", Level: "info", Module: "app", Msg: m}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStreamAndLogsCLI(t *testing.T) {
	dir := devServicesDir(t)
	r := mustCLI(t, "stream", "list", "--project", "acme", "--device", "dev1", "--dir", dir)
	if !strings.Contains(r.stdout, `{"my_stream_int":15}`) || !strings.Contains(r.stdout, `data/temp  cbor    {"t":21}`) {
		t.Fatalf("stream list:\n%s", r.stdout)
	}
	r = mustCLI(t, "stream", "list", "--project", "acme", "--device", "dev1", "--path", "data/temp", "--json", "--dir", dir)
	var infos []streamInfo
	var data bytes.Buffer
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 1 || json.Compact(&data, infos[0].Data) != nil || data.String() != `{"t":21}` || infos[0].ContentFormat != 60 {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}
	failCLI(t, 2, []string{"missing --device"}, "stream", "list", "--project", "acme", "--dir", dir)
	failCLI(t, 1, []string{"device ghost does not exist"}, "stream", "list", "--project", "acme", "--device", "ghost", "--dir", dir)

	r = mustCLI(t, "logs", "--project", "acme", "dev1", "--dir", dir)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.HasSuffix(lines[1], "info  app: two lines") {
		t.Fatalf("logs:\n%s", r.stdout)
	}
	r = mustCLI(t, "logs", "--project", "acme", "dev1", "--limit", "1", "--json", "--dir", dir)
	var e logInfo
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Msg != "three" {
		t.Fatalf("logs --json: %v %s", err, r.stdout)
	}
	failCLI(t, 2, []string{"--since"}, "logs", "--project", "acme", "dev1", "--since", "yesterday", "--dir", dir)

	// --follow prints what is there, then what comes, until interrupted.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, &Env{Args: []string{"logs", "--project", "acme", "dev1", "--follow", "--dir", dir}, Stdin: strings.NewReader(""), Stdout: out, Stderr: out})
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "three") })
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, _, err := a.Registry().AddLog(ctx, registry.LogEntry{Project: "acme", Device: "dev1", Level: "warn", Module: "net", Msg: "four"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "warn  net: four") })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("--follow ended with %d:\n%s", code, out.String())
	}
}

func TestSettingsCLI(t *testing.T) {
	dir := devServicesDir(t)
	r := mustCLI(t, "settings", "set", "--project", "acme", "LOOP_DELAY_S", "10", "--dir", dir)
	if !strings.Contains(r.stdout, "set LOOP_DELAY_S=10 for project acme") {
		t.Fatalf("set: %s", r.stdout)
	}
	mustCLI(t, "settings", "set", "--project", "acme", "GREETING", "hello", "--dir", dir)
	mustCLI(t, "settings", "set", "--project", "acme", "--device", "dev1", "LOOP_DELAY_S", "2.5", "--dir", dir)
	r = mustCLI(t, "settings", "list", "--project", "acme", "--device", "dev1", "--json", "--dir", dir)
	var info settingsInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Settings) != 2 || info.Settings[0].Key != "GREETING" || string(info.Settings[0].Value) != `"hello"` ||
		string(info.Settings[1].Value) != "2.5" || info.Settings[1].Device != "dev1" || info.Version == 0 {
		t.Fatalf("list --device: %s", r.stdout)
	}
	r = mustCLI(t, "settings", "list", "--project", "acme", "--dir", dir)
	if !strings.Contains(r.stdout, "LOOP_DELAY_S  10") || !strings.Contains(r.stdout, "version ") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	mustCLI(t, "settings", "delete", "--project", "acme", "--device", "dev1", "LOOP_DELAY_S", "--dir", dir)
	failCLI(t, 1, []string{"no such setting"}, "settings", "delete", "--project", "acme", "--device", "dev1", "LOOP_DELAY_S", "--dir", dir)
	failCLI(t, 1, []string{"A-Z"}, "settings", "set", "--project", "acme", "lower", "1", "--dir", dir)
	failCLI(t, 2, []string{"missing VALUE"}, "settings", "set", "--project", "acme", "K", "--dir", dir)
	failCLI(t, 1, []string{"project nope does not exist"}, "settings", "list", "--project", "nope", "--dir", dir)
	evs, err := func() ([]registry.Event, error) {
		a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir})
		if err != nil {
			return nil, err
		}
		defer a.Close()
		return a.Registry().Events(context.Background(), registry.Filter{Kind: registry.EventSettingsSet})
	}()
	if err != nil || len(evs) != 4 || !strings.Contains(evs[0].Reason, "by credloop CLI") {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
