package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrShard reports a malformed shard specification.
var ErrShard = errors.New("bench: bad shard")

// JobIndexEnv is the variable a Kubernetes Indexed Job sets to the pod's
// completion index.
const JobIndexEnv = "JOB_COMPLETION_INDEX"

// Shard is slice Index (0-based) of Count slices of a fleet. The zero
// Shard means the whole fleet.
type Shard struct {
	Index int
	Count int
}

// ParseShard parses "i/n" with 0 <= i < n.
func ParseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Shard{}, fmt.Errorf("%w: %q is not i/n", ErrShard, s)
	}
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("%w: %q is not i/n with integers i and n", ErrShard, s)
	}
	return newShard(i, n)
}

func newShard(i, n int) (Shard, error) {
	if n < 1 {
		return Shard{}, fmt.Errorf("%w: count %d must be at least 1", ErrShard, n)
	}
	if i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%w: index %d out of range 0..%d (indexes are 0-based)", ErrShard, i, n-1)
	}
	return Shard{Index: i, Count: n}, nil
}

// ShardFromEnv returns shard JOB_COMPLETION_INDEX of n, as set in each pod
// of a Kubernetes Indexed Job with completions n.
func ShardFromEnv(n int) (Shard, error) {
	v, ok := os.LookupEnv(JobIndexEnv)
	if !ok {
		return Shard{}, fmt.Errorf("%w: %s is not set", ErrShard, JobIndexEnv)
	}
	i, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return Shard{}, fmt.Errorf("%w: %s=%q is not an integer", ErrShard, JobIndexEnv, v)
	}
	return newShard(i, n)
}

// String returns "i/n" ("0/1" for the zero Shard).
func (s Shard) String() string {
	s = s.norm()
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// label is the result's shard field: "" when unsharded.
func (s Shard) label() string {
	if s.Count <= 1 {
		return ""
	}
	return s.String()
}

func (s Shard) norm() Shard {
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return Shard{Index: 0, Count: 1}
	}
	return s
}

// Devices returns this shard's contiguous slice [first, first+count) of
// device numbers 0..total-1. Slices differ in size by at most one and
// together cover every device exactly once.
func (s Shard) Devices(total int) (first, count int) {
	if total <= 0 {
		return 0, 0
	}
	s = s.norm()
	base, rem := total/s.Count, total%s.Count
	first = s.Index*base + min(s.Index, rem)
	count = base
	if s.Index < rem {
		count++
	}
	return first, count
}

// Rate returns this shard's part of a total arrival rate.
func (s Shard) Rate(total float64) float64 {
	return total / float64(s.norm().Count)
}
