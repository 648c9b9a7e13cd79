package bench_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/internal/cli"
)

// cliEnv makes this test binary run the credloop command line (its
// arguments are `cloud ...`) when it is started as a server process.
const cliEnv = "CREDLOOP_BENCH_TEST_CLI=1"

func TestMain(m *testing.M) {
	if os.Getenv("CREDLOOP_BENCH_TEST_CLI") == "1" {
		cli.Main()
	}
	os.Exit(m.Run())
}

func startServerProc(t *testing.T, ctx context.Context) *bench.ServerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := bench.StartServerProc(ctx, bench.ServerProcOptions{Exe: exe, Env: []string{cliEnv}, StartTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServerProc runs dtls-psk and mqtt-mtls against `credloop cloud` in a
// child process, registering devices through the shared registry file,
// samples the child's CPU and memory, and checks Close leaves nothing.
func TestServerProc(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startServerProc(t, ctx)
	defer s.Close()
	if !strings.HasPrefix(s.Addrs.CoAPS, "127.0.0.1:") || !strings.HasPrefix(s.Addrs.MQTTS, "127.0.0.1:") || s.Addrs.HTTPS != "" {
		t.Fatalf("addrs %+v", s.Addrs)
	}
	for _, tc := range []struct{ workload, mode, want string }{
		{bench.WorkloadDTLSPSK, "", s.Addrs.CoAPS},
		{bench.WorkloadMQTTMTLS, "", s.Addrs.MQTTS},
		{bench.WorkloadOnboard, "", s.Addrs.MQTTS},
		{bench.WorkloadOnboard, bench.OnboardEST, s.Addrs.CoAPS},
	} {
		if got := s.Target(tc.workload, tc.mode); got != tc.want {
			t.Errorf("Target(%s, %s) = %s, want %s", tc.workload, tc.mode, got, tc.want)
		}
	}
	for _, name := range []string{bench.WorkloadDTLSPSK, bench.WorkloadMQTTMTLS} {
		t.Run(name, func(t *testing.T) {
			w, err := bench.Prepare(ctx, name, bench.WorkloadOptions{Target: s.Target(name, ""), Registry: s.Registry,
				RootCAs: s.RootCAs, ServerName: s.ServerName, Devices: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Cleanup()
			r, err := bench.Run(ctx, bench.Options{Workload: name, Concurrency: 2, Duration: 300 * time.Millisecond,
				Timeout: 5 * time.Second, Op: w.Op, ServerCPU: s.CPU})
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops == 0 || r.ErrorCount() != 0 || !r.ServerMeasured || r.ServerCPUSeconds <= 0 {
				t.Fatalf("ops %d errors %v server %v %v", r.Ops, r.Errors, r.ServerMeasured, r.ServerCPUSeconds)
			}
			var buf bytes.Buffer
			if err := r.WriteTable(&buf); err != nil || !strings.Contains(buf.String(), "server cpu/op") {
				t.Fatalf("table (%v):\n%s", err, buf.String())
			}
		})
	}
	if err := s.ResetPeak(); err != nil {
		t.Fatal(err)
	}
	rss, peak, err := s.Memory()
	if err != nil || rss == 0 || peak < rss/2 {
		t.Fatalf("memory %d peak %d: %v", rss, peak, err)
	}

	pid, dir := s.Pid(), s.Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("server process %d still there: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir %s not removed: %v", dir, err)
	}
}

func TestServerProcFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bench.StartServerProc(ctx, bench.ServerProcOptions{}); !errors.Is(err, bench.ErrOptions) {
		t.Fatalf("no Exe: %v", err)
	}
	// A program that exits without a ready line.
	_, err := bench.StartServerProc(ctx, bench.ServerProcOptions{Exe: "/bin/false"})
	if !errors.Is(err, bench.ErrPeer) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("false: %v", err)
	}
	// A program that prints something else first.
	_, err = bench.StartServerProc(ctx, bench.ServerProcOptions{Exe: "/bin/echo"})
	if !errors.Is(err, bench.ErrPeer) {
		t.Fatalf("echo: %v", err)
	}
}

// TestRunServerCPU checks the hook is sampled at the window's start and
// end, and that a failing sample leaves the result without server CPU.
func TestRunServerCPU(t *testing.T) {
	op := func(context.Context, int64) error { return nil }
	for _, tc := range []struct {
		name    string
		fail    int // call that fails (1-based), 0 none
		want    bool
		seconds float64
	}{
		{"ok", 0, true, 1.5},
		{"start fails", 1, false, 0},
		{"end fails", 2, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			r, err := bench.Run(context.Background(), bench.Options{Concurrency: 1, Duration: 20 * time.Millisecond, Op: op,
				ServerCPU: func() (time.Duration, error) {
					calls++
					if calls == tc.fail {
						return 0, errors.New("gone")
					}
					return time.Duration(calls) * 1500 * time.Millisecond, nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			if calls != 2 && tc.fail != 1 || r.ServerMeasured != tc.want || r.ServerCPUSeconds != tc.seconds {
				t.Fatalf("calls %d measured %v seconds %v", calls, r.ServerMeasured, r.ServerCPUSeconds)
			}
			if tc.want && r.ServerCPUPerOp != r.ServerCPUSeconds/float64(r.Ops) {
				t.Fatalf("per op %v", r.ServerCPUPerOp)
			}
			var buf bytes.Buffer
			if err := r.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			back, err := bench.ReadJSON(&buf)
			if err != nil || back.ServerMeasured != r.ServerMeasured || back.ServerCPUPerOp != r.ServerCPUPerOp {
				t.Fatalf("round trip: %+v %v", back, err)
			}
		})
	}
}

// TestMergeServerCPU: server CPU adds over shards and is dropped when a
// shard has none.
func TestMergeServerCPU(t *testing.T) {
	mk := func(shard string, measured bool, cpu float64) *bench.Result {
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		return &bench.Result{Workload: "w", Mode: bench.ModeClosed, Shard: shard, Start: t0, End: t0.Add(time.Second), Ops: 10,
			ServerMeasured: measured, ServerCPUSeconds: cpu, Latency: bench.NewHistogram(), Service: bench.NewHistogram()}
	}
	m, err := bench.Merge([]*bench.Result{mk("0/2", true, 1), mk("1/2", true, 3)})
	if err != nil || !m.ServerMeasured || m.ServerCPUSeconds != 4 || m.ServerCPUPerOp != 0.2 {
		t.Fatalf("merged %v %v %v: %v", m.ServerMeasured, m.ServerCPUSeconds, m.ServerCPUPerOp, err)
	}
	m, err = bench.Merge([]*bench.Result{mk("0/2", true, 1), mk("1/2", false, 0)})
	if err != nil || m.ServerMeasured || m.ServerCPUSeconds != 0 {
		t.Fatalf("merged %v %v: %v", m.ServerMeasured, m.ServerCPUSeconds, err)
	}
}
