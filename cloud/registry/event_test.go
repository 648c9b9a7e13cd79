package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestRecord(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	given := t0.Add(-time.Hour).Add(1500 * time.Nanosecond)
	tests := []struct {
		name string
		in   Event
		want Event
		err  error
	}{
		{"fills seq and time", Event{Kind: "auth.psk", Outcome: "ok", Project: "p", Device: "d", Credential: "d@p"},
			Event{Seq: 1, Time: t0, Kind: "auth.psk", Outcome: "ok", Project: "p", Device: "d", Credential: "d@p"}, nil},
		{"keeps time, to the microsecond; ignores seq", Event{Seq: 77, Time: given, Kind: "auth.cert", Outcome: "fail", Reason: "expired"},
			Event{Seq: 2, Time: given.Truncate(time.Microsecond), Kind: "auth.cert", Outcome: "fail", Reason: "expired"}, nil},
		{"empty outcome is ok", Event{Kind: "device.created"}, Event{Seq: 3, Time: t0, Kind: "device.created", Outcome: "ok"}, nil},
		{"no kind", Event{Outcome: "ok"}, Event{}, ErrInvalid},
		{"bad outcome", Event{Kind: "x", Outcome: "maybe"}, Event{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Record(ctx, tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Record = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Record = %+v, want %+v", got, tt.want)
			}
		})
	}
	evs := must[[]Event](t)(r.Events(ctx, Filter{}))
	if len(evs) != 3 || evs[1] != tests[1].want {
		t.Errorf("Events = %+v", evs)
	}
	if n := must[int64](t)(r.LastSeq(ctx)); n != 3 {
		t.Errorf("LastSeq = %d", n)
	}
}

func TestEvents(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	if n := must[int64](t)(r.LastSeq(ctx)); n != 0 {
		t.Errorf("LastSeq of an empty log = %d", n)
	}
	for _, e := range []Event{
		{Project: "p", Device: "a", Kind: "auth.psk", Outcome: "ok"},       // 1
		{Project: "p", Device: "b", Kind: "auth.cert", Outcome: "fail"},    // 2
		{Project: "q", Device: "a", Kind: "provision.auto", Outcome: "ok"}, // 3
		{Project: "p", Device: "a", Kind: "auth.psk", Outcome: "fail"},     // 4
		{Project: "p", Device: "a", Kind: "authz", Outcome: "ok"},          // 5
		{Project: "p", Device: "", Kind: "est.enroll", Outcome: "ok"},      // 6
		{Project: "p", Device: "a", Kind: "auth.psk.extra", Outcome: "ok"}, // 7
		{Project: "é", Device: "ü", Kind: "ëvent.x", Outcome: "ok"},        // 8
		{Project: "é", Device: "ü", Kind: "xëvent.x", Outcome: "ok"},       // 9
	} {
		must[Event](t)(r.Record(ctx, e))
	}
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"non-ASCII prefix", Filter{Kind: "ëvent.*"}, []int64{8}},
		{"project", Filter{Project: "p"}, []int64{1, 2, 4, 5, 6, 7}},
		{"project and device", Filter{Project: "p", Device: "a"}, []int64{1, 4, 5, 7}},
		{"device across projects", Filter{Device: "a"}, []int64{1, 3, 4, 5, 7}},
		{"non-ASCII device", Filter{Project: "é", Device: "ü"}, []int64{8, 9}},
		{"kind exact", Filter{Kind: "auth.psk"}, []int64{1, 4}},
		{"kind prefix with dot", Filter{Kind: "auth."}, []int64{1, 2, 4, 7}},
		{"kind prefix with star", Filter{Kind: "auth.*"}, []int64{1, 2, 4, 7}},
		{"bare star prefix", Filter{Kind: "auth*"}, []int64{1, 2, 4, 5, 7}},
		{"star matches all", Filter{Kind: "*"}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"kind with no match", Filter{Kind: "auth"}, nil},
		{"outcome", Filter{Outcome: "fail"}, []int64{2, 4}},
		{"after seq", Filter{AfterSeq: 5}, []int64{6, 7, 8, 9}},
		{"limit", Filter{Kind: "auth.*", Limit: 2}, []int64{1, 2}},
		{"after and limit", Filter{Kind: "auth.*", AfterSeq: 2, Limit: 1}, []int64{4}},
		{"everything", Filter{Project: "p", Device: "a", Kind: "auth.*", Outcome: "ok", AfterSeq: 1}, []int64{7}},
		{"past the end", Filter{AfterSeq: 9}, nil},
	}
	all := must[[]Event](t)(r.Events(ctx, Filter{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := must[[]Event](t)(r.Events(ctx, tt.f))
			var seqs []int64
			for _, e := range evs {
				seqs = append(seqs, e.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tt.want) {
				t.Errorf("Events(%+v) = %v, want %v", tt.f, seqs, tt.want)
			}
			// Filter.Match agrees with the query.
			var matched []int64
			for _, e := range all {
				if tt.f.Match(e) && (tt.f.Limit == 0 || len(matched) < tt.f.Limit) {
					matched = append(matched, e.Seq)
				}
			}
			if fmt.Sprint(matched) != fmt.Sprint(tt.want) {
				t.Errorf("Match: %v, want %v", matched, tt.want)
			}
		})
	}
}

// waitHook makes r report each time a WaitEvent is about to block.
func waitHook(r *Registry) <-chan struct{} {
	ch := make(chan struct{}, 100)
	r.onWait = func() { ch <- struct{}{} }
	return ch
}

func TestWaitEventInProcess(t *testing.T) {
	r := openMem(t, nil)
	// With polling switched off (an hour), only the in-process
	// notification can wake the waiter before the deadline.
	r.poll = time.Hour
	blocked := waitHook(r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must[Event](t)(r.Record(ctx, Event{Kind: "auth.psk", Device: "a"}))

	type result struct {
		e   Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := r.WaitEvent(ctx, Filter{Kind: "auth.*", Device: "b", AfterSeq: 0})
		done <- result{e, err}
	}()
	<-blocked // the waiter has queried and found nothing
	// A non-matching event wakes it; it re-queries and blocks again.
	must[Event](t)(r.Record(ctx, Event{Kind: "auth.psk", Device: "a"}))
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("waiter not woken by a non-matching event")
	}
	want := must[Event](t)(r.Record(ctx, Event{Kind: "auth.cert", Device: "b"}))
	select {
	case res := <-done:
		if res.err != nil || res.e != want {
			t.Fatalf("WaitEvent = %+v, %v; want %+v", res.e, res.err, want)
		}
	case <-ctx.Done():
		t.Fatal("WaitEvent not woken by an in-process Record")
	}

	t.Run("already there", func(t *testing.T) {
		e, err := r.WaitEvent(ctx, Filter{Kind: "auth.psk"})
		if err != nil || e.Seq != 1 {
			t.Fatalf("WaitEvent = %+v, %v", e, err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		go func() {
			<-blocked
			ccancel()
		}()
		_, err := r.WaitEvent(cctx, Filter{Kind: "never"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitEvent = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		dctx, dcancel := context.WithDeadline(ctx, time.Now())
		defer dcancel()
		if _, err := r.WaitEvent(dctx, Filter{Kind: "never"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitEvent = %v, want DeadlineExceeded", err)
		}
	})
}

// TestWaitEventOtherProcess: events written through another handle on the
// same file (as by another process) reach a waiter by polling.
func TestWaitEventOtherProcess(t *testing.T) {
	path := tempDB(t)
	cloud := openFile(t, path, nil)
	cli := openFile(t, path, nil)
	cloud.poll = 10 * time.Millisecond
	blocked := waitHook(cloud)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := must[int64](t)(cloud.LastSeq(ctx))
	done := make(chan Event, 1)
	errc := make(chan error, 1)
	go func() {
		e, err := cloud.WaitEvent(ctx, Filter{Kind: "device.created", AfterSeq: last})
		if err != nil {
			errc <- err
			return
		}
		done <- e
	}()
	<-blocked
	want := must[Event](t)(cli.Record(ctx, Event{Kind: "device.created", Project: "p", Device: "x"}))
	select {
	case e := <-done:
		if e != want {
			t.Fatalf("WaitEvent = %+v, want %+v", e, want)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("WaitEvent did not see the other handle's event")
	}
}

func TestWaitEventClose(t *testing.T) {
	r, err := Open(":memory:", Options{})
	if err != nil {
		t.Fatal(err)
	}
	blocked := waitHook(r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := r.WaitEvent(ctx, Filter{})
		errc <- err
	}()
	<-blocked
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitEvent after Close = %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not wake WaitEvent")
	}
}

func TestFilterKindsAndUpTo(t *testing.T) {
	r := openMem(t, nil)
	ctx := context.Background()
	for _, k := range []EventKind{"auth.psk", "device.disabled", "auth.psk", "ca.revoke", "device.disabled"} {
		must[Event](t)(r.Record(ctx, Event{Kind: k}))
	}
	for _, tt := range []struct {
		name string
		f    Filter
		want []int64
	}{
		{"kinds", Filter{Kinds: []EventKind{"ca.revoke", "device.disabled"}}, []int64{2, 4, 5}},
		{"kinds up to", Filter{Kinds: []EventKind{"ca.revoke", "device.disabled"}, UpToSeq: 4}, []int64{2, 4}},
		{"kinds after up to", Filter{Kinds: []EventKind{"device.disabled"}, AfterSeq: 2, UpToSeq: 4}, nil},
		{"kind and kinds", Filter{Kind: "auth.*", Kinds: []EventKind{"auth.psk", "ca.revoke"}}, []int64{1, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			evs := must[[]Event](t)(r.Events(ctx, tt.f))
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
				if !tt.f.Match(e) {
					t.Errorf("Match(%+v) = false for an event Events returned", e)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("seqs %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWaitSeq(t *testing.T) {
	r := openMem(t, nil)
	r.poll = time.Hour // only the in-process wake-up can end the wait
	blocked := waitHook(r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must[Event](t)(r.Record(ctx, Event{Kind: "auth.psk"}))
	if last, err := r.WaitSeq(ctx, 0); err != nil || last != 1 {
		t.Fatalf("WaitSeq(0) = %d, %v; want 1 at once", last, err)
	}
	done := make(chan int64, 1)
	go func() {
		last, err := r.WaitSeq(ctx, 1)
		if err != nil {
			t.Error(err)
		}
		done <- last
	}()
	<-blocked
	must[Event](t)(r.Record(ctx, Event{Kind: "auth.psk"}))
	select {
	case last := <-done:
		if last != 2 {
			t.Fatalf("WaitSeq = %d, want 2", last)
		}
	case <-ctx.Done():
		t.Fatal("WaitSeq not woken by Record")
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := r.WaitSeq(cctx, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitSeq with a cancelled context: %v", err)
	}
}
