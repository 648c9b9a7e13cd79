package all_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/credloop/credloop/boards"
	_ "github.com/credloop/credloop/boards/all"
	"github.com/credloop/credloop/hil"
)

func TestKindsRegistered(t *testing.T) {
	if got := boards.KindList(); got != "cc3220, esp32, linux, nrf" {
		t.Fatalf("kinds = %s", got)
	}
	for _, k := range boards.Kinds() {
		if k.Launch != nil {
			// A host board: a process, not a USB serial port.
			if k.Open == nil || k.Summary == "" || k.Emulate != nil || len(k.USB) != 0 {
				t.Errorf("kind %s is incomplete: %+v", k.Name, k)
			}
			continue
		}
		if k.Open == nil || k.Emulate == nil || k.Summary == "" || len(k.USB) == 0 {
			t.Errorf("kind %s is incomplete: %+v", k.Name, k)
		}
	}
}

func TestGuessKind(t *testing.T) {
	tests := []struct{ vid, pid, kind string }{
		{"303A", "1001", "esp32"},
		{"303a", "0002", "esp32"},
		{"10C4", "EA60", "esp32"},
		{"0x10c4", "0xea60", "esp32"},
		{"10C4", "EA70", ""}, // CP2105: not in the table
		{"1A86", "7523", "esp32"},
		{"1366", "1015", "nrf"},
		{"1366", "0105", "nrf"},
		{"451", "bef3", "cc3220"},
		{"0451", "BEF4", ""},
		{"0403", "6001", ""},
		{"zz", "1", ""},
		{"", "", ""},
		{"12345", "1", ""},
	}
	for _, tt := range tests {
		kind, why := boards.GuessKind(tt.vid, tt.pid)
		if kind != tt.kind || why == "" {
			t.Errorf("GuessKind(%q, %q) = %q, %q; want %q", tt.vid, tt.pid, kind, why, tt.kind)
		}
	}
	if _, why := boards.GuessKind("1366", "1015"); !strings.Contains(why, "J-Link") {
		t.Errorf("why = %q", why)
	}
	if _, why := boards.GuessKind("303A", "1001"); !strings.Contains(why, "USB-Serial/JTAG") {
		t.Errorf("an exact product match loses to the vendor's: %q", why)
	}
}

// Each kind's default reset, as the Golioth HIL and esptool do it.
func TestLoadMapDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hardware.yml")
	yml := `- name: esp
  kind: esp32
  port: /dev/ttyUSB0
- name: nrf
  kind: nrf
  port: /dev/ttyACM0
- name: cc
  kind: cc3220
  port: /dev/ttyACM1
- name: cc-power
  kind: cc3220
  port: /dev/ttyACM2
  power: relay off-on
- name: nrf-own
  kind: nrf
  port: /dev/ttyACM3
  reset: "console:reboot"
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := boards.LoadMap(path)
	if err != nil {
		t.Fatal(err)
	}
	hard, _ := hil.ParseResetSequence(hil.HardReset)
	want := map[string]hil.Reset{
		"esp":      {Method: hil.ResetLines, Steps: hard},
		"nrf":      {Method: hil.ResetConsole, Command: "kernel reboot cold"},
		"cc":       {},
		"cc-power": {Method: hil.ResetPower},
		"nrf-own":  {Method: hil.ResetConsole, Command: "reboot"},
	}
	for _, b := range m.Boards {
		got, err := b.ResetPlan()
		if err != nil || !reflect.DeepEqual(got, want[b.Name]) {
			t.Errorf("%s: reset %+v, %v; want %+v", b.Name, got, err, want[b.Name])
		}
	}
}

func TestLoadMapUnknownKind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hardware.yml")
	if err := os.WriteFile(path, []byte("- name: a\n  kind: nrf\n  emulate: true\n- name: b\n  kind: stm32\n  emulate: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := boards.LoadMap(path)
	var fe *hil.FieldError
	if !errors.Is(err, hil.ErrInvalidMap) || !errors.As(err, &fe) || fe.Board != "b" || fe.Field != "kind" || fe.Line != 4 || fe.File != path {
		t.Fatalf("err = %v (%+v)", err, fe)
	}
	if want := `kind: invalid value: "stm32" (want cc3220, esp32, linux, nrf)`; !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to say %s", err, want)
	}
}

// A linux board needs exec, and only a linux board takes it; a relative
// exec or workdir is the map file's.
func TestLoadMapHostBoards(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hardware.yml")
	yml := `- name: fw
  kind: linux
  exec: build/fw
  args: [--verbose]
  env:
    GOLIOTH_PSK_ID: "{psk_id}"
    GOLIOTH_PSK: "{psk}"
  files:
    certs/client.crt.pem: "{cert}"
  workdir: state
  volatile: [ram]
  online: connected
  stop_grace: 500ms
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := boards.LoadMap(path)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Boards[0]
	if b.Exec != filepath.Join(dir, "build/fw") || b.Workdir != filepath.Join(dir, "state") || b.Env["GOLIOTH_PSK"] != "{psk}" ||
		b.Files["certs/client.crt.pem"] != "{cert}" || b.Online != "connected" || b.StopGraceDuration(0).String() != "500ms" {
		t.Fatalf("board = %+v", b)
	}
	bad := []struct{ yml, field string }{
		{"- name: a\n  kind: linux\n  emulate: true\n", "exec"},
		{"- name: a\n  kind: esp32\n  exec: /bin/true\n", "exec"},
	}
	for _, tt := range bad {
		if err := os.WriteFile(path, []byte(tt.yml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := boards.LoadMap(path)
		var fe *hil.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || fe.Board != "a" || fe.Line != 1 {
			t.Errorf("%q: err = %v", tt.yml, err)
		}
	}
}
