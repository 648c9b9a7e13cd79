package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/bench"
)

// childEnv, set in a test's environment, makes this test binary run the
// credloop command line when bench starts it as its server process
// (os.Executable() is the test binary, started as `cloud --dir ...`).
const childEnv = "CREDLOOP_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		Main()
	}
	os.Exit(m.Run())
}

// shortLoad is a load that keeps a bench command line under a second.
var shortLoad = []string{"--concurrency", "2", "--duration", "300ms", "--warmup", "0s", "--ceiling-time", "10ms"}

func readResultFile(t *testing.T, name string) *bench.Result {
	t.Helper()
	r, err := readResult(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBenchServerProc(t *testing.T) {
	t.Setenv(childEnv, "1")
	dir := t.TempDir()
	out := filepath.Join(dir, "psk.json")
	r := mustCLI(t, append([]string{"bench", "dtls-psk", "--server-proc", "--devices", "4", "--json", out}, shortLoad...)...)
	for _, want := range []string{"server cpu/op", "load generator's", "throughput"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "server process: pid") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	res := readResultFile(t, out)
	if res.Ops == 0 || res.ErrorCount() != 0 || !res.ServerMeasured || res.Params["target"] != "server-proc" {
		t.Fatalf("result: ops %d errors %v server %v params %v", res.Ops, res.Errors, res.ServerMeasured, res.Params)
	}

	// mqtt-mtls goes to the child's broker.
	r = mustCLI(t, append([]string{"bench", "mqtt-mtls", "--server-proc", "--devices", "4"}, shortLoad...)...)
	if !strings.Contains(r.stdout, "server cpu/op") || !strings.Contains(r.stdout, "(0 errors") {
		t.Errorf("mqtt-mtls stdout:\n%s", r.stdout)
	}

	// fleet reports the child's memory.
	fleetOut := filepath.Join(dir, "fleet.json")
	r = mustCLI(t, "bench", "fleet", "--server-proc", "--devices", "6", "--concurrency", "3", "--json", fleetOut)
	if !strings.Contains(r.stdout, "6/6 connected (client only;") || !strings.Contains(r.stdout, "server process: VmRSS") {
		t.Fatalf("fleet stdout:\n%s", r.stdout)
	}
	b, err := os.ReadFile(fleetOut)
	if err != nil {
		t.Fatal(err)
	}
	var fo map[string]any
	if err := json.Unmarshal(b, &fo); err != nil {
		t.Fatal(err)
	}
	if fo["connected"] != 6.0 || fo["server_rss_peak_bytes"] == nil || fo["server_rss_before_bytes"] == nil {
		t.Fatalf("fleet json: %s", b)
	}
}

func TestBenchServerProcUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "dtls-psk", "--server-proc", "--target", "127.0.0.1:5684"},
		{"bench", "sign", "--server-proc"},
		{"bench", "dtls-psk", "--server-proc", "--psk-identity", "a", "--psk", "b"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			failCLI(t, 2, []string{"--server-proc"}, args...)
		})
	}
}
