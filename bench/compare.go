package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// Comparison holds B relative to A, metric by metric.
type Comparison struct {
	A, B string // labels: workload and shard
	Rows []CompareRow
}

// CompareRow is one metric of a Comparison. Ratio is B/A; NaN when A is 0.
// For throughput a ratio above 1 is better; for the others, below 1.
type CompareRow struct {
	Metric string
	Unit   string
	A, B   float64
	Ratio  float64
}

// Ratio returns the ratio for metric, NaN if absent.
func (c Comparison) Ratio(metric string) float64 {
	for _, r := range c.Rows {
		if r.Metric == metric {
			return r.Ratio
		}
	}
	return math.NaN()
}

// Metric names used in Comparison rows.
const (
	MetricThroughput = "throughput"
	MetricP50        = "p50"
	MetricP99        = "p99"
	MetricP999       = "p99.9"
	MetricCPUPerOp   = "cpu/op"
	MetricAllocsOp   = "allocs/op"
)

// Compare returns B's figures relative to A's.
func Compare(a, b *Result) Comparison {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row := func(m, unit string, x, y float64) CompareRow {
		r := math.NaN()
		if x != 0 {
			r = y / x
		}
		return CompareRow{Metric: m, Unit: unit, A: x, B: y, Ratio: r}
	}
	return Comparison{
		A: label(a), B: label(b),
		Rows: []CompareRow{
			row(MetricThroughput, "ops/s", a.Throughput, b.Throughput),
			row(MetricP50, "ms", ms(a.LatencySummary.P50), ms(b.LatencySummary.P50)),
			row(MetricP99, "ms", ms(a.LatencySummary.P99), ms(b.LatencySummary.P99)),
			row(MetricP999, "ms", ms(a.LatencySummary.P999), ms(b.LatencySummary.P999)),
			row(MetricCPUPerOp, "µs", a.CPUPerOp*1e6, b.CPUPerOp*1e6),
			row(MetricAllocsOp, "", a.AllocsPerOp, b.AllocsPerOp),
		},
	}
}

func label(r *Result) string {
	if r.Shard != "" {
		return r.Workload + " " + r.Shard
	}
	return r.Workload
}

// WriteTable writes an aligned table: metric, A, B, B/A.
func (c Comparison) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\tA: %s\tB: %s\tB/A\t\n", c.A, c.B)
	for _, r := range c.Rows {
		ratio := "-"
		if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
			ratio = fmt.Sprintf("%.3f×", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.Metric, num(r.A, r.Unit), num(r.B, r.Unit), ratio)
	}
	return tw.Flush()
}

// num formats a figure with 4 significant digits and its unit.
func num(v float64, unit string) string {
	s := fmt.Sprintf("%.4g", v)
	if math.Abs(v) >= 1e4 && math.Abs(v) < 1e15 {
		s = fmt.Sprintf("%.0f", v)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}
