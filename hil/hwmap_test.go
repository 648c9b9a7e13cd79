package hil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goodMap = `# bench 1
- name: esp32-a
  kind: esp32
  port: /dev/ttyUSB0
  reset: D0|R1|W0.1|D1|R0|W0.5|D0
  flash: esptool.py --chip esp32 --port {port} --baud {baud} write_flash {offset} {image}
  fixtures: [wifi, nvs]
- name: nrf-1
  kind: nrf
  serial_number: "001050012345"
  location: 1-1.2
  baud: 1000000
  reset: console:kernel reboot cold
- name: cc-1
  kind: cc3220
  location: 1-1.3:1.0
  reset: power
  power: uhubctl -l 1-1 -p 3 -a cycle
- name: nrf-emu
  kind: nrf
  emulate: true
`

func TestParseMapValid(t *testing.T) {
	m, err := ParseMap([]byte(goodMap))
	if err != nil {
		t.Fatal(err)
	}
	want := []BoardSpec{
		{Name: "esp32-a", Kind: "esp32", Port: "/dev/ttyUSB0", Baud: DefaultBaud, Reset: "D0|R1|W0.1|D1|R0|W0.5|D0",
			Flash: "esptool.py --chip esp32 --port {port} --baud {baud} write_flash {offset} {image}", Fixtures: []string{"wifi", "nvs"}, Line: 2},
		{Name: "nrf-1", Kind: "nrf", SerialNumber: "001050012345", Location: "1-1.2", Baud: 1000000, Reset: "console:kernel reboot cold", Line: 8},
		{Name: "cc-1", Kind: "cc3220", Location: "1-1.3:1.0", Baud: DefaultBaud, Reset: "power", Power: "uhubctl -l 1-1 -p 3 -a cycle", Line: 14},
		{Name: "nrf-emu", Kind: "nrf", Baud: DefaultBaud, Emulate: true, Line: 19},
	}
	if !reflect.DeepEqual(m.Boards, want) {
		t.Fatalf("boards:\n%+v\nwant\n%+v", m.Boards, want)
	}
	b, err := m.Board("nrf-1")
	if err != nil || b.SerialNumber != "001050012345" {
		t.Fatalf("Board = %+v, %v", b, err)
	}
	if _, err := m.Board("nope"); !errors.Is(err, ErrUnknownBoard) || !strings.Contains(err.Error(), "esp32-a, nrf-1, cc-1, nrf-emu") {
		t.Fatalf("unknown board: %v", err)
	}
	args, err := m.Boards[0].FlashCommand("/dev/ttyUSB0", "app.bin", "0x10000")
	wantArgs := []string{"esptool.py", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "115200", "write_flash", "0x10000", "app.bin"}
	if err != nil || !reflect.DeepEqual(args, wantArgs) {
		t.Fatalf("FlashCommand = %q, %v", args, err)
	}
	if _, err := m.Boards[1].FlashCommand("p", "i", "o"); !errors.Is(err, ErrNoFlash) {
		t.Fatalf("no flash: %v", err)
	}
}

func TestParseMapEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "[]", "~"} {
		m, err := ParseMap([]byte(in))
		if err != nil || len(m.Boards) != 0 {
			t.Errorf("ParseMap(%q) = %+v, %v", in, m, err)
		}
	}
}

func TestParseMapErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  error
		board string
		field string
		line  int
	}{
		{"not a list", "name: x\n", ErrInvalidValue, "", "", 1},
		{"not yaml", "- name: [\n", ErrInvalidValue, "", "", 0},
		{"board not a mapping", "- just a string\n", ErrInvalidValue, "#1", "", 1},
		{"unknown key", "- name: a\n  kind: nrf\n  emulate: true\n  serial: x\n", ErrUnknownField, "a", "serial", 4},
		{"key set twice", "- name: a\n  kind: nrf\n  emulate: true\n  kind: esp32\n", ErrDuplicate, "a", "kind", 4},
		{"missing name", "- kind: nrf\n  emulate: true\n", ErrMissingField, "#1", "name", 1},
		{"bad name", "- name: a b\n  kind: nrf\n  emulate: true\n", ErrInvalidValue, "a b", "name", 1},
		{"duplicate names", "- name: a\n  kind: nrf\n  emulate: true\n- name: a\n  kind: esp32\n  emulate: true\n", ErrDuplicate, "a", "name", 4},
		{"missing kind", "- name: a\n  emulate: true\n", ErrMissingField, "a", "kind", 1},
		{"misspelt kind", "- name: a\n  kind: STM 32\n  emulate: true\n", ErrInvalidValue, "a", "kind", 2},
		{"no identity", "- name: a\n  kind: nrf\n", ErrMissingField, "a", "port", 1},
		{"port and serial", "- name: a\n  kind: nrf\n  port: /dev/ttyACM0\n  serial_number: X\n", ErrConflict, "a", "port", 3},
		{"bad location", "- name: a\n  kind: nrf\n  location: usb1\n", ErrInvalidValue, "a", "location", 3},
		{"empty port", "- name: a\n  kind: nrf\n  port: ''\n  emulate: true\n", ErrInvalidValue, "a", "port", 3},
		{"baud as string", "- name: a\n  kind: nrf\n  emulate: true\n  baud: '9600'\n", ErrInvalidValue, "a", "baud", 4},
		{"baud zero", "- name: a\n  kind: nrf\n  emulate: true\n  baud: 0\n", ErrInvalidValue, "a", "baud", 4},
		{"baud negative", "- name: a\n  kind: nrf\n  emulate: true\n  baud: -5\n", ErrInvalidValue, "a", "baud", 4},
		{"emulate yes", "- name: a\n  kind: nrf\n  emulate: yes\n", ErrInvalidValue, "a", "emulate", 3},
		{"bad reset step", "- name: a\n  kind: esp32\n  port: /dev/x\n  reset: D0|X1\n", ErrInvalidValue, "a", "reset", 4},
		{"reset in milliseconds", "- name: a\n  kind: esp32\n  port: /dev/x\n  reset: D0|R1|W100|R0\n", ErrInvalidValue, "a", "reset", 4},
		{"console without command", "- name: a\n  kind: nrf\n  port: /dev/x\n  reset: 'console:'\n", ErrInvalidValue, "a", "reset", 4},
		{"power reset without power", "- name: a\n  kind: nrf\n  port: /dev/x\n  reset: power\n", ErrMissingField, "a", "reset", 4},
		{"flash placeholder", "- name: a\n  kind: esp32\n  port: /dev/x\n  flash: esptool.py write_flash {addr} {image}\n", ErrInvalidValue, "a", "flash", 4},
		{"flash braces", "- name: a\n  kind: esp32\n  port: /dev/x\n  flash: esptool.py {image\n", ErrInvalidValue, "a", "flash", 4},
		{"fixtures not a list", "- name: a\n  kind: nrf\n  emulate: true\n  fixtures: wifi\n", ErrInvalidValue, "a", "fixtures", 4},
		{"fixture twice", "- name: a\n  kind: nrf\n  emulate: true\n  fixtures: [x, x]\n", ErrDuplicate, "a", "fixtures", 4},
		{"name not a string", "- name: [a]\n  kind: nrf\n  emulate: true\n", ErrInvalidValue, "#1", "name", 1},
		{"host unknown key", "- name: a\n  kind: linux\n  exec: fw\n  environment: {A: b}\n", ErrUnknownField, "a", "environment", 4},
		{"exec and port", "- name: a\n  kind: linux\n  port: /dev/x\n  exec: fw\n", ErrConflict, "a", "exec", 4},
		{"exec and emulate", "- name: a\n  kind: linux\n  emulate: true\n  exec: fw\n", ErrConflict, "a", "exec", 4},
		{"env without exec", "- name: a\n  kind: nrf\n  emulate: true\n  env: {A: b}\n", ErrConflict, "a", "env", 4},
		{"env placeholder", "- name: a\n  kind: linux\n  exec: fw\n  env: {A: '{password}'}\n", ErrInvalidValue, "a", "env", 4},
		{"env name", "- name: a\n  kind: linux\n  exec: fw\n  env: {A-B: x}\n", ErrInvalidValue, "a", "env", 4},
		{"env not a mapping", "- name: a\n  kind: linux\n  exec: fw\n  env: [A=b]\n", ErrInvalidValue, "a", "env", 4},
		{"args placeholder", "- name: a\n  kind: linux\n  exec: fw\n  args: ['--psk={pks}']\n", ErrInvalidValue, "a", "args", 4},
		{"files outside", "- name: a\n  kind: linux\n  exec: fw\n  files: {../x: '{cert}'}\n", ErrInvalidValue, "a", "files", 4},
		{"files template", "- name: a\n  kind: linux\n  exec: fw\n  files: {x: 'key {key}'}\n", ErrInvalidValue, "a", "files", 4},
		{"volatile absolute", "- name: a\n  kind: linux\n  exec: fw\n  volatile: [/tmp]\n", ErrInvalidValue, "a", "volatile", 4},
		{"online regexp", "- name: a\n  kind: linux\n  exec: fw\n  online: '('\n", ErrInvalidValue, "a", "online", 4},
		{"host reset", "- name: a\n  kind: linux\n  exec: fw\n  reset: 'console:reboot'\n", ErrConflict, "a", "reset", 4},
		{"stop grace", "- name: a\n  kind: linux\n  exec: fw\n  stop_grace: 2\n", ErrInvalidValue, "a", "stop_grace", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMap([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidMap) || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("no *FieldError in %v", err)
			}
			if fe.Board != tt.board || fe.Field != tt.field || fe.Line != tt.line {
				t.Fatalf("first error at board %q field %q line %d, want %q %q %d: %v",
					fe.Board, fe.Field, fe.Line, tt.board, tt.field, tt.line, err)
			}
		})
	}
}

func TestParseMapHostBoard(t *testing.T) {
	in := `- name: fw
  kind: linux
  exec: build/fw
  args: [--id, "{psk_id}"]
  env: {GOLIOTH_PSK_ID: "{psk_id}", GOLIOTH_PSK: "{psk}", PORT: 5684}
  files: {certs/client.crt.pem: "{cert}"}
  workdir: state
  volatile: [ram, tmp/x]
  online: connected$
  stop_grace: 500ms
`
	m, err := ParseMap([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := BoardSpec{Name: "fw", Kind: "linux", Baud: DefaultBaud, Exec: "build/fw", Args: []string{"--id", "{psk_id}"},
		Env:   map[string]string{"GOLIOTH_PSK_ID": "{psk_id}", "GOLIOTH_PSK": "{psk}", "PORT": "5684"},
		Files: map[string]string{"certs/client.crt.pem": "{cert}"}, Workdir: "state", Volatile: []string{"ram", "tmp/x"},
		Online: "connected$", StopGrace: "500ms", Line: 1}
	if !reflect.DeepEqual(m.Boards[0], want) {
		t.Fatalf("board:\n%+v\nwant\n%+v", m.Boards[0], want)
	}
	if d := m.Boards[0].StopGraceDuration(time.Second); d != 500*time.Millisecond {
		t.Fatalf("stop grace %v", d)
	}
	var buf bytes.Buffer
	if err := WriteMap(&buf, m); err != nil {
		t.Fatal(err)
	}
	back, err := ParseMap(buf.Bytes())
	if err != nil || !reflect.DeepEqual(back.Boards[0].Env, want.Env) || back.Boards[0].StopGrace != "500ms" {
		t.Fatalf("round trip: %+v, %v\n%s", back, err, buf.String())
	}
}

func TestParseMapReportsEverything(t *testing.T) {
	in := "- name: a\n  kind: PIC\n  port: /dev/x\n  colour: red\n- name: a\n  kind: nrf\n"
	_, err := ParseMap([]byte(in))
	msg := err.Error()
	for _, want := range []string{
		"hardware map line 2: board a: kind: invalid value",
		"hardware map line 4: board a: colour: unknown field",
		"hardware map line 5: board a: name: duplicate: two boards are called \"a\" (first at line 1)",
		"hardware map line 5: board a: port: missing field",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in\n%s", want, msg)
		}
	}
	if got := strings.Count(msg, "\n") + 1; got != 4 {
		t.Errorf("%d errors, want 4:\n%s", got, msg)
	}
}

func TestLoadMap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "map.yml")
	if err := os.WriteFile(path, []byte("- name: a\n  kind: nrf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadMap(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":1: board a: port:") {
		t.Fatalf("err = %v", err)
	}
	if err := os.WriteFile(path, []byte(goodMap), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err := LoadMap(path); err != nil || len(m.Boards) != 4 {
		t.Fatalf("LoadMap = %v, %v", m, err)
	}
	if _, err := LoadMap(filepath.Join(dir, "missing.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteMap(t *testing.T) {
	m, err := ParseMap([]byte(goodMap))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteMap(&buf, m); err != nil {
		t.Fatal(err)
	}
	back, err := ParseMap(buf.Bytes())
	if err != nil {
		t.Fatalf("reparse: %v\n%s", err, buf.String())
	}
	for i := range back.Boards {
		back.Boards[i].Line, m.Boards[i].Line = 0, 0
	}
	if !reflect.DeepEqual(back.Boards, m.Boards) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", back.Boards, m.Boards)
	}
	// A board built in code gets the default baud; an invalid map is
	// not written.
	buf.Reset()
	if err := WriteMap(&buf, &Map{Boards: []BoardSpec{{Name: "e", Kind: "esp32", Emulate: true}}}); err != nil {
		t.Fatal(err)
	}
	if want := "- name: e\n  kind: esp32\n  baud: 115200\n  emulate: true\n"; buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
	err = WriteMap(&buf, &Map{Boards: []BoardSpec{{Name: "e", Kind: "ESP 32", Emulate: true}}})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "kind" || fe.Error() != `hardware map: board e: kind: invalid value: "ESP 32" (a kind is lower-case letters and digits, such as esp32)` {
		t.Fatalf("invalid map: %v", err)
	}
	buf.Reset()
	if err := WriteMap(&buf, &Map{}); err != nil || buf.String() != "[]\n" {
		t.Fatalf("empty map: %q, %v", buf.String(), err)
	}
}

func TestResetPlan(t *testing.T) {
	hard, _ := ParseResetSequence(HardReset)
	tests := []struct {
		b    BoardSpec
		want Reset
	}{
		{BoardSpec{Kind: "esp32", Reset: HardReset}, Reset{Method: ResetLines, Steps: hard}},
		{BoardSpec{Kind: "nrf"}, Reset{}}, // the kind's default is boards.LoadMap's business
		{BoardSpec{Kind: "cc3220", Power: "relay off-on", Reset: "power"}, Reset{Method: ResetPower}},
		{BoardSpec{Kind: "nrf", Reset: "console: reboot"}, Reset{Method: ResetConsole, Command: "reboot"}},
		{BoardSpec{Kind: "esp32", Reset: "R1|R0"}, Reset{Method: ResetLines, Steps: []Step{{Kind: StepRTS, RTS: true}, {Kind: StepRTS}}}},
	}
	for _, tt := range tests {
		got, err := tt.b.ResetPlan()
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.ResetPlan() = %+v, %v; want %+v", tt.b, got, err, tt.want)
		}
	}
}
