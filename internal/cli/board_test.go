package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/hil"
)

func TestBoardList(t *testing.T) {
	ports := []hil.PortInfo{
		{Path: "/dev/ttyACM0", USB: true, VID: "303A", PID: "1001", SerialNumber: "F4:12:FA:00:11:22", Product: "USB JTAG/serial debug unit"},
		{Path: "/dev/ttyUSB0", USB: true, VID: "10C4", PID: "EA60", Location: "1-1.2"},
		{Path: "/dev/ttyACM1", USB: true, VID: "1366", PID: "1051", SerialNumber: "001050123456"},
		{Path: "/dev/ttyACM2", USB: true, VID: "0451", PID: "BEF3", SerialNumber: "L4100ABC"},
		{Path: "/dev/ttyS0"},
		{Path: "/dev/ttyUSB1", USB: true, VID: "0403", PID: "6001"},
	}
	lister := func() ([]hil.PortInfo, error) { return ports, nil }
	out := filepath.Join(t.TempDir(), "hardware.yml")
	var stdout, stderr bytes.Buffer
	env := &Env{Args: []string{"--generate", out}, Stdout: &stdout, Stderr: &stderr}
	if err := boardList(env, lister); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, want := range []string{"/dev/ttyACM0", "303A:1001", "esp32", "nrf", "cc3220", "not a USB port"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	m, err := hil.LoadMap(out)
	if err != nil {
		t.Fatalf("generated map does not load: %v", err)
	}
	if len(m.Boards) != 4 {
		t.Fatalf("%d boards in the map, want 4: %+v", len(m.Boards), m.Boards)
	}
	b, err := m.Board("esp32-2")
	if err != nil || b.Location != "1-1.2" || b.Port != "" {
		t.Fatalf("board without serial number = %+v, %v", b, err)
	}
	if b, err := m.Board("nrf-1"); err != nil || b.SerialNumber != "001050123456" {
		t.Fatalf("nrf board = %+v, %v", b, err)
	}

	// Nothing recognised: a clear error, no file.
	none := filepath.Join(t.TempDir(), "none.yml")
	err = boardList(&Env{Args: []string{"--generate", none}, Stdout: &stdout, Stderr: &stderr},
		func() ([]hil.PortInfo, error) { return ports[4:5], nil })
	if err == nil || !strings.Contains(err.Error(), "no recognised board") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(none); err == nil {
		t.Fatal("map written with no board")
	}
	// The real enumerator runs (there may be no ports at all here).
	if code := Run(context.Background(), &Env{Args: []string{"board", "list"}, Stdout: &stdout, Stderr: &stderr}); code != 0 {
		t.Fatalf("board list exit %d: %s", code, stderr.String())
	}
}
