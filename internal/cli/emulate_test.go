//go:build linux

package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credloop/credloop/hil"
)

// readReady reads the --json ready line of `board emulate`.
func readReady(t *testing.T, r io.Reader) emulateReady {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(r).ReadString('\n')
		lines <- l
	}()
	select {
	case l := <-lines:
		var ready emulateReady
		if err := json.Unmarshal([]byte(l), &ready); err != nil {
			t.Fatalf("ready line %q: %v", l, err)
		}
		return ready
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line")
	}
	panic("unreachable")
}

// board emulate, in-process: the ready line names the pty, a console
// opened through go.bug.st/serial talks to the board, and cancelling the
// context (what SIGINT does in Main) stops it, with every goroutine.
func TestBoardEmulate(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := filepath.Join(t.TempDir(), "flash")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	var errOut lockedWriter
	var sb strings.Builder
	errOut.w = &sb
	done := make(chan int, 1)
	go func() {
		done <- Run(runCtx, &Env{Args: []string{"board", "emulate", "nrf", "--json", "--name", "bench-1", "--dir", dir}, Stdout: pw, Stderr: &errOut})
		pw.Close()
	}()
	ready := readReady(t, pr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if ready.Event != "ready" || ready.Kind != "nrf" || ready.Name != "bench-1" || ready.Dir != dir || !strings.HasPrefix(ready.PTY, "/dev/") {
		t.Fatalf("ready = %+v", ready)
	}

	port, err := hil.OpenPort(ctx, hil.PortOptions{Board: "bench-1", Resolve: hil.PathResolver(ready.PTY), Baud: hil.DefaultBaud})
	if err != nil {
		t.Fatal(err)
	}
	c, err := hil.NewConsole(port, hil.ConsoleOptions{Name: "bench-1", RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("device info"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(ctx, "(emulated bench-1)", hil.ExpectOptions{Literal: true, Timeout: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, sb.String())
		}
	case <-ctx.Done():
		t.Fatal("board emulate did not stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "bench-1.flash")); err != nil {
		t.Fatalf("no flash kept: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// board emulate as a process: SIGTERM stops it cleanly (exit 0), and
// without --dir its flash goes to a new directory it prints.
func TestBoardEmulateSignal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "board", "emulate", "esp32", "--json")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := readReady(t, out)
	t.Cleanup(func() { os.RemoveAll(ready.Dir) })
	if ready.Kind != "esp32" || ready.Name != "esp32" || !strings.Contains(filepath.Base(ready.Dir), "credloop-emulate-") {
		t.Fatalf("ready = %+v", ready)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(ready.Dir, "esp32.flash")); err != nil {
		t.Fatalf("no flash: %v", err)
	}
}

func TestBoardEmulateUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := Run(context.Background(), &Env{Args: []string{"board", "emulate", "stm32"}, Stdout: &out, Stderr: &errOut}); code != 2 ||
		!strings.Contains(errOut.String(), "unknown board kind") || !strings.Contains(errOut.String(), "cc3220, esp32, linux, nrf") {
		t.Fatalf("unknown kind: exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Run(context.Background(), &Env{Args: []string{"board", "emulate", "nrf", "--name", "../x"}, Stdout: &out, Stderr: &errOut}); code != 2 {
		t.Fatalf("bad name: exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Run(context.Background(), &Env{Args: []string{"board", "emulate", "--help"}, Stdout: &out, Stderr: &errOut}); code != 0 ||
		!strings.Contains(errOut.String(), "mcumgr --conntype serial") || !strings.Contains(errOut.String(), "Kinds:") {
		t.Fatalf("help: exit %d: %s", code, errOut.String())
	}
}
