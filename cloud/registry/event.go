package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event is an entry of the append-only event log: an authentication
// attempt, a provisioning, a state change.
type Event struct {
	Seq        int64 // assigned by Record, increasing
	Time       time.Time
	Project    string
	Device     string
	Credential string    // a fingerprint or PSK identity, never a secret
	Kind       EventKind // e.g. "auth.psk", "auth.cert", "provision.auto", "est.enroll", "device.created"
	Outcome    string    // "ok" or "fail"
	Reason     string
}

// Event outcomes.
const (
	OutcomeOK   = "ok"
	OutcomeFail = "fail"
)

// Record appends an event to the log and returns it as stored: Seq is
// always assigned by the log (a Seq passed in is ignored), Time is set to
// Now if zero, and an empty Outcome means "ok". Kind must be set. Record
// wakes this Registry's WaitEvent callers at once.
func (r *Registry) Record(ctx context.Context, e Event) (Event, error) {
	e, err := r.prepareEvent(e)
	if err != nil {
		return Event{}, err
	}
	if err := r.check(); err != nil {
		return Event{}, err
	}
	err = r.batched(ctx, func(in inBatch) error {
		res, err := in(r.stRecord).Exec(dbTime(e.Time), e.Project, e.Device, e.Credential, e.Kind, e.Outcome, e.Reason)
		if err != nil {
			return err
		}
		e.Seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("record event %s: %w", e.Kind, err)
	}
	return e, nil
}

// prepareEvent checks e and fills in what Record defaults: Outcome ok,
// Time now (to the microsecond, as stored).
func (r *Registry) prepareEvent(e Event) (Event, error) {
	if e.Kind == "" {
		return Event{}, fmt.Errorf("record event: %w: empty kind", ErrInvalid)
	}
	switch e.Outcome {
	case "":
		e.Outcome = OutcomeOK
	case OutcomeOK, OutcomeFail:
	default:
		return Event{}, fmt.Errorf("record event %s: %w: outcome %q, want ok or fail", e.Kind, ErrInvalid, clip(e.Outcome))
	}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	e.Time = time.UnixMicro(e.Time.UnixMicro()).UTC() // as stored
	return e, nil
}

// Filter selects events. Empty fields match everything. Kind matches
// exactly, or as a prefix when it ends in "." or "*" ("auth.*" and
// "auth." both match "auth.psk"; "*" matches all). Limit 0 means no limit.
type Filter struct {
	Project string
	Device  string
	Kind    EventKind
	// Kinds, when not empty, keeps only events whose kind is one of these
	// exactly (in addition to Kind).
	Kinds    []EventKind
	Outcome  string
	AfterSeq int64 // only events with Seq > AfterSeq
	UpToSeq  int64 // if > 0, only events with Seq <= UpToSeq
	Limit    int
}

// Match reports whether e passes the filter (AfterSeq included, Limit
// ignored).
func (f Filter) Match(e Event) bool {
	if e.Seq <= f.AfterSeq || f.UpToSeq > 0 && e.Seq > f.UpToSeq ||
		len(f.Kinds) > 0 && !slices.Contains(f.Kinds, e.Kind) ||
		f.Project != "" && e.Project != f.Project ||
		f.Device != "" && e.Device != f.Device ||
		f.Outcome != "" && e.Outcome != f.Outcome {
		return false
	}
	if prefix, ok := f.kindPrefix(); ok {
		return strings.HasPrefix(string(e.Kind), prefix)
	}
	return f.Kind == "" || e.Kind == f.Kind
}

// kindPrefix returns the prefix Kind stands for, if it is a prefix match.
func (f Filter) kindPrefix() (string, bool) {
	k := string(f.Kind)
	switch {
	case strings.HasSuffix(k, "*"):
		return strings.TrimSuffix(k, "*"), true
	case strings.HasSuffix(k, "."):
		return k, true
	}
	return "", false
}

// Events returns the events matching f in ascending Seq order.
func (r *Registry) Events(ctx context.Context, f Filter) ([]Event, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	q, args := f.query()
	evs, err := queryAll(ctx, r.rd, scanEvent, q, args...)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return evs, nil
}

func (f Filter) query() (string, []any) {
	var b strings.Builder
	b.WriteString(`SELECT seq, time, project, device, credential, kind, outcome, reason FROM events WHERE seq > ?`)
	args := []any{f.AfterSeq}
	if f.UpToSeq > 0 {
		b.WriteString(` AND seq <= ?`)
		args = append(args, f.UpToSeq)
	}
	if len(f.Kinds) > 0 {
		b.WriteString(` AND kind IN (?` + strings.Repeat(`, ?`, len(f.Kinds)-1) + `)`)
		for _, k := range f.Kinds {
			args = append(args, k)
		}
	}
	if f.Project != "" {
		b.WriteString(` AND project = ?`)
		args = append(args, f.Project)
	}
	if f.Device != "" {
		b.WriteString(` AND device = ?`)
		args = append(args, f.Device)
	}
	if f.Outcome != "" {
		b.WriteString(` AND outcome = ?`)
		args = append(args, f.Outcome)
	}
	if prefix, ok := f.kindPrefix(); ok {
		if prefix != "" {
			b.WriteString(` AND instr(kind, ?) = 1`)
			args = append(args, prefix)
		}
	} else if f.Kind != "" {
		b.WriteString(` AND kind = ?`)
		args = append(args, f.Kind)
	}
	b.WriteString(` ORDER BY seq`)
	if f.Limit > 0 {
		b.WriteString(` LIMIT ?`)
		args = append(args, f.Limit)
	}
	return b.String(), args
}

func scanEvent(s rowScanner) (Event, error) {
	var e Event
	err := s.Scan(&e.Seq, timeScan{&e.Time}, &e.Project, &e.Device, &e.Credential, &e.Kind, &e.Outcome, &e.Reason)
	return e, err
}

// LastSeq returns the Seq of the newest event, 0 if the log is empty.
func (r *Registry) LastSeq(ctx context.Context) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	var n int64
	if err := r.stLastSeq.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("last seq: %w", err)
	}
	return n, nil
}

// WaitEvent returns the first event with Seq > f.AfterSeq that matches f
// (f.Limit is ignored), waiting until one is recorded, ctx ends (its
// error is returned) or the Registry is closed (ErrClosed).
//
// Events recorded through this Registry wake the wait at once. Events
// written by another process (or another Registry on the same file)
// cannot signal it, so WaitEvent also re-queries every 100 ms: those are
// seen within about that delay.
func (r *Registry) WaitEvent(ctx context.Context, f Filter) (Event, error) {
	f.Limit = 1
	var tick *time.Ticker
	for {
		wake := r.waitCh() // before the query, so no Record is missed
		evs, err := r.Events(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return Event{}, fmt.Errorf("wait event: %w", err)
		}
		if len(evs) > 0 {
			return evs[0], nil
		}
		if tick == nil {
			tick = time.NewTicker(r.poll)
			defer tick.Stop()
		}
		if r.onWait != nil {
			r.onWait()
		}
		select {
		case <-wake:
		case <-tick.C:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("wait event: %w", ctx.Err())
		case <-r.done:
			return Event{}, fmt.Errorf("wait event: %w", ErrClosed)
		}
	}
}

// WaitSeq returns the Seq of the newest event once it is greater than
// after, waiting like WaitEvent (woken at once by in-process events,
// re-checking every 100 ms for other processes'). It is the cheap way to
// follow the log: one indexed MAX per wake, whatever was recorded.
func (r *Registry) WaitSeq(ctx context.Context, after int64) (int64, error) {
	var tick *time.Ticker
	for {
		wake := r.waitCh() // before the query, so no Record is missed
		last, err := r.LastSeq(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return 0, fmt.Errorf("wait seq: %w", err)
		}
		if last > after {
			return last, nil
		}
		if tick == nil {
			tick = time.NewTicker(r.poll)
			defer tick.Stop()
		}
		if r.onWait != nil {
			r.onWait()
		}
		select {
		case <-wake:
		case <-tick.C:
		case <-ctx.Done():
			return 0, fmt.Errorf("wait seq: %w", ctx.Err())
		case <-r.done:
			return 0, fmt.Errorf("wait seq: %w", ErrClosed)
		}
	}
}

// waitCh returns a channel closed by the next in-process Record.
func (r *Registry) waitCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eventCh
}

func (r *Registry) broadcast() {
	r.mu.Lock()
	close(r.eventCh)
	r.eventCh = make(chan struct{})
	r.mu.Unlock()
}
