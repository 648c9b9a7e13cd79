// Package bench drives operations at a fixed rate or concurrency and records their latency, cost and crypto ceilings as mergeable results.
package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOptions reports invalid Options.
var ErrOptions = errors.New("bench: invalid options")

// Defaults used when the Options field is zero.
const (
	DefaultMaxInFlight   = 4096
	DefaultSlipTolerance = time.Millisecond
)

// Options configures Run. Exactly one of Rate and Concurrency is set.
type Options struct {
	// Workload names the result (e.g. "sign", "dtls-psk").
	Workload string
	// Params are recorded in the result as given (flags, target...).
	Params map[string]string
	// Shard is recorded in the result; the zero Shard means unsharded.
	Shard Shard

	// Rate is the open-loop arrival rate in operations per second:
	// operation i is intended to start at start + i/Rate, whatever the
	// previous operations did, and its latency is measured from that
	// intended time (coordinated omission corrected).
	Rate float64
	// MaxInFlight bounds concurrent operations in open loop (default
	// DefaultMaxInFlight). When it is reached, later operations start late;
	// their latency still counts from the intended time.
	MaxInFlight int
	// SlipTolerance: an open-loop operation that starts later than its
	// intended time by more than this counts as a slip (default
	// DefaultSlipTolerance).
	SlipTolerance time.Duration

	// Concurrency is the closed-loop worker count: each worker starts the
	// next operation when its previous one returns.
	Concurrency int

	// Warmup is run first; its operations run but are not recorded.
	Warmup time.Duration
	// Duration of the measured window (> 0). No operation starts (open
	// loop: is intended to start) after Warmup+Duration.
	Duration time.Duration
	// Timeout bounds each operation (0 = none). It uses context deadlines,
	// hence the wall clock even when Clock is fake.
	Timeout time.Duration

	// Op performs operation i (0-based, counting warmup operations).
	Op func(ctx context.Context, i int64) error
	// Classify names an error's cause (default DefaultClassify).
	Classify func(error) string
	// Clock is the time source (default SystemClock).
	Clock Clock
	// Trace, if set, is called after every operation, concurrently.
	Trace func(OpTrace)
	// Live, if set, is updated during the run for progress displays.
	Live *Live
	// ServerCPU, if set, returns the cumulative CPU time of the server
	// under load when it runs in its own process (ServerProc.CPU,
	// Peer.CPU). Run calls it at the start and the end of the measured
	// window and records the difference as the result's server CPU; an
	// error from either call leaves the result without server CPU.
	ServerCPU func() (time.Duration, error)
}

// OpTrace describes one finished operation.
type OpTrace struct {
	I        int64
	Intended time.Time // open loop: scheduled start; closed loop: = Start
	Start    time.Time // when Op was called
	End      time.Time
	Warmup   bool
	Err      error
}

// recorder accumulates measured operations.
type recorder struct {
	mu       sync.Mutex
	lat      *Histogram // from intended start
	svc      *Histogram // from actual start
	ops      int64
	errs     map[string]int64
	lastDone time.Time
	slips    int64
}

func newRecorder() *recorder {
	return &recorder{lat: NewHistogram(), svc: NewHistogram(), errs: map[string]int64{}}
}

// Live exposes a run's progress to another goroutine (a terminal progress
// line). The zero value is ready; pass it in Options.Live.
type Live struct {
	mu    sync.Mutex
	rec   *recorder
	clock Clock
	start time.Time // measured window start
	end   time.Time // planned end
}

func (l *Live) attach(rec *recorder, c Clock, start, end time.Time) {
	l.mu.Lock()
	l.rec, l.clock, l.start, l.end = rec, c, start, end
	l.mu.Unlock()
}

// Snapshot returns the progress so far.
func (l *Live) Snapshot() Progress {
	l.mu.Lock()
	rec, c, start, end := l.rec, l.clock, l.start, l.end
	l.mu.Unlock()
	if rec == nil {
		return Progress{}
	}
	now := c.Now()
	p := Progress{Elapsed: now.Sub(start), Planned: end.Sub(start)}
	if p.Elapsed < 0 {
		p.Warmup = true
		return p
	}
	rec.mu.Lock()
	p.Ops = rec.ops
	for _, n := range rec.errs {
		p.Errors += n
	}
	if rec.lat.Count() > 0 {
		p.P99 = rec.lat.Percentile(99)
	}
	rec.mu.Unlock()
	if s := p.Elapsed.Seconds(); s > 0 {
		p.Rate = float64(p.Ops-p.Errors) / s
	}
	return p
}

// usage is a snapshot of process CPU time and allocation count.
type usage struct {
	cpu     time.Duration
	mallocs uint64
}

func readUsage() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{cpu: cpuTime(), mallocs: ms.Mallocs}
}

// Run drives opts.Op at a fixed rate (open loop) or concurrency (closed
// loop) for Warmup+Duration and returns the measured result. If ctx is
// cancelled, Run stops starting operations, waits for those in flight and
// returns the partial result together with ctx.Err(). Errors returned by Op
// are counted by cause, never returned. CPU and allocations are measured
// for the whole process from the first measured operation to the end.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	clock := opts.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	classify := opts.Classify
	if classify == nil {
		classify = DefaultClassify
	}
	rec := newRecorder()
	start := clock.Now()
	measureStart := start.Add(opts.Warmup)
	plannedEnd := measureStart.Add(opts.Duration)
	if opts.Live != nil {
		opts.Live.attach(rec, clock, measureStart, plannedEnd)
	}

	var (
		before       usage
		beforeSet    sync.Once
		serverBefore time.Duration
		serverErr    error
	)
	markMeasured := func() {
		beforeSet.Do(func() {
			before = readUsage()
			if opts.ServerCPU != nil {
				serverBefore, serverErr = opts.ServerCPU()
			}
		})
	}

	// do runs one operation and records it.
	do := func(i int64, intended, began time.Time, warm bool) {
		octx := ctx
		if opts.Timeout > 0 {
			var cancel context.CancelFunc
			octx, cancel = context.WithTimeout(ctx, opts.Timeout)
			defer cancel()
		}
		err := opts.Op(octx, i)
		end := clock.Now()
		if !warm {
			rec.mu.Lock()
			rec.ops++
			if err != nil {
				rec.errs[classify(err)]++
			} else {
				rec.lat.Record(end.Sub(intended))
				rec.svc.Record(end.Sub(began))
			}
			if end.After(rec.lastDone) {
				rec.lastDone = end
			}
			rec.mu.Unlock()
		}
		if opts.Trace != nil {
			opts.Trace(OpTrace{I: i, Intended: intended, Start: began, End: end, Warmup: warm, Err: err})
		}
	}

	var runErr error
	if opts.Rate > 0 {
		runErr = openLoop(ctx, opts, clock, start, measureStart, plannedEnd, rec, markMeasured, do)
	} else {
		runErr = closedLoop(ctx, opts, clock, measureStart, plannedEnd, markMeasured, do)
	}
	markMeasured() // no measured operation at all: empty delta
	after := readUsage()
	var serverCPU time.Duration
	if opts.ServerCPU != nil && serverErr == nil {
		var serverAfter time.Duration
		if serverAfter, serverErr = opts.ServerCPU(); serverErr == nil {
			serverCPU = serverAfter - serverBefore
		}
	}

	r := &Result{
		Workload:    opts.Workload,
		Params:      opts.Params,
		Shard:       opts.Shard.label(),
		Rate:        opts.Rate,
		Concurrency: opts.Concurrency,
		Warmup:      opts.Warmup,
		Start:       measureStart,
		End:         plannedEnd,
		Ops:         rec.ops,
		Slips:       rec.slips,
		Latency:     rec.lat,
		Service:     rec.svc,
		CPUSeconds:  (after.cpu - before.cpu).Seconds(),
		Mallocs:     after.mallocs - before.mallocs,
	}
	if opts.ServerCPU != nil && serverErr == nil {
		r.ServerMeasured, r.ServerCPUSeconds = true, serverCPU.Seconds()
	}
	if opts.Rate > 0 {
		r.Mode = ModeOpen
	} else {
		r.Mode = ModeClosed
	}
	if len(rec.errs) > 0 {
		r.Errors = rec.errs
	}
	if rec.lastDone.After(r.End) {
		r.End = rec.lastDone
	}
	if runErr != nil && ctx.Err() != nil {
		// Cancelled early: the window ends at the last completion.
		r.End = rec.lastDone
		if r.End.Before(r.Start) {
			r.End = r.Start
		}
	}
	r.derive()
	return r, runErr
}

func (o *Options) validate() error {
	switch {
	case o.Op == nil:
		return fmt.Errorf("%w: Op is nil", ErrOptions)
	case o.Rate > 0 && o.Concurrency > 0:
		return fmt.Errorf("%w: set Rate or Concurrency, not both", ErrOptions)
	case !(o.Rate > 0) && o.Concurrency <= 0:
		return fmt.Errorf("%w: set Rate > 0 (open loop) or Concurrency > 0 (closed loop)", ErrOptions)
	case o.Rate > 1e9:
		return fmt.Errorf("%w: Rate %g above 1e9/s", ErrOptions, o.Rate)
	case o.Duration <= 0:
		return fmt.Errorf("%w: Duration must be > 0", ErrOptions)
	case o.Warmup < 0 || o.Timeout < 0 || o.MaxInFlight < 0 || o.SlipTolerance < 0:
		return fmt.Errorf("%w: negative Warmup, Timeout, MaxInFlight or SlipTolerance", ErrOptions)
	}
	return nil
}

// openLoop issues operation k at start + k/Rate. It takes an in-flight slot
// before waiting for the intended time, so at most MaxInFlight operations
// are started or about to start; an operation that gets its slot late
// starts late, and the lateness is part of its latency.
func openLoop(ctx context.Context, opts Options, clock Clock, start, measureStart, end time.Time,
	rec *recorder, markMeasured func(), do func(int64, time.Time, time.Time, bool)) error {
	maxIn := opts.MaxInFlight
	if maxIn == 0 {
		maxIn = DefaultMaxInFlight
	}
	tol := opts.SlipTolerance
	if tol == 0 {
		tol = DefaultSlipTolerance
	}
	sem := make(chan struct{}, maxIn)
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := int64(0); ; k++ {
		// Offsets from start, not accumulated intervals: no drift.
		intended := start.Add(time.Duration(float64(k) * float64(time.Second) / opts.Rate))
		if !intended.Before(end) {
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := clock.SleepUntil(ctx, intended); err != nil {
			<-sem
			return err
		}
		began := clock.Now()
		warm := intended.Before(measureStart)
		if !warm {
			markMeasured()
			if began.Sub(intended) > tol {
				rec.mu.Lock()
				rec.slips++
				rec.mu.Unlock()
			}
		}
		wg.Add(1)
		go func(k int64) {
			defer wg.Done()
			defer func() { <-sem }()
			do(k, intended, began, warm)
		}(k)
	}
}

// closedLoop runs Concurrency workers, each starting its next operation
// as soon as the previous one returns, until the planned end.
func closedLoop(ctx context.Context, opts Options, clock Clock, measureStart, end time.Time,
	markMeasured func(), do func(int64, time.Time, time.Time, bool)) error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for w := 0; w < opts.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				began := clock.Now()
				if !began.Before(end) {
					return
				}
				warm := began.Before(measureStart)
				if !warm {
					markMeasured()
				}
				do(next.Add(1)-1, began, began, warm)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
