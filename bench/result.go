package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"time"
)

// Run modes.
const (
	ModeOpen   = "open"   // fixed arrival rate
	ModeClosed = "closed" // fixed concurrency
)

// ErrMerge reports results that cannot be merged.
var ErrMerge = errors.New("bench: cannot merge results")

// Result is one run (or the merge of a run's shards). Its JSON form is
// stable; field names are given in the tags:
//
//	workload       workload name
//	params         free-form parameters (flags, target)
//	shard          "i/n" for one shard, "0/2+1/2" for merged shards, "" unsharded
//	mode           "open" (fixed rate) or "closed" (fixed concurrency)
//	rate           target arrival rate, ops/s (open loop; summed over shards)
//	concurrency    workers (closed loop; summed over shards)
//	warmup_ns      warmup before the measured window
//	start, end     measured window (RFC 3339); end is the later of the planned
//	               end and the last measured completion
//	ops            measured operations completed, errors included
//	errors         errors by cause ("timeout", "refused", "alert", ...)
//	slips          open-loop operations started later than their intended
//	               time by more than the slip tolerance
//	throughput     successful operations per second over [start, end]
//	latency        summary from the intended start (coordinated omission
//	               corrected), successful operations only; durations in ns
//	service        summary from the actual start (what the server took)
//	histogram      latency histogram, HdrHistogram V2 compressed base64 (µs)
//	service_histogram  same for service time
//	cpu_seconds    process user+system CPU over the window
//	cpu_per_op     cpu_seconds / ops
//	mallocs        heap allocations over the window (runtime.MemStats.Mallocs)
//	allocs_per_op  mallocs / ops
//	server_measured  the server ran in its own process and its CPU was
//	               sampled (--server-proc, bench side-by-side); cpu_seconds
//	               is then the load generator's alone
//	server_cpu_seconds  the server process's user+system CPU over the
//	               window, at the kernel's clock-tick resolution (10 ms)
//	server_cpu_per_op   server_cpu_seconds / ops
//	ceiling_name, ceiling  the crypto ceiling this workload is bounded by
//	               (ops/s), measured in the same run
//	efficiency     throughput / ceiling
//	ceilings       all ceilings measured in the run
type Result struct {
	Workload    string            `json:"workload"`
	Params      map[string]string `json:"params,omitempty"`
	Shard       string            `json:"shard,omitempty"`
	Mode        string            `json:"mode"`
	Rate        float64           `json:"rate,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
	Warmup      time.Duration     `json:"warmup_ns"`
	Start       time.Time         `json:"start"`
	End         time.Time         `json:"end"`
	Ops         int64             `json:"ops"`
	Errors      map[string]int64  `json:"errors,omitempty"`
	Slips       int64             `json:"slips"`
	Throughput  float64           `json:"throughput"`

	LatencySummary Summary    `json:"latency"`
	ServiceSummary Summary    `json:"service"`
	Latency        *Histogram `json:"histogram"`
	Service        *Histogram `json:"service_histogram"`

	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPerOp    float64 `json:"cpu_per_op"`
	Mallocs     uint64  `json:"mallocs"`
	AllocsPerOp float64 `json:"allocs_per_op"`

	ServerMeasured   bool    `json:"server_measured,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerOp   float64 `json:"server_cpu_per_op,omitempty"`

	CeilingName string    `json:"ceiling_name,omitempty"`
	Ceiling     float64   `json:"ceiling,omitempty"`
	Efficiency  float64   `json:"efficiency,omitempty"`
	Ceilings    *Ceilings `json:"ceilings,omitempty"`
}

// ErrorCount returns the number of failed operations.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// SetCeiling records the ceiling (ops/s) the workload is compared with and
// computes Efficiency = Throughput / ceiling.
func (r *Result) SetCeiling(name string, opsPerSec float64) {
	r.CeilingName, r.Ceiling = name, opsPerSec
	r.derive()
}

// derive recomputes the figures that follow from the recorded ones.
func (r *Result) derive() {
	if r.Latency == nil {
		r.Latency = NewHistogram()
	}
	if r.Service == nil {
		r.Service = NewHistogram()
	}
	r.LatencySummary = r.Latency.Summary()
	r.ServiceSummary = r.Service.Summary()
	r.Throughput, r.CPUPerOp, r.AllocsPerOp, r.Efficiency, r.ServerCPUPerOp = 0, 0, 0, 0, 0
	if w := r.End.Sub(r.Start).Seconds(); w > 0 {
		r.Throughput = float64(r.Ops-r.ErrorCount()) / w
	}
	if r.Ops > 0 {
		r.CPUPerOp = r.CPUSeconds / float64(r.Ops)
		r.AllocsPerOp = float64(r.Mallocs) / float64(r.Ops)
		r.ServerCPUPerOp = r.ServerCPUSeconds / float64(r.Ops)
	}
	if r.Ceiling > 0 {
		r.Efficiency = r.Throughput / r.Ceiling
	}
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: write result: %w", err)
	}
	return nil
}

// ReadJSON reads a result written by WriteJSON; derived figures are
// recomputed from the recorded ones.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: read result: %w", err)
	}
	r.derive()
	return &r, nil
}

// Merge joins the shards of one run: histograms merge exactly, counts,
// CPU and allocations add, rate and concurrency add, and throughput is
// recomputed over the union of the windows. Results of different
// workloads or modes, or the same shard twice, are refused. Params and
// ceilings are taken from the first result. Server CPU adds (each shard
// loads its own server process) and is kept only when every shard has it.
func Merge(rs []*Result) (*Result, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrMerge)
	}
	first := rs[0]
	m := &Result{
		Workload:    first.Workload,
		Params:      maps.Clone(first.Params),
		Mode:        first.Mode,
		Warmup:      first.Warmup,
		Start:       first.Start,
		End:         first.End,
		Latency:     NewHistogram(),
		Service:     NewHistogram(),
		CeilingName: first.CeilingName,
		Ceiling:     first.Ceiling,
		Ceilings:    first.Ceilings,

		ServerMeasured: true,
	}
	seen := map[string]bool{}
	var shards []string
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("%w: result %d is nil", ErrMerge, i)
		}
		if r.Workload != first.Workload {
			return nil, fmt.Errorf("%w: workload %q differs from %q", ErrMerge, r.Workload, first.Workload)
		}
		if r.Mode != first.Mode {
			return nil, fmt.Errorf("%w: mode %q differs from %q", ErrMerge, r.Mode, first.Mode)
		}
		for _, s := range strings.Split(r.Shard, "+") {
			if s == "" {
				continue
			}
			if seen[s] {
				return nil, fmt.Errorf("%w: shard %s appears twice", ErrMerge, s)
			}
			seen[s] = true
			shards = append(shards, s)
		}
		if r.Start.Before(m.Start) {
			m.Start = r.Start
		}
		if r.End.After(m.End) {
			m.End = r.End
		}
		m.Rate += r.Rate
		m.Concurrency += r.Concurrency
		m.Ops += r.Ops
		m.Slips += r.Slips
		m.CPUSeconds += r.CPUSeconds
		m.Mallocs += r.Mallocs
		m.ServerMeasured = m.ServerMeasured && r.ServerMeasured
		m.ServerCPUSeconds += r.ServerCPUSeconds
		for c, n := range r.Errors {
			if m.Errors == nil {
				m.Errors = map[string]int64{}
			}
			m.Errors[c] += n
		}
		if err := m.Latency.Merge(r.Latency); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMerge, err)
		}
		if err := m.Service.Merge(r.Service); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMerge, err)
		}
	}
	sort.Slice(shards, func(i, j int) bool {
		a, _ := ParseShard(shards[i])
		b, _ := ParseShard(shards[j])
		return a.Index < b.Index
	})
	m.Shard = strings.Join(shards, "+")
	if !m.ServerMeasured {
		m.ServerCPUSeconds = 0
	}
	m.derive()
	return m, nil
}
