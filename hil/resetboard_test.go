//go:build linux

package hil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResetBoard(t *testing.T) {
	b := newPtyBoard(t)
	port := openTestPort(t, "nrf-1", PathResolver(b.path), PortOptions{})
	c := newTestConsole(t, port, ConsoleOptions{Name: "nrf-1", RunDir: t.TempDir()})
	ctx := testCtx(t)

	// A console command: the board receives it.
	if err := ResetBoard(ctx, BoardSpec{Name: "nrf-1", Kind: "nrf", Reset: "console:kernel reboot cold"}, c); err != nil {
		t.Fatal(err)
	}
	b.readUntil("kernel reboot cold")

	// A power command runs through the shell.
	mark := filepath.Join(t.TempDir(), "cycled")
	power := BoardSpec{Name: "cc-1", Kind: "cc3220", Reset: "power", Power: "echo cycled > " + mark}
	if err := ResetBoard(ctx, power, c); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(mark); err != nil || strings.TrimSpace(string(got)) != "cycled" {
		t.Fatalf("power command did not run: %q, %v", got, err)
	}
	failing := BoardSpec{Name: "cc-2", Kind: "cc3220", Reset: "power", Power: "echo relay jammed >&2; exit 3"}
	if err := ResetBoard(ctx, failing, c); err == nil || !strings.Contains(err.Error(), "relay jammed") {
		t.Fatalf("failing power command: %v", err)
	}

	// DTR/RTS on a pseudo-terminal: Linux refuses modem ioctls on a pty,
	// and the error says so instead of pretending the board was reset.
	err := ResetBoard(ctx, BoardSpec{Name: "esp-1", Kind: "esp32", Reset: HardReset}, c)
	if !errors.Is(err, ErrModemLines) {
		t.Fatalf("line reset on a pty: %v", err)
	}

	// No way to reset.
	if err := ResetBoard(ctx, BoardSpec{Name: "cc-3", Kind: "cc3220"}, c); !errors.Is(err, ErrNoReset) {
		t.Fatalf("no reset: %v", err)
	}
}
