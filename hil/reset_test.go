package hil

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseResetSequence(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		in   string
		want []Step
	}{
		{ClassicReset, []Step{
			{Kind: StepDTR}, {Kind: StepRTS, RTS: true}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepDTR, DTR: true}, {Kind: StepRTS}, {Kind: StepWait, Wait: 50 * ms}, {Kind: StepDTR},
		}},
		{"D0|R1|W0.1|D1|R0|W0.5|D0", []Step{
			{Kind: StepDTR}, {Kind: StepRTS, RTS: true}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepDTR, DTR: true}, {Kind: StepRTS}, {Kind: StepWait, Wait: 500 * ms}, {Kind: StepDTR},
		}},
		{USBJTAGSerialReset, []Step{
			{Kind: StepRTS}, {Kind: StepDTR}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepDTR, DTR: true}, {Kind: StepRTS}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepRTS, RTS: true}, {Kind: StepDTR}, {Kind: StepRTS, RTS: true}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepDTR}, {Kind: StepRTS},
		}},
		{"U1,1|U0,1|W0.1|U1,0|W0.05|U0,0", []Step{
			{Kind: StepBoth, DTR: true, RTS: true}, {Kind: StepBoth, RTS: true}, {Kind: StepWait, Wait: 100 * ms},
			{Kind: StepBoth, DTR: true}, {Kind: StepWait, Wait: 50 * ms}, {Kind: StepBoth},
		}},
		{" R1 | W1.3 |R0", []Step{{Kind: StepRTS, RTS: true}, {Kind: StepWait, Wait: 1300 * ms}, {Kind: StepRTS}}},
		{"W0|W10|W.25|W1e-3", []Step{{Kind: StepWait}, {Kind: StepWait, Wait: 10 * time.Second},
			{Kind: StepWait, Wait: 250 * ms}, {Kind: StepWait, Wait: ms}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResetSequence(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
			again, err := ParseResetSequence(FormatResetSequence(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("format round trip %q: %v", FormatResetSequence(got), err)
			}
		})
	}
	if got := FormatResetSequence([]Step{{Kind: StepBoth, RTS: true}, {Kind: StepWait, Wait: 50 * ms}}); got != "U0,1|W0.05" {
		t.Errorf("Format = %q", got)
	}
	if _, err := ParseResetSequence(UnixTightReset); err != nil {
		t.Errorf("UnixTightReset: %v", err)
	}
	if _, err := ParseResetSequence(HardReset); err != nil {
		t.Errorf("HardReset: %v", err)
	}
}

func TestParseResetSequenceErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty"},
		{"   ", "empty"},
		{"D0||R1", "step 2"},
		{"D0|", "step 2"},
		{"D2", "want 0 or 1"},
		{"Dtrue", "want 0 or 1"},
		{"d0", "unknown command"},
		{"X1", "unknown command"},
		{"U1", "U<dtr>,<rts>"},
		{"U1,2", "want 0 or 1"},
		{"W", "wait in seconds"},
		{"W-1", "wait in seconds"},
		{"WNaN", "wait in seconds"},
		{"WInf", "wait in seconds"},
		{"W0x10", ""},
		{"W100", "milliseconds"},
		{"W10.5", "longer than"},
		{strings.Repeat("D0|", 64) + "D0", "at most 64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseResetSequence(tt.in)
			if !errors.Is(err, ErrResetSequence) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want one containing %q", err, tt.msg)
			}
		})
	}
}

// lineRecorder is a fake port recording every line change, in order.
type lineRecorder struct {
	events []string
	failOn string // an event that returns an error
}

func (r *lineRecorder) record(e string) error {
	r.events = append(r.events, e)
	if e == r.failOn {
		return errors.New("line stuck")
	}
	return nil
}

func (r *lineRecorder) SetDTR(v bool) error { return r.record(fmt.Sprintf("DTR=%v", v)) }
func (r *lineRecorder) SetRTS(v bool) error { return r.record(fmt.Sprintf("RTS=%v", v)) }

type bothRecorder struct{ lineRecorder }

func (r *bothRecorder) SetDTRAndRTS(d, rts bool) error {
	return r.record(fmt.Sprintf("DTR=%v,RTS=%v", d, rts))
}

// sleepRecorder is an injected Sleep that records into the same log.
func sleepRecorder(log *[]string) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		*log = append(*log, "wait "+d.String())
		return ctx.Err()
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name string
		seq  string
		both bool
		want []string
	}{
		{"classic", ClassicReset, false, []string{
			"DTR=false", "RTS=true", "wait 100ms", "DTR=true", "RTS=false", "wait 50ms", "DTR=false"}},
		{"usb-jtag-serial", USBJTAGSerialReset, false, []string{
			"RTS=false", "DTR=false", "wait 100ms", "DTR=true", "RTS=false", "wait 100ms",
			"RTS=true", "DTR=false", "RTS=true", "wait 100ms", "DTR=false", "RTS=false"}},
		{"U without SetDTRAndRTS", "U0,1|W0.1|U1,0", false, []string{
			"DTR=false", "RTS=true", "wait 100ms", "DTR=true", "RTS=false"}},
		{"U with SetDTRAndRTS", "U0,1|W0.1|U1,0", true, []string{
			"DTR=false,RTS=true", "wait 100ms", "DTR=true,RTS=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := ParseResetSequence(tt.seq)
			if err != nil {
				t.Fatal(err)
			}
			var rec *lineRecorder
			var lines ModemLines
			if tt.both {
				b := &bothRecorder{}
				rec, lines = &b.lineRecorder, b
			} else {
				rec = &lineRecorder{}
				lines = rec
			}
			r := Runner{Sleep: sleepRecorder(&rec.events)}
			if err := r.Run(t.Context(), lines, steps); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rec.events, tt.want) {
				t.Fatalf("events %q\nwant   %q", rec.events, tt.want)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	steps, _ := ParseResetSequence(ClassicReset)

	rec := &lineRecorder{failOn: "DTR=true"}
	err := Runner{Sleep: sleepRecorder(&rec.events)}.Run(t.Context(), rec, steps)
	if err == nil || !strings.Contains(err.Error(), "reset step 4 (D1): line stuck") {
		t.Fatalf("err = %v", err)
	}
	if len(rec.events) != 4 {
		t.Fatalf("went on after the failure: %q", rec.events)
	}

	// A cancelled context stops before the next step; the sleep sees it.
	ctx, cancel := context.WithCancel(t.Context())
	rec = &lineRecorder{}
	sleep := func(ctx context.Context, d time.Duration) error {
		rec.events = append(rec.events, "wait")
		cancel()
		return ctx.Err()
	}
	err = Runner{Sleep: sleep}.Run(ctx, rec, steps)
	if !errors.Is(err, context.Canceled) || !reflect.DeepEqual(rec.events, []string{"DTR=false", "RTS=true", "wait"}) {
		t.Fatalf("cancel: %v, %q", err, rec.events)
	}
	rec = &lineRecorder{}
	if err := (Runner{}).Run(ctx, rec, steps); !errors.Is(err, context.Canceled) || len(rec.events) != 0 {
		t.Fatalf("already cancelled: %v, %q", err, rec.events)
	}
	if err := Run(t.Context(), rec, []Step{{Kind: 'Z'}}); !errors.Is(err, ErrResetSequence) {
		t.Fatalf("bad step: %v", err)
	}
}

// The default sleep honours the context: a 10 s wait ends at cancel.
func TestDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rec := &lineRecorder{}
	err := Run(ctx, rec, []Step{{Kind: StepWait, Wait: 10 * time.Second}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if err := sleepCtx(t.Context(), 0); err != nil {
		t.Fatalf("zero wait: %v", err)
	}
}

func TestParseReset(t *testing.T) {
	tests := []struct {
		in   string
		want ResetMethod
		err  bool
	}{
		{"", ResetNone, false},
		{"power", ResetPower, false},
		{"console:kernel reboot cold", ResetConsole, false},
		{"console:", "", true},
		{"console:a\nb", "", true},
		{"R1|W0.1|R0", ResetLines, false},
		{"reboot", "", true},
	}
	for _, tt := range tests {
		r, err := ParseReset(tt.in)
		if (err != nil) != tt.err || r.Method != tt.want {
			t.Errorf("ParseReset(%q) = %+v, %v", tt.in, r, err)
		}
	}
}
