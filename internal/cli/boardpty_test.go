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

	"github.com/credloop/credloop/boards/nrf"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
)

// A "real" board behind a pseudo-terminal, named in a hardware map.
func ptyMap(t *testing.T, kind string) (master *os.File, mapFile string) {
	t.Helper()
	p, err := hil.OpenPTY(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	mapFile = filepath.Join(t.TempDir(), "hardware.yml")
	yml := "- name: board-1\n  kind: " + kind + "\n  port: " + p.Path() + "\n"
	if err := os.WriteFile(mapFile, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p.Master, mapFile
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

// board provision installs the registry's PSK on a board found through the
// hardware map. The "real" board here is the nRF emulator's pseudo-terminal,
// named by path in the map, exactly as a USB port would be.
func TestBoardProvisionFromRegistry(t *testing.T) {
	dir := t.TempDir()
	c, err := cloud.New(cloud.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "nrf-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", "nrf-1", "nrf-1@acme", []byte("board-psk-secret")); err != nil {
		t.Fatal(err)
	}
	a := c.Addrs()
	emu, err := nrf.StartEmulator(ctx, nrf.EmulatorOptions{Name: "nrf-1", FlashPath: filepath.Join(t.TempDir(), "flash"), Cloud: nrf.Endpoints{CoAPS: a.CoAPS, MQTTS: a.MQTTS, HTTPS: a.HTTPS}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	mapFile := filepath.Join(t.TempDir(), "hardware.yml")
	if err := os.WriteFile(mapFile, []byte("- name: nrf-1\n  kind: nrf\n  port: "+emu.PortPath()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	var out, errOut bytes.Buffer
	args := []string{"board", "provision", "--map", mapFile, "--dir", dir, "--log-dir", logDir, "nrf-1", "--device", "acme/nrf-1"}
	if code := Run(ctx, &Env{Args: args, Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), "board-psk-secret") {
		t.Fatal("the PSK was printed")
	}
	if ev, err := c.Registry.WaitEvent(ctx, registry.Filter{Kind: "auth.psk", Outcome: "ok", Device: "nrf-1"}); err != nil {
		t.Fatalf("the board never authenticated: %v", err)
	} else if ev.Credential != "nrf-1@acme" {
		t.Fatalf("event = %+v", ev)
	}
	log, err := os.ReadFile(filepath.Join(logDir, "boards", "nrf-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "board-psk-secret") {
		t.Fatal("the PSK reached the board log")
	}
}

// board flash runs the map's flash command template.
func TestBoardFlash(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "nvs.bin")
	if err := os.WriteFile(image, []byte("image bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	mapFile := filepath.Join(dir, "hardware.yml")
	yml := "- name: esp32-1\n  kind: esp32\n  port: /dev/ttyUSB9\n  flash: cp {image} " + filepath.Join(dir, "flashed-{offset}") + "\n"
	if err := os.WriteFile(mapFile, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), &Env{Args: []string{"board", "flash", "--map", mapFile, "esp32-1", image}, Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "flashed-0x9000")); err != nil || string(b) != "image bytes" {
		t.Fatalf("flashed = %q, %v", b, err)
	}
}
