package registry

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A change and the events that tell of it commit together: an event that
// cannot be recorded leaves the change undone, and a change that fails
// records no event. WaitEvent callers see the event of a committed change.
func TestChangeAndEventsCommitTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := openMem(t, newClock())
	must[Project](t)(r.CreateProject(ctx, "p"))
	must[Device](t)(r.CreateDevice(ctx, "p", "d"))

	bad := Event{Project: "p", Device: "d", Kind: EventDeviceDisabled, Outcome: "maybe"}
	if err := r.SetDeviceDisabled(ctx, "p", "d", true, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetDeviceDisabled with an invalid event: %v, want ErrInvalid", err)
	}
	if d := must[Device](t)(r.Device(ctx, "p", "d")); d.Disabled {
		t.Fatal("device disabled although its event was refused")
	}

	if err := r.SetDeviceDisabled(ctx, "p", "nobody", true, Event{Project: "p", Device: "nobody", Kind: EventDeviceDisabled}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetDeviceDisabled of a missing device: %v, want ErrNotFound", err)
	}
	if evs := must[[]Event](t)(r.Events(ctx, Filter{Kind: EventDeviceDisabled})); len(evs) != 0 {
		t.Fatalf("events of a change that failed: %+v", evs)
	}

	waited := make(chan Event, 1)
	go func() {
		e, err := r.WaitEvent(ctx, Filter{Kind: EventDeviceDisabled})
		if err != nil {
			t.Error(err)
		}
		waited <- e
	}()
	ev := Event{Project: "p", Device: "d", Kind: EventDeviceDisabled, Reason: "test"}
	if err := r.SetDeviceDisabled(ctx, "p", "d", true, ev); err != nil {
		t.Fatal(err)
	}
	if d := must[Device](t)(r.Device(ctx, "p", "d")); !d.Disabled {
		t.Fatal("device not disabled")
	}
	select {
	case e := <-waited:
		if e.Device != "d" || e.Reason != "test" || e.Outcome != OutcomeOK || e.Seq == 0 {
			t.Fatalf("event %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("WaitEvent not woken by the committed event")
	}
}
