package nrf

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Shell errors.
var (
	ErrUnterminatedQuote = errors.New("nrf: unterminated quote")
	ErrTooManyArgs       = errors.New("nrf: too many parameters")
)

// settingsMaxVal is SETTINGS_MAX_VAL_LEN: the longest value the settings
// shell stores.
const settingsMaxVal = 256

// SplitArgs splits a shell line into arguments the way the Zephyr shell
// does: blanks separate them, double or single quotes group, and a
// backslash takes the next character as it is (also inside quotes).
func SplitArgs(line string) ([]string, error) {
	var args []string
	var cur []byte
	inArg := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur = append(cur, line[i])
			inArg = true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur = append(cur, c)
			}
		case c == '"' || c == '\'':
			quote = c
			inArg = true
		case c == ' ' || c == '\t':
			if inArg {
				args = append(args, string(cur))
				cur, inArg = nil, false
			}
		default:
			cur = append(cur, c)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, ErrUnterminatedQuote
	}
	if inArg {
		args = append(args, string(cur))
	}
	if len(args) > maxArgs {
		return nil, fmt.Errorf("%w (max: %d)", ErrTooManyArgs, maxArgs)
	}
	return args, nil
}

// QuoteArg quotes s for SplitArgs when it needs it.
func QuoteArg(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) < 0 {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// command is a node of the shell's command tree.
type command struct {
	name, help string
	args       string // usage of the arguments, for help
	min, max   int    // argument count bounds (after the command's name)
	run        func(e *Emulator, args []string)
	subs       []command
}

func (e *Emulator) commands() []command {
	return []command{
		{name: "device", help: "Device commands", subs: []command{
			{name: "info", help: "Board, credentials and connection", run: (*Emulator).cmdDeviceInfo},
			{name: "list", help: "List configured devices", run: (*Emulator).cmdDeviceList},
		}},
		{name: "fs", help: "File system commands", subs: []command{
			{name: "cd", help: "Change working directory", args: "[<path>]", max: 1, run: (*Emulator).cmdCd},
			{name: "ls", help: "List files in current directory", args: "[<path>]", max: 1, run: (*Emulator).cmdLs},
			{name: "mkdir", help: "Create directory", args: "<path>", min: 1, max: 1, run: (*Emulator).cmdMkdir},
			{name: "pwd", help: "Print current working directory", run: (*Emulator).cmdPwd},
			{name: "rm", help: "Remove file", args: "<path>", min: 1, max: 1, run: (*Emulator).cmdRm},
		}},
		{name: "help", help: "Prints the help message.", max: maxArgs, run: (*Emulator).cmdHelp},
		{name: "kernel", help: "Kernel commands", subs: []command{
			{name: "reboot", help: "Reboot", subs: []command{
				{name: "cold", help: "Cold reboot", run: (*Emulator).cmdReboot},
				{name: "warm", help: "Warm reboot", run: (*Emulator).cmdReboot},
			}},
			{name: "uptime", help: "Kernel uptime", run: (*Emulator).cmdUptime},
			{name: "version", help: "Kernel version", run: (*Emulator).cmdVersion},
		}},
		{name: "log", help: "Commands for controlling logger", subs: []command{
			{name: "go", help: "Resume logging", run: (*Emulator).cmdLogGo},
			{name: "halt", help: "Halt logging", run: (*Emulator).cmdLogHalt},
			{name: "status", help: "Logger status", run: (*Emulator).cmdLogStatus},
		}},
		{name: "settings", help: "Settings commands", subs: []command{
			{name: "delete", help: "delete a setting (usage: settings delete <key>)", args: "<key>", min: 1, max: 1, run: (*Emulator).cmdSettingsDelete},
			{name: "get", help: "get a setting (usage: settings get <key> [--json])", args: "<key> [--json]", min: 1, max: 2, run: (*Emulator).cmdSettingsGet},
			{name: "list", help: "list all settings (usage: settings list)", run: (*Emulator).cmdSettingsList},
			{name: "set", help: "set a setting (usage: settings set <key> <value> [--json])", args: "<key> <value> [--json]", min: 2, max: 3, run: (*Emulator).cmdSettingsSet},
		}},
	}
}

// exec runs one shell line.
func (e *Emulator) exec(line string) {
	args, err := SplitArgs(line)
	switch {
	case errors.Is(err, ErrTooManyArgs):
		e.errorf("Too many parameters (max: %d)", maxArgs)
		return
	case err != nil:
		e.errorf("Unterminated quote")
		return
	case len(args) == 0:
		return
	}
	level := e.commands()
	var cmd *command
	i := 0
	for ; i < len(args); i++ {
		var next *command
		for k := range level {
			if level[k].name == args[i] {
				next = &level[k]
			}
		}
		if next == nil {
			break
		}
		cmd = next
		level = cmd.subs
		if len(level) == 0 {
			i++
			break
		}
	}
	rest := args[i:]
	switch {
	case cmd == nil:
		e.errorf("%s: command not found", args[0])
	case len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help"):
		e.help(strings.Join(args[:i], " "), *cmd)
	case cmd.run == nil && len(rest) == 0:
		e.help(strings.Join(args[:i], " "), *cmd)
		e.errorf("%s: missing subcommand", strings.Join(args[:i], " "))
	case cmd.run == nil:
		e.errorf("%s: unknown parameter: %s", strings.Join(args[:i], " "), rest[0])
	case len(rest) < cmd.min || len(rest) > cmd.max:
		e.errorf("%s: wrong parameter count", strings.Join(args[:i], " "))
	default:
		cmd.run(e, append([]string{strings.Join(args[:i], " ")}, rest...))
	}
}

func (e *Emulator) help(name string, c command) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s - %s", name, c.help)
	if c.args != "" {
		fmt.Fprintf(&b, "\nUsage: %s %s", name, c.args)
	}
	if len(c.subs) > 0 {
		b.WriteString("\nSubcommands:")
		for _, s := range c.subs {
			fmt.Fprintf(&b, "\n  %-8s: %s", s.name, s.help)
		}
	}
	e.printf("%s", b.String())
}

func (e *Emulator) cmdHelp([]string) {
	var b strings.Builder
	b.WriteString("Please press the <Tab> button to see all available commands.\n")
	b.WriteString("You can try to call commands with <-h> or <--help> parameter for more information.\n\n")
	b.WriteString("Available commands:")
	for _, c := range e.commands() {
		fmt.Fprintf(&b, "\n  %-9s: %s", c.name, c.help)
	}
	e.printf("%s", b.String())
}

// errno is the negative errno Zephyr would report for err.
func errno(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return -2
	case errors.Is(err, fs.ErrExist):
		return -17
	case errors.Is(err, smp.ErrIsDir):
		return -21
	case errors.Is(err, fs.ErrInvalid):
		return -22
	case errors.Is(err, ErrNoSpace):
		return -28
	case errors.Is(err, smp.ErrNotEmpty):
		return -39
	}
	return -5
}

// powerLost reports whether err is a power cut: the board is dark and
// prints nothing more.
func powerLost(err error) bool { return errors.Is(err, devicemodel.ErrPowerCut) }

// resolve makes p absolute against the shell's working directory.
func (e *Emulator) resolve(p string) string {
	e.mu.Lock()
	cwd := e.sh.cwd
	e.mu.Unlock()
	if !strings.HasPrefix(p, "/") {
		p = path.Join(cwd, p)
	}
	return path.Clean(p)
}

func (e *Emulator) cmdCd(args []string) {
	p := "/"
	if len(args) > 1 {
		p = e.resolve(args[1])
	}
	if _, err := e.fl.ReadDir(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			e.errorf("%s doesn't exist", p)
		} else {
			e.errorf("%s is not a directory", p)
		}
		return
	}
	e.mu.Lock()
	e.sh.cwd = p
	e.mu.Unlock()
}

func (e *Emulator) cmdPwd([]string) {
	e.mu.Lock()
	cwd := e.sh.cwd
	e.mu.Unlock()
	e.printf("%s", cwd)
}

func (e *Emulator) cmdLs(args []string) {
	p := e.resolve(".")
	if len(args) > 1 {
		p = e.resolve(args[1])
	}
	entries, err := e.fl.ReadDir(p)
	if err != nil {
		e.errorf("Unable to open %s (err %d)", p, errno(err))
		return
	}
	if len(entries) > 0 {
		e.printf("%s", strings.Join(entries, "\n"))
	}
}

func (e *Emulator) cmdMkdir(args []string) {
	if err := e.fl.Mkdir(e.resolve(args[1])); err != nil && !powerLost(err) {
		e.errorf("Error creating dir[%d]", errno(err))
	}
}

func (e *Emulator) cmdRm(args []string) {
	p := e.resolve(args[1])
	if err := e.fl.Remove(p); err != nil && !powerLost(err) {
		e.errorf("Failed to remove %s (%d)", p, errno(err))
	}
}

func (e *Emulator) cmdLogHalt([]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logHalted = true
}

func (e *Emulator) cmdLogGo([]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.logHalted {
		return
	}
	e.logHalted = false
	if e.logDropped > 0 {
		e.emitLogLocked(fmt.Sprintf("--- %d messages dropped ---", e.logDropped))
	}
	for _, l := range e.logQueue {
		e.emitLogLocked(l)
	}
	e.logQueue, e.logDropped = nil, 0
}

func (e *Emulator) cmdLogStatus([]string) {
	e.mu.Lock()
	halted := e.logHalted
	e.mu.Unlock()
	state := "active"
	if halted {
		state = "halted"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "backend shell_uart_backend: %s\n", state)
	b.WriteString("module_name                              | current | built-in \n")
	b.WriteString("----------------------------------------------------------------")
	for _, m := range []string{"fs_nvs", modApp, modCoAP, "golioth_mbox", "littlefs"} {
		fmt.Fprintf(&b, "\n%-40s | %-7s | %-7s ", m, "inf", "dbg")
	}
	e.printf("%s", b.String())
}

// isSecretSetting says whether a setting's value must not be printed.
func isSecretSetting(name string) bool {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	return strings.Contains(n, "key") || strings.Contains(n, "pass") ||
		strings.Contains(n, "psk") && !strings.Contains(n, "id")
}

// shown is how the shell prints a setting's value.
func shown(name string, val []byte) string {
	if isSecretSetting(name) {
		return "[hidden, fp " + devicemodel.Fingerprint(val) + "]"
	}
	return oneLine(string(val))
}

func (e *Emulator) settings() settingsStore { return settingsStore{e.fl} }

func (e *Emulator) cmdSettingsSet(args []string) {
	name, val := args[1], args[2]
	json := len(args) > 3 && args[3] == "--json"
	e.printf("Setting %s to %s", oneLine(name), shown(name, []byte(val)))
	err := checkSettingName(name)
	if err == nil && len(val) > settingsMaxVal {
		err = devicemodel.ErrValueTooLarge
	}
	if err == nil {
		err = e.settings().setRaw(name, []byte(val))
	}
	switch {
	case powerLost(err):
	case err != nil && json:
		e.errorf(`{"status": "failed", "msg": "Failed to save setting %s:%s"}`, oneLine(name), shown(name, []byte(val)))
	case err != nil:
		e.errorf("Failed to save setting %s:%s", oneLine(name), shown(name, []byte(val)))
	case json:
		e.printf(`{"status": "success", "msg": "Setting %s saved as %s"}`, name, shown(name, []byte(val)))
	default:
		e.printf("Setting %s saved as %s", name, shown(name, []byte(val)))
	}
}

func (e *Emulator) cmdSettingsGet(args []string) {
	name := args[1]
	json := len(args) > 2 && args[2] == "--json"
	v, ok := e.settings().Get(name)
	switch {
	case !ok && json:
		e.errorf(`{"status": "failed", "msg": "Setting not found"}`)
	case !ok:
		e.errorf("Setting not found")
	case json:
		e.printf(`{"status": "success", "value": "%s"}`, shown(name, v))
	default:
		e.printf("%s", shown(name, v))
	}
}

func (e *Emulator) cmdSettingsList([]string) {
	keys := e.settings().Keys()
	if len(keys) > 0 {
		e.printf("%s", oneLine(strings.Join(keys, "\n")))
	}
}

func (e *Emulator) cmdSettingsDelete(args []string) {
	err := checkSettingName(args[1])
	if err == nil {
		err = e.settings().deleteRaw(args[1])
	}
	if err != nil && !powerLost(err) {
		e.errorf("Failed to delete setting: %d", errno(err))
	}
}

func (e *Emulator) cmdReboot([]string) {
	e.wait(e.requestReboot(bootReset))
}

func (e *Emulator) cmdUptime([]string) {
	e.mu.Lock()
	up := e.now().Sub(e.bootAt)
	e.mu.Unlock()
	e.printf("Uptime: %d ms", max(up.Milliseconds(), 0))
}

func (e *Emulator) cmdVersion([]string) {
	e.printf("Zephyr version 3.5.99")
}

func (e *Emulator) cmdDeviceList([]string) {
	e.printf("devices:\n- clock@40000000 (READY)\n- gpio@50000000 (READY)\n- uart@40002000 (READY)\n- flash-controller@4001e000 (READY)")
}

func (e *Emulator) cmdDeviceInfo([]string) {
	e.mu.Lock()
	boots, kind, up := e.boots, e.kind, e.now().Sub(e.bootAt)
	model, dev := e.model, e.dev
	e.mu.Unlock()
	lines := []string{
		fmt.Sprintf("board:      %s (emulated %s)", e.o.Board, oneLine(e.o.Name)),
		fmt.Sprintf("boot:       #%d (%s), uptime %d ms", boots, kind, max(up.Milliseconds(), 0)),
	}
	crt, errC := e.fl.ReadFile(CertPath)
	key, errK := e.fl.ReadFile(KeyPath)
	if errC == nil && errK == nil {
		what := "unreadable"
		if chain, err := SplitDER(crt); err == nil {
			c := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain}
			if leaf, err := c.Leaf(); err == nil {
				what = fmt.Sprintf("CN=%s O=%s", oneLine(leaf.Subject.CommonName), oneLine(strings.Join(leaf.Subject.Organization, ",")))
			}
		}
		lines = append(lines, fmt.Sprintf("credential: certificate %s, %s fp %s, %s fp %s", what, CertPath, devicemodel.Fingerprint(crt), KeyPath, devicemodel.Fingerprint(key)))
	}
	st := e.settings()
	if id, ok := st.Get(SettingPSKID); ok {
		psk, _ := st.Get(SettingPSK)
		lines = append(lines, fmt.Sprintf("psk:        id %s, key fp %s", oneLine(string(id)), devicemodel.Fingerprint(psk)))
	}
	if len(lines) == 2 {
		lines = append(lines, "credential: none")
	}
	cloud := "not connected"
	if dev != nil && dev.Online() {
		cloud = "connected to " + e.o.Cloud.CoAPS
	}
	lines = append(lines, "golioth:    "+cloud)
	if model != nil {
		s := model.State()
		lines = append(lines, fmt.Sprintf("model:      slot %s, fp %s, rtc boot count %d", s.Slot, s.Fingerprint, s.RTC.BootCount))
	}
	e.printf("%s", strings.Join(lines, "\n"))
}
