//go:build linux

package hil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"
)

// The tests below play the board on the master side of a pseudo-terminal
// and open the slave side through go.bug.st/serial, exactly as a USB
// serial port is opened.

// testCtx bounds everything a test waits for.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ptyBoard is the board end of a pseudo-terminal.
type ptyBoard struct {
	t      *testing.T
	master *os.File
	slave  *os.File // held open so the pair lives until unplug
	path   string
	once   sync.Once
	got    []byte // read from the master so far
}

func newPtyBoard(t *testing.T) *ptyBoard {
	t.Helper()
	p, err := OpenPTY(0)
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	b := &ptyBoard{t: t, master: p.Master, slave: p.Slave, path: p.Path()}
	t.Cleanup(b.unplug)
	return b
}

func (b *ptyBoard) write(s string) {
	b.t.Helper()
	if _, err := b.master.Write([]byte(s)); err != nil {
		b.t.Fatalf("board write: %v", err)
	}
}

// readUntil reads what the host sent until it contains want, and returns
// (and forgets) everything up to the end of want.
func (b *ptyBoard) readUntil(want string) string {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 256)
	for {
		if i := bytes.Index(b.got, []byte(want)); i >= 0 {
			s := string(b.got[:i+len(want)])
			b.got = b.got[i+len(want):]
			return s
		}
		if err := b.master.SetReadDeadline(deadline); err != nil {
			b.t.Fatal(err)
		}
		n, err := b.master.Read(buf)
		b.got = append(b.got, buf[:n]...)
		if err != nil {
			b.t.Fatalf("board waiting for %q, got %q: %v", want, b.got, err)
		}
	}
}

// unplug makes the port disappear, as a USB CDC port does on reset.
func (b *ptyBoard) unplug() {
	b.once.Do(func() {
		b.master.Close()
		b.slave.Close()
	})
}

func openTestPort(t *testing.T, name string, resolve Resolver, opts PortOptions) *Port {
	t.Helper()
	opts.Board, opts.Resolve = name, resolve
	p, err := OpenPort(testCtx(t), opts)
	if err != nil {
		t.Fatalf("OpenPort: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestConsole(t *testing.T, conn io.ReadWriteCloser, opts ConsoleOptions) *Console {
	t.Helper()
	c, err := NewConsole(conn, opts)
	if err != nil {
		t.Fatalf("NewConsole: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitReceived waits until the console has read n raw bytes in all.
func (c *Console) waitReceived(ctx context.Context, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.received < n {
		ch := c.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			return fmt.Errorf("received %d of %d bytes: %w", c.received, n, ctx.Err())
		}
		c.mu.Lock()
	}
	return nil
}

// clock is a Now that moves 1 ms per call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

type logEntry struct {
	when time.Time
	dir  byte
	text string
}

var logLineRE = regexp.MustCompile(`^(\S+) ([<>#]) (.*)$`)

func readBoardLog(t *testing.T, path string) []logEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	var prev time.Time
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		m := logLineRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("log line %q: not <timestamp> <dir> <text>", line)
		}
		when, err := time.Parse(LogTimeFormat, m[1])
		if err != nil || !strings.HasSuffix(m[1], "Z") || len(m[1]) != len("2006-01-02T15:04:05.000Z") {
			t.Fatalf("log line %q: timestamp %q is not RFC 3339 UTC with milliseconds (%v)", line, m[1], err)
		}
		if when.Before(prev) {
			t.Errorf("log line %q: time goes backwards", line)
		}
		prev = when
		out = append(out, logEntry{when, m[2][0], m[3]})
	}
	return out
}

// dirTexts drops notes and timestamps.
func dirTexts(es []logEntry) []string {
	var out []string
	for _, e := range es {
		if e.dir != DirNote {
			out = append(out, string(e.dir)+" "+e.text)
		}
	}
	return out
}

func TestExpectSplitAtEveryByte(t *testing.T) {
	ctx := testCtx(t)
	b := newPtyBoard(t)
	p := openTestPort(t, "esp32-1", PathResolver(b.path), PortOptions{})
	c := newTestConsole(t, p, ConsoleOptions{})
	// ANSI colours and \r\n, as ESP-IDF prints them.
	msg := "\x1b[0;32mI (42) app: boot count: 7\x1b[0m\r\nesp32> "
	var total int64
	for k := 0; k <= len(msg); k++ {
		b.write(msg[:k])
		if err := c.waitReceived(ctx, total+int64(k)); err != nil {
			t.Fatal(err)
		}
		b.write(msg[k:])
		total += int64(len(msg))
		m, err := c.Expect(ctx, `boot count: (?P<count>\d+)\n`, ExpectOptions{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("split at %d: %v", k, err)
		}
		if m.Text != "boot count: 7\n" || m.Before != "I (42) app: " || len(m.Groups) != 1 || m.Groups[0] != "7" || m.Group("count") != "7" {
			t.Fatalf("split at %d: %+v", k, m)
		}
		m, err = c.Expect(ctx, "esp32> ", ExpectOptions{Literal: true, Timeout: 10 * time.Second})
		if err != nil || m.Before != "" || m.Text != "esp32> " {
			t.Fatalf("split at %d: prompt: %+v, %v", k, m, err)
		}
	}
}

func TestExpectNotMatch(t *testing.T) {
	panicRE := regexp.MustCompile(`Guru Meditation|panic|ASSERTION FAIL`)
	long := ExpectOptions{Timeout: time.Hour, NotMatch: []*regexp.Regexp{panicRE}}
	tests := []struct {
		name   string
		output string
		want   error  // of the first Expect("ready")
		found  string // what the must-not pattern matched
		next   string // the next Expect, which must succeed
	}{
		{"panic first", "boot\nGuru Meditation Error: Core 0 panic'ed\nready\n", ErrMustNotMatch, "Guru Meditation", "ready"},
		{"panic inside the match", "rea\nASSERTION FAIL\n", ErrMustNotMatch, "ASSERTION FAIL", ""},
		{"match first", "ready\npanic\n", nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newPtyBoard(t)
			c := newTestConsole(t, openTestPort(t, "b", PathResolver(b.path), PortOptions{}), ConsoleOptions{})
			b.write(tc.output)
			pattern := "ready"
			if tc.name == "panic inside the match" {
				pattern = `(?s)rea.*FAIL`
			}
			_, err := c.Expect(ctx, pattern, long)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Expect: %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				var ee *ExpectError
				if !errors.As(err, &ee) || ee.Found != tc.found || ee.NotMatch != panicRE.String() {
					t.Fatalf("ExpectError %+v", ee)
				}
				if !strings.Contains(err.Error(), "must-not-match") || !strings.Contains(err.Error(), tc.found) {
					t.Errorf("message: %v", err)
				}
			}
			if tc.next != "" {
				if _, err := c.Expect(ctx, tc.next, ExpectOptions{}); err != nil {
					t.Fatalf("after the failure: %v", err)
				}
			}
		})
	}
	t.Run("panic while waiting", func(t *testing.T) {
		ctx := testCtx(t)
		b := newPtyBoard(t)
		c := newTestConsole(t, openTestPort(t, "b", PathResolver(b.path), PortOptions{}), ConsoleOptions{})
		errc := make(chan error, 1)
		go func() {
			_, err := c.Expect(ctx, "connected", long)
			errc <- err
		}()
		b.write("wifi: connecting\n")
		b.write("abort() was called: panic\n")
		if err := <-errc; !errors.Is(err, ErrMustNotMatch) {
			t.Fatalf("Expect: %v", err)
		}
	})
}

func TestExpectTimeoutQuotesTail(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	b := newPtyBoard(t)
	c := newTestConsole(t, openTestPort(t, "nrf-7", PathResolver(b.path), PortOptions{}), ConsoleOptions{RunDir: dir})
	var out strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&out, "[00:00:%02d.000] <inf> app: line %02d\r\n", i, i)
	}
	out.WriteString("uart:~$ ")
	b.write(out.String())
	if err := c.waitReceived(ctx, int64(out.Len())); err != nil {
		t.Fatal(err)
	}
	_, err := c.Expect(ctx, "Golioth client connected", ExpectOptions{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrExpectTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Expect: %v", err)
	}
	var ee *ExpectError
	if !errors.As(err, &ee) {
		t.Fatalf("%T", err)
	}
	if len(ee.Tail) != DefaultTailLines || ee.Tail[len(ee.Tail)-1] != "uart:~$ " || ee.Tail[0] != "[00:00:12.000] <inf> app: line 12" {
		t.Fatalf("tail %q", ee.Tail)
	}
	msg := err.Error()
	for _, want := range []string{"board nrf-7", "Golioth client connected", "timed out", "line 30", "uart:~$", filepath.Join(dir, "boards", "nrf-7.log")} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 11") {
		t.Errorf("message quotes more than %d lines:\n%s", DefaultTailLines, msg)
	}
	// The unmatched text is still there for the next Expect.
	if _, err := c.Expect(ctx, `line 01\n`, ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
	// A cancelled context is not a timeout.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Expect(cctx, "never", ExpectOptions{}); !errors.Is(err, context.Canceled) || errors.Is(err, ErrExpectTimeout) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestBoardLogFile(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	b := newPtyBoard(t)
	p := openTestPort(t, "nrf-1", PathResolver(b.path), PortOptions{})
	c := newTestConsole(t, p, ConsoleOptions{RunDir: dir, Now: clock(), LineEnding: "\r\n"})
	if c.LogPath() != filepath.Join(dir, "boards", "nrf-1.log") {
		t.Fatalf("LogPath %q", c.LogPath())
	}
	if err := c.Send("help"); err != nil {
		t.Fatal(err)
	}
	if got := b.readUntil("\n"); got != "help\r\n" {
		t.Fatalf("board got %q", got)
	}
	// A bare \r ends a line, \r\n split between writes is one line end,
	// a line may come in pieces, colours are dropped.
	b.write("usage:\r")
	b.write("\n  \x1b[1;32mhelp\x1b[m\rver")
	b.write("sion\x00\n")
	if _, err := c.Expect(ctx, "version", ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("kernel reboot cold\n")); err != nil {
		t.Fatal(err)
	}
	b.readUntil("cold\n")
	b.write("uart:~$ ") // no line end: logged at Close
	if err := c.waitReceived(ctx, int64(len("usage:\r\n  \x1b[1;32mhelp\x1b[m\rversion\x00\nuart:~$ "))); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	es := readBoardLog(t, c.LogPath())
	want := []string{"> help", "< usage:", "<   help", `< version\x00`, "> kernel reboot cold", "< uart:~$ "}
	if got := dirTexts(es); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if es[0].dir != DirNote || !strings.Contains(es[0].text, b.path) || es[len(es)-1].text != "console closed" {
		t.Errorf("notes: first %+v, last %+v", es[0], es[len(es)-1])
	}
	// A second console on the same board appends.
	b2 := newPtyBoard(t)
	c2 := newTestConsole(t, openTestPort(t, "nrf-1", PathResolver(b2.path), PortOptions{}), ConsoleOptions{RunDir: dir})
	c2.Close()
	if n := len(readBoardLog(t, c.LogPath())); n <= len(es) {
		t.Errorf("log has %d lines after a second console, had %d", n, len(es))
	}
}

func TestRedactionInLogAndErrors(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	r := NewRedactor()
	psk := []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb}
	fp, err := r.AddPSK(psk)
	if err != nil {
		t.Fatal(err)
	}
	token := "Zm9vYmFyLW93bmVyc2hpcC10b2tlbg"
	tfp, err := r.AddToken(token)
	if err != nil {
		t.Fatal(err)
	}
	lower := fmt.Sprintf("%x", psk)
	upper := strings.ToUpper(lower)
	secrets := []string{lower, upper, token, lower[4:28]}

	b := newPtyBoard(t)
	c := newTestConsole(t, openTestPort(t, "esp32-2", PathResolver(b.path), PortOptions{}), ConsoleOptions{RunDir: dir, Redactor: r})

	// Sent: the secret split between two writes.
	if _, err := c.Write([]byte("settings set golioth/psk " + lower[:11])); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(lower[11:] + "\n")); err != nil {
		t.Fatal(err)
	}
	if got := b.readUntil("\n"); got != "settings set golioth/psk "+lower+"\n" {
		t.Fatalf("board got %q: redaction must not touch what is sent", got)
	}
	// Received: upper-case hex split between two reads.
	first := "I (99) creds: psk=" + upper[:7]
	b.write(first)
	if err := c.waitReceived(ctx, int64(len(first))); err != nil {
		t.Fatal(err)
	}
	b.write(upper[7:] + "\r\n")
	m, err := c.Expect(ctx, `psk=([0-9A-F]+)\n`, ExpectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Groups[0] != upper {
		t.Errorf("Match is not redacted: got %q", m.Groups[0])
	}
	b.write("token " + token + "\r\n")
	// An error quotes the tail and the pattern, both redacted.
	_, err = c.Expect(ctx, "ack "+lower, ExpectOptions{Timeout: 20 * time.Millisecond, Literal: true})
	if !errors.Is(err, ErrExpectTimeout) {
		t.Fatalf("Expect: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "<redacted fp="+fp+">") || !strings.Contains(msg, "token <redacted fp="+tfp+">") {
		t.Errorf("message lacks markers:\n%s", msg)
	}
	c.Note("provisioned psk %s", lower)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(c.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for what, text := range map[string]string{"error": msg, "log": string(data)} {
			if strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
				t.Errorf("%s contains secret %q:\n%s", what, s, text)
			}
		}
	}
	want := []string{
		"> settings set golioth/psk <redacted fp=" + fp + ">",
		"< I (99) creds: psk=<redacted fp=" + fp + ">",
		"< token <redacted fp=" + tfp + ">",
	}
	if got := dirTexts(readBoardLog(t, c.LogPath())); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(string(data), "# provisioned psk <redacted fp="+fp+">") {
		t.Errorf("note not redacted:\n%s", data)
	}
}

func TestPortReopensAfterReenumeration(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	b1 := newPtyBoard(t)
	var mu sync.Mutex
	current := b1.path
	calls := 0
	resolve := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return current, nil
	}
	events := make(chan PortEvent, 16)
	p := openTestPort(t, "esp32-s3", resolve, PortOptions{OnEvent: func(ev PortEvent) {
		select {
		case events <- ev:
		default:
		}
	}})
	c := newTestConsole(t, p, ConsoleOptions{RunDir: dir})
	b1.write("boot 1\r\n")
	if _, err := c.Expect(ctx, `boot 1\n`, ExpectOptions{}); err != nil {
		t.Fatal(err)
	}

	b1.unplug()
	select {
	case ev := <-events:
		if ev.Kind != PortLost || ev.Path != b1.path || ev.Board != "esp32-s3" {
			t.Fatalf("event %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no PortLost event")
	}
	// The device comes back, as the enumerator would find it.
	b2 := newPtyBoard(t)
	mu.Lock()
	current = b2.path
	mu.Unlock()
	b2.write("boot 2\r\n")
	if _, err := c.Expect(ctx, `boot 2\n`, ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send("hello"); err != nil {
		t.Fatal(err)
	}
	b2.readUntil("hello\n")
	if p.Path() != b2.path {
		t.Errorf("Path %q, want %q", p.Path(), b2.path)
	}
	for ev := range len(events) {
		_ = ev
		e := <-events
		if e.Kind == PortReopened {
			if e.Path != b2.path || e.Attempts < 1 {
				t.Errorf("reopened event %+v", e)
			}
		}
	}
	c.Close()
	var notes []string
	for _, e := range readBoardLog(t, c.LogPath()) {
		if e.dir == DirNote {
			notes = append(notes, e.text)
		}
	}
	all := strings.Join(notes, "\n")
	if !strings.Contains(all, "port "+b1.path+" lost") || !strings.Contains(all, "port reopened as "+b2.path) {
		t.Errorf("log notes:\n%s", all)
	}
}

func TestPortGone(t *testing.T) {
	ctx := testCtx(t)
	notTTY := filepath.Join(t.TempDir(), "not-a-tty")
	if err := os.WriteFile(notTTY, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := newPtyBoard(t)
	var current atomic.Value
	current.Store(b.path)
	resolve := func(ctx context.Context) (string, error) { return current.Load().(string), nil }
	p := openTestPort(t, "cc-1", resolve, PortOptions{ReopenWithin: 100 * time.Millisecond})
	c := newTestConsole(t, p, ConsoleOptions{})

	// It comes back as something that is not a serial port: the error
	// says so, and keeps go.bug.st/serial's code.
	current.Store(notTTY)
	b.unplug()
	_, err := c.Expect(ctx, "never", ExpectOptions{Timeout: time.Hour})
	if !errors.Is(err, ErrPortGone) {
		t.Fatalf("Expect: %v", err)
	}
	var pe *serial.PortError
	if !errors.As(err, &pe) || pe.Code() != serial.InvalidSerialPort {
		t.Fatalf("no *serial.PortError in %v", err)
	}
	for _, want := range []string{"board cc-1", "did not come back", "within 100ms", notTTY} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	// Read and Write fail the same way.
	current.Store("/dev/credloop-no-such-port")
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPortGone) || !errors.Is(err, ErrPortNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Write: %v", err)
	}

	// A new device, and an explicit Reopen brings it back; the console
	// carries on.
	b2 := newPtyBoard(t)
	current.Store(b2.path)
	if err := p.Reopen(ctx); err != nil {
		t.Fatal(err)
	}
	b2.write("back\n")
	if _, err := c.Expect(ctx, "back", ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenPortErrors(t *testing.T) {
	ctx := testCtx(t)
	notTTY := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notTTY, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		resolve Resolver
		is      []error
		code    serial.PortErrorCode // -1: no *serial.PortError
		msg     []string
	}{
		{"missing", PathResolver("/dev/credloop-missing"), []error{ErrPortNotFound, fs.ErrNotExist}, -1, []string{"board b1", "open /dev/credloop-missing", "not found"}},
		{"not a tty", PathResolver(notTTY), nil, serial.InvalidSerialPort, []string{"board b1", "open " + notTTY, "Invalid serial port"}},
		{"resolver fails", func(context.Context) (string, error) { return "", fmt.Errorf("%w: unplugged", ErrPortNotFound) }, []error{ErrPortNotFound}, -1, []string{"board b1", "find port", "unplugged"}},
		{"no resolver", nil, []error{ErrPortNotFound}, -1, []string{"board b1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := OpenPort(ctx, PortOptions{Board: "b1", Resolve: tc.resolve})
			if err == nil {
				p.Close()
				t.Fatal("opened")
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("%v is not %v", err, target)
				}
			}
			var pe *serial.PortError
			if got := errors.As(err, &pe); got != (tc.code >= 0) || got && pe.Code() != tc.code {
				t.Errorf("*serial.PortError in %v: %v %+v", err, got, pe)
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q: %v", s, err)
				}
			}
		})
	}
}

func TestModemLinesOnPty(t *testing.T) {
	ctx := testCtx(t)
	b := newPtyBoard(t)
	p := openTestPort(t, "esp32-1", PathResolver(b.path), PortOptions{})
	steps, err := ParseResetSequence(HardReset)
	if err != nil {
		t.Fatal(err)
	}
	err = p.SetDTR(false)
	if err == nil {
		// This system's pseudo-terminals have modem lines: then they
		// must all work.
		if err := Run(ctx, p, steps); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !errors.Is(err, ErrModemLines) || !errors.Is(err, syscall.ENOTTY) {
		t.Fatalf("SetDTR: %v", err)
	}
	for _, want := range []string{"board esp32-1", "set DTR " + b.path, "no DTR/RTS modem lines", "pseudo-terminals"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	if err := p.SetRTS(true); !errors.Is(err, ErrModemLines) {
		t.Errorf("SetRTS: %v", err)
	}
	// The port still works, and so does a reset through the console.
	c := newTestConsole(t, p, ConsoleOptions{})
	if err := Run(ctx, c, steps); !errors.Is(err, ErrModemLines) || !strings.Contains(err.Error(), "reset step 1 (D0)") {
		t.Fatalf("Run: %v", err)
	}
	b.write("alive\n")
	if _, err := c.Expect(ctx, "alive", ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// notifyBuffer is an io.Writer that can be waited on.
type notifyBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{notify: make(chan struct{})} }

func (w *notifyBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.notify)
	w.notify = make(chan struct{})
	return len(p), nil
}

func (w *notifyBuffer) waitFor(ctx context.Context, s string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !strings.Contains(w.buf.String(), s) {
		ch := w.notify
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			w.mu.Lock()
			return fmt.Errorf("waiting for %q in %q: %w", s, w.buf.String(), ctx.Err())
		}
		w.mu.Lock()
	}
	return nil
}

func TestInteract(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	r := NewRedactor()
	if _, err := r.AddToken("hunter2hunter2"); err != nil {
		t.Fatal(err)
	}
	b := newPtyBoard(t)
	c := newTestConsole(t, openTestPort(t, "nrf-2", PathResolver(b.path), PortOptions{}), ConsoleOptions{RunDir: dir, Redactor: r})
	inR, inW := io.Pipe()
	t.Cleanup(func() { inW.Close() })
	out := newNotifyBuffer()
	errc := make(chan error, 1)
	go func() { errc <- c.Interact(ctx, inR, out) }()

	// Typed keys go to the board as they come; the log gets lines.
	for _, chunk := range []string{"set pass", "word hunter2", "hunter2\r"} {
		if _, err := inW.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.readUntil("\r"); got != "set password hunter2hunter2\r" {
		t.Fatalf("board got %q", got)
	}
	// The board's output reaches out unchanged.
	b.write("\x1b[1;32muart:~$ \x1b[m\r\nok\r\n")
	if err := out.waitFor(ctx, "\x1b[1;32muart:~$ \x1b[m\r\nok\r\n"); err != nil {
		t.Fatal(err)
	}
	// Ctrl-] ends the session; what follows it is not sent.
	if _, err := inW.Write([]byte{'x', CtrlRightBracket, 'y'}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Interact: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Interact did not end on Ctrl-]")
	}
	if err := c.Send("after"); err != nil {
		t.Fatal(err)
	}
	if got := b.readUntil("after\n"); got != "xafter\n" {
		t.Fatalf("board got %q after Ctrl-]", got)
	}
	// A cancelled context ends it too.
	cctx, cancel := context.WithCancel(ctx)
	go func() { errc <- c.Interact(cctx, inR, io.Discard) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Interact: %v", err)
	}
	c.Close()
	got := dirTexts(readBoardLog(t, c.LogPath()))
	want := []string{"> set password <redacted fp=" + Fingerprint([]byte("hunter2hunter2")) + ">", "< uart:~$ ", "< ok", "> xafter"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConsoleClose(t *testing.T) {
	ctx := testCtx(t)
	b := newPtyBoard(t)
	p := openTestPort(t, "b", PathResolver(b.path), PortOptions{})
	c := newTestConsole(t, p, ConsoleOptions{})
	tap := c.Tap()
	errc := make(chan error, 2)
	go func() {
		_, err := c.Expect(ctx, "never", ExpectOptions{Timeout: time.Hour})
		errc <- err
	}()
	go func() {
		_, err := io.ReadAll(tap)
		errc <- err
	}()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := <-errc; err != nil && !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("pending: %v", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("pending: %v", err)
	}
	if _, err := c.Expect(ctx, "x", ExpectOptions{}); !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("Expect after Close: %v", err)
	}
	if err := c.Send("x"); !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, ErrPortClosed) {
		t.Errorf("port Read after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second port Close: %v", err)
	}
}

func TestPortReadWrite(t *testing.T) {
	b := newPtyBoard(t)
	p := openTestPort(t, "b", PathResolver(b.path), PortOptions{Baud: 921600})
	if _, err := p.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	b.readUntil("ping\n")
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	b.write("pong")
	buf := make([]byte, 16)
	var got []byte
	for len(got) < 4 {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "pong" {
		t.Fatalf("read %q", got)
	}
	if p.Board() != "b" || !strings.Contains(p.String(), b.path) {
		t.Errorf("String %q", p.String())
	}
}
