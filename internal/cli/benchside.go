package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

const sideUsage = `
Usage: credloop bench side-by-side dtls-psk|mqtt-mtls [flags]

Puts a third-party server and credloop's under the same load, one after
the other in one run, prints both results and the ratio ours/theirs:

  dtls-psk   libcoap's coap-server-openssl (DTLS 1.2 PSK, GET /) against
             the credloop cloud's CoAPS endpoint (GET /hello). Both know
             one PSK identity and key (coap-server has one key), which
             every operation presents: full handshake + GET + close
             (--devices does not apply).
  mqtt-mtls  Mosquitto (MQTT over TLS, client certificate required)
             against the credloop cloud's broker. Both trust one device
             CA; --devices certificates are used round-robin: mutual TLS
             handshake + CONNECT -> CONNACK + DISCONNECT.

Every server runs in its own process on loopback: credloop's is this
program's 'credloop cloud' (as with 'credloop bench --server-proc'), so
the tables show the load generator's cpu/op and the server's apart, for
both servers alike. --embedded runs credloop's cloud inside the load
generator instead (its cpu/op is then client + server, and it has no
server cpu/op). The crypto ceilings are measured once and apply to both.

With --rounds N the two alternate (theirs first in rounds 1, 3, ...;
ours first in rounds 2, 4, ...). The tables show each server's round of
median throughput; the ratio table compares the per-metric medians over
the rounds. Ratios: throughput above 1 means credloop is faster; latency
and CPU below 1 mean credloop is cheaper.

Needs coap-server-openssl (Debian package libcoap3-bin) for dtls-psk and
mosquitto (Debian package mosquitto) for mqtt-mtls.

--json FILE writes one JSON object:

  {"workload": "dtls-psk", "theirs_name": "coap-server-openssl",
   "ours_name": "credloop", "rounds": 1,
   "theirs": RESULT, "ours": RESULT,           (the median rounds)
   "theirs_rounds": [RESULT, ...], "ours_rounds": [RESULT, ...],
   "ratio": [{"metric": "throughput", "unit": "ops/s", "theirs": 5012.3,
              "ours": 6120.8, "ratio": 1.22}, ...]}

where RESULT is what 'credloop bench --json' writes (and 'bench compare'
reads) and ratio is ours/theirs (null when theirs is 0).

Examples:
  credloop bench side-by-side dtls-psk --concurrency 16 --duration 10s
  credloop bench side-by-side mqtt-mtls --rate 400 --duration 30s --devices 200
  credloop bench side-by-side dtls-psk --rounds 3 --json side.json
`

// sideWorkloads are the workloads side-by-side knows a third party for.
var sideWorkloads = map[string]string{
	bench.WorkloadDTLSPSK:  bench.CoAPServerBinary,
	bench.WorkloadMQTTMTLS: bench.MosquittoBinary,
}

// sideServer is one side of a side-by-side run.
type sideServer struct {
	name    string // "coap-server-openssl", "mosquitto", "credloop"
	about   string // how it runs, for the table heading
	w       *bench.Workload
	cpu     func() (time.Duration, error) // nil: not in its own process
	path    string
	results []*bench.Result
}

func benchSideBySide(ctx context.Context, env *Env) (err error) {
	defer func() {
		if errors.Is(err, errUsage) { // name the subcommand: Run names only bench
			err = usageErr("side-by-side: %s", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		}
	}()
	fs := flagSet(env, "bench side-by-side", sideUsage)
	load := addLoadFlags(fs)
	rounds := fs.Int("rounds", 1, "run each server N times, alternating which goes first; report medians")
	embedded := fs.Bool("embedded", false, "run credloop's cloud inside the load generator, not in its own process")
	name, err := parseWorkload(fs, env.Args)
	if err != nil {
		return err
	}
	if _, ok := sideWorkloads[name]; !ok {
		return usageErr("unknown workload %q (dtls-psk or mqtt-mtls)", name)
	}
	if err := load.check(); err != nil {
		return err
	}
	if *rounds < 1 {
		return usageErr("--rounds must be at least 1")
	}
	if _, err := bench.FindPeer(sideWorkloads[name]); err != nil {
		return err
	}

	fmt.Fprintf(env.Stderr, "measuring crypto ceilings (%s)...\n", 7**load.ceilTime)
	ceilings, err := bench.MeasureCeilings(ctx, *load.ceilTime)
	if err != nil {
		return err
	}

	// Ours first: its registry receives what both servers must know.
	var (
		reg  *registry.Registry
		wo   bench.WorkloadOptions
		ours = &sideServer{name: "credloop"}
	)
	if *embedded {
		c, closeCloud, err := bench.EmbeddedCloud(cloud.Options{HTTPSAddr: "-", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		defer closeCloud()
		wo.Cloud, reg = c, c.Registry
		ours.about = "credloop cloud, embedded in the load generator"
	} else {
		sp, err := startBenchServer(ctx, env)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := sp.Close(); err == nil {
				err = cerr
			}
		}()
		wo = bench.WorkloadOptions{Target: sp.Target(name, ""), Registry: sp.Registry, RootCAs: sp.RootCAs, ServerName: sp.ServerName}
		reg, ours.cpu = sp.Registry, sp.CPU
		ours.about = fmt.Sprintf("credloop cloud process, pid %d, %s", sp.Pid(), wo.Target)
	}
	wo.Devices = *load.devices

	var (
		theirs  = &sideServer{name: sideWorkloads[name]}
		theirWO bench.WorkloadOptions
		peer    *bench.Peer
	)
	switch name {
	case bench.WorkloadDTLSPSK:
		id, psk, err := sidePSK(ctx, reg)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "starting %s...\n", theirs.name)
		if peer, err = bench.StartCoAPServer(ctx, bench.PeerOptions{Credentials: []sim.Credential{{PSKIdentity: id, PSK: psk}}}); err != nil {
			return err
		}
		wo.PSKIdentity, wo.PSK, wo.Devices = id, psk, 1
		theirWO = bench.WorkloadOptions{Target: peer.Addr, PSKIdentity: id, PSK: psk, Path: "/", Devices: 1}
		ours.path, theirs.path = "/hello", "/"
	case bench.WorkloadMQTTMTLS:
		ca, err := cloud.NewCA(cloud.CAOptions{Name: "credloop side-by-side device CA", NoIntermediate: true})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "starting %s...\n", theirs.name)
		if peer, err = bench.StartMosquitto(ctx, bench.MosquittoOptions{ClientCA: ca}); err != nil {
			return err
		}
		wo.ClientCA = ca
		theirWO = bench.WorkloadOptions{Target: peer.Addr, RootCAs: peer.RootCAs, ServerName: peer.ServerName, ClientCA: ca, Devices: *load.devices}
	}
	defer func() {
		if cerr := peer.Close(); err == nil {
			err = cerr
		}
	}()
	theirs.cpu = peer.CPU
	theirs.about = fmt.Sprintf("pid %d, %s", peer.Pid(), peer.Addr)

	fmt.Fprintf(env.Stderr, "preparing %s for both servers...\n", name)
	for _, s := range []struct {
		side *sideServer
		o    bench.WorkloadOptions
	}{{theirs, theirWO}, {ours, wo}} {
		w, err := bench.Prepare(ctx, name, s.o)
		if err != nil {
			return fmt.Errorf("%s: %w", s.side.name, err)
		}
		defer w.Cleanup()
		s.side.w = w
	}

	for round := 0; round < *rounds; round++ {
		order := []*sideServer{theirs, ours}
		if round%2 == 1 {
			order[0], order[1] = ours, theirs
		}
		for _, s := range order {
			fmt.Fprintf(env.Stderr, "round %d/%d: %s...\n", round+1, *rounds, s.name)
			params := map[string]string{"server": s.name, "devices": fmt.Sprint(s.w.Devices), "round": fmt.Sprint(round + 1)}
			if s.path != "" {
				params["path"] = s.path
			}
			opts := load.options(name, params, s.w)
			live := &bench.Live{}
			opts.Live, opts.ServerCPU = live, s.cpu
			stop := progress(env.Stderr, live)
			r, err := bench.Run(ctx, opts)
			stop()
			if err != nil {
				return err
			}
			s.w.Apply(r, ceilings)
			s.results = append(s.results, r)
		}
	}
	return writeSide(env.Stdout, name, ceilings, theirs, ours, *rounds, *load.jsonOut)
}

// sidePSK makes the PSK identity and key both servers know: printable (a
// hex text, as coap-server reads keys from a text file) and registered in
// credloop's registry.
func sidePSK(ctx context.Context, reg *registry.Registry) (string, []byte, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	psk := []byte(hex.EncodeToString(raw))
	const dev = "side-000000"
	id := registry.PSKIdentity(dev, bench.Project)
	if _, err := reg.CreateProject(ctx, bench.Project); err != nil && !errors.Is(err, registry.ErrExists) {
		return "", nil, err
	}
	if _, err := reg.CreateDevice(ctx, bench.Project, dev); err != nil && !errors.Is(err, registry.ErrExists) {
		return "", nil, err
	}
	if _, err := reg.AddPSK(ctx, bench.Project, dev, id, psk); err != nil {
		return "", nil, err
	}
	return id, psk, nil
}

// ratioRow is one metric of the side-by-side ratio: ours/theirs.
type ratioRow struct {
	Metric string   `json:"metric"`
	Unit   string   `json:"unit,omitempty"`
	Theirs float64  `json:"theirs"`
	Ours   float64  `json:"ours"`
	Ratio  *float64 `json:"ratio"` // null when theirs is 0
}

// sideComparison compares the per-metric medians over the rounds
// (theirs = A, ours = B), with server cpu/op when both have it.
func sideComparison(theirs, ours *sideServer) bench.Comparison {
	var per []bench.Comparison
	for i := range theirs.results {
		per = append(per, bench.Compare(theirs.results[i], ours.results[i]))
	}
	servers := true
	for _, rs := range [][]*bench.Result{theirs.results, ours.results} {
		for _, r := range rs {
			servers = servers && r.ServerMeasured
		}
	}
	c := bench.Comparison{A: theirs.name, B: ours.name}
	for k, row := range per[0].Rows {
		var as, bs []float64
		for _, p := range per {
			as, bs = append(as, p.Rows[k].A), append(bs, p.Rows[k].B)
		}
		if row.Metric == bench.MetricCPUPerOp && servers {
			row.Metric = "client cpu/op"
		}
		c.Rows = append(c.Rows, ratioOf(row.Metric, row.Unit, median(as), median(bs)))
	}
	if servers {
		var as, bs []float64
		for i := range theirs.results {
			as = append(as, theirs.results[i].ServerCPUPerOp*1e6)
			bs = append(bs, ours.results[i].ServerCPUPerOp*1e6)
		}
		c.Rows = append(c.Rows, ratioOf("server cpu/op", "µs", median(as), median(bs)))
	}
	return c
}

func ratioOf(metric, unit string, a, b float64) bench.CompareRow {
	r := math.NaN()
	if a != 0 {
		r = b / a
	}
	return bench.CompareRow{Metric: metric, Unit: unit, A: a, B: b, Ratio: r}
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianRound returns the result of median throughput (the lower one for
// an even count).
func medianRound(rs []*bench.Result) *bench.Result {
	s := append([]*bench.Result(nil), rs...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Throughput < s[j].Throughput })
	return s[(len(s)-1)/2]
}

// headline is the one-line verdict, e.g. "credloop/mosquitto throughput
// 1.23x, p99 0.80x, server cpu/op 0.91x".
func headline(c bench.Comparison) string {
	x := func(m string) string {
		r := c.Ratio(m)
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return "-"
		}
		return fmt.Sprintf("%.2fx", r)
	}
	s := fmt.Sprintf("%s/%s throughput %s, p99 %s", c.B, c.A, x(bench.MetricThroughput), x(bench.MetricP99))
	if !math.IsNaN(c.Ratio("server cpu/op")) {
		s += ", server cpu/op " + x("server cpu/op")
	}
	return s
}

func writeSide(w io.Writer, name string, ceilings bench.Ceilings, theirs, ours *sideServer, rounds int, jsonOut string) error {
	writeCeilings(w, ceilings)
	if rounds > 1 {
		fmt.Fprintln(w)
		for i := 0; i < rounds; i++ {
			t, o := theirs.results[i], ours.results[i]
			fmt.Fprintf(w, "round %d: %s %s ops/s p99 %s | %s %s ops/s p99 %s\n", i+1,
				theirs.name, fmtNum(t.Throughput), t.LatencySummary.P99.Round(10*time.Microsecond),
				ours.name, fmtNum(o.Throughput), o.LatencySummary.P99.Round(10*time.Microsecond))
		}
	}
	for _, s := range []*sideServer{theirs, ours} {
		r := medianRound(s.results)
		fmt.Fprintf(w, "\n== %s (%s)", s.name, s.about)
		if rounds > 1 {
			fmt.Fprintf(w, ", round %s of median throughput", r.Params["round"])
		}
		fmt.Fprintln(w)
		if err := r.WriteTable(w); err != nil {
			return err
		}
	}
	c := sideComparison(theirs, ours)
	fmt.Fprintf(w, "\n== %s/%s (B/A)", ours.name, theirs.name)
	if rounds > 1 {
		fmt.Fprintf(w, ", medians over %d rounds", rounds)
	}
	fmt.Fprintln(w)
	if err := c.WriteTable(w); err != nil {
		return err
	}
	if !ours.results[0].ServerMeasured {
		fmt.Fprintf(w, "(credloop ran embedded: its cpu/op is client + server, %s's the load generator's alone)\n", theirs.name)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, headline(c))
	if jsonOut == "" {
		return nil
	}
	out := struct {
		Workload     string          `json:"workload"`
		TheirsName   string          `json:"theirs_name"`
		OursName     string          `json:"ours_name"`
		Rounds       int             `json:"rounds"`
		Theirs       *bench.Result   `json:"theirs"`
		Ours         *bench.Result   `json:"ours"`
		TheirsRounds []*bench.Result `json:"theirs_rounds"`
		OursRounds   []*bench.Result `json:"ours_rounds"`
		Ratio        []ratioRow      `json:"ratio"`
	}{name, theirs.name, ours.name, rounds, medianRound(theirs.results), medianRound(ours.results), theirs.results, ours.results, nil}
	for _, r := range c.Rows {
		row := ratioRow{Metric: r.Metric, Unit: r.Unit, Theirs: r.A, Ours: r.B}
		if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
			v := r.Ratio
			row.Ratio = &v
		}
		out.Ratio = append(out.Ratio, row)
	}
	f, err := os.Create(jsonOut)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fmtNum prints a rate with 4 significant digits.
func fmtNum(v float64) string {
	if v >= 1e4 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.4g", v), ".")
}
