package bench_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/credloop/credloop/bench"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
)

// TestOnboard onboards a few devices in each mode against an embedded cloud
// and checks that the registry holds each one with an ACTIVE certificate.
func TestOnboard(t *testing.T) {
	for _, mode := range []string{bench.OnboardJITP, bench.OnboardEST} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := cloud.New(cloud.Options{HTTPSAddr: "-"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const devices = 40
			w, err := bench.Onboard(ctx, bench.OnboardOptions{Mode: mode, Devices: devices, Cloud: c, Prefix: "dev"})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Cleanup()
			if w.Name != bench.WorkloadOnboard || w.Devices != devices || w.Ceiling == nil {
				t.Fatalf("workload = %+v", w)
			}
			var traces []bench.OpTrace
			done := make(chan bench.OpTrace, devices)
			r, err := bench.Run(ctx, bench.Options{
				Workload: w.Name, Rate: 40, Duration: 250 * time.Millisecond, Timeout: 10 * time.Second,
				Op: w.Op, Trace: func(tr bench.OpTrace) { done <- tr },
			})
			if err != nil {
				t.Fatal(err)
			}
			close(done)
			for tr := range done {
				traces = append(traces, tr)
			}
			if r.Ops == 0 || r.ErrorCount() != 0 {
				t.Fatalf("ops %d, errors %v", r.Ops, r.Errors)
			}
			for _, tr := range traces {
				dev := fmt.Sprintf("dev-%07d", tr.I)
				if _, err := c.Registry.Device(ctx, bench.Project, dev); err != nil {
					t.Fatalf("device %s: %v", dev, err)
				}
				creds, err := c.Registry.Credentials(ctx, bench.Project, dev)
				if err != nil {
					t.Fatal(err)
				}
				active := 0
				for _, cr := range creds {
					if cr.Kind == registry.KindCert && cr.State == registry.StateActive {
						active++
					}
				}
				if active != 1 {
					t.Fatalf("device %s: %d ACTIVE certificates in %+v", dev, active, creds)
				}
			}
			// The device after the last onboarded one is not there (jitp)
			// or has no certificate yet (est: only its PSK).
			next := fmt.Sprintf("dev-%07d", len(traces))
			creds, err := c.Registry.Credentials(ctx, bench.Project, next)
			if err == nil {
				for _, cr := range creds {
					if cr.Kind == registry.KindCert {
						t.Fatalf("device %s not onboarded has a certificate", next)
					}
				}
			}
		})
	}
}

// TestOnboardExhausted: an operation past the prepared devices fails with
// ErrExhausted instead of reusing one.
func TestOnboardExhausted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := bench.Onboard(ctx, bench.OnboardOptions{Mode: bench.OnboardEST, Devices: 4, Shard: bench.Shard{Index: 1, Count: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cleanup()
	if w.Devices != 2 {
		t.Fatalf("shard 1/2 of 4 devices has %d", w.Devices)
	}
	for i := int64(0); i < 2; i++ {
		if err := w.Op(ctx, i); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if err := w.Op(ctx, 2); !errors.Is(err, bench.ErrExhausted) {
		t.Fatalf("op 2: %v, want ErrExhausted", err)
	}
}

// TestOnboardAhead prepares in the background with a small lead and a
// single worker; a closed loop of one never waits forever.
func TestOnboardAhead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := bench.Onboard(ctx, bench.OnboardOptions{Mode: bench.OnboardJITP, Devices: 6, Ahead: 2, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cleanup()
	for i := int64(0); i < 6; i++ {
		if err := w.Op(ctx, i); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
}

func TestOnboardOptions(t *testing.T) {
	ctx := context.Background()
	for _, o := range []bench.OnboardOptions{
		{Mode: "x", Devices: 1},
		{Mode: bench.OnboardJITP},
		{Mode: bench.OnboardEST, Devices: 1, Shard: bench.Shard{Index: 1, Count: 2}},
	} {
		t.Run(fmt.Sprintf("%s/%d/%s", o.Mode, o.Devices, o.Shard), func(t *testing.T) {
			if _, err := bench.Onboard(ctx, o); !errors.Is(err, bench.ErrOptions) {
				t.Fatalf("err = %v, want ErrOptions", err)
			}
		})
	}
}
