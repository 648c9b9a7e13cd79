package cloudtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

// TestWaitEventDeadline: a wait ends at ctx's deadline when no event
// comes, and the error says so.
func TestWaitEventDeadline(t *testing.T) {
	c := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.waitEvent(ctx, registry.Filter{Device: "nobody", AfterSeq: c.LastSeq()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// Without a deadline, DefaultWait applies: a cancelled context still
	// ends the wait at once.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.waitEvent(ctx, registry.Filter{Device: "nobody", AfterSeq: c.LastSeq()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}
