package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/cloud"
)

func init() {
	register(command{name: "bench", summary: "load-test signing, DTLS/CoAP, EST and MQTT: throughput, latency, efficiency", run: runBench})
}

func benchUsage() string {
	var b strings.Builder
	b.WriteString(`Usage:
  credloop bench WORKLOAD [flags]
  credloop bench side-by-side dtls-psk|mqtt-mtls [flags]
  credloop bench compare A.json B.json
  credloop bench merge -o OUT.json IN.json...

Drives one workload against an embedded cloud (started for the run, in
memory), the cloud in its own process (--server-proc) or an external
server (--target), and reports throughput, latency percentiles, errors by
cause, CPU and allocations per operation, and efficiency = achieved
throughput / the crypto ceiling measured in the same run on this machine
(see docs/benchmarks.md).

Workloads:
`)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, w := range bench.Workloads {
		c := w.Ceiling
		if c == "" {
			c = "none (throughput)"
		}
		ext := ""
		if w.External {
			ext = ", --target ok"
		}
		fmt.Fprintf(tw, "  %s\t%s\t[ceiling: %s%s]\n", w.Name, w.Measures, c, ext)
	}
	fmt.Fprintf(tw, "  %s\t%s\t[memory and goroutines per device]\n", bench.WorkloadFleet,
		"--devices N connect over DTLS PSK (--concurrency at a time) and stay connected")
	fmt.Fprintf(tw, "  %s\t%s\t[time from one change to each device's notification]\n", bench.WorkloadObserve,
		"--devices N each observe a LightDB State path (CoAP Observe); one project-wide change notifies them all")
	tw.Flush()
	b.WriteString(`
Registry entries, keys, certificates and (coap, est) sessions are prepared
before the run; only the operation itself is measured.

Where the server runs:
  embedded       (default) in the load generator's process: cpu/op is
                 client + server.
  --server-proc  'credloop cloud' in a child process on loopback (its CA
                 and registry in a temporary directory, removed after):
                 cpu/op is the load generator's, server cpu/op the
                 child's (from /proc, 10 ms resolution). fleet reports
                 the child's resident memory per device instead.
  --target       an external server (the workloads marked --target ok).

side-by-side puts coap-server-openssl (dtls-psk) or Mosquitto (mqtt-mtls)
and credloop under the same load in one run and prints the ratio; see
'credloop bench side-by-side --help'.

Load:
  closed loop  --concurrency N (default 32): N workers, each starts its next
               operation when the previous returns. Finds the maximum
               throughput; latency is what a saturated server gives.
  open loop    --rate R: operations arrive at R/s whatever the server does;
               latency counts from the intended start (coordinated omission
               corrected), so queueing shows. Use ~80% of the closed-loop
               maximum to read p99 under realistic load.

The result's JSON (--json) holds HDR histograms: shards merge exactly.

Examples:
  credloop bench sign --duration 5s
  credloop bench dtls-psk --concurrency 64 --duration 10s --json psk.json
  credloop bench dtls-psk --rate 4000 --duration 30s
  credloop bench dtls-psk --client pion        (devices on pion/dtls, as scenarios)
  credloop bench dtls-psk --target 127.0.0.1:5684 --psk-identity id --psk secret
  credloop bench mqtt-mtls --server-proc --concurrency 16 --duration 10s
  credloop bench fleet --server-proc --devices 2000
  credloop bench observe --devices 10000
  credloop bench side-by-side dtls-psk --concurrency 16 --duration 10s
  credloop bench mqtt-mtls --devices 1000 --json mqtt.json
  credloop bench dtls-psk --shard 0/4 --json s0.json   (one of 4 machines)
  credloop bench merge -o all.json s0.json s1.json s2.json s3.json
  credloop bench compare before.json after.json
`)
	return b.String()
}

func runBench(ctx context.Context, env *Env) error {
	if len(env.Args) > 0 {
		sub := &Env{Args: env.Args[1:], Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr}
		switch env.Args[0] {
		case "compare":
			return benchCompare(env)
		case "merge":
			return benchMerge(env)
		case "side-by-side":
			return benchSideBySide(ctx, sub)
		}
	}
	fs := flagSet(env, "bench", benchUsage())
	load := addLoadFlags(fs)
	shardFlag := fs.String("shard", "", "run slice `i/n` of the fleet (0-based), e.g. 0/4")
	target := fs.String("target", "", "external server `host:port` instead of the embedded cloud")
	serverProc := fs.Bool("server-proc", false, "run the cloud in a separate `credloop cloud` process (client and server CPU apart; fleet: server memory)")
	pskID := fs.String("psk-identity", "", "PSK identity for --target (dtls-psk, coap)")
	pskFlag := fs.String("psk", "", "PSK for --target: text, or hex:... for raw bytes")
	path := fs.String("path", "", `CoAP path to GET (default "/hello"; "/" with --target)`)
	mode := fs.String("mode", "jitp", "onboard: jitp (MQTT just-in-time provisioning) or est (EST enrollment over CoAP)")
	client := fs.String("client", "lean", "dtls-psk and fleet devices' DTLS stack: lean (credloop's own client, no goroutine per device, ~1/20 of pion's allocations) or pion (pion/dtls, as sim and scenarios use)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured window to `FILE` (go tool pprof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile at the end of the run to `FILE`")
	name, err := parseWorkload(fs, env.Args)
	if err != nil {
		return err
	}
	known := name == bench.WorkloadFleet || name == bench.WorkloadObserve
	for _, w := range bench.Workloads {
		known = known || w.Name == name
	}
	if !known {
		return usageErr("unknown workload %q", name)
	}
	if err := load.check(); err != nil {
		return err
	}
	if *client != "lean" && *client != "pion" {
		return usageErr("--client must be lean or pion, not %q", *client)
	}
	var shard bench.Shard
	if *shardFlag != "" {
		s, err := bench.ParseShard(*shardFlag)
		if err != nil {
			return usageErr("--shard: %v", err)
		}
		shard = s
	}
	var psk []byte
	if *pskFlag != "" {
		if h, ok := strings.CutPrefix(*pskFlag, "hex:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return usageErr("--psk: bad hex")
			}
			psk = b
		} else {
			psk = []byte(*pskFlag)
		}
	}
	if (*pskID == "") != (len(psk) == 0) {
		return usageErr("--psk-identity and --psk go together")
	}
	if *serverProc {
		switch {
		case *target != "":
			return usageErr("--server-proc starts its own server: it excludes --target")
		case name == bench.WorkloadSign:
			return usageErr("sign has no server: --server-proc does not apply")
		case *pskID != "":
			return usageErr("--psk-identity and --psk are for --target; --server-proc registers its own devices")
		}
	}
	if *target != "" && *path == "" {
		*path = "/"
	}

	params := map[string]string{"devices": fmt.Sprint(*load.devices)}
	switch {
	case *target != "":
		params["target"] = *target
	case *serverProc:
		params["target"] = "server-proc"
	default:
		params["target"] = "embedded"
	}
	if *path != "" {
		params["path"] = *path
	}

	if name == bench.WorkloadObserve {
		if *target != "" || *serverProc {
			return usageErr("observe runs on an embedded cloud: --target and --server-proc do not apply")
		}
		return benchObserve(ctx, env, *load.devices, *load.conc, *load.jsonOut)
	}
	if name == bench.WorkloadFleet {
		return benchFleet(ctx, env, *load.devices, *load.conc, shard, *target, *load.jsonOut, *serverProc, *client == "pion")
	}

	fmt.Fprintf(env.Stderr, "measuring crypto ceilings (%s)...\n", 7**load.ceilTime)
	ceilings, err := bench.MeasureCeilings(ctx, *load.ceilTime)
	if err != nil {
		return err
	}

	wo := bench.WorkloadOptions{Target: *target, PSKIdentity: *pskID, PSK: psk, Path: *path, Devices: *load.devices, Shard: shard, OnboardMode: *mode,
		PionClient: *client == "pion"}
	var serverCPU func() (time.Duration, error)
	switch {
	case *serverProc:
		sp, err := startBenchServer(ctx, env)
		if err != nil {
			return err
		}
		defer sp.Close()
		wo.Target, wo.Registry, wo.RootCAs, wo.ServerName = sp.Target(name, *mode), sp.Registry, sp.RootCAs, sp.ServerName
		serverCPU = sp.CPU
	case *target == "" && name != bench.WorkloadSign:
		c, closeCloud, err := bench.EmbeddedCloud(cloud.Options{HTTPSAddr: "-", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		defer closeCloud()
		wo.Cloud = c
	}
	fmt.Fprintf(env.Stderr, "preparing %s...\n", name)
	w, err := bench.Prepare(ctx, name, wo)
	if err != nil {
		return err
	}
	defer w.Cleanup()

	live := &bench.Live{}
	opts := load.options(name, params, w)
	opts.Shard, opts.Live, opts.ServerCPU = shard, live, serverCPU
	if opts.Rate > 0 {
		opts.Rate = shard.Rate(opts.Rate)
	}
	stopProfile, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	stopProgress := progress(env.Stderr, live)
	r, err := bench.Run(ctx, opts)
	stopProgress()
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if r == nil {
		return err
	}
	w.Apply(r, ceilings)
	writeCeilings(env.Stdout, ceilings)
	fmt.Fprintln(env.Stdout)
	if werr := r.WriteTable(env.Stdout); werr != nil {
		return werr
	}
	if *load.jsonOut != "" {
		if werr := writeResult(*load.jsonOut, r); werr != nil {
			return werr
		}
	}
	return err
}

// loadFlags are the load flags bench and bench side-by-side share.
type loadFlags struct {
	rate     *float64
	conc     *int
	duration *time.Duration
	warmup   *time.Duration
	devices  *int
	jsonOut  *string
	ceilTime *time.Duration
	timeout  *time.Duration
}

func addLoadFlags(fs *flag.FlagSet) *loadFlags {
	return &loadFlags{
		rate:     fs.Float64("rate", 0, "open loop: operations per second (whole fleet; divided among shards)"),
		conc:     fs.Int("concurrency", 0, "closed loop: concurrent workers (default 32 when --rate is not set)"),
		duration: fs.Duration("duration", 10*time.Second, "measured window"),
		warmup:   fs.Duration("warmup", 2*time.Second, "warmup before the measured window (not recorded)"),
		devices:  fs.Int("devices", bench.DefaultDevices, "fleet size (devices used round-robin)"),
		jsonOut:  fs.String("json", "", "write the result as JSON to `FILE`"),
		ceilTime: fs.Duration("ceiling-time", 200*time.Millisecond, "time per crypto ceiling measurement (7 are made)"),
		timeout:  fs.Duration("timeout", bench.DefaultOpTimeout, "per-operation timeout (0: none)"),
	}
}

// check validates the load flags and sets the default concurrency.
func (l *loadFlags) check() error {
	if *l.rate < 0 || *l.conc < 0 {
		return usageErr("--rate and --concurrency must not be negative")
	}
	if *l.rate > 0 && *l.conc > 0 {
		return usageErr("--rate (open loop) and --concurrency (closed loop) exclude each other")
	}
	if *l.rate == 0 && *l.conc == 0 {
		*l.conc = 32
	}
	if *l.duration <= 0 || *l.warmup < 0 || *l.devices <= 0 || *l.ceilTime <= 0 || *l.timeout < 0 {
		return usageErr("--duration, --devices and --ceiling-time must be positive, --warmup and --timeout not negative")
	}
	return nil
}

// options returns the run options the load flags give for workload w.
func (l *loadFlags) options(name string, params map[string]string, w *bench.Workload) bench.Options {
	o := bench.Options{
		Workload:    name,
		Params:      params,
		Concurrency: *l.conc,
		Warmup:      *l.warmup,
		Duration:    *l.duration,
		Timeout:     *l.timeout,
		Op:          w.Op,
	}
	if *l.rate > 0 {
		o.Rate, o.Concurrency = *l.rate, 0
	}
	return o
}

// parseWorkload parses args, where the workload name may come before or
// after the flags, and returns the name.
func parseWorkload(fs *flag.FlagSet, args []string) (string, error) {
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "" {
		return "", usageErr("missing workload")
	}
	if len(rest) > 0 {
		return "", usageErr("unexpected arguments after the workload: %s", strings.Join(rest, " "))
	}
	return name, nil
}

// startProfiles starts a CPU profile to cpu and arranges an allocation
// profile to mem (either may be ""); the returned func stops and writes them.
func startProfiles(cpu, mem string) (func() error, error) {
	var cf *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		cf = f
	}
	return func() error {
		var errs []error
		if cf != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cf.Close())
		}
		if mem != "" {
			f, err := os.Create(mem)
			if err != nil {
				return fmt.Errorf("--memprofile: %w", err)
			}
			runtime.GC() // the in-use figures are those of the last collection
			errs = append(errs, pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
		}
		return errors.Join(errs...)
	}, nil
}

// progress prints a live line on w every 500 ms when w is a terminal; the
// returned func stops it and ends the line.
func progress(w io.Writer, live *bench.Live) func() {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(f, "\r\033[K%s", live.Snapshot())
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func writeCeilings(w io.Writer, c bench.Ceilings) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "crypto ceilings (this run, %d cores)\tops/s\n", c.Cores)
	for _, row := range []struct {
		k string
		v float64
	}{
		{"ECDSA P-256 sign (1 core)", c.ECDSAP256Sign},
		{"ECDSA P-256 verify (1 core)", c.ECDSAP256Verify},
		{"ECDH P-256 (1 core)", c.ECDHP256},
		{"ECDH P-256 keygen (1 core)", c.ECDHP256KeyGen},
		{"PSK key schedule (1 core)", c.PSKKeySchedule},
		{"CreateCertificate (1 core)", c.Issue},
		{"CSR issue (1 core)", c.CSRIssue},
		{"CSR issue (all cores at once)", c.CSRIssueAllCores},
		{"PSK handshake pairs (all cores)", c.PSKHandshake},
		{"mutual handshake pairs (all cores)", c.MutualHandshake},
	} {
		fmt.Fprintf(tw, "  %s\t%.0f\n", row.k, row.v)
	}
	tw.Flush()
}

func writeResult(name string, r *bench.Result) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readResult(name string) (*bench.Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := bench.ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

func benchCompare(env *Env) error {
	fs := flagSet(env, "bench compare", `Usage: credloop bench compare A.json B.json

Prints B relative to A metric by metric (B/A): throughput above 1 is
better, latency, CPU and allocations below 1 are better.`)
	if err := parse(fs, env.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErr("compare wants two result files, got %d", fs.NArg())
	}
	a, err := readResult(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := readResult(fs.Arg(1))
	if err != nil {
		return err
	}
	return bench.Compare(a, b).WriteTable(env.Stdout)
}

func benchMerge(env *Env) error {
	fs := flagSet(env, "bench merge", `Usage: credloop bench merge -o OUT.json IN.json...

Joins the shard results of one run (--shard i/n on each machine):
histograms merge exactly, counts, CPU and rates add.`)
	out := fs.String("o", "", "write the merged result to `FILE`")
	if err := parse(fs, env.Args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return usageErr("merge needs -o OUT.json")
	}
	if fs.NArg() == 0 {
		return usageErr("merge needs at least one input file")
	}
	var rs []*bench.Result
	for _, n := range fs.Args() {
		r, err := readResult(n)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	m, err := bench.Merge(rs)
	if err != nil {
		return err
	}
	if err := writeResult(*out, m); err != nil {
		return err
	}
	return m.WriteTable(env.Stdout)
}

// benchFleet connects N devices that stay connected and reports memory and
// goroutines per idle device (client and server in one process when the
// cloud is embedded; with serverProc the server's memory comes from its
// own process).
func benchFleet(ctx context.Context, env *Env, devices, concurrency int, shard bench.Shard, target, jsonOut string, serverProc, pion bool) error {
	o := bench.FleetOptions{Devices: devices, Concurrency: concurrency, Shard: shard, Target: target, PionClient: pion}
	var (
		sp  *bench.ServerProc
		mem serverMemory
	)
	if serverProc {
		var err error
		if sp, err = startBenchServer(ctx, env); err != nil {
			return err
		}
		defer sp.Close()
		o.Target, o.Registry = sp.Addrs.CoAPS, sp.Registry
		if mem, err = startServerMemory(sp); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stderr, "connecting %d devices...\n", devices)
	r, err := bench.Fleet(ctx, o)
	if err != nil {
		return err
	}
	out := fleetOutput{FleetResult: r}
	fmt.Fprintln(env.Stdout, r.String())
	if sp != nil {
		if err := mem.finish(sp, r.Connected, &out); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, out.serverLine())
	}
	if jsonOut == "" {
		return nil
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

// benchObserve runs the observe workload and prints its result.
func benchObserve(ctx context.Context, env *Env, devices, concurrency int, jsonOut string) error {
	r, err := bench.Observe(ctx, bench.ObserveOptions{Devices: devices, Concurrency: concurrency})
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, r)
	if jsonOut != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if r.Notified < r.Devices {
		return fmt.Errorf("bench observe: %d of %d devices notified", r.Notified, r.Devices)
	}
	return nil
}
