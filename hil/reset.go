package hil

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// esptool's reset sequences, in its custom_reset_sequence language.
const (
	// ClassicReset is esptool's ClassicReset strategy (esptool/reset.py;
	// the CustomReset docstring spells it exactly so), with esptool's
	// default reset_delay of 0.05 s. It resets an ESP32 behind the usual
	// two-transistor auto-reset circuit (DTR drives GPIO0, RTS drives EN)
	// into the ROM download mode, for flashing. esptool's
	// configuration-file.rst shows the same sequence with longer waits
	// (W0.5 after releasing EN) for boards with a slow EN capacitor.
	ClassicReset = "D0|R1|W0.1|D1|R0|W0.05|D0"

	// USBJTAGSerialReset is esptool's USBJTAGSerialReset strategy
	// (esptool/reset.py), used into download mode when the chip is
	// connected through its built-in USB-Serial/JTAG peripheral (ESP32-C3,
	// -S3, -C6, -H2; USB id 303A:1001).
	USBJTAGSerialReset = "R0|D0|W0.1|D1|R0|W0.1|R1|D0|R1|W0.1|D0|R0"

	// UnixTightReset is esptool's UnixTightReset strategy, which sets
	// both lines at once (the CustomReset docstring gives it without the
	// leading U0,0 and trailing D0 that the strategy's code also does).
	UnixTightReset = "U0,0|U1,1|U0,1|W0.1|U1,0|W0.05|U0,0|D0"

	// HardReset restarts the application: EN is held low for 0.1 s with
	// GPIO0 released. esptool's HardReset strategy is R1|W0.1|R0 and
	// relies on DTR being deasserted already; this says so explicitly.
	// It is the default reset of esp32 boards in a hardware map.
	HardReset = "D0|R1|W0.1|R0"
)

// Limits of a reset sequence.
const (
	// MaxWait is the longest single wait. esptool waits are in seconds;
	// esptool-js writes milliseconds ("W100"), and a sequence copied from
	// it would otherwise wait minutes.
	MaxWait  = 10 * time.Second
	MaxSteps = 64
)

// ErrResetSequence is wrapped by every reset-sequence parse error.
var ErrResetSequence = errors.New("hil: invalid reset sequence")

// StepKind is the command letter of a reset-sequence step.
type StepKind byte

// Step kinds.
const (
	StepDTR  StepKind = 'D' // set DTR
	StepRTS  StepKind = 'R' // set RTS
	StepBoth StepKind = 'U' // set DTR and RTS together (esptool: Unix only)
	StepWait StepKind = 'W' // wait
)

// Step is one command of a reset sequence. true means asserted (esptool's
// setDTR(True)), which on a USB-UART drives the pin low.
type Step struct {
	Kind StepKind
	DTR  bool          // StepDTR, StepBoth
	RTS  bool          // StepRTS, StepBoth
	Wait time.Duration // StepWait
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// String returns the step in esptool's notation.
func (s Step) String() string {
	switch s.Kind {
	case StepDTR:
		return "D" + bit(s.DTR)
	case StepRTS:
		return "R" + bit(s.RTS)
	case StepBoth:
		return "U" + bit(s.DTR) + "," + bit(s.RTS)
	case StepWait:
		return "W" + strconv.FormatFloat(s.Wait.Seconds(), 'f', -1, 64)
	}
	return fmt.Sprintf("?%d", byte(s.Kind))
}

// FormatResetSequence returns steps in esptool's notation, the inverse of
// ParseResetSequence.
func FormatResetSequence(steps []Step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, "|")
}

// ParseResetSequence parses esptool's custom_reset_sequence language:
// commands separated by "|", each a letter and its argument. D1/D0 set
// DTR, R1/R0 set RTS, U<dtr>,<rts> sets both (U0,1), W<seconds> waits
// (W0.1). Spaces around a command are allowed.
func ParseResetSequence(s string) ([]Step, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty", ErrResetSequence)
	}
	parts := strings.Split(s, "|")
	if len(parts) > MaxSteps {
		return nil, fmt.Errorf("%w: %d steps, at most %d", ErrResetSequence, len(parts), MaxSteps)
	}
	steps := make([]Step, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		st, err := parseStep(p)
		if err != nil {
			return nil, fmt.Errorf("%w: step %d %q: %s", ErrResetSequence, i+1, p, err)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func parseBit(s string) (bool, error) {
	switch s {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("want 0 or 1, not %q", s)
}

func parseStep(p string) (Step, error) {
	if p == "" {
		return Step{}, errors.New("empty step")
	}
	arg := p[1:]
	switch k := StepKind(p[0]); k {
	case StepDTR:
		v, err := parseBit(arg)
		return Step{Kind: k, DTR: v}, err
	case StepRTS:
		v, err := parseBit(arg)
		return Step{Kind: k, RTS: v}, err
	case StepBoth:
		d, r, ok := strings.Cut(arg, ",")
		if !ok {
			return Step{}, errors.New("want U<dtr>,<rts> such as U0,1")
		}
		dv, err := parseBit(strings.TrimSpace(d))
		if err != nil {
			return Step{}, err
		}
		rv, err := parseBit(strings.TrimSpace(r))
		return Step{Kind: k, DTR: dv, RTS: rv}, err
	case StepWait:
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return Step{}, fmt.Errorf("want a wait in seconds such as W0.1, not %q", arg)
		}
		if f > MaxWait.Seconds() {
			return Step{}, fmt.Errorf("%g s is longer than %v (esptool waits are seconds, esptool-js waits are milliseconds)", f, MaxWait)
		}
		return Step{Kind: k, Wait: time.Duration(math.Round(f * float64(time.Second)))}, nil
	}
	return Step{}, fmt.Errorf("unknown command %q (want D, R, U or W)", p[:1])
}

// ModemLines drives a serial port's DTR and RTS lines; go.bug.st/serial's
// Port has these methods.
type ModemLines interface {
	SetDTR(dtr bool) error
	SetRTS(rts bool) error
}

// BothLines is implemented by ModemLines that can set DTR and RTS in one
// operation (esptool's U step, TIOCMSET on Unix). Without it a U step sets
// DTR, then RTS.
type BothLines interface {
	SetDTRAndRTS(dtr, rts bool) error
}

// Runner runs reset sequences. The zero value is ready to use.
type Runner struct {
	// Sleep waits for d or until ctx is done. Nil means a timer; tests
	// inject a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Run runs steps with the default Runner.
func Run(ctx context.Context, lines ModemLines, steps []Step) error {
	return Runner{}.Run(ctx, lines, steps)
}

// Run sets the lines and waits as steps say. It stops at the first error
// or when ctx is done, leaving the lines as they are then.
func (r Runner) Run(ctx context.Context, lines ModemLines, steps []Step) error {
	sleep := r.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reset step %d (%s): %w", i+1, s, err)
		}
		var err error
		switch s.Kind {
		case StepDTR:
			err = lines.SetDTR(s.DTR)
		case StepRTS:
			err = lines.SetRTS(s.RTS)
		case StepBoth:
			if b, ok := lines.(BothLines); ok {
				err = b.SetDTRAndRTS(s.DTR, s.RTS)
			} else if err = lines.SetDTR(s.DTR); err == nil {
				err = lines.SetRTS(s.RTS)
			}
		case StepWait:
			err = sleep(ctx, s.Wait)
		default:
			err = fmt.Errorf("%w: unknown step kind %d", ErrResetSequence, byte(s.Kind))
		}
		if err != nil {
			return fmt.Errorf("reset step %d (%s): %w", i+1, s, err)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ResetMethod says how a board is reset.
type ResetMethod string

// Reset methods.
const (
	ResetNone    ResetMethod = ""        // no way to reset
	ResetLines   ResetMethod = "lines"   // a DTR/RTS sequence
	ResetConsole ResetMethod = "console" // a shell command on the console
	ResetPower   ResetMethod = "power"   // the board's power command
)

// Reset is a parsed reset setting.
type Reset struct {
	Method  ResetMethod
	Steps   []Step // ResetLines
	Command string // ResetConsole: the command to type, e.g. "kernel reboot cold"
}

// ParseReset parses a hardware map's reset setting: an esptool-style
// sequence ("D0|R1|W0.1|R0"), "console:<command>", or "power". The empty
// string is ResetNone.
func ParseReset(s string) (Reset, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Reset{}, nil
	case s == string(ResetPower):
		return Reset{Method: ResetPower}, nil
	case strings.HasPrefix(s, "console:"):
		cmd := strings.TrimSpace(strings.TrimPrefix(s, "console:"))
		if cmd == "" {
			return Reset{}, errors.New("console: needs a command, e.g. console:kernel reboot cold")
		}
		if strings.ContainsAny(cmd, "\r\n") {
			return Reset{}, errors.New("console command must be one line")
		}
		return Reset{Method: ResetConsole, Command: cmd}, nil
	}
	steps, err := ParseResetSequence(s)
	if err != nil {
		return Reset{}, fmt.Errorf("%w (or use console:<command> or power)", err)
	}
	return Reset{Method: ResetLines, Steps: steps}, nil
}
