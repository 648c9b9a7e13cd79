package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes a human summary of r: load, throughput, latency
// percentiles, errors by cause, cost per operation and efficiency.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	name := r.Workload
	if r.Shard != "" {
		name += " (shard " + r.Shard + ")"
	}
	p("workload", "%s", name)
	switch r.Mode {
	case ModeOpen:
		p("load", "open loop, %s ops/s target", num(r.Rate, ""))
	case ModeClosed:
		p("load", "closed loop, %d workers", r.Concurrency)
	}
	p("window", "%s (warmup %s)", fmtDur(r.End.Sub(r.Start)), fmtDur(r.Warmup))
	p("ops", "%d (%d errors, %d slips)", r.Ops, r.ErrorCount(), r.Slips)
	p("throughput", "%s ops/s", num(r.Throughput, ""))
	s, v := r.LatencySummary, r.ServiceSummary
	fmt.Fprintf(tw, "latency\tp50\tp90\tp99\tp99.9\tmax\tmean\n")
	fmt.Fprintf(tw, "  from intended start\t%s\t%s\t%s\t%s\t%s\t%s\n",
		fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), fmtDur(s.Max), fmtDur(s.Mean))
	fmt.Fprintf(tw, "  service time\t%s\t%s\t%s\t%s\t%s\t%s\n",
		fmtDur(v.P50), fmtDur(v.P90), fmtDur(v.P99), fmtDur(v.P999), fmtDur(v.Max), fmtDur(v.Mean))
	if len(r.Errors) > 0 {
		causes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			causes = append(causes, c)
		}
		sort.Strings(causes)
		parts := make([]string, len(causes))
		for i, c := range causes {
			parts[i] = fmt.Sprintf("%s %d", c, r.Errors[c])
		}
		p("errors", "%s", strings.Join(parts, ", "))
	}
	p("cpu/op", "%s", fmtDur(time.Duration(r.CPUPerOp*float64(time.Second))))
	if r.ServerMeasured {
		p("server cpu/op", "%s (server process; cpu/op above is the load generator's)",
			fmtDur(time.Duration(r.ServerCPUPerOp*float64(time.Second))))
	}
	p("allocs/op", "%.1f", r.AllocsPerOp)
	if r.Ceiling > 0 {
		p("ceiling", "%s ops/s (%s)", num(r.Ceiling, ""), r.CeilingName)
		p("efficiency", "%.1f %%", r.Efficiency*100)
	}
	return tw.Flush()
}

// fmtDur prints a duration with 3 significant digits and a unit.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3gs", d.Seconds())
	}
}

// Progress is a run's state so far, from Live.Snapshot.
type Progress struct {
	Elapsed time.Duration // since the measured window began (< 0: warming up)
	Planned time.Duration // length of the measured window
	Warmup  bool
	Ops     int64   // measured operations completed
	Errors  int64   // of which failed
	Rate    float64 // successful ops/s so far
	P99     time.Duration
}

// String formats one progress line for a terminal, e.g.
// "12.0s/30.0s  ops 48102  4008.5/s  errors 3  p99 4.21ms".
func (p Progress) String() string {
	if p.Warmup {
		return fmt.Sprintf("warming up (%s left)", fmtDur(-p.Elapsed))
	}
	return fmt.Sprintf("%.1fs/%.1fs  ops %d  %.1f/s  errors %d  p99 %s",
		p.Elapsed.Seconds(), p.Planned.Seconds(), p.Ops, p.Rate, p.Errors, fmtDur(p.P99))
}
