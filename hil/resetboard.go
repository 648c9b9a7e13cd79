package hil

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoReset is returned for a board the map gives no way to reset.
var ErrNoReset = errors.New("hil: the hardware map gives this board no way to reset")

// ResetBoard resets a board the way its hardware map says: by toggling the
// serial port's DTR/RTS lines with an esptool-style sequence, by typing a
// console command, or by running its power command (through sh -c, so a
// uhubctl or relay command line works as written).
func ResetBoard(ctx context.Context, b BoardSpec, c *Console) error {
	plan, err := b.ResetPlan()
	if err != nil {
		return err
	}
	switch plan.Method {
	case ResetLines:
		c.Note("reset: %s", FormatResetSequence(plan.Steps))
		return Run(ctx, c, plan.Steps)
	case ResetConsole:
		return c.Send(plan.Command)
	case ResetPower:
		return PowerCycle(ctx, b, c)
	}
	return fmt.Errorf("%w: %s", ErrNoReset, b.Name)
}

// PowerCycle runs the board's power command.
func PowerCycle(ctx context.Context, b BoardSpec, c *Console) error {
	cmd := strings.TrimSpace(b.Power)
	if cmd == "" {
		return fmt.Errorf("hil: board %s has no power command in the hardware map", b.Name)
	}
	if c != nil {
		c.Note("power: %s", cmd)
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hil: power command of %s (%s): %w: %s", b.Name, cmd, err, strings.TrimSpace(string(out)))
	}
	return nil
}
