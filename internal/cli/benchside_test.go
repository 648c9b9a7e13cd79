package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/internal/peer"
)

// TestBenchSideBySide runs each workload against its third-party server
// and credloop's: dtls-psk over two rounds with credloop's cloud in its own
// process, mqtt-mtls with it embedded.
func TestBenchSideBySide(t *testing.T) {
	t.Setenv(childEnv, "1")
	dir := t.TempDir()
	for _, tc := range []struct {
		workload, peer string
		extra          []string
		rounds         int
		serverCPU      bool
	}{
		{bench.WorkloadDTLSPSK, bench.CoAPServerBinary, []string{"--rounds", "2"}, 2, true},
		{bench.WorkloadMQTTMTLS, bench.MosquittoBinary, []string{"--embedded", "--devices", "4"}, 1, false},
	} {
		t.Run(tc.workload, func(t *testing.T) {
			peer.Require(t, tc.peer)
			out := filepath.Join(dir, tc.workload+".json")
			args := append([]string{"bench", "side-by-side", tc.workload, "--json", out}, shortLoad...)
			r := mustCLI(t, append(args, tc.extra...)...)
			for _, want := range []string{
				"crypto ceilings",
				"== " + tc.peer + " (pid ",
				"== credloop (credloop cloud",
				"== credloop/" + tc.peer + " (B/A)",
				"A: " + tc.peer, "B: credloop",
				"credloop/" + tc.peer + " throughput ",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
			if got := strings.Count(r.stdout, "workload  "); got != 2 {
				t.Errorf("%d result tables, want 2:\n%s", got, r.stdout)
			}
			// Both tables have server cpu/op when credloop's cloud runs in
			// its own process; embedded, only the third party's has it.
			if got := strings.Count(r.stdout, "\nserver cpu/op"); tc.serverCPU && got != 2 || !tc.serverCPU && got != 1 {
				t.Errorf("%d tables with server cpu/op:\n%s", got, r.stdout)
			}
			if got := strings.Contains(r.stdout, ", server cpu/op "); got != tc.serverCPU {
				t.Errorf("headline: server cpu/op ratio shown %v, want %v:\n%s", got, tc.serverCPU, r.stdout)
			}
			if !tc.serverCPU && !strings.Contains(r.stdout, "credloop ran embedded") {
				t.Errorf("no note on embedded cpu/op:\n%s", r.stdout)
			}
			if tc.rounds > 1 && (!strings.Contains(r.stdout, "round 2: ") || !strings.Contains(r.stdout, "medians over 2 rounds")) {
				t.Errorf("rounds missing:\n%s", r.stdout)
			}

			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Workload     string            `json:"workload"`
				TheirsName   string            `json:"theirs_name"`
				Rounds       int               `json:"rounds"`
				TheirsRounds []json.RawMessage `json:"theirs_rounds"`
				OursRounds   []json.RawMessage `json:"ours_rounds"`
				Ratio        []ratioRow        `json:"ratio"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Workload != tc.workload || doc.TheirsName != tc.peer || doc.Rounds != tc.rounds ||
				len(doc.TheirsRounds) != tc.rounds || len(doc.OursRounds) != tc.rounds || len(doc.Ratio) < 6 {
				t.Fatalf("json: %s", b)
			}
			if doc.Ratio[0].Metric != bench.MetricThroughput || doc.Ratio[0].Ratio == nil {
				t.Fatalf("ratio: %+v", doc.Ratio[0])
			}
			// Both servers ran the same load without errors; the
			// ceilings of the one measurement apply to both.
			var rs []*bench.Result
			for _, raw := range append(doc.TheirsRounds, doc.OursRounds...) {
				r, err := bench.ReadJSON(strings.NewReader(string(raw)))
				if err != nil {
					t.Fatal(err)
				}
				rs = append(rs, r)
			}
			for _, r := range rs {
				if r.Ops == 0 || r.ErrorCount() != 0 || r.Concurrency != 2 || r.Ceilings == nil || *r.Ceilings != *rs[0].Ceilings {
					t.Fatalf("%s round %s: ops %d errors %v", r.Params["server"], r.Params["round"], r.Ops, r.Errors)
				}
			}
		})
	}
}

func TestBenchSideBySideUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "side-by-side"},
		{"bench", "side-by-side", "sign"},
		{"bench", "side-by-side", "dtls-psk", "extra"},
		{"bench", "side-by-side", "dtls-psk", "--rounds", "0"},
		{"bench", "side-by-side", "dtls-psk", "--rate", "10", "--concurrency", "2"},
		{"bench", "side-by-side", "mqtt-mtls", "--duration", "0s"},
		{"bench", "side-by-side", "mqtt-mtls", "--nope"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			failCLI(t, 2, []string{"credloop bench: side-by-side: "}, args...)
		})
	}
	r := mustCLI(t, "bench", "side-by-side", "--help")
	for _, want := range []string{"coap-server-openssl", "Mosquitto", "--rounds", "Examples", "ours/theirs", "libcoap3-bin"} {
		if !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestSideMedians(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even %v", m)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(ops int64, srv float64) *bench.Result {
		r := &bench.Result{Workload: "dtls-psk", Mode: bench.ModeClosed, Start: t0, End: t0.Add(time.Second), Ops: ops,
			ServerMeasured: true, ServerCPUSeconds: srv, Latency: bench.NewHistogram(), Service: bench.NewHistogram()}
		r.SetCeiling("", 0) // derive
		return r
	}
	theirs := &sideServer{name: "them", results: []*bench.Result{mk(100, 1), mk(300, 1), mk(200, 1)}}
	ours := &sideServer{name: "us", results: []*bench.Result{mk(400, 1), mk(100, 1), mk(300, 1)}}
	if r := medianRound(theirs.results); r.Ops != 200 {
		t.Errorf("median round %d", r.Ops)
	}
	c := sideComparison(theirs, ours)
	if got := c.Ratio(bench.MetricThroughput); got != 1.5 { // 300 / 200
		t.Errorf("throughput ratio %v", got)
	}
	if got := c.Ratio("server cpu/op"); math.Abs(got-(1.0/300)/(1.0/200)) > 1e-9 {
		t.Errorf("server cpu/op ratio %v", got)
	}
	relabelled := false
	for _, row := range c.Rows {
		relabelled = relabelled || row.Metric == "client cpu/op"
	}
	if !relabelled {
		t.Errorf("cpu/op not relabelled client cpu/op: %+v", c.Rows)
	}
	if h := headline(c); !strings.HasPrefix(h, "us/them throughput 1.50x, p99 -") || !strings.Contains(h, "server cpu/op 0.67x") {
		t.Errorf("headline %q", h)
	}
}

// A missing third-party server fails the command before anything runs.
func TestBenchSideBySideMissingPeer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	failCLI(t, 1, []string{"bench: coap-server-openssl not found: install libcoap3-bin"}, "bench", "side-by-side", "dtls-psk")
}
