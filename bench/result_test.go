package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestHistogramMergeExact(t *testing.T) {
	for _, shards := range []int{1, 2, 3, 7} {
		t.Run(fmt.Sprint(shards), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(shards)))
			all := NewHistogram()
			parts := make([]*Histogram, shards)
			for i := range parts {
				parts[i] = NewHistogram()
			}
			for range 20000 {
				// Log-uniform from 1 µs to 100 s (past the 60 s ceiling).
				d := time.Duration(math.Exp(rng.Float64()*math.Log(1e8))) * time.Microsecond
				all.Record(d)
				parts[rng.IntN(shards)].Record(d)
			}
			merged := NewHistogram()
			for _, p := range parts {
				// Through the encoded form, as shards travel.
				s, err := p.Encode()
				if err != nil {
					t.Fatal(err)
				}
				d, err := DecodeHistogram(s)
				if err != nil {
					t.Fatal(err)
				}
				if err := merged.Merge(d); err != nil {
					t.Fatal(err)
				}
			}
			if !merged.Equal(all) {
				t.Fatal("merged shards differ from the histogram of all values")
			}
			if merged.Summary() != all.Summary() {
				t.Errorf("summaries differ: %+v vs %+v", merged.Summary(), all.Summary())
			}
			if all.Max() > time.Minute+time.Minute/500 {
				t.Errorf("max %v above the 60 s ceiling", all.Max())
			}
		})
	}
}

func TestHistogramSummary(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"min", s.Min, time.Millisecond},
		{"p50", s.P50, 500 * time.Millisecond},
		{"p90", s.P90, 900 * time.Millisecond},
		{"p99", s.P99, 990 * time.Millisecond},
		{"p99.9", s.P999, 999 * time.Millisecond},
		{"max", s.Max, time.Second},
		{"mean", s.Mean, 500500 * time.Microsecond},
	}
	for _, c := range checks {
		if !sameBucket(c.got, c.want) {
			t.Errorf("%s = %v, want ≈ %v", c.name, c.got, c.want)
		}
	}
	if s.Count != 1000 {
		t.Errorf("count %d", s.Count)
	}
	if (NewHistogram().Summary() != Summary{}) {
		t.Error("empty summary not zero")
	}
}

func TestDecodeHistogramRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"not base64", "!!!"},
		{"short", "HISTFAAAA"},
		{"other geometry", otherGeometry()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeHistogram(tt.in); !errors.Is(err, ErrHistogram) {
				t.Errorf("err %v, want ErrHistogram", err)
			}
		})
	}
}

func FuzzDecodeHistogram(f *testing.F) {
	h := NewHistogram()
	h.Record(3 * time.Millisecond)
	s, _ := h.Encode()
	f.Add(s)
	f.Add("")
	f.Add(otherGeometry())
	f.Fuzz(func(t *testing.T, in string) {
		h, err := DecodeHistogram(in)
		if err != nil {
			return
		}
		_ = h.Summary()
		if _, err := h.Encode(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "udp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, CauseTimeout},
		{fmt.Errorf("handshake: %w", context.DeadlineExceeded), CauseTimeout},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, CauseTimeout},
		{timeoutErr{}, CauseTimeout},
		{errors.New("i/o timeout"), CauseTimeout},
		{refused, CauseRefused},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), CauseRefused},
		{syscall.ECONNRESET, CauseReset},
		{tls.AlertError(42), CauseAlert},
		{errors.New("remote error: tls: bad certificate"), CauseAlert},
		{errors.New("alert: Alert LevelFatal: HandshakeFailure"), CauseAlert}, // pion/dtls
		{context.Canceled, CauseCanceled},
		{io.EOF, CauseOther},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := DefaultClassify(tt.err); got != tt.want {
				t.Errorf("DefaultClassify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// otherGeometry is a valid encoding of a 1..1000, 2-digit histogram.
func otherGeometry() string {
	h := hdrhistogram.New(1, 1000, 2)
	_ = h.RecordValue(5)
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "op failed" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// shardResult runs one shard of a fake-clock open-loop run.
func shardResult(t *testing.T, s Shard, total float64, start time.Time, fail int64) *Result {
	t.Helper()
	clk := NewFakeClock(start)
	r, err := Run(testCtx(t), Options{
		Workload: "sign", Shard: s, Rate: s.Rate(total), MaxInFlight: 1,
		Duration: 100 * time.Millisecond, Clock: clk,
		Op: func(ctx context.Context, i int64) error {
			if i == fail {
				return errors.New("boom")
			}
			// Latency grows with the shard index and op number.
			return clk.SleepUntil(ctx, clk.Now().Add(time.Duration(int64(s.Index+1)*(i%7+1))*time.Microsecond*37))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := shardResult(t, Shard{Index: 1, Count: 3}, 300, t0, 4)
	r.Params = map[string]string{"target": "embedded"}
	r.CPUSeconds, r.Mallocs = 0.25, 5000
	r.Ceilings = &Ceilings{Issue: 8500, Cores: 2}
	r.SetCeiling("issue", 200)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"workload"`, `"shard": "1/3"`, `"histogram": "HIST`, `"p99_ns"`, `"cpu_per_op"`, `"allocs_per_op"`, `"efficiency"`, `"errors"`} {
		if !strings.Contains(buf.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Latency.Equal(r.Latency) || !got.Service.Equal(r.Service) {
		t.Error("histograms changed in the round trip")
	}
	if !got.Start.Equal(r.Start) || !got.End.Equal(r.End) {
		t.Error("window changed")
	}
	got.Start, got.End = r.Start, r.End // monotonic clock readings aside
	a, b := fmt.Sprintf("%+v", *stripHist(got)), fmt.Sprintf("%+v", *stripHist(r))
	if a != b {
		t.Errorf("round trip:\n got %s\nwant %s", a, b)
	}
	if r.Efficiency != r.Throughput/200 || r.CPUPerOp != 0.25/float64(r.Ops) {
		t.Errorf("efficiency %v cpu/op %v", r.Efficiency, r.CPUPerOp)
	}
	if _, err := ReadJSON(strings.NewReader(`{"histogram": "nope"}`)); !errors.Is(err, ErrHistogram) {
		t.Errorf("bad histogram: err %v", err)
	}
}

func stripHist(r *Result) *Result {
	c := *r
	c.Latency, c.Service, c.Ceilings = nil, nil, nil
	return &c
}

func TestMergeShards(t *testing.T) {
	const n = 3
	var parts []*Result
	all := NewHistogram()
	var ops, errs int64
	for i := range n {
		// Shards start 10 ms apart: the union window is 120 ms.
		r := shardResult(t, Shard{Index: i, Count: n}, 300, t0.Add(time.Duration(i)*10*time.Millisecond), int64(i))
		r.CPUSeconds, r.Mallocs = 0.1, 1000
		parts = append(parts, r)
		if err := all.Merge(r.Latency); err != nil {
			t.Fatal(err)
		}
		ops += r.Ops
		errs += r.ErrorCount()
	}
	m, err := Merge([]*Result{parts[2], parts[0], parts[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Latency.Equal(all) {
		t.Error("merged histogram differs")
	}
	if m.Ops != ops || m.Errors[CauseOther] != errs || m.Ops != 10*n {
		t.Errorf("ops %d errors %v", m.Ops, m.Errors)
	}
	if m.Shard != "0/3+1/3+2/3" || m.Rate != 300 {
		t.Errorf("shard %q rate %v", m.Shard, m.Rate)
	}
	window := m.End.Sub(m.Start)
	if window < 120*time.Millisecond || window > 121*time.Millisecond {
		t.Errorf("window %v", window)
	}
	if want := float64(ops-errs) / window.Seconds(); m.Throughput != want {
		t.Errorf("throughput %v, want %v", m.Throughput, want)
	}
	if math.Abs(m.CPUPerOp-0.3/float64(ops)) > 1e-12 || math.Abs(m.AllocsPerOp-3000/float64(ops)) > 1e-9 {
		t.Errorf("cpu/op %v allocs/op %v", m.CPUPerOp, m.AllocsPerOp)
	}

	t.Run("refused", func(t *testing.T) {
		other := *parts[0]
		other.Workload = "dtls-psk"
		for name, rs := range map[string][]*Result{
			"empty":          nil,
			"other workload": {parts[1], &other},
			"same shard":     {parts[0], parts[1], parts[0]},
			"nil":            {parts[0], nil},
		} {
			if _, err := Merge(rs); !errors.Is(err, ErrMerge) {
				t.Errorf("%s: err %v, want ErrMerge", name, err)
			}
		}
	})
}

func TestCompare(t *testing.T) {
	a := &Result{Workload: "dtls-psk", Throughput: 1000, CPUPerOp: 100e-6, AllocsPerOp: 50,
		LatencySummary: Summary{P50: time.Millisecond, P99: 4 * time.Millisecond, P999: 8 * time.Millisecond}}
	b := &Result{Workload: "dtls-psk", Throughput: 1500, CPUPerOp: 50e-6, AllocsPerOp: 0,
		LatencySummary: Summary{P50: 2 * time.Millisecond, P99: 2 * time.Millisecond, P999: 0}}
	c := Compare(a, b)
	want := map[string]float64{MetricThroughput: 1.5, MetricP50: 2, MetricP99: 0.5, MetricP999: 0, MetricCPUPerOp: 0.5, MetricAllocsOp: 0}
	for m, w := range want {
		if got := c.Ratio(m); math.Abs(got-w) > 1e-12 {
			t.Errorf("%s ratio %v, want %v", m, got, w)
		}
	}
	a.AllocsPerOp = 0
	if !math.IsNaN(Compare(a, b).Ratio(MetricAllocsOp)) {
		t.Error("0/0 ratio not NaN")
	}
	var buf bytes.Buffer
	if err := Compare(a, b).WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"throughput", "1.500×", "0.500×", "B/A", "-"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestResultTable(t *testing.T) {
	r := shardResult(t, Shard{}, 1000, t0, 3)
	r.SetCeiling("issue", 2000)
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"workload", "open loop, 1000 ops/s", "throughput", "p99.9", "service time", "other 1", "efficiency", "%"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestShard(t *testing.T) {
	tests := []struct {
		in      string
		want    Shard
		wantErr bool
	}{
		{"0/1", Shard{0, 1}, false},
		{"2/3", Shard{2, 3}, false},
		{" 1/4 ", Shard{1, 4}, false},
		{"3/3", Shard{}, true},
		{"-1/3", Shard{}, true},
		{"1/0", Shard{}, true},
		{"1", Shard{}, true},
		{"a/b", Shard{}, true},
		{"1/2/3", Shard{}, true},
		{"", Shard{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseShard(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseShard(%q) = %v, %v", tt.in, got, err)
			}
			if err != nil && !errors.Is(err, ErrShard) {
				t.Errorf("err %v not ErrShard", err)
			}
			if err == nil && got.String() != strings.TrimSpace(tt.in) {
				t.Errorf("String %q", got.String())
			}
		})
	}
}

func TestShardDevicesCoverAll(t *testing.T) {
	for n := 1; n <= 40; n++ {
		for _, total := range []int{0, 1, n - 1, n, n + 1, 7 * n, 1000, 100003} {
			seen := make([]int, total)
			next := 0
			lo, hi := total, 0
			for i := range n {
				first, count := Shard{i, n}.Devices(total)
				if first != next {
					t.Fatalf("n=%d total=%d shard %d starts at %d, want %d", n, total, i, first, next)
				}
				next = first + count
				lo, hi = min(lo, count), max(hi, count)
				for d := first; d < first+count; d++ {
					seen[d]++
				}
			}
			for d, c := range seen {
				if c != 1 {
					t.Fatalf("n=%d total=%d device %d covered %d times", n, total, d, c)
				}
			}
			if total > 0 && hi-lo > 1 {
				t.Fatalf("n=%d total=%d unbalanced: %d..%d", n, total, lo, hi)
			}
		}
	}
	if first, count := (Shard{}).Devices(10); first != 0 || count != 10 {
		t.Errorf("zero shard: %d, %d", first, count)
	}
	if r := (Shard{1, 4}).Rate(1000); r != 250 {
		t.Errorf("rate %v", r)
	}
}

func TestShardFromEnv(t *testing.T) {
	tests := []struct {
		env     string
		set     bool
		n       int
		want    Shard
		wantErr bool
	}{
		{"2", true, 4, Shard{2, 4}, false},
		{"0", true, 1, Shard{0, 1}, false},
		{"4", true, 4, Shard{}, true},
		{"x", true, 4, Shard{}, true},
		{"", false, 4, Shard{}, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q of %d", tt.env, tt.n), func(t *testing.T) {
			if tt.set {
				t.Setenv(JobIndexEnv, tt.env)
			} else {
				t.Setenv(JobIndexEnv, "")
				os.Unsetenv(JobIndexEnv)
			}
			got, err := ShardFromEnv(tt.n)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v", got, err)
			}
		})
	}
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"0/1", "3/4", "4/4", "-1/2", "1/-2", "9999999999999999999/1", "a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseShard(in)
		if err != nil {
			return
		}
		if s.Index < 0 || s.Index >= s.Count {
			t.Fatalf("accepted %q as %v", in, s)
		}
		if first, count := s.Devices(1000); first < 0 || count < 0 || first+count > 1000 {
			t.Fatalf("devices %d+%d", first, count)
		}
	})
}

func TestMeasureCeilings(t *testing.T) {
	c, err := MeasureCeilings(testCtx(t), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"sign": c.ECDSAP256Sign, "verify": c.ECDSAP256Verify, "ecdh": c.ECDHP256, "keygen": c.ECDHP256KeyGen,
		"psk": c.PSKKeySchedule, "issue": c.Issue, "mutual": c.MutualHandshake, "psk pair": c.PSKHandshake, "csr": c.CSRIssue,
	} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if c.CSRIssue >= c.Issue {
		t.Errorf("CSR issuance %v not below issuance %v", c.CSRIssue, c.Issue)
	}
	if _, err := MeasureCeilings(testCtx(t), 0); !errors.Is(err, ErrOptions) {
		t.Errorf("d=0: %v", err)
	}
}

func TestPRF12Vector(t *testing.T) {
	// TLS 1.2 PRF (SHA-256) test vector published on the IETF TLS list.
	secret, _ := hex.DecodeString("9bbe436ba940f017b17652849a71db35")
	seed, _ := hex.DecodeString("a0ba9f936cda311827a6f796ffd5198c")
	want := "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66"
	if got := hex.EncodeToString(prf12(secret, "test label", seed, 100)); got != want {
		t.Errorf("prf12 = %s\nwant   %s", got, want)
	}
	if k := pskKeySchedule([]byte("secret-psk"), make([]byte, 32), make([]byte, 32)); len(k) != 40 {
		t.Errorf("key block %d bytes", len(k))
	}
}

func BenchmarkRecord(b *testing.B) {
	h := NewHistogram()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i%100000) * time.Microsecond)
	}
}

func BenchmarkPSKKeySchedule(b *testing.B) {
	psk, r := make([]byte, 16), make([]byte, 32)
	for b.Loop() {
		pskKeySchedule(psk, r, r)
	}
}
