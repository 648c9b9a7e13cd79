package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/bench"
)

func TestBench(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.json")
	b := filepath.Join(dir, "b.json")
	short := []string{"--duration", "300ms", "--warmup", "0s", "--ceiling-time", "10ms", "--devices", "4"}

	r := mustCLI(t, append([]string{"bench", "sign", "--concurrency", "2", "--shard", "0/2", "--json", a}, short...)...)
	for _, want := range []string{"crypto ceilings", "workload", "efficiency"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	mustCLI(t, append([]string{"bench", "dtls-psk", "--rate", "40", "--shard", "1/2", "--json", b}, short...)...)
	for _, f := range []string{a, b} {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := bench.ReadJSON(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.Ops == 0 || res.ErrorCount() != 0 || res.Ceilings == nil || res.Ceiling <= 0 {
			t.Fatalf("%s: ops %d errors %v ceiling %v", f, res.Ops, res.Errors, res.Ceiling)
		}
	}

	// The same workload on pion's client: same checks.
	p := filepath.Join(dir, "p.json")
	mustCLI(t, append([]string{"bench", "dtls-psk", "--client", "pion", "--concurrency", "2", "--json", p}, short...)...)
	if fh, err := os.Open(p); err != nil {
		t.Fatal(err)
	} else if res, err := bench.ReadJSON(fh); err != nil || res.Ops == 0 || res.ErrorCount() != 0 {
		fh.Close()
		t.Fatalf("pion client: %v, %+v", err, res)
	} else {
		fh.Close()
	}

	r = mustCLI(t, "bench", "compare", a, b)
	if !strings.Contains(r.stdout, "throughput") {
		t.Errorf("compare:\n%s", r.stdout)
	}
	// Two shards of different workloads do not merge; the same file twice
	// is the same shard twice.
	failCLI(t, 1, []string{"cannot merge"}, "bench", "merge", "-o", filepath.Join(dir, "m.json"), a, b)
	failCLI(t, 1, []string{"twice"}, "bench", "merge", "-o", filepath.Join(dir, "m.json"), a, a)
	c := filepath.Join(dir, "c.json")
	mustCLI(t, append([]string{"bench", "sign", "--concurrency", "2", "--shard", "1/2", "--json", c}, short...)...)
	m := filepath.Join(dir, "m.json")
	mustCLI(t, "bench", "merge", "-o", m, a, c)
	fh, err := os.Open(m)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	merged, err := bench.ReadJSON(fh)
	if err != nil || merged.Shard != "0/2+1/2" || merged.Concurrency != 4 {
		t.Fatalf("merged shard %q concurrency %d, %v", merged.Shard, merged.Concurrency, err)
	}

	r = mustCLI(t, "bench", "--help")
	for _, want := range []string{"open loop", "closed loop", "mqtt-mtls", "Examples"} {
		if !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nope"},
		{"bench", "sign", "extra"},
		{"bench", "sign", "--rate", "10", "--concurrency", "2"},
		{"bench", "sign", "--duration", "0s"},
		{"bench", "sign", "--shard", "2/2"},
		{"bench", "dtls-psk", "--psk-identity", "x"},
		{"bench", "dtls-psk", "--client", "openssl"},
		{"bench", "compare", "a.json"},
		{"bench", "merge", "a.json"},
		{"bench", "merge", "-o", "x.json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			failCLI(t, 2, nil, args...)
		})
	}
}

// onboard and fleet go through the same command line.
func TestBenchOnboardAndFleet(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "onboard.json")
	r := mustCLI(t, "bench", "onboard", "--mode", "est", "--rate", "20", "--duration", "300ms", "--warmup", "0s",
		"--devices", "40", "--ceiling-time", "10ms", "--json", out)
	if !strings.Contains(r.stdout, "onboard") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bench.ReadJSON(f)
	f.Close()
	if err != nil || res.Ops == 0 || res.ErrorCount() != 0 {
		t.Fatalf("onboard result: %+v, %v", res, err)
	}
	fleetOut := filepath.Join(dir, "fleet.json")
	r = mustCLI(t, "bench", "fleet", "--devices", "6", "--concurrency", "3", "--json", fleetOut)
	if !strings.Contains(r.stdout, "6/6 connected") {
		t.Fatalf("fleet stdout:\n%s", r.stdout)
	}
	b, err := os.ReadFile(fleetOut)
	if err != nil || !strings.Contains(string(b), `"devices": 6`) {
		t.Fatalf("fleet json: %s, %v", b, err)
	}
	if r := runCLI(t, "bench", "onboard", "--mode", "nope", "--duration", "100ms", "--ceiling-time", "1ms"); r.code == 0 {
		t.Fatal("unknown onboard mode accepted")
	}
}
