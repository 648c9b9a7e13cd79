//go:build linux

package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// A "real" board behind a pseudo-terminal, named in a hardware map.
func ptyMap(t *testing.T, kind string) (master *os.File, mapFile string) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	mapFile = filepath.Join(t.TempDir(), "hardware.yml")
	yml := "- name: board-1\n  kind: " + kind + "\n  port: " + s.Name() + "\n"
	if err := os.WriteFile(mapFile, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return m, mapFile
}

func readFor(t *testing.T, f *os.File, want string) {
	t.Helper()
	var got []byte
	buf := make([]byte, 256)
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Contains(got, []byte(want)) {
		if err := f.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("waiting for %q, got %q: %v", want, got, err)
		}
	}
}

func TestBoardResetAndConsole(t *testing.T) {
	master, mapFile := ptyMap(t, "nrf")
	logDir := t.TempDir()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code := Run(ctx, &Env{Args: []string{"board", "reset", "--map", mapFile, "--log-dir", logDir, "board-1"}, Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("reset: exit %d: %s", code, errOut.String())
	}
	readFor(t, master, "kernel reboot cold")

	// console: the user's line reaches the board, the board's answer
	// reaches the user, Ctrl-] ends it; all of it is in the board log.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinR.Close()
	done := make(chan int, 1)
	var consoleOut lockedWriter
	var sb strings.Builder
	consoleOut.w = &sb
	go func() {
		done <- Run(ctx, &Env{Args: []string{"board", "console", "--map", mapFile, "--log-dir", logDir, "board-1"}, Stdin: stdinR, Stdout: &consoleOut, Stderr: &errOut})
	}()
	if _, err := stdinW.Write([]byte("device list\n")); err != nil {
		t.Fatal(err)
	}
	readFor(t, master, "device list")
	if _, err := master.Write([]byte("uart0 (READY)\r\nuart:~$ ")); err != nil {
		t.Fatal(err)
	}
	if _, err := stdinW.Write([]byte{0x1d}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("console: exit %d: %s", code, errOut.String())
		}
	case <-ctx.Done():
		t.Fatal("console did not end on Ctrl-]")
	}
	stdinW.Close()
	log, err := os.ReadFile(filepath.Join(logDir, "boards", "board-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"> kernel reboot cold", "> device list"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("board log lacks %q:\n%s", want, log)
		}
	}

	// An emulated board cannot be reached from the CLI.
	emu := filepath.Join(t.TempDir(), "emu.yml")
	if err := os.WriteFile(emu, []byte("- name: e\n  kind: esp32\n  emulate: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := Run(ctx, &Env{Args: []string{"board", "reset", "--map", emu, "e"}, Stdout: &out, Stderr: &errOut}); code != 1 || !strings.Contains(errOut.String(), "emulated") {
		t.Fatalf("emulated board: exit %d: %s", code, errOut.String())
	}
}
