package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// traces collects OpTraces by index.
type traces struct {
	mu sync.Mutex
	m  map[int64]OpTrace
}

func (tr *traces) add(o OpTrace) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.m == nil {
		tr.m = map[int64]OpTrace{}
	}
	tr.m[o.I] = o
}

func TestOpenLoopSchedule(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		slowOp    int64         // index of an op that takes slowFor (-1: none)
		slowFor   time.Duration // absolute end is intended(slowOp)+slowFor
		wantLat   []time.Duration
		wantSvc   []time.Duration
		wantSlips int64
	}{
		{
			name:    "on time",
			slowOp:  -1,
			wantLat: []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			wantSvc: []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			// Op 3 stalls 5 ms: ops 4..7 wait for the single slot and
			// their latency includes the wait (4, 3, 2, 1 ms), although
			// their service time is 0. Slips: lateness > 1 ms (ops 4..6).
			name:      "stall corrected",
			slowOp:    3,
			slowFor:   5 * ms,
			wantLat:   []time.Duration{0, 0, 0, 5 * ms, 4 * ms, 3 * ms, 2 * ms, 1 * ms, 0, 0},
			wantSvc:   []time.Duration{0, 0, 0, 5 * ms, 0, 0, 0, 0, 0, 0},
			wantSlips: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := NewFakeClock(t0)
			var tr traces
			res, err := Run(testCtx(t), Options{
				Workload:    "test",
				Rate:        1000,
				MaxInFlight: 1,
				Duration:    10 * ms,
				Clock:       clk,
				Trace:       tr.add,
				Op: func(ctx context.Context, i int64) error {
					if i == tt.slowOp {
						return clk.SleepUntil(ctx, t0.Add(time.Duration(i)*ms+tt.slowFor))
					}
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.m) != 10 || res.Ops != 10 {
				t.Fatalf("ops: traced %d, result %d, want 10", len(tr.m), res.Ops)
			}
			for i := int64(0); i < 10; i++ {
				o := tr.m[i]
				if want := t0.Add(time.Duration(i) * ms); !o.Intended.Equal(want) {
					t.Errorf("op %d intended %v, want %v", i, o.Intended.Sub(t0), want.Sub(t0))
				}
				if got := o.End.Sub(o.Intended); got != tt.wantLat[i] {
					t.Errorf("op %d latency %v, want %v", i, got, tt.wantLat[i])
				}
				if got := o.End.Sub(o.Start); got != tt.wantSvc[i] {
					t.Errorf("op %d service %v, want %v", i, got, tt.wantSvc[i])
				}
			}
			if res.Slips != tt.wantSlips {
				t.Errorf("slips %d, want %d", res.Slips, tt.wantSlips)
			}
			var maxLat time.Duration
			for _, d := range tt.wantLat {
				maxLat = max(maxLat, d)
			}
			if got := res.Latency.Max(); !sameBucket(got, maxLat) {
				t.Errorf("histogram max %v, want ≈ %v", got, maxLat)
			}
			if res.Latency.Count() != 10 {
				t.Errorf("histogram count %d", res.Latency.Count())
			}
			if !res.Start.Equal(t0) || !res.End.Equal(t0.Add(10*ms)) {
				t.Errorf("window %v..%v", res.Start.Sub(t0), res.End.Sub(t0))
			}
			if res.Throughput != 1000 {
				t.Errorf("throughput %v, want 1000", res.Throughput)
			}
		})
	}
}

// sameBucket: equal to histogram precision (3 significant digits).
func sameBucket(got, want time.Duration) bool {
	diff := got - want
	if diff < 0 {
		diff = -diff
	}
	return diff <= want/500+time.Microsecond
}

func TestOpenLoopInFlightBound(t *testing.T) {
	clk := NewFakeClock(t0)
	var in, peak atomic.Int64
	release := make(chan struct{})
	started := make(chan int64, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := Run(testCtx(t), Options{
			Rate: 1000, MaxInFlight: 3, Duration: 20 * time.Millisecond, Clock: clk,
			Op: func(ctx context.Context, i int64) error {
				n := in.Add(1)
				defer in.Add(-1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				started <- i
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			},
		})
		if err != nil {
			t.Error(err)
		}
	}()
	// Three ops start and block on release while holding every slot.
	deadline := time.After(10 * time.Second)
	for range 3 {
		select {
		case <-started:
		case <-deadline:
			t.Fatal("ops did not start")
		}
	}
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not finish")
	}
	if len(started) != 17 {
		t.Errorf("%d more ops started, want 17", len(started))
	}
	if peak.Load() != 3 {
		t.Errorf("peak in flight %d, want 3", peak.Load())
	}
}

func TestWarmupExcluded(t *testing.T) {
	for _, mode := range []string{ModeOpen, ModeClosed} {
		t.Run(mode, func(t *testing.T) {
			clk := NewFakeClock(t0)
			var tr traces
			opts := Options{
				Warmup: 5 * time.Millisecond, Duration: 10 * time.Millisecond, Clock: clk, Trace: tr.add,
				Op: func(ctx context.Context, i int64) error {
					if mode == ModeClosed {
						return clk.SleepUntil(ctx, clk.Now().Add(time.Millisecond))
					}
					return nil
				},
			}
			if mode == ModeOpen {
				opts.Rate = 1000
			} else {
				opts.Concurrency = 1
			}
			res, err := Run(testCtx(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			var warm, measured int64
			for _, o := range tr.m {
				if o.Warmup != o.Start.Before(t0.Add(5*time.Millisecond)) {
					t.Errorf("op %d started at %v, warmup=%v", o.I, o.Start.Sub(t0), o.Warmup)
				}
				if o.Warmup {
					warm++
				} else {
					measured++
				}
			}
			if warm != 5 || measured != 10 {
				t.Errorf("warmup %d measured %d, want 5 and 10", warm, measured)
			}
			if res.Ops != measured || res.Latency.Count() != measured {
				t.Errorf("result ops %d, histogram %d, want %d", res.Ops, res.Latency.Count(), measured)
			}
			if !res.Start.Equal(t0.Add(5 * time.Millisecond)) {
				t.Errorf("window starts at %v", res.Start.Sub(t0))
			}
		})
	}
}

func TestClosedLoopConcurrency(t *testing.T) {
	for _, n := range []int{1, 4, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			clk := NewFakeClock(t0)
			var in, peak atomic.Int64
			var firstRound sync.WaitGroup
			firstRound.Add(n)
			var first atomic.Int64
			res, err := Run(testCtx(t), Options{
				Concurrency: n, Duration: 50 * time.Millisecond, Clock: clk,
				Op: func(ctx context.Context, i int64) error {
					c := in.Add(1)
					defer in.Add(-1)
					for {
						p := peak.Load()
						if c <= p || peak.CompareAndSwap(p, c) {
							break
						}
					}
					if first.Add(1) <= int64(n) {
						// The first n ops wait for each other: all n workers run at once.
						firstRound.Done()
						firstRound.Wait()
					}
					return clk.SleepUntil(ctx, clk.Now().Add(time.Millisecond))
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if peak.Load() != int64(n) {
				t.Errorf("peak in flight %d, want %d", peak.Load(), n)
			}
			if res.Ops < int64(n) || res.Latency.Count() != res.Ops {
				t.Errorf("ops %d, histogram %d", res.Ops, res.Latency.Count())
			}
			if res.Mode != ModeClosed || res.Concurrency != n {
				t.Errorf("mode %s concurrency %d", res.Mode, res.Concurrency)
			}
		})
	}
}

func TestRunErrorsByCause(t *testing.T) {
	clk := NewFakeClock(t0)
	res, err := Run(testCtx(t), Options{
		Rate: 1000, Duration: 10 * time.Millisecond, Clock: clk,
		Op: func(ctx context.Context, i int64) error {
			switch i % 5 {
			case 1:
				return fmt.Errorf("dial: %w", context.DeadlineExceeded)
			case 2:
				return errors.New("boom")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{CauseTimeout: 2, CauseOther: 2}
	if fmt.Sprint(res.Errors) != fmt.Sprint(want) {
		t.Errorf("errors %v, want %v", res.Errors, want)
	}
	if res.Ops != 10 || res.Latency.Count() != 6 {
		t.Errorf("ops %d, successes recorded %d", res.Ops, res.Latency.Count())
	}
	if res.Throughput != 600 {
		t.Errorf("throughput %v, want 600 (successes only)", res.Throughput)
	}
}

func TestRunCancel(t *testing.T) {
	clk := NewFakeClock(t0)
	ctx, cancel := context.WithCancel(testCtx(t))
	res, err := Run(ctx, Options{
		Rate: 1000, Duration: time.Hour, Clock: clk,
		Op: func(ctx context.Context, i int64) error {
			if i == 4 {
				cancel()
			}
			return nil
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if res == nil || res.Ops < 5 {
		t.Fatalf("partial result %+v", res)
	}
}

func TestRunOptionsInvalid(t *testing.T) {
	op := func(context.Context, int64) error { return nil }
	tests := []struct {
		name string
		o    Options
	}{
		{"no op", Options{Rate: 1, Duration: time.Second}},
		{"no load", Options{Op: op, Duration: time.Second}},
		{"both", Options{Op: op, Rate: 1, Concurrency: 1, Duration: time.Second}},
		{"no duration", Options{Op: op, Rate: 1}},
		{"negative warmup", Options{Op: op, Rate: 1, Duration: time.Second, Warmup: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(testCtx(t), tt.o); !errors.Is(err, ErrOptions) {
				t.Errorf("err %v, want ErrOptions", err)
			}
		})
	}
}

func TestLiveProgress(t *testing.T) {
	clk := NewFakeClock(t0)
	var live Live
	if p := live.Snapshot(); p != (Progress{}) {
		t.Errorf("before run: %+v", p)
	}
	var line string
	_, err := Run(testCtx(t), Options{
		Rate: 1000, Duration: 10 * time.Millisecond, MaxInFlight: 1, Clock: clk, Live: &live,
		Op: func(ctx context.Context, i int64) error {
			if i == 5 {
				line = live.Snapshot().String()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := live.Snapshot()
	if p.Ops != 10 || p.Errors != 0 || p.Elapsed != 9*time.Millisecond {
		t.Errorf("final progress %+v", p)
	}
	if want := "0.0s/0.0s  ops 5  1000.0/s  errors 0  p99 0"; line != want {
		t.Errorf("progress line %q, want %q", line, want)
	}
}
