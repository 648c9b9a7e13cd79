package esp32

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Console details of the emulated firmware.
const (
	// Prompt is the ESP-IDF console prompt of the firmware.
	Prompt = "esp32> "
	// MaxLine is the longest command line the firmware's console takes
	// (esp_console's max_cmdline_length, raised from its default 256 so a
	// certificate fits in one nvs_set).
	MaxLine = 8192
	// maxArgs is esp_console's max_cmdline_args.
	maxArgs = 32
	// defaultNamespace is cmd_nvs.c's namespace before nvs_namespace.
	defaultNamespace = "storage"
	// Namespaces and keys of the firmware.
	nsGolioth   = "example" // Golioth's ESP-IDF samples (docs/protocols.md)
	keyPSKID    = "g_psk_id"
	keyPSK      = "g_psk"
	keyWiFiSSID = "w_ssid"
	keyWiFiPass = "w_pass"
	nsCerts     = "certs" // the ESP32 rotation example
)

// conlog prints to the board's console: raw text and ESP_LOGx lines with
// the milliseconds since boot.
type conlog struct {
	w   io.Writer
	now func() time.Time

	mu   sync.Mutex
	boot time.Time
}

func (c *conlog) reboot() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot = c.now()
}

// ms is the time since boot in milliseconds, as esp_log_timestamp.
func (c *conlog) ms() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.now().Sub(c.boot).Milliseconds()
	if d < 0 {
		d = 0
	}
	return d
}

func (c *conlog) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.w, format, args...)
}

// logf prints "L (ms) tag: message" (level L is I, W, E, D).
func (c *conlog) logf(level byte, tag, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	_, _ = fmt.Fprintf(c.w, "%c (%d) %s: %s\n", level, c.ms()+bootMillis, tag, oneLine(msg))
}

// bootMillis is roughly where app_main starts after a reset.
const bootMillis = 320

// oneLine keeps text on one printable line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// outcome is what a command did to the board.
type outcome int

const (
	running    outcome = iota // print the prompt and read the next line
	restarting                // esp_restart: the emulator reboots the board
	powerLost                 // a power cut hit a write: the board is off
)

// shell is the firmware's console: ESP-IDF's console example commands
// (cmd_system restart, cmd_nvs), Golioth's settings shell and info.
type shell struct {
	con  *conlog
	fl   *flash
	info func() []string

	mu sync.Mutex
	ns string // cmd_nvs's current namespace
}

// namespace is cmd_nvs's current namespace.
func (s *shell) namespace() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// resetNamespace forgets nvs_namespace, as a reset does (it is RAM).
func (s *shell) resetNamespace() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ns = defaultNamespace
}

type command struct {
	name, args, help string
	run              func(s *shell, argv []string) (int, outcome)
}

// commands is the console's command table, sorted by name as esp_console
// lists them.
var commands []command

func init() {
	commands = []command{
		{"help", "", "Print the list of registered commands", (*shell).help},
		{"info", "", "Print the device id, MAC, credential fingerprints and boot count", (*shell).infoCmd},
		{"nvs_erase", "<key>", "Erase key-value pair from current namespace", (*shell).nvsErase},
		{"nvs_erase_namespace", "<namespace>", "Erases specified namespace", (*shell).nvsEraseNamespace},
		{"nvs_get", "<key> <type>", "Get key-value pair from selected namespace.\nExample: nvs_get VarName i32", (*shell).nvsGet},
		{"nvs_list", "<partition> [-n <namespace>] [-t <type>]", "List stored key-value pairs stored in NVS.", (*shell).nvsList},
		{"nvs_namespace", "<namespace>", "Set current namespace", (*shell).nvsNamespace},
		{"nvs_set", "<key> <type> -v <value>", "Set key-value pair in selected namespace.\nExamples:\n nvs_set VarName i32 -v 123\n nvs_set VarName str -v YourString\n nvs_set VarName blob -v 0123456789abcdef", (*shell).nvsSet},
		{"reset", "", "Software reset of the chip", (*shell).restart},
		{"restart", "", "Software reset of the chip", (*shell).restart},
		{"settings", "<get|set|erase> <key> [<value>]", "Get/Set/Erase settings by key", (*shell).settings},
		{"version", "", "Get version of chip and SDK", (*shell).version},
	}
}

func newShell(con *conlog, fl *flash, info func() []string) *shell {
	return &shell{con: con, fl: fl, info: info, ns: defaultNamespace}
}

// exec runs one console line as esp_console_run and the REPL do.
func (s *shell) exec(l line) outcome {
	if l.tooLong {
		s.con.logf('E', "console", "command line too long (more than %d bytes); ignored", MaxLine)
		return running
	}
	argv, err := splitArgv(l.text)
	if err != nil || len(argv) == 0 {
		return running // esp_console_run: ESP_ERR_INVALID_ARG, "command was empty"
	}
	i, ok := slices.BinarySearchFunc(commands, argv[0], func(c command, name string) int { return strings.Compare(c.name, name) })
	if !ok {
		s.con.printf("Unrecognized command\n")
		return running
	}
	ret, out := commands[i].run(s, argv)
	if out == running && ret != 0 {
		s.con.printf("Command returned non-zero error code: 0x%x (%s)\n", ret, errName(ret))
	}
	return out
}

func errName(ret int) string {
	if ret == 1 {
		return "ERROR"
	}
	return "UNKNOWN ERROR"
}

var errUnterminated = errors.New("unterminated quote")

// splitArgv splits a command line as esp_console_split_argv does:
// whitespace separates arguments, double quotes group, a backslash escapes
// the next character. At most maxArgs arguments are kept.
func splitArgv(s string) ([]string, error) {
	var argv []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == '"':
			quoted = !quoted
			in = true
		case (c == ' ' || c == '\t') && !quoted:
			if in {
				argv = append(argv, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return nil, errUnterminated
	}
	if in {
		argv = append(argv, cur.String())
	}
	if len(argv) > maxArgs {
		argv = argv[:maxArgs]
	}
	return argv, nil
}

// quoteArg quotes an argument so splitArgv gives it back.
func quoteArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"\\") {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(a); i++ {
		if a[i] == '"' || a[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(a[i])
	}
	b.WriteByte('"')
	return b.String()
}

// args is argtable3's parse of positional arguments and options with a
// value, with its error messages.
type args struct {
	pos  []string
	opts map[string]string // by long name
}

// parseArgs parses argv[1:] as argtable3 does: positional arguments
// named posNames (the first minPos required) and options with a value,
// spec mapping a short name to the long one ("v" → "value"), those named
// in required being mandatory. It prints argtable3's errors and reports
// false on error.
func (s *shell) parseArgs(argv []string, posNames []string, minPos int, spec map[string]string, required ...string) (args, bool) {
	a := args{opts: map[string]string{}}
	var errs []string
	byShort := map[string]string{}
	for short, long := range spec {
		byShort[short] = long
	}
	for i := 1; i < len(argv); i++ {
		arg := argv[i]
		switch {
		case strings.HasPrefix(arg, "--") && len(arg) > 2:
			name, val, hasVal := strings.Cut(arg[2:], "=")
			if !slices.Contains(slices.Collect(maps.Values(spec)), name) {
				errs = append(errs, fmt.Sprintf("invalid option \"%s\"", arg))
				continue
			}
			if !hasVal {
				if i+1 >= len(argv) {
					errs = append(errs, fmt.Sprintf("option \"--%s\" requires an argument", name))
					continue
				}
				i++
				val = argv[i]
			}
			a.opts[name] = val
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			long, ok := byShort[arg[1:2]]
			if !ok {
				errs = append(errs, fmt.Sprintf("invalid option \"%s\"", arg))
				continue
			}
			val := arg[2:]
			if val == "" {
				if i+1 >= len(argv) {
					errs = append(errs, fmt.Sprintf("option \"-%s\" requires an argument", arg[1:2]))
					continue
				}
				i++
				val = argv[i]
			}
			a.opts[long] = val
		default:
			if len(a.pos) >= len(posNames) {
				errs = append(errs, fmt.Sprintf("unexpected argument \"%s\"", arg))
				continue
			}
			a.pos = append(a.pos, arg)
		}
	}
	for i := len(a.pos); i < minPos; i++ {
		errs = append(errs, "missing option "+posNames[i])
	}
	for _, long := range required {
		if _, ok := a.opts[long]; !ok {
			short := ""
			for sh, l := range spec {
				if l == long {
					short = sh
				}
			}
			errs = append(errs, fmt.Sprintf("missing option -%s|--%s=<%s>", short, long, long))
		}
	}
	for _, e := range errs {
		s.con.printf("%s: %s\n", argv[0], oneLine(e))
	}
	return a, len(errs) == 0
}

func (s *shell) help(argv []string) (int, outcome) {
	for _, c := range commands {
		s.con.printf("%s  %s\n", c.name, c.args)
		for _, l := range strings.Split(c.help, "\n") {
			s.con.printf("  %s\n", l)
		}
		s.con.printf("\n")
	}
	return 0, running
}

func (s *shell) restart(argv []string) (int, outcome) {
	if argv[0] == "reset" {
		s.con.logf('I', "shell", "Resetting")
	} else {
		s.con.logf('I', "cmd_system_common", "Restarting")
	}
	return 0, restarting
}

func (s *shell) version(argv []string) (int, outcome) {
	s.con.printf("IDF Version:%s\r\n", idfVersion)
	s.con.printf("Chip info:\r\n\tmodel:ESP32\r\n\tcores:2\r\n\tfeature:/802.11bgn/BLE/BT/External-Flash:4 MB\r\n\trevision number:3\r\n")
	return 0, running
}

func (s *shell) infoCmd(argv []string) (int, outcome) {
	for _, l := range s.info() {
		s.con.printf("%s\n", l)
	}
	return 0, running
}

// secretKey reports whether the value of an NVS key is a secret the
// firmware never prints: a PSK, key or password, not an identity.
func secretKey(key string) bool {
	return nvs.SecretKey(key) && !strings.HasSuffix(key, "_id")
}

// nvsTypes are cmd_nvs.c's type names.
var nvsTypes = map[string]nvs.Type{
	"i8": nvs.TypeI8, "u8": nvs.TypeU8, "i16": nvs.TypeI16, "u16": nvs.TypeU16,
	"i32": nvs.TypeI32, "u32": nvs.TypeU32, "i64": nvs.TypeI64, "u64": nvs.TypeU64,
	"str": nvs.TypeString, "blob": nvs.TypeBlob,
}

func typeName(t nvs.Type) string {
	for n, tt := range nvsTypes {
		if tt == t {
			return n
		}
	}
	return "Unknown"
}

// ESP-IDF error names.
const (
	espFail           = "ESP_FAIL"
	errNotFound       = "ESP_ERR_NVS_NOT_FOUND"
	errTypeMismatch   = "ESP_ERR_NVS_TYPE_MISMATCH"
	errValueTooLong   = "ESP_ERR_NVS_VALUE_TOO_LONG"
	errKeyTooLong     = "ESP_ERR_NVS_KEY_TOO_LONG"
	errInvalidName    = "ESP_ERR_NVS_INVALID_NAME"
	errNotEnoughSpace = "ESP_ERR_NVS_NOT_ENOUGH_SPACE"
	errPartNotFound   = "ESP_ERR_NVS_PART_NOT_FOUND"
	errInvalidArg     = "ESP_ERR_INVALID_ARG"
	errPowerLost      = "power lost"
)

// espErr is an ESP-IDF error code name.
type espErr string

func (e espErr) Error() string { return string(e) }

// nvsError names the ESP-IDF error of a failed NVS write.
func nvsError(err error, key string) string {
	var e espErr
	switch {
	case errors.As(err, &e):
		return string(e)
	case errors.Is(err, devicemodel.ErrPowerCut):
		return errPowerLost
	case errors.Is(err, nvs.ErrFull):
		return errNotEnoughSpace
	case errors.Is(err, nvs.ErrBadKey), errors.Is(err, devicemodel.ErrBadKey):
		if len(key) > nvs.MaxKeyLen {
			return errKeyTooLong
		}
		return errInvalidName
	case errors.Is(err, nvs.ErrBadValue), errors.Is(err, devicemodel.ErrValueTooLarge):
		return errValueTooLong
	}
	return espFail
}

// fail prints an ESP-IDF error as cmd_nvs does and returns 1.
func (s *shell) fail(name string) (int, outcome) {
	if name == errPowerLost {
		return 1, powerLost
	}
	s.con.logf('E', "cmd_nvs", "%s", name)
	return 1, running
}

func (s *shell) nvsNamespace(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<namespace>"}, 1, nil)
	if !ok {
		return 1, running
	}
	ns := a.pos[0]
	if len(ns) > nvs.MaxKeyLen {
		ns = ns[:nvs.MaxKeyLen] // strlcpy into char[16]
	}
	s.mu.Lock()
	s.ns = ns
	s.mu.Unlock()
	s.con.logf('I', "cmd_nvs", "Namespace set to '%s'", oneLine(ns))
	return 0, running
}

func (s *shell) nvsSet(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<key>", "<type>"}, 2, map[string]string{"v": "value"}, "value")
	if !ok {
		return 1, running
	}
	key, typ, val := a.pos[0], a.pos[1], a.opts["value"]
	t, ok := nvsTypes[typ]
	if !ok {
		s.con.logf('E', "cmd_nvs", "Type '%s' is undefined", oneLine(typ))
		return s.fail(errTypeMismatch)
	}
	it := nvs.Item{Key: key, Type: t}
	switch {
	case t == nvs.TypeString:
		it.Data = []byte(val)
	case t == nvs.TypeBlob:
		if len(val)%2 != 0 {
			s.con.logf('E', "cmd_nvs", "Blob data must contain even number of characters")
			return s.fail(errTypeMismatch)
		}
		b, err := hex.DecodeString(val)
		if err != nil {
			s.con.logf('E', "cmd_nvs", "Blob data contain invalid character")
			return s.fail(errTypeMismatch)
		}
		it.Data = b
	default:
		if name := parseInt(&it, val); name != "" {
			return s.fail(name)
		}
	}
	if err := s.fl.write(s.namespace(), func(st *nvs.Store) error { return st.SetItem(it) }); err != nil {
		return s.fail(nvsError(err, key))
	}
	s.con.logf('I', "cmd_nvs", "Value stored under key '%s'", oneLine(key))
	return 0, running
}

// parseInt parses an integer as strtol/strtoul with base 0 (decimal, 0x
// hex, 0 octal) into it, checking the type's range. It returns the
// ESP-IDF error name on failure; unlike strtol it refuses trailing
// garbage instead of storing a prefix.
func parseInt(it *nvs.Item, val string) string {
	v := strings.TrimLeft(val, " \t")
	bits := it.Type.Width() * 8
	neg := strings.HasPrefix(v, "-")
	digits := strings.TrimLeft(v, "+-")
	base := 10
	switch {
	case strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X"):
		base, digits = 16, digits[2:]
	case len(digits) > 1 && digits[0] == '0':
		base, digits = 8, digits[1:]
	}
	if digits == "" || strings.ContainsAny(digits, "+-_") || len(v)-len(strings.TrimLeft(v, "+-")) > 1 {
		return errInvalidArg
	}
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return errValueTooLong
		}
		return errInvalidArg
	}
	if it.Type.Signed() {
		limit := uint64(1) << (bits - 1) // |min|
		if neg && u > limit || !neg && u >= limit {
			return errValueTooLong
		}
		it.Int = int64(u)
		if neg {
			it.Int = -it.Int
		}
		return ""
	}
	if neg && u != 0 || bits < 64 && u >= 1<<bits {
		return errValueTooLong
	}
	it.Uint = u
	return ""
}

func (s *shell) nvsGet(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<key>", "<type>"}, 2, nil)
	if !ok {
		return 1, running
	}
	key, typ := a.pos[0], a.pos[1]
	t, ok := nvsTypes[typ]
	if !ok {
		s.con.logf('E', "cmd_nvs", "Type '%s' is undefined", oneLine(typ))
		return s.fail(errTypeMismatch)
	}
	if !s.fl.hasNamespace(s.namespace()) {
		return s.fail(errNotFound) // nvs_open(NVS_READONLY) of a namespace never written
	}
	it, ok := s.fl.item(s.namespace(), key)
	if !ok || it.Type != t {
		return s.fail(errNotFound) // NVS looks values up by key and type
	}
	switch {
	case secretKey(key):
		// This firmware never prints a secret: its fingerprint instead.
		s.con.printf("<secret: %d bytes, fp=%s>\n", len(it.Bytes()), devicemodel.Fingerprint(it.Bytes()))
	case t == nvs.TypeString:
		s.con.printf("%s\n", oneLine(string(it.Data)))
	case t == nvs.TypeBlob:
		s.con.printf("%s\n", hex.EncodeToString(it.Data))
	case t.Signed():
		s.con.printf("%d\n", it.Int)
	default:
		s.con.printf("%d\n", it.Uint)
	}
	return 0, running
}

func (s *shell) nvsErase(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<key>"}, 1, nil)
	if !ok {
		return 1, running
	}
	key := a.pos[0]
	err := s.fl.write(s.namespace(), func(st *nvs.Store) error {
		if _, ok := st.Item(key); !ok {
			return espErr(errNotFound)
		}
		return st.Delete(key)
	})
	if err != nil {
		return s.fail(nvsError(err, key))
	}
	s.con.logf('I', "cmd_nvs", "Value with key '%s' erased", oneLine(key))
	return 0, running
}

func (s *shell) nvsEraseNamespace(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<namespace>"}, 1, nil)
	if !ok {
		return 1, running
	}
	ns := a.pos[0]
	err := s.fl.write(ns, func(st *nvs.Store) error {
		var changes []nvs.Change
		for _, k := range st.Keys() {
			changes = append(changes, nvs.Change{Key: k, Delete: true})
		}
		return st.Apply(changes...)
	})
	if errors.Is(err, devicemodel.ErrPowerCut) {
		return 1, powerLost
	}
	not := ""
	if err != nil {
		not = "not"
	}
	s.con.logf('I', "cmd_nvs", "Namespace '%s' was %s erased", oneLine(ns), not)
	return 0, running
}

func (s *shell) nvsList(argv []string) (int, outcome) {
	a, ok := s.parseArgs(argv, []string{"<partition>"}, 1, map[string]string{"n": "namespace", "t": "type"})
	if !ok {
		return 1, running
	}
	if a.pos[0] != "nvs" {
		s.con.logf('E', "cmd_nvs", "NVS error: %s", errPartNotFound)
		return 1, running
	}
	var want nvs.Type
	if tn, ok := a.opts["type"]; ok && tn != "" && tn != "any" {
		if want, ok = nvsTypes[tn]; !ok {
			want = 0xFF // matches nothing
		}
	}
	n := 0
	for _, it := range s.fl.items() {
		if ns := a.opts["namespace"]; ns != "" && it.Namespace != ns || want != 0 && it.Type != want {
			continue
		}
		s.con.printf("namespace '%s', key '%s', type '%s' \n", oneLine(it.Namespace), oneLine(it.Key), typeName(it.Type))
		n++
	}
	if n == 0 {
		s.con.logf('E', "cmd_nvs", "No such entry was found")
		return 1, running
	}
	return 0, running
}

// settingKeys maps Golioth's CLI keys to NVS keys in namespace example.
var settingKeys = map[string]string{
	"wifi/ssid":      keyWiFiSSID,
	"wifi/psk":       keyWiFiPass,
	"golioth/psk-id": keyPSKID,
	"golioth/psk":    keyPSK,
}

const settingsUsage = "usage:\n  settings get <key> [--json]\n  settings set <key> <value> [--json]\n  settings erase <key>\n"

func (s *shell) settings(argv []string) (int, outcome) {
	if len(argv) < 3 {
		s.con.printf("%s", settingsUsage)
		return 1, running
	}
	cmd, cli := argv[1], argv[2]
	key, ok := settingKeys[cli]
	if !ok && (cmd == "get" || cmd == "set" || cmd == "erase") {
		s.con.printf("Unknown setting %s\n", oneLine(cli))
		return 1, running
	}
	jsonOut := func(n int) bool { return len(argv) > n && argv[n] == "--json" }
	switch cmd {
	case "get":
		it, ok := s.fl.item(nsGolioth, key)
		if ok && it.Type != nvs.TypeString {
			ok = false // nvs_get_str
		}
		val := ""
		if ok {
			val = oneLine(string(it.Data))
			if secretKey(key) {
				// This firmware never prints a secret: its fingerprint.
				val = fmt.Sprintf("<secret: %d bytes, fp=%s>", len(it.Data), devicemodel.Fingerprint(it.Data))
			}
		}
		switch {
		case jsonOut(3) && !ok:
			s.con.printf("{\"status\": \"failed\", \"msg\": \"setting not found\"}\n")
		case jsonOut(3):
			s.con.printf("{\"status\": \"success\", \"value\": %s}\n", strconv.Quote(val))
		case !ok:
			s.con.printf("Setting not found\n")
		default:
			s.con.printf("%s\n", val)
		}
	case "set":
		if len(argv) < 4 {
			s.con.printf("%s", settingsUsage)
			return 1, running
		}
		val := argv[3]
		err := s.fl.write(nsGolioth, func(st *nvs.Store) error {
			return st.SetItem(nvs.Item{Key: key, Type: nvs.TypeString, Data: []byte(val)})
		})
		if errors.Is(err, devicemodel.ErrPowerCut) {
			return 1, powerLost
		}
		if err != nil {
			// Golioth's nvs_write_str prints the value; this firmware
			// does not.
			s.con.logf('E', "nvs", "Failed to set %s, err = %s", key, nvsError(err, key))
		}
		switch {
		case jsonOut(4) && err == nil:
			s.con.printf("{\"status\": \"success\", \"msg\": \"setting %s saved\"}\n", oneLine(cli))
		case jsonOut(4):
			s.con.printf("{\"status\": \"failed\", \"msg\": \"failed to save setting %s\"}\n", oneLine(cli))
		case err == nil:
			s.con.printf("Setting %s saved\n", oneLine(cli))
		default:
			s.con.printf("Failed to save setting %s\n", oneLine(cli))
		}
	case "erase":
		err := s.fl.write(nsGolioth, func(st *nvs.Store) error {
			if _, ok := st.Item(key); !ok {
				return espErr(errNotFound)
			}
			return st.Delete(key)
		})
		if errors.Is(err, devicemodel.ErrPowerCut) {
			return 1, powerLost
		}
		if err != nil {
			s.con.logf('E', "nvs", "Failed to erase key %s, err = %s", key, nvsError(err, key))
			break
		}
		s.con.printf("Erased key %s from NVS\n", oneLine(cli))
	default:
		s.con.printf("%s", settingsUsage)
		return 1, running
	}
	return 0, running
}
