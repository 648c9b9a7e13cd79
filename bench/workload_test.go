package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/cloud"
)

func embedded(t *testing.T) *cloud.Cloud {
	t.Helper()
	c, err := cloud.New(cloud.Options{HTTPSAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func runShort(t *testing.T, ctx context.Context, w *bench.Workload) *bench.Result {
	t.Helper()
	r, err := bench.Run(ctx, bench.Options{
		Workload:    w.Name,
		Concurrency: 2,
		Duration:    300 * time.Millisecond,
		Timeout:     5 * time.Second,
		Op:          w.Op,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Apply(r, bench.Ceilings{CSRIssue: 1000, PSKHandshake: 1000, MutualHandshake: 1000, Cores: 2})
	return r
}

func TestWorkloads(t *testing.T) {
	c := embedded(t)
	for _, info := range bench.Workloads {
		if info.Name == bench.WorkloadOnboard {
			continue // a new device per operation: TestOnboard runs it at a fixed rate
		}
		t.Run(info.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			w, err := bench.Prepare(ctx, info.Name, bench.WorkloadOptions{Cloud: c, Devices: 4, Shard: bench.Shard{Index: 0, Count: 1}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := w.Cleanup(); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}()
			r := runShort(t, ctx, w)
			if r.Ops == 0 || r.ErrorCount() != 0 {
				t.Fatalf("ops %d, errors %v", r.Ops, r.Errors)
			}
			if (info.Ceiling != "") != (r.Ceiling > 0) || r.CeilingName != info.Ceiling {
				t.Fatalf("ceiling %q %v, want %q", r.CeilingName, r.Ceiling, info.Ceiling)
			}
		})
	}
}

// Shards of one fleet use disjoint device names, so two shards can share
// one cloud.
func TestWorkloadShards(t *testing.T) {
	c := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		w, err := bench.Prepare(ctx, bench.WorkloadDTLSPSK, bench.WorkloadOptions{Cloud: c, Devices: 3, Shard: bench.Shard{Index: i, Count: 2}})
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		if want := []int{2, 1}[i]; w.Devices != want {
			t.Fatalf("shard %d drives %d devices, want %d", i, w.Devices, want)
		}
	}
}

func TestWrongPSK(t *testing.T) {
	c := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := c.Registry
	if _, err := reg.CreateProject(ctx, bench.Project); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, bench.Project, "d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddPSK(ctx, bench.Project, "d1", "d1@"+bench.Project, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	w, err := bench.Prepare(ctx, bench.WorkloadDTLSPSK, bench.WorkloadOptions{
		Cloud: c, PSKIdentity: "d1@" + bench.Project, PSK: []byte("not-the-key-0000"),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := runShort(t, ctx, w)
	if r.Ops == 0 || r.Errors[bench.CauseAlert] != r.Ops {
		t.Fatalf("ops %d, errors %v; want every op an alert", r.Ops, r.Errors)
	}
}

func TestPrepareErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		workload string
		o        bench.WorkloadOptions
	}{
		{"unknown", "nope", bench.WorkloadOptions{}},
		{"cert external", bench.WorkloadDTLSCert, bench.WorkloadOptions{Target: "127.0.0.1:1"}},
		{"psk external without key", bench.WorkloadDTLSPSK, bench.WorkloadOptions{Target: "127.0.0.1:1"}},
		{"empty shard", bench.WorkloadSign, bench.WorkloadOptions{Devices: 1, Shard: bench.Shard{Index: 1, Count: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bench.Prepare(ctx, tc.workload, tc.o); err == nil {
				t.Fatal("Prepare succeeded")
			}
		})
	}
}

// An external MQTT target (Mosquitto) needs no registry: the devices'
// certificates come from ClientCA, which the broker must trust. Nothing
// listens on port 1: every operation is refused.
func TestMQTTExternalRefused(t *testing.T) {
	ctx := context.Background()
	w, err := bench.Prepare(ctx, bench.WorkloadMQTTMTLS, bench.WorkloadOptions{Target: "127.0.0.1:1", Devices: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cleanup()
	err = w.Op(ctx, 0)
	if got := bench.DefaultClassify(err); got != bench.CauseRefused {
		t.Fatalf("op error %v classified %q, want %q", err, got, bench.CauseRefused)
	}
}

func FuzzParseConnack(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00})
	f.Add([]byte{0x20, 0x02, 0x00, 0x05})
	f.Add([]byte{0x20})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = bench.ParseConnack(b)
	})
}
