package hil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Console errors.
var (
	ErrExpectTimeout = errors.New("hil: expect timed out")
	ErrMustNotMatch  = errors.New("hil: a must-not-match pattern appeared")
	ErrConsoleClosed = errors.New("hil: console closed")
	// ErrStopped is what a connection's Read returns (wrapped) when the
	// board behind it stopped but may start again, such as firmware run
	// as a process on this host that exited: the console records it
	// (Expects fail with it instead of waiting) and reads on; the next
	// text received clears it.
	ErrStopped = errors.New("hil: board stopped")
)

// Console defaults.
const (
	// DefaultExpectTimeout is pytest-embedded's expect timeout.
	DefaultExpectTimeout = 30 * time.Second
	// DefaultBufferSize is about how much unmatched output Expect keeps;
	// older text is dropped.
	DefaultBufferSize = 1 << 20
	// DefaultTailLines is how many received lines an Expect error quotes.
	DefaultTailLines = 20

	historySize = 16 << 10 // received text kept for error messages
	tapLimit    = 4 << 20  // unread bytes a Tap keeps
	tailWidth   = 300      // longest line quoted in an error
	// CtrlRightBracket (Ctrl-]) ends Interact, as in telnet and
	// miniterm.
	CtrlRightBracket = 0x1d
)

// ConsoleOptions configures NewConsole. The zero value logs nowhere and
// redacts nothing.
type ConsoleOptions struct {
	// Name is the board's name, for the log file and errors. Empty means
	// the Port's board name when the connection is a *Port.
	Name string
	// RunDir, if set, gets the board log at <RunDir>/boards/<Name>.log
	// (appended to).
	RunDir string
	// Log receives the board log when RunDir is empty. Nil: no log.
	Log io.Writer
	// Redactor rewrites secrets in the log and in error messages.
	Redactor *Redactor
	// Now stamps log lines; nil means time.Now.
	Now func() time.Time
	// LineEnding ends each Send; "\n" when empty (ESP-IDF's console and
	// the Zephyr shell both take it).
	LineEnding string
	// BufferSize bounds the unmatched text Expect keeps;
	// DefaultBufferSize when 0.
	BufferSize int
	// TailLines is how many received lines an Expect error quotes;
	// DefaultTailLines when 0.
	TailLines int
	// LogEscapes keeps ANSI escape sequences (colours) in the board log,
	// written as \x1b[...; Expect never sees them.
	LogEscapes bool
}

// Console is a board's serial console: a goroutine reads everything the
// board prints into the board log and into a buffer that Expect consumes,
// in the manner of pytest-embedded's dut.expect. Received text is
// normalized first: \r\n and a bare \r become \n, and ANSI escape
// sequences are dropped. The log and error messages are redacted; Match
// results are not.
//
// The board log has one line per console line, stamped in UTC when the
// line ended, with '<' for received, '>' for sent and '#' for the
// harness's notes (port lost, reopened):
//
//	2025-03-14T15:09:26.123Z > kernel reboot cold
//	2025-03-14T15:09:26.140Z < uart:~$ kernel reboot cold
//	2025-03-14T15:09:26.171Z # port /dev/ttyACM0 lost (Port has been closed); reopening
type Console struct {
	conn io.ReadWriteCloser
	opts ConsoleOptions
	log  *boardLog

	wmu    sync.Mutex // orders writes and their log lines
	txNorm normalizer
	rxNorm normalizer // the reader goroutine's
	rxLog  normalizer // the reader goroutine's, for the log with LogEscapes

	mu       sync.Mutex
	buf      []byte // normalized text not consumed by a match
	hist     []byte // the last normalized text received, for errors
	cut      bool   // hist lost its start
	received int64  // raw bytes received
	readErr  error  // why the last read failed; nil once data flows again
	closed   bool
	notify   chan struct{} // closed and replaced when anything changes
	taps     map[*Tap]bool

	closing   chan struct{}
	done      chan struct{} // the reader goroutine has ended
	closeOnce sync.Once
	closeErr  error
}

// NewConsole starts reading conn, which the Console owns from now on:
// Close closes it. conn is usually a *Port; ModemLines and Drain pass
// through when conn has them.
func NewConsole(conn io.ReadWriteCloser, opts ConsoleOptions) (*Console, error) {
	port, _ := conn.(*Port)
	if opts.Name == "" && port != nil {
		opts.Name = port.Board()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LineEnding == "" {
		opts.LineEnding = "\n"
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.TailLines <= 0 {
		opts.TailLines = DefaultTailLines
	}
	log, err := openBoardLog(opts.RunDir, opts.Name, opts.Log, opts.Now, opts.Redactor)
	if err != nil {
		return nil, err
	}
	c := &Console{conn: conn, opts: opts, log: log, notify: make(chan struct{}),
		taps: map[*Tap]bool{}, closing: make(chan struct{}), done: make(chan struct{})}
	c.rxLog.keepEscapes = true
	if port != nil {
		port.observe(c.portEvent)
		c.log.note("console on %s", port.Path())
	}
	go c.readLoop(port)
	return c, nil
}

// Name is the board's name.
func (c *Console) Name() string { return c.opts.Name }

// LogPath is the board log's file, or "" when it has none.
func (c *Console) LogPath() string { return c.log.path }

// Conn is the connection the console reads (usually a *Port).
func (c *Console) Conn() io.ReadWriteCloser { return c.conn }

// wake tells waiters something changed; c.mu is held.
func (c *Console) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

func (c *Console) portEvent(ev PortEvent) {
	c.log.note("%s", ev)
	if ev.Kind == PortReopened {
		c.mu.Lock()
		c.readErr = nil
		c.wake()
		c.mu.Unlock()
	}
}

func (c *Console) readLoop(port *Port) {
	defer close(c.done)
	b := make([]byte, 4096)
	for {
		n, err := c.conn.Read(b)
		if n > 0 {
			c.ingest(b[:n])
		}
		if err == nil {
			continue
		}
		select {
		case <-c.closing:
			return
		default:
		}
		c.mu.Lock()
		c.readErr = err
		c.wake()
		c.mu.Unlock()
		if port == nil {
			if errors.Is(err, ErrStopped) {
				continue // the connection said why in what it sent
			}
			c.log.note("read failed: %v", err)
			return
		}
		if !errors.Is(err, ErrPortGone) {
			return
		}
		// Gone: wait until someone brings the port back (a Write or a
		// Reopen) or closes the console.
		port.mu.Lock()
		ch, up := port.changed, port.sp != nil
		port.mu.Unlock()
		if !up {
			select {
			case <-ch:
			case <-c.closing:
				return
			}
		}
	}
}

// ingest takes raw bytes from the board.
func (c *Console) ingest(raw []byte) {
	text := c.rxNorm.append(nil, raw)
	if c.opts.LogEscapes {
		c.log.text(DirReceived, c.rxLog.append(nil, raw))
	} else {
		c.log.text(DirReceived, text)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received += int64(len(raw))
	c.readErr = nil
	c.buf = append(c.buf, text...)
	if len(c.buf) > 2*c.opts.BufferSize {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-c.opts.BufferSize:]...)
	}
	c.hist = append(c.hist, text...)
	if len(c.hist) > 2*historySize {
		c.hist = append(c.hist[:0], c.hist[len(c.hist)-historySize:]...)
		c.cut = true
	}
	for t := range c.taps {
		t.buf = append(t.buf, raw...)
		if len(t.buf) > tapLimit {
			t.buf = append(t.buf[:0], t.buf[len(t.buf)-tapLimit/2:]...)
		}
	}
	c.wake()
}

// ExpectOptions tunes one Expect.
type ExpectOptions struct {
	// Timeout bounds the wait (as does ctx); DefaultExpectTimeout when 0.
	Timeout time.Duration
	// NotMatch are "must not match" patterns, such as
	// `Guru Meditation|panic|ASSERTION FAIL`: Expect fails at once when
	// one appears before the end of the match.
	NotMatch []*regexp.Regexp
	// Literal makes a string pattern plain text, as in pytest-embedded's
	// expect_exact.
	Literal bool
}

// Match is what Expect found.
type Match struct {
	Text   string   // the matched text
	Before string   // the text between the previous match and this one
	Groups []string // the pattern's groups: Groups[0] is group 1 ("" if it did not take part)
	names  []string
}

// Group returns the named group's text, or "".
func (m Match) Group(name string) string {
	for i, n := range m.names {
		if n == name && i >= 1 && i-1 < len(m.Groups) {
			return m.Groups[i-1]
		}
	}
	return ""
}

// ExpectError is a failed Expect. Its message quotes the last lines the
// board printed; everything in it is redacted.
type ExpectError struct {
	Board    string
	Pattern  string        // the pattern looked for
	NotMatch string        // ErrMustNotMatch: the pattern that appeared
	Found    string        // ErrMustNotMatch: the text it matched
	Waited   time.Duration // how long Expect waited
	Tail     []string      // the last lines received
	Log      string        // the board log's path, if any
	Err      error         // ErrExpectTimeout, ErrMustNotMatch, ErrConsoleClosed, or why reading failed
	Cause    error         // ErrExpectTimeout: the context's error
}

func (e *ExpectError) Error() string {
	var b strings.Builder
	b.WriteString("hil: ")
	if e.Board != "" {
		b.WriteString("board " + e.Board + ": ")
	}
	fmt.Fprintf(&b, "expect /%s/: ", e.Pattern)
	switch {
	case errors.Is(e.Err, ErrExpectTimeout):
		fmt.Fprintf(&b, "timed out after %v", e.Waited.Round(time.Millisecond))
	case errors.Is(e.Err, ErrMustNotMatch):
		fmt.Fprintf(&b, "must-not-match /%s/ appeared: %q", e.NotMatch, e.Found)
	default:
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "hil: "))
	}
	if len(e.Tail) == 0 {
		b.WriteString("; nothing received")
	} else {
		fmt.Fprintf(&b, "; last %d line(s) received:", len(e.Tail))
		for _, l := range e.Tail {
			b.WriteString("\n    | " + l)
		}
	}
	if e.Log != "" {
		b.WriteString("\n  board log: " + e.Log)
	}
	return b.String()
}

// Unwrap returns Err and Cause.
func (e *ExpectError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

func compilePattern(pattern any, literal bool) (*regexp.Regexp, error) {
	switch p := pattern.(type) {
	case string:
		if literal {
			p = regexp.QuoteMeta(p)
		}
		return regexp.Compile(p)
	case *regexp.Regexp:
		if p == nil {
			return nil, errors.New("nil pattern")
		}
		return p, nil
	}
	return nil, fmt.Errorf("pattern is a %T, not a string or *regexp.Regexp", pattern)
}

// Expect waits until pattern (a string regexp, or a *regexp.Regexp)
// matches the text received since the last match, consumes the text up to
// the end of the match and returns it. It fails at once if a NotMatch
// pattern appears before the end of the match (that text is consumed
// too), and when opts.Timeout or ctx runs out, with an *ExpectError that
// quotes the last lines received.
//
// The text is matched as it arrives, so `count: \d+` may match "count: 1"
// of "count: 12"; end patterns that matter with \n. Expect calls should
// not overlap.
func (c *Console) Expect(ctx context.Context, pattern any, opts ExpectOptions) (Match, error) {
	re, err := compilePattern(pattern, opts.Literal)
	if err != nil {
		return Match{}, c.opts.Redactor.RedactError(fmt.Errorf("hil: board %s: expect: %w", c.opts.Name, err))
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultExpectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	expired := false
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		var nm *regexp.Regexp
		var nmLoc []int
		for _, r := range opts.NotMatch {
			if r == nil {
				continue
			}
			if loc := r.FindIndex(c.buf); loc != nil && (nmLoc == nil || loc[0] < nmLoc[0]) {
				nm, nmLoc = r, loc
			}
		}
		m := re.FindSubmatchIndex(c.buf)
		switch {
		case nmLoc != nil && (m == nil || nmLoc[0] < m[1]):
			found := string(c.buf[nmLoc[0]:nmLoc[1]])
			e := c.expectError(re, ErrMustNotMatch, nil, start)
			e.NotMatch = c.opts.Redactor.Redact(nm.String())
			e.Found = c.opts.Redactor.Redact(found)
			c.consume(nmLoc[1])
			return Match{}, e
		case m != nil:
			match := Match{Text: string(c.buf[m[0]:m[1]]), Before: string(c.buf[:m[0]]), names: re.SubexpNames()}
			for i := 2; i+1 < len(m); i += 2 {
				g := ""
				if m[i] >= 0 {
					g = string(c.buf[m[i]:m[i+1]])
				}
				match.Groups = append(match.Groups, g)
			}
			c.consume(m[1])
			return match, nil
		case c.closed:
			return Match{}, c.expectError(re, ErrConsoleClosed, nil, start)
		case c.readErr != nil && !errors.Is(c.readErr, ErrPortClosed):
			return Match{}, c.expectError(re, c.opts.Redactor.RedactError(c.readErr), nil, start)
		case expired:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Match{}, c.expectError(re, ErrExpectTimeout, ctx.Err(), start)
			}
			return Match{}, c.expectError(re, ctx.Err(), nil, start)
		}
		ch := c.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			expired = true // look once more, then fail
		}
		c.mu.Lock()
	}
}

// consume drops the buffer up to n; c.mu is held.
func (c *Console) consume(n int) {
	c.buf = append(c.buf[:0], c.buf[n:]...)
}

// expectError builds an ExpectError; c.mu is held.
func (c *Console) expectError(re *regexp.Regexp, err, cause error, start time.Time) *ExpectError {
	return &ExpectError{
		Board:   c.opts.Name,
		Pattern: c.opts.Redactor.Redact(re.String()),
		Waited:  time.Since(start),
		Tail:    c.tail(),
		Log:     c.log.path,
		Err:     err,
		Cause:   cause,
	}
}

// tail returns the last TailLines lines received, redacted and printable;
// c.mu is held.
func (c *Console) tail() []string {
	h := c.hist
	if c.cut {
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			h = h[i+1:]
		}
	}
	h = bytes.TrimSuffix(c.opts.Redactor.RedactBytes(h), []byte("\n"))
	if len(h) == 0 {
		return nil
	}
	lines := bytes.Split(h, []byte("\n"))
	if len(lines) > c.opts.TailLines {
		lines = lines[len(lines)-c.opts.TailLines:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > tailWidth {
			cut := tailWidth
			for cut > 0 && !utf8.RuneStart(l[cut]) {
				cut--
			}
			l = append(l[:cut:cut], "…"...)
		}
		out[i] = string(appendPrintable(nil, l))
	}
	return out
}

// Discard drops the received text Expect has not consumed and returns it,
// so the next Expect sees only what comes after.
func (c *Console) Discard() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(c.buf)
	c.buf = c.buf[:0]
	return s
}

// Write sends p to the board and logs it (redacted).
func (c *Console) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("hil: board %s: write: %w", c.opts.Name, ErrConsoleClosed)
	}
	// Logged first: the board may answer before Write returns.
	c.log.text(DirSent, c.txNorm.append(nil, p))
	n, err := c.conn.Write(p)
	if err != nil {
		err = c.opts.Redactor.RedactError(err)
		c.log.note("write failed after %d of %d bytes: %v", n, len(p), err)
		return n, err
	}
	return n, nil
}

// Send sends line followed by the line ending.
func (c *Console) Send(line string) error {
	_, err := c.Write([]byte(line + c.opts.LineEnding))
	return err
}

// Drain waits until what was written has gone out, when the connection
// can tell (a *Port can).
func (c *Console) Drain() error {
	if d, ok := c.conn.(interface{ Drain() error }); ok {
		return d.Drain()
	}
	return nil
}

// Note writes a line from the harness into the board log, such as the
// reset sequence about to run. It is redacted like the rest.
func (c *Console) Note(format string, args ...any) {
	c.log.note(format, args...)
}

func (c *Console) modem(op string, f func(ModemLines) error) error {
	m, ok := c.conn.(ModemLines)
	if !ok {
		return &SerialError{Board: c.opts.Name, Op: op, Kind: ErrModemLines, Detail: "the console's connection is not a serial port"}
	}
	return f(m)
}

// SetDTR passes through to the connection, so Run(ctx, console, steps)
// resets the board.
func (c *Console) SetDTR(dtr bool) error {
	return c.modem("set DTR", func(m ModemLines) error { return m.SetDTR(dtr) })
}

// SetRTS passes through to the connection.
func (c *Console) SetRTS(rts bool) error {
	return c.modem("set RTS", func(m ModemLines) error { return m.SetRTS(rts) })
}

// Close stops the reader, closes the connection, finishes the log and
// waits for all of it. Pending and later Expects fail with
// ErrConsoleClosed. Close may be called again; it returns the same error.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.closing)
		c.wake()
		c.mu.Unlock()
		err := c.conn.Close()
		<-c.done
		c.closeErr = errors.Join(err, c.log.close())
	})
	return c.closeErr
}

// Tap is a raw view of a console: Read returns every byte the board sends
// from the Tap's creation on (unnormalized), Write writes to the board
// through the console (and its log). A protocol client that shares the
// UART with the console, such as an SMP client, reads a Tap.
type Tap struct {
	c      *Console
	buf    []byte
	closed bool
}

// Tap starts a raw view of the console.
func (c *Console) Tap() *Tap {
	t := &Tap{c: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		t.closed = true
	} else {
		c.taps[t] = true
	}
	return t
}

// Read blocks until the board sends something, or the Tap or console is
// closed (io.EOF).
func (t *Tap) Read(p []byte) (int, error) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(t.buf) == 0 {
		if t.closed || c.closed {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		ch := c.notify
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}

// Write writes to the board through the console.
func (t *Tap) Write(p []byte) (int, error) { return t.c.Write(p) }

// Close detaches the Tap; a pending Read returns io.EOF.
func (t *Tap) Close() error {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t.closed = true
	delete(c.taps, t)
	c.wake()
	return nil
}

// Interact connects a person to the board: what they type on in goes to
// the board (a chunk at a time, as a raw-mode terminal sends it; a line at
// a time from a cooked one) and what the board prints goes to out,
// unredacted and unnormalized, while both directions are logged (redacted)
// as usual. It ends on Ctrl-] or end of input (nil), when ctx is done, or
// when writing to out fails. A Read from in that blocks is left behind and
// ends when in does; nothing it returns afterwards reaches the board.
func (c *Console) Interact(ctx context.Context, in io.Reader, out io.Writer) error {
	tap := c.Tap()
	c.Note("interactive session started (Ctrl-] ends it)")
	outDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, tap)
		outDone <- err
	}()
	var smu sync.Mutex // held while forwarding; stopped is set under it
	stopped := false
	inDone := make(chan error, 1)
	go func() {
		b := make([]byte, 1024)
		for {
			n, err := in.Read(b)
			chunk := b[:n]
			quit := false
			if i := bytes.IndexByte(chunk, CtrlRightBracket); i >= 0 {
				chunk, quit = chunk[:i], true
			}
			smu.Lock()
			if stopped {
				smu.Unlock()
				return
			}
			if len(chunk) > 0 {
				if _, werr := c.Write(chunk); werr != nil {
					smu.Unlock()
					inDone <- werr
					return
				}
			}
			smu.Unlock()
			switch {
			case quit, err == io.EOF:
				inDone <- nil
				return
			case err != nil:
				inDone <- fmt.Errorf("hil: board %s: interactive input: %w", c.opts.Name, err)
				return
			}
		}
	}()
	var err error
	outEnded := false
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-inDone:
	case err = <-outDone:
		outEnded = true
		if err == nil {
			err = fmt.Errorf("hil: board %s: interact: %w", c.opts.Name, ErrConsoleClosed)
		} else {
			err = fmt.Errorf("hil: board %s: interactive output: %w", c.opts.Name, err)
		}
	}
	smu.Lock()
	stopped = true
	smu.Unlock()
	_ = tap.Close()
	if !outEnded {
		<-outDone
	}
	c.Note("interactive session ended")
	return err
}
