// Package hil is the hardware-in-the-loop layer: the hardware map of a test
// bench, serial ports that survive re-enumeration, the pseudo-terminals
// emulated boards sit behind, consoles with expect and per-board logs,
// secret redaction, and reset sequences. It knows kinds of board only by
// name; package boards knows what they are.
package hil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultBaud is the console speed when a board does not set one.
const DefaultBaud = 115200

// Hardware map errors. A *FieldError wraps one of the specific ones and
// matches ErrInvalidMap.
var (
	ErrInvalidMap   = errors.New("hil: invalid hardware map")
	ErrUnknownField = errors.New("unknown field")
	ErrMissingField = errors.New("missing field")
	ErrInvalidValue = errors.New("invalid value")
	ErrDuplicate    = errors.New("duplicate")
	ErrConflict     = errors.New("conflicting fields")
	ErrUnknownBoard = errors.New("hil: no such board")
	ErrNoFlash      = errors.New("hil: board has no flash command")
)

// BoardSpec is one entry of the hardware map, in the spirit of Zephyr
// Twister's map.yml: where a board of the test bench is and how to reset,
// power-cycle and flash it. It describes a board; package boards opens
// one. A real board is found by its port, or by the USB identity of its
// adapter (serial_number and/or location), which survives re-enumeration;
// an emulated board needs neither.
type BoardSpec struct {
	Name string `yaml:"name"`
	// Kind names the board's kind ("esp32", "nrf", ...). The map checks
	// only its spelling; package boards knows the kinds (boards.LoadMap).
	Kind string `yaml:"kind"`
	// Port is the device path, such as /dev/ttyUSB0.
	Port string `yaml:"port,omitempty"`
	// SerialNumber is the USB adapter's serial number string.
	SerialNumber string `yaml:"serial_number,omitempty"`
	// Location is the USB bus path, such as 1-1.2 (pytest-embedded's
	// --port-location).
	Location string `yaml:"location,omitempty"`
	// Baud is the console speed; DefaultBaud when not set.
	Baud int `yaml:"baud,omitempty"`
	// Reset is an esptool-style DTR/RTS sequence, "console:<command>" or
	// "power"; empty means none, unless the board's kind gives a default
	// (boards.LoadMap fills it in).
	Reset string `yaml:"reset,omitempty"`
	// Power is a command that power-cycles the board, e.g.
	// "uhubctl -l 1-1 -p 2 -a cycle".
	Power string `yaml:"power,omitempty"`
	// Flash is a command template with {port}, {image}, {offset} and
	// {baud} placeholders, e.g. "esptool.py --port {port} write_flash
	// {offset} {image}".
	Flash    string   `yaml:"flash,omitempty"`
	Fixtures []string `yaml:"fixtures,omitempty"`
	// Emulate runs the board's emulator on a pseudo-terminal instead of
	// real hardware.
	Emulate bool `yaml:"emulate,omitempty"`

	// A host board is firmware built for this machine and run as a
	// process (kind linux), as Golioth's HIL suite runs its Linux port
	// and Twister runs native_sim executables: it has Exec instead of a
	// port. Its fields below are refused on other boards.

	// Exec is the firmware's executable.
	Exec string `yaml:"exec,omitempty"`
	// Args are its arguments; they may name the placeholders of
	// HostPlaceholders.
	Args []string `yaml:"args,omitempty"`
	// Env adds environment variables; values may name the placeholders
	// of HostPlaceholders ({psk} the key's bytes, {psk_id} the identity,
	// {cert}, {key} and {ca} the paths of PEM files).
	Env map[string]string `yaml:"env,omitempty"`
	// Files maps paths relative to Workdir to a placeholder whose
	// content the file gets at each start ({cert}, {key}, {ca}: PEM;
	// {psk}: the key's bytes; {psk_id}: the identity).
	Files map[string]string `yaml:"files,omitempty"`
	// Workdir is the process's working directory, kept across resets
	// (its files are the board's flash).
	Workdir string `yaml:"workdir,omitempty"`
	// Volatile lists paths relative to Workdir that a power cycle
	// removes.
	Volatile []string `yaml:"volatile,omitempty"`
	// Online is a regular expression for the console line that says
	// the firmware is connected.
	Online string `yaml:"online,omitempty"`
	// StopGrace is how long a stop waits after SIGTERM before SIGKILL,
	// a Go duration ("2s").
	StopGrace string `yaml:"stop_grace,omitempty"`

	// Line is where the board starts in the file it was parsed from (0
	// if it was not).
	Line int `yaml:"-"`
}

// ResetPlan returns how to reset the board, from its Reset setting; a
// zero Reset when it has none.
func (b BoardSpec) ResetPlan() (Reset, error) {
	if b.Reset == "" {
		return Reset{}, nil
	}
	return ParseReset(b.Reset)
}

// HostPlaceholders are what a host board's args, env and files may
// name; they are filled from the board's credentials at each start.
var HostPlaceholders = []string{"{psk}", "{psk_id}", "{cert}", "{key}", "{ca}"}

// hostFields are the fields only a host board (exec) takes.
var hostFields = []string{"args", "env", "files", "workdir", "volatile", "online", "stop_grace"}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

var flashVars = []string{"{port}", "{image}", "{offset}", "{baud}"}

// FlashCommand expands the board's flash template into an argument list:
// the template is split at spaces (there is no quoting) and {port},
// {image}, {offset} and {baud} are replaced in each argument.
func (b BoardSpec) FlashCommand(port, image, offset string) ([]string, error) {
	if strings.TrimSpace(b.Flash) == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoFlash, b.Name)
	}
	if err := checkTemplate(b.Flash); err != nil {
		return nil, fmt.Errorf("board %s: flash: %w", b.Name, err)
	}
	baud := b.Baud
	if baud == 0 {
		baud = DefaultBaud
	}
	r := strings.NewReplacer("{port}", port, "{image}", image, "{offset}", offset, "{baud}", strconv.Itoa(baud))
	args := strings.Fields(b.Flash)
	for i, a := range args {
		args[i] = r.Replace(a)
	}
	return args, nil
}

func checkTemplate(s string) error { return checkPlaceholders(s, flashVars) }

func checkPlaceholders(s string, vars []string) error {
	for _, m := range placeholder.FindAllString(s, -1) {
		if !slices.Contains(vars, m) {
			return fmt.Errorf("%w: unknown placeholder %s (want %s)", ErrInvalidValue, m, strings.Join(vars, " "))
		}
	}
	if rest := placeholder.ReplaceAllString(s, ""); strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("%w: unbalanced { or }", ErrInvalidValue)
	}
	return nil
}

// Map is a hardware map: the boards of one test bench.
type Map struct {
	Boards []BoardSpec
}

// Board returns the board called name.
func (m *Map) Board(name string) (BoardSpec, error) {
	names := make([]string, 0, len(m.Boards))
	for _, b := range m.Boards {
		if b.Name == name {
			return b, nil
		}
		names = append(names, b.Name)
	}
	if len(names) == 0 {
		return BoardSpec{}, fmt.Errorf("%w %q: the hardware map is empty", ErrUnknownBoard, name)
	}
	return BoardSpec{}, fmt.Errorf("%w %q (the map has %s)", ErrUnknownBoard, name, strings.Join(names, ", "))
}

// FieldError is one problem in a hardware map.
type FieldError struct {
	File  string // set by LoadMap
	Line  int    // 0 when unknown
	Board string // the board's name, or "#n" (its position) without one
	Field string // "" for the board or the whole map
	Err   error  // wraps ErrUnknownField, ErrMissingField, ...
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "hardware map line %d: ", e.Line)
	default:
		b.WriteString("hardware map: ")
	}
	if e.Board != "" {
		fmt.Fprintf(&b, "board %s: ", e.Board)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match ErrInvalidMap.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidMap }

// LoadMap reads and validates a hardware map file.
func LoadMap(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hil: hardware map: %w", err)
	}
	m, err := ParseMap(data)
	if err != nil {
		setFile(err, path)
		return nil, err
	}
	return m, nil
}

func setFile(err error, path string) {
	var fe *FieldError
	if errors.As(err, &fe) {
		fe.File = path
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			setFile(e, path)
		}
	}
}

// ParseMap parses and validates a hardware map: a YAML list of boards.
// Every problem found is reported, each as a *FieldError naming the board,
// the field and the line, joined with errors.Join.
func ParseMap(data []byte) (*Map, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &FieldError{Err: fmt.Errorf("%w: %w", ErrInvalidValue, err)}
	}
	m := &Map{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return m, nil // empty file: no boards
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return m, nil
	}
	if root.Kind != yaml.SequenceNode {
		return nil, &FieldError{Line: root.Line, Err: fmt.Errorf("%w: a hardware map is a list of boards (- name: ...)", ErrInvalidValue)}
	}
	var errs []error
	lines := make([]map[string]int, 0, len(root.Content))
	for i, n := range root.Content {
		b, l, berrs := parseBoard(deref(n), i+1)
		errs = append(errs, berrs...)
		m.Boards = append(m.Boards, b)
		lines = append(lines, l)
	}
	errs = append(errs, validate(m.Boards, lines)...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
		return nil, errors.Join(errs...)
	}
	return m, nil
}

func lineOf(err error) int {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Line
	}
	return 0
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

var boardFields = []string{"name", "kind", "port", "serial_number", "location", "baud", "reset", "power", "flash", "fixtures", "emulate",
	"exec", "args", "env", "files", "workdir", "volatile", "online", "stop_grace"}

// parseBoard reads one board's fields; lines maps each field present (and
// "" for the board itself) to its line, and "!field" marks a field that
// could not be read.
func parseBoard(n *yaml.Node, pos int) (BoardSpec, map[string]int, []error) {
	b := BoardSpec{Line: n.Line}
	lines := map[string]int{"": n.Line}
	label := "#" + strconv.Itoa(pos)
	if n.Kind != yaml.MappingNode {
		return b, lines, []error{&FieldError{Line: n.Line, Board: label, Err: fmt.Errorf("%w: a board is a mapping of fields", ErrInvalidValue)}}
	}
	// The name first, so that other errors can use it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			if v := deref(n.Content[i+1]); v.Kind == yaml.ScalarNode && v.Value != "" {
				label = v.Value
			}
		}
	}
	var errs []error
	fail := func(line int, field string, err error) {
		errs = append(errs, &FieldError{Line: line, Board: label, Field: field, Err: err})
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		key := k.Value
		if prev, dup := lines[key]; dup && key != "" {
			fail(k.Line, key, fmt.Errorf("%w: set twice (first at line %d)", ErrDuplicate, prev))
			continue
		}
		if !slices.Contains(boardFields, key) {
			fail(k.Line, key, fmt.Errorf("%w (known: %s)", ErrUnknownField, strings.Join(boardFields, ", ")))
			continue
		}
		lines[key] = v.Line
		var err error
		switch key {
		case "name":
			b.Name, err = scalarString(v)
		case "kind":
			b.Kind, err = scalarString(v)
		case "port":
			b.Port, err = scalarString(v)
		case "serial_number":
			b.SerialNumber, err = scalarString(v)
		case "location":
			b.Location, err = scalarString(v)
		case "reset":
			b.Reset, err = scalarString(v)
		case "power":
			b.Power, err = scalarString(v)
		case "flash":
			b.Flash, err = scalarString(v)
		case "baud":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
				err = fmt.Errorf("%w: want a whole number, not %q", ErrInvalidValue, v.Value)
			} else if err = v.Decode(&b.Baud); err != nil {
				err = fmt.Errorf("%w: %w", ErrInvalidValue, err)
			}
		case "emulate":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				err = fmt.Errorf("%w: want true or false, not %q", ErrInvalidValue, v.Value)
			} else if err = v.Decode(&b.Emulate); err != nil {
				err = fmt.Errorf("%w: %w", ErrInvalidValue, err)
			}
		case "fixtures":
			b.Fixtures, err = stringList(v)
		case "exec":
			b.Exec, err = scalarString(v)
		case "args":
			b.Args, err = stringList(v)
		case "env":
			b.Env, err = stringMap(v)
		case "files":
			b.Files, err = stringMap(v)
		case "workdir":
			b.Workdir, err = scalarString(v)
		case "volatile":
			b.Volatile, err = stringList(v)
		case "online":
			b.Online, err = scalarString(v)
		case "stop_grace":
			b.StopGrace, err = scalarString(v)
		}
		if err != nil {
			fail(v.Line, key, err)
			lines["!"+key] = v.Line // validate skips it
		}
	}
	return b, lines, errs
}

func scalarString(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", fmt.Errorf("%w: want a string", ErrInvalidValue)
	}
	return v.Value, nil
}

func stringList(v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%w: want a list of strings", ErrInvalidValue)
	}
	if len(v.Content) == 0 {
		return nil, nil // "fixtures: []" is the same as no fixtures
	}
	out := make([]string, 0, len(v.Content))
	for _, e := range v.Content {
		s, err := scalarString(deref(e))
		if err != nil {
			return nil, fmt.Errorf("%w: want a list of strings", ErrInvalidValue)
		}
		out = append(out, s)
	}
	return out, nil
}

// stringMap reads a mapping of strings to strings; a value may be any
// scalar (env: {PORT: 5684} is "5684").
func stringMap(v *yaml.Node) (map[string]string, error) {
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: want a mapping of names to strings", ErrInvalidValue)
	}
	if len(v.Content) == 0 {
		return nil, nil // "env: {}" is the same as no env
	}
	out := make(map[string]string, len(v.Content)/2)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		if k.Kind != yaml.ScalarNode || val.Kind != yaml.ScalarNode || val.Tag == "!!null" {
			return nil, fmt.Errorf("%w: want a mapping of names to strings", ErrInvalidValue)
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("%w: %q set twice", ErrDuplicate, k.Value)
		}
		out[k.Value] = val.Value
	}
	return out, nil
}

var (
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	kindRE     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	locationRE = regexp.MustCompile(`^[0-9]+-[0-9]+(\.[0-9]+)*(:[0-9]+\.[0-9]+)?$`)
)

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// validate checks the boards and fills in defaults. lines[i] gives the
// line of each field of board i (may be nil).
func validate(boards []BoardSpec, lines []map[string]int) []error {
	var errs []error
	seen := map[string]int{} // name -> index
	for i := range boards {
		b := &boards[i]
		var l map[string]int
		if i < len(lines) {
			l = lines[i]
		}
		line := func(field string) int {
			if n, ok := l[field]; ok {
				return n
			}
			return l[""]
		}
		label := b.Name
		if label == "" {
			label = "#" + strconv.Itoa(i+1)
		}
		// Fields that failed to parse are reported already.
		bad := map[string]bool{}
		for k := range l {
			if f, ok := strings.CutPrefix(k, "!"); ok {
				bad[f] = true
			}
		}
		fail := func(field string, err error) {
			if !bad[field] {
				errs = append(errs, &FieldError{Line: line(field), Board: label, Field: field, Err: err})
			}
		}
		_, has := l["name"]
		switch {
		case b.Name == "" && !has:
			fail("name", ErrMissingField)
		case !nameRE.MatchString(b.Name):
			fail("name", fmt.Errorf("%w: %q: use letters, digits, '.', '_' and '-' (up to 64)", ErrInvalidValue, b.Name))
		default:
			if j, dup := seen[b.Name]; dup {
				first := ""
				if n := lineOfBoard(lines, j); n > 0 {
					first = fmt.Sprintf(" (first at line %d)", n)
				}
				fail("name", fmt.Errorf("%w: two boards are called %q%s", ErrDuplicate, b.Name, first))
			} else {
				seen[b.Name] = i
			}
		}
		switch _, has := l["kind"]; {
		case b.Kind == "" && !has:
			fail("kind", fmt.Errorf("%w (such as esp32 or nrf)", ErrMissingField))
		case !kindRE.MatchString(b.Kind):
			fail("kind", fmt.Errorf("%w: %q (a kind is lower-case letters and digits, such as esp32)", ErrInvalidValue, b.Kind))
		}
		strs := []struct{ field, v string }{
			{"port", b.Port}, {"serial_number", b.SerialNumber}, {"location", b.Location},
			{"reset", b.Reset}, {"power", b.Power}, {"flash", b.Flash},
		}
		for _, f := range strs {
			field, v := f.field, f.v
			if bad[field] {
				continue
			}
			if _, has := l[field]; (has || v != "") && strings.TrimSpace(v) == "" {
				fail(field, fmt.Errorf("%w: empty", ErrInvalidValue))
			} else if hasControl(v) {
				fail(field, fmt.Errorf("%w: control characters", ErrInvalidValue))
			}
		}
		usb := b.SerialNumber != "" || b.Location != ""
		switch {
		case b.Port != "" && usb:
			fail("port", fmt.Errorf("%w: give port or serial_number/location, not both", ErrConflict))
		case b.Exec != "" && (b.Port != "" || usb):
			fail("exec", fmt.Errorf("%w: a host board (exec) has no port, serial_number or location", ErrConflict))
		case b.Exec != "" && b.Emulate:
			fail("exec", fmt.Errorf("%w: a host board (exec) runs its own firmware: no emulate", ErrConflict))
		case b.Port == "" && !usb && !b.Emulate && !bad["emulate"] && b.Exec == "" && !bad["exec"]:
			fail("port", fmt.Errorf("%w: a real board needs port, serial_number or location (or emulate: true, or exec for firmware run on this host)", ErrMissingField))
		}
		validateHost(b, l, fail)
		if b.Location != "" && !locationRE.MatchString(b.Location) {
			fail("location", fmt.Errorf("%w: %q is not a USB bus path such as 1-1.2", ErrInvalidValue, b.Location))
		}
		_, hasBaud := l["baud"]
		switch {
		case b.Baud == 0 && !hasBaud:
			b.Baud = DefaultBaud
		case b.Baud <= 0 || b.Baud > 20_000_000:
			fail("baud", fmt.Errorf("%w: %d", ErrInvalidValue, b.Baud))
		}
		if r, err := ParseReset(b.Reset); err != nil {
			fail("reset", fmt.Errorf("%w: %w", ErrInvalidValue, err))
		} else if r.Method == ResetPower && strings.TrimSpace(b.Power) == "" {
			fail("reset", fmt.Errorf("%w: reset: power needs a power command", ErrMissingField))
		}
		if b.Flash != "" {
			if err := checkTemplate(b.Flash); err != nil {
				fail("flash", err)
			}
		}
		fixtures := map[string]bool{}
		for _, f := range b.Fixtures {
			switch {
			case strings.TrimSpace(f) == "" || hasControl(f):
				fail("fixtures", fmt.Errorf("%w: empty fixture", ErrInvalidValue))
			case fixtures[f]:
				fail("fixtures", fmt.Errorf("%w: fixture %q listed twice", ErrDuplicate, f))
			}
			fixtures[f] = true
		}
	}
	return errs
}

// validateHost checks a host board's fields (and that no other board has
// them).
func validateHost(b *BoardSpec, l map[string]int, fail func(string, error)) {
	if b.Exec == "" {
		for _, f := range hostFields {
			if _, has := l[f]; has || hostFieldSet(b, f) {
				fail(f, fmt.Errorf("%w: only a host board (exec) takes %s", ErrConflict, f))
			}
		}
		return
	}
	for _, f := range []struct{ field, v string }{{"reset", b.Reset}, {"power", b.Power}, {"flash", b.Flash}} {
		if f.v != "" {
			fail(f.field, fmt.Errorf("%w: a host board (exec) is reset, powered and flashed by its process and working directory", ErrConflict))
		}
	}
	if strings.TrimSpace(b.Exec) != b.Exec || hasControl(b.Exec) {
		fail("exec", fmt.Errorf("%w: %q: a path without surrounding spaces or control characters", ErrInvalidValue, b.Exec))
	}
	for _, a := range b.Args {
		if strings.ContainsRune(a, 0) {
			fail("args", fmt.Errorf("%w: a NUL byte", ErrInvalidValue))
		} else if err := checkPlaceholders(a, HostPlaceholders); err != nil {
			fail("args", err)
		}
	}
	for _, k := range sortedKeys(b.Env) {
		v := b.Env[k]
		switch {
		case !envNameRE.MatchString(k):
			fail("env", fmt.Errorf("%w: %q is not a variable name", ErrInvalidValue, k))
		case strings.ContainsRune(v, 0):
			fail("env", fmt.Errorf("%w: %s: a NUL byte", ErrInvalidValue, k))
		default:
			if err := checkPlaceholders(v, HostPlaceholders); err != nil {
				fail("env", fmt.Errorf("%s: %w", k, err))
			}
		}
	}
	for _, p := range sortedKeys(b.Files) {
		if err := checkRelPath(p); err != nil {
			fail("files", err)
		} else if !slices.Contains(HostPlaceholders, b.Files[p]) {
			fail("files", fmt.Errorf("%w: %s: %q is not one placeholder (want one of %s)", ErrInvalidValue, p, b.Files[p], strings.Join(HostPlaceholders, " ")))
		}
	}
	if _, has := l["workdir"]; has && strings.TrimSpace(b.Workdir) == "" || hasControl(b.Workdir) {
		fail("workdir", fmt.Errorf("%w: empty or control characters", ErrInvalidValue))
	}
	for _, p := range b.Volatile {
		if err := checkRelPath(p); err != nil {
			fail("volatile", err)
		}
	}
	if b.Online != "" {
		if _, err := regexp.Compile(b.Online); err != nil {
			fail("online", fmt.Errorf("%w: %w", ErrInvalidValue, err))
		}
	}
	if _, has := l["stop_grace"]; has || b.StopGrace != "" {
		if d, err := time.ParseDuration(b.StopGrace); err != nil || d <= 0 {
			fail("stop_grace", fmt.Errorf("%w: %q: want a positive duration such as 2s", ErrInvalidValue, b.StopGrace))
		}
	}
}

func hostFieldSet(b *BoardSpec, field string) bool {
	switch field {
	case "args":
		return len(b.Args) > 0
	case "env":
		return len(b.Env) > 0
	case "files":
		return len(b.Files) > 0
	case "workdir":
		return b.Workdir != ""
	case "volatile":
		return len(b.Volatile) > 0
	case "online":
		return b.Online != ""
	case "stop_grace":
		return b.StopGrace != ""
	}
	return false
}

// checkRelPath accepts a path inside the working directory: relative,
// without "..".
func checkRelPath(p string) error {
	clean := filepath.Clean(p)
	if p == "" || filepath.IsAbs(p) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || hasControl(p) {
		return fmt.Errorf("%w: %q: want a path inside the working directory", ErrInvalidValue, p)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// StopGraceDuration is the board's StopGrace, or def when it has none
// (or an invalid one, which validation reports).
func (b BoardSpec) StopGraceDuration(def time.Duration) time.Duration {
	if d, err := time.ParseDuration(b.StopGrace); err == nil && d > 0 {
		return d
	}
	return def
}

func lineOfBoard(lines []map[string]int, i int) int {
	if i < len(lines) && lines[i] != nil {
		if n, ok := lines[i]["name"]; ok {
			return n
		}
		return lines[i][""]
	}
	return 0
}

// Validate checks a map built in code, filling in defaults (baud) as
// ParseMap does.
func (m *Map) Validate() error {
	if errs := validate(m.Boards, nil); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// WriteMap validates m and writes it as YAML that ParseMap reads back.
func WriteMap(w io.Writer, m *Map) error {
	c := &Map{Boards: slices.Clone(m.Boards)}
	if err := c.Validate(); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	boards := c.Boards
	if boards == nil {
		boards = []BoardSpec{}
	}
	if err := enc.Encode(boards); err != nil {
		return fmt.Errorf("hil: writing hardware map: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("hil: writing hardware map: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
