package sim

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// FleetOptions configures RunFleet.
type FleetOptions struct {
	// Devices is how many devices to run.
	Devices int
	// Concurrency bounds how many devices boot at once (default 16).
	Concurrency int
	// New builds device i (0-based).
	New func(i int) (*Device, error)
	// Run is what each device does once online (default: Hello). The
	// device is stopped after Run returns unless Keep is set.
	Run func(ctx context.Context, d *Device) error
	// Keep leaves devices online; the caller closes them.
	Keep bool
	// Progress, when set, is called after each device finishes.
	Progress func(done, failed int)
}

// DeviceResult is the outcome for one device of a fleet.
type DeviceResult struct {
	Index    int
	ID       string
	Err      error
	Duration time.Duration
	Device   *Device // set when Keep is true
}

// FleetResult summarises a fleet run.
type FleetResult struct {
	Results  []DeviceResult
	Failed   int
	Duration time.Duration
}

// Errors groups failures by message, most frequent first.
func (r FleetResult) Errors() []string {
	count := map[string]int{}
	for _, d := range r.Results {
		if d.Err != nil {
			count[d.Err.Error()]++
		}
	}
	out := make([]string, 0, len(count))
	for msg, n := range count {
		out = append(out, fmt.Sprintf("%d× %s", n, msg))
	}
	sort.Strings(out)
	return out
}

// RunFleet boots N devices with bounded concurrency, runs each one's
// workload and reports per-device outcomes. It returns when every device is
// done or ctx ends.
func RunFleet(ctx context.Context, o FleetOptions) FleetResult {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Run == nil {
		o.Run = func(ctx context.Context, d *Device) error {
			_, err := d.Hello(ctx)
			return err
		}
	}
	start := time.Now()
	res := FleetResult{Results: make([]DeviceResult, o.Devices)}
	sem := make(chan struct{}, o.Concurrency)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   int
		failed int
	)
	for i := 0; i < o.Devices; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < o.Devices; j++ {
				res.Results[j] = DeviceResult{Index: j, Err: ctx.Err()}
			}
			res.Failed += o.Devices - i
			wg.Wait()
			res.Failed += failed
			res.Duration = time.Since(start)
			return res
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			r := DeviceResult{Index: i}
			d, err := o.New(i)
			if err == nil {
				r.ID = d.ID()
				err = d.Start(ctx)
				if err == nil {
					err = o.Run(ctx, d)
				}
				if o.Keep && err == nil {
					r.Device = d
				} else {
					d.Stop()
				}
			}
			r.Err = err
			r.Duration = time.Since(t0)
			res.Results[i] = r
			mu.Lock()
			done++
			if err != nil {
				failed++
			}
			if o.Progress != nil {
				o.Progress(done, failed)
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	res.Failed = failed
	res.Duration = time.Since(start)
	return res
}
