package bench

import (
	"context"
	"sync"
	"time"
)

// Clock is the time source of a run. Run reads Now to time operations and
// calls SleepUntil to wait for an operation's intended start (open loop).
type Clock interface {
	Now() time.Time
	// SleepUntil blocks until the clock reads t or later, or ctx is done;
	// it returns ctx.Err() in the second case.
	SleepUntil(ctx context.Context, t time.Time) error
}

// SystemClock is the wall clock; it is the default Clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// SleepUntil waits on a timer until t.
func (SystemClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// FakeClock is a Clock for tests that never waits: SleepUntil moves the
// clock forward to t at once (never backward), so time only advances when
// something sleeps. Operations under test "take" time by calling
// SleepUntil with an absolute time. It is safe for concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a FakeClock that reads start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// SleepUntil advances the clock to t if it reads earlier, without waiting.
func (c *FakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.now.Before(t) {
		c.now = t
	}
	c.mu.Unlock()
	return nil
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
