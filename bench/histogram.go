package bench

import (
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry: microseconds from 1 µs to 60 s, 3 significant digits.
const (
	histLowest  = 1
	histHighest = int64(60 * time.Second / time.Microsecond)
	histDigits  = 3
)

// ErrHistogram reports an encoded histogram that cannot be decoded or has a
// geometry other than ours (merging it would not be exact).
var ErrHistogram = errors.New("bench: bad histogram")

// Histogram records latencies in an HDR histogram (1 µs .. 60 s, 3
// significant digits). Longer durations are recorded as 60 s, shorter than
// 1 µs as 0. It is not safe for concurrent use. It marshals to JSON and text
// as the HdrHistogram V2 compressed base64 form.
type Histogram struct {
	h *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histLowest, histHighest, histDigits)}
}

func (h *Histogram) hist() *hdrhistogram.Histogram {
	if h.h == nil {
		h.h = hdrhistogram.New(histLowest, histHighest, histDigits)
	}
	return h.h
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 0 {
		us = 0
	}
	if us > histHighest {
		us = histHighest
	}
	_ = h.hist().RecordValue(us) // in range by construction
}

// Count returns the number of recorded values.
func (h *Histogram) Count() int64 { return h.hist().TotalCount() }

// Percentile returns the value at percentile p (0..100).
func (h *Histogram) Percentile(p float64) time.Duration {
	return time.Duration(h.hist().ValueAtPercentile(p)) * time.Microsecond
}

// Max returns the largest recorded value (to histogram precision).
func (h *Histogram) Max() time.Duration {
	return time.Duration(h.hist().Max()) * time.Microsecond
}

// Summary returns count, mean and the usual percentiles.
func (h *Histogram) Summary() Summary {
	hh := h.hist()
	if hh.TotalCount() == 0 {
		return Summary{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Summary{
		Count: hh.TotalCount(),
		Min:   us(hh.Min()),
		Mean:  time.Duration(hh.Mean() * float64(time.Microsecond)),
		P50:   us(hh.ValueAtPercentile(50)),
		P90:   us(hh.ValueAtPercentile(90)),
		P99:   us(hh.ValueAtPercentile(99)),
		P999:  us(hh.ValueAtPercentile(99.9)),
		Max:   us(hh.Max()),
	}
}

// Merge adds every value of o to h. Both have the same geometry, so the
// result is exactly the histogram of all values recorded in either.
func (h *Histogram) Merge(o *Histogram) error {
	if o == nil {
		return nil
	}
	if dropped := h.hist().Merge(o.hist()); dropped != 0 {
		return fmt.Errorf("%w: merge dropped %d values", ErrHistogram, dropped)
	}
	return nil
}

// Clone returns an independent copy.
func (h *Histogram) Clone() *Histogram { return &Histogram{h: h.hist().Clone()} }

// Equal reports whether h and o hold the same counts.
func (h *Histogram) Equal(o *Histogram) bool { return h.hist().Equals(o.hist()) }

// Encode returns the HdrHistogram V2 compressed base64 form.
func (h *Histogram) Encode() (string, error) {
	b, err := h.hist().Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("bench: encode histogram: %w", err)
	}
	return string(b), nil
}

// DecodeHistogram parses the form Encode writes. It rejects histograms of
// another geometry so that merges stay exact.
func DecodeHistogram(s string) (*Histogram, error) {
	hh, err := decodeHDR([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHistogram, err)
	}
	if hh.LowestTrackableValue() != histLowest || hh.HighestTrackableValue() != histHighest ||
		hh.SignificantFigures() != histDigits {
		return nil, fmt.Errorf("%w: geometry %d..%d/%d digits, want %d..%d/%d", ErrHistogram,
			hh.LowestTrackableValue(), hh.HighestTrackableValue(), hh.SignificantFigures(),
			histLowest, histHighest, histDigits)
	}
	return &Histogram{h: hh}, nil
}

// decodeHDR guards against panics inside the decoder on hostile input.
func decodeHDR(b []byte) (h *hdrhistogram.Histogram, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return hdrhistogram.Decode(b)
}

// MarshalText implements encoding.TextMarshaler (so JSON carries a string).
func (h *Histogram) MarshalText() ([]byte, error) {
	s, err := h.Encode()
	return []byte(s), err
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Histogram) UnmarshalText(b []byte) error {
	d, err := DecodeHistogram(string(b))
	if err != nil {
		return err
	}
	h.h = d.h
	return nil
}

// Summary describes a latency distribution. JSON durations are integer
// nanoseconds (multiples of 1 µs, the histogram's resolution).
type Summary struct {
	Count int64         `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}
