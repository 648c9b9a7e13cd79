package registry

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestRPCCallLifecycle(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)

	c, seq, err := r.CreateRPCCall(ctx, "p", "d1", "abc", "reboot", json.RawMessage(`[1,"x"]`), "by test")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == 0 || seq == 0 || c.Done || string(c.Params) != `[1,"x"]` {
		t.Fatalf("created %+v seq %d", c, seq)
	}
	evs, err := r.Events(ctx, Filter{Kind: EventRPCCall})
	if err != nil || len(evs) != 1 || evs[0].Seq != seq {
		t.Fatalf("rpc.call events %+v, %v", evs, err)
	}
	if id, ok := RPCCallOf(evs[0]); !ok || id != c.ID {
		t.Fatalf("RPCCallOf(%q) = %d, %v", evs[0].Reason, id, ok)
	}
	if pend, err := r.PendingRPCCalls(ctx, "p", "d1"); err != nil || len(pend) != 1 {
		t.Fatalf("pending %+v, %v", pend, err)
	}

	for _, tc := range []struct {
		name            string
		project, device string
		callID, method  string
		params          string
		want            error
	}{
		{"same id again", "p", "d1", "abc", "m", "[]", ErrExists},
		{"no device", "p", "d9", "x1", "m", "[]", ErrNotFound},
		{"params not an array", "p", "d1", "x2", "m", `{"a":1}`, ErrInvalid},
		{"params null", "p", "d1", "x3", "m", `null`, ErrInvalid},
		{"empty method", "p", "d1", "x4", "", "[]", ErrInvalid},
		{"control character", "p", "d1", "x5", "a\nb", "[]", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := r.CreateRPCCall(ctx, tc.project, tc.device, tc.callID, tc.method, json.RawMessage(tc.params), ""); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	if _, err := r.CompleteRPCCall(ctx, "p", "d2", "abc", RPCOK, nil, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another device's call: %v", err)
	}
	done, err := r.CompleteRPCCall(ctx, "p", "d1", "abc", RPCInvalidArgument, json.RawMessage(`{"why":"x"}`), false)
	if err != nil || !done.Done || done.Status != RPCInvalidArgument || string(done.Detail) != `{"why":"x"}` {
		t.Fatalf("completed %+v, %v", done, err)
	}
	if _, err := r.CompleteRPCCall(ctx, "p", "d1", "abc", RPCOK, nil, true); !errors.Is(err, ErrRPCDone) {
		t.Fatalf("second completion: %v", err)
	}
	got, err := r.RPCCall(ctx, c.ID)
	if err != nil || got.Status != RPCInvalidArgument || got.Completed.IsZero() {
		t.Fatalf("stored %+v, %v", got, err)
	}
	st, err := r.Events(ctx, Filter{Kind: EventRPCStatus})
	if err != nil || len(st) != 1 || st[0].Outcome != OutcomeOK {
		t.Fatalf("rpc.status events %+v, %v", st, err)
	}
	if id, ok := RPCCallOf(st[0]); !ok || id != c.ID {
		t.Fatalf("RPCCallOf(%q) = %d, %v", st[0].Reason, id, ok)
	}

	// A timeout is a failed rpc.status event.
	c2, _, err := r.CreateRPCCall(ctx, "p", "d1", "def", "slow", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CompleteRPCCall(ctx, "p", "d1", "def", RPCDeadlineExceeded, nil, true); err != nil {
		t.Fatal(err)
	}
	ev, err := r.Events(ctx, Filter{Kind: EventRPCStatus, Outcome: OutcomeFail})
	if err != nil || len(ev) != 1 {
		t.Fatalf("timeout events %+v, %v", ev, err)
	}
	if id, _ := RPCCallOf(ev[0]); id != c2.ID {
		t.Fatalf("timeout event is about call %d, want %d", id, c2.ID)
	}
	if pend, _ := r.PendingRPCCalls(ctx, "p", "d1"); len(pend) != 0 {
		t.Fatalf("still pending: %+v", pend)
	}
	// Invalid answers write nothing.
	if _, err := r.CompleteRPCCall(ctx, "p", "d1", "zzz", RPCStatus(17), nil, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("status 17: %v", err)
	}
	if _, err := r.CompleteRPCCall(ctx, "p", "d1", "zzz", RPCOK, json.RawMessage(`{`), false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad detail: %v", err)
	}
}

func TestRPCStatusNames(t *testing.T) {
	for s, want := range map[RPCStatus]string{RPCOK: "OK", RPCInvalidArgument: "INVALID_ARGUMENT", RPCNotFound: "NOT_FOUND", RPCUnauthenticated: "UNAUTHENTICATED", 17: "RPCStatus(17)", -1: "RPCStatus(-1)"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", int(s), got, want)
		}
	}
	if _, ok := RPCCallOf(Event{Kind: EventRPCCall, Reason: "nonsense"}); ok {
		t.Error("RPCCallOf parsed a reason without a call")
	}
	if _, ok := RPCCallOf(Event{Kind: EventAuthPSK, Reason: "call 1: x"}); ok {
		t.Error("RPCCallOf accepted another kind")
	}
}
