package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/credloop/credloop/bench"
)

// Every observing device gets its notification after the one change.
func TestObserve(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, non := range []bool{false, true} {
		r, err := bench.Observe(ctx, bench.ObserveOptions{Devices: 20, Concurrency: 8, NonConfirmable: non, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Observing != 20 || r.Notified != 20 || r.Latency.Count != 20 || r.Errors != nil || r.PerSecond <= 0 {
			t.Fatalf("result: %v", r)
		}
		t.Log(r)
	}
	if _, err := bench.Observe(ctx, bench.ObserveOptions{}); err == nil {
		t.Fatal("Observe without devices succeeded")
	}
}
