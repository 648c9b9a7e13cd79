package hil

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// Serial port errors. A *SerialError carries one of them (errors.Is) next
// to the cause from go.bug.st/serial (errors.As with *serial.PortError) or
// the operating system (errors.Is with fs.ErrNotExist, syscall.ENOTTY).
var (
	ErrPortClosed    = errors.New("hil: serial port closed")
	ErrPortNotFound  = errors.New("hil: serial port not found")
	ErrAmbiguousPort = errors.New("hil: more than one serial port matches")
	ErrPortGone      = errors.New("hil: serial port did not come back")
	ErrModemLines    = errors.New("hil: serial port has no DTR/RTS modem lines")
)

// Port defaults.
const (
	// DefaultReopenWithin is how long a Port waits for a port that
	// disappeared to come back. A USB CDC port of a board that resets
	// re-enumerates within a second or two.
	DefaultReopenWithin = 10 * time.Second

	minBackoff = 20 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// SerialError is a failed operation on a board's serial port.
type SerialError struct {
	Board  string // the board's name
	Op     string // "open", "read", "set DTR", ...
	Path   string // the device path, if known
	Kind   error  // ErrPortNotFound, ErrPortGone, ErrModemLines, ... or nil
	Detail string // more about Kind
	Err    error  // the cause, often a *serial.PortError or a syscall.Errno
}

func (e *SerialError) Error() string {
	var b strings.Builder
	b.WriteString("hil: ")
	if e.Board != "" {
		b.WriteString("board " + e.Board + ": ")
	}
	e.describe(&b)
	return b.String()
}

func (e *SerialError) describe(b *strings.Builder) {
	b.WriteString(e.Op)
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	if e.Kind != nil {
		b.WriteString(": " + strings.TrimPrefix(e.Kind.Error(), "hil: "))
	}
	if e.Detail != "" {
		b.WriteString(" (" + e.Detail + ")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		if in, ok := e.Err.(*SerialError); ok && in.Board == e.Board {
			in.describe(b)
		} else {
			b.WriteString(strings.TrimPrefix(e.Err.Error(), "hil: "))
		}
	}
}

// Unwrap returns Kind and Err.
func (e *SerialError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Kind, e.Err} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// openKind classifies an error from serial.Open.
func openKind(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortNotFound {
		return ErrPortNotFound
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO) {
		return ErrPortNotFound
	}
	return nil
}

// modemKind says whether err from a modem-line call means the port has no
// such lines: a pseudo-terminal answers TIOCMGET with ENOTTY.
func modemKind(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.FunctionNotImplemented {
		return ErrModemLines
	}
	if errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		return ErrModemLines
	}
	return nil
}

// Resolver finds the device path of a board's serial port. A Port calls it
// each time it opens the port, so a USB device that re-enumerates under
// another name is found again. It should return when ctx is done.
type Resolver func(ctx context.Context) (path string, err error)

// PathResolver always answers path.
func PathResolver(path string) Resolver {
	return func(context.Context) (string, error) { return path, nil }
}

// PortInfo describes a serial port found by ListPorts.
type PortInfo struct {
	Path         string // /dev/ttyACM0
	USB          bool
	VID, PID     string // upper-case hex, as go.bug.st/serial/enumerator reports them
	SerialNumber string
	Location     string // USB bus path of the device, such as 1-1.2 (Linux)
	Interface    string // USB interface, such as 1-1.2:1.0 (Linux)
	Manufacturer string
	Product      string
}

// ListPorts enumerates the serial ports with go.bug.st/serial/enumerator;
// on Linux it adds each USB port's bus location from sysfs.
func ListPorts() ([]PortInfo, error) {
	list, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, fmt.Errorf("hil: listing serial ports: %w", err)
	}
	var out []PortInfo
	for _, d := range list {
		if d == nil || d.Name == "" {
			continue
		}
		info := PortInfo{Path: d.Name, USB: d.IsUSB, VID: d.VID, PID: d.PID, SerialNumber: d.SerialNumber,
			Manufacturer: d.Manufacturer, Product: d.Product}
		if d.IsUSB {
			info.Location, info.Interface = usbLocation(d.Name)
		}
		out = append(out, info)
	}
	return out, nil
}

var (
	usbDevRE   = regexp.MustCompile(`^[0-9]+-[0-9]+(\.[0-9]+)*$`)
	usbIfaceRE = regexp.MustCompile(`^[0-9]+-[0-9]+(\.[0-9]+)*:[0-9]+\.[0-9]+$`)
)

// usbLocation reads a tty's USB device and interface bus paths from sysfs
// (/sys/class/tty/ttyACM0/device → .../1-1/1-1.2/1-1.2:1.0). It returns
// empty strings where sysfs does not say.
func usbLocation(devPath string) (dev, iface string) {
	real, err := filepath.EvalSymlinks(filepath.Join("/sys/class/tty", filepath.Base(devPath), "device"))
	if err != nil {
		return "", ""
	}
	for _, c := range strings.Split(filepath.ToSlash(real), "/") {
		switch {
		case usbDevRE.MatchString(c):
			dev = c
		case usbIfaceRE.MatchString(c):
			iface = c
		}
	}
	return dev, iface
}

// USBResolver finds a USB serial port by its adapter's serial number
// and/or bus location (1-1.2, or 1-1.2:1.0 for one interface of a
// multi-port adapter), enumerating the ports at every call.
func USBResolver(serialNumber, location string) Resolver {
	return func(ctx context.Context) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		ports, err := ListPorts()
		if err != nil {
			return "", err
		}
		return matchUSB(ports, serialNumber, location)
	}
}

func usbWant(serialNumber, location string) string {
	var w []string
	if serialNumber != "" {
		w = append(w, fmt.Sprintf("serial number %q", serialNumber))
	}
	if location != "" {
		w = append(w, "location "+location)
	}
	return strings.Join(w, " at ")
}

// matchUSB picks the one port with the serial number and location.
func matchUSB(ports []PortInfo, serialNumber, location string) (string, error) {
	if serialNumber == "" && location == "" {
		return "", fmt.Errorf("%w: no serial number or location to look for", ErrPortNotFound)
	}
	var hits, seen []string
	for _, p := range ports {
		if !p.USB {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s (serial %q, location %s)", p.Path, p.SerialNumber, cmpOr(p.Interface, p.Location, "?")))
		if serialNumber != "" && p.SerialNumber != serialNumber {
			continue
		}
		if location != "" && location != p.Location && location != p.Interface {
			continue
		}
		hits = append(hits, p.Path)
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		if len(seen) == 0 {
			return "", fmt.Errorf("%w: no USB serial port with %s; no USB serial ports attached", ErrPortNotFound, usbWant(serialNumber, location))
		}
		return "", fmt.Errorf("%w: no USB serial port with %s; attached: %s", ErrPortNotFound, usbWant(serialNumber, location), strings.Join(seen, ", "))
	}
	return "", fmt.Errorf("%w: %s matches %s; give the interface's location (such as 1-1.2:1.0)", ErrAmbiguousPort, usbWant(serialNumber, location), strings.Join(hits, ", "))
}

func cmpOr(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// PortOptions configures OpenPort.
type PortOptions struct {
	// Board names the board in errors and events.
	Board string
	// Resolve finds the device path at every (re)open. Required.
	Resolve Resolver
	// Baud is the line speed; DefaultBaud when 0.
	Baud int
	// ReopenWithin is how long the Port waits for a port that
	// disappeared (a USB CDC port across a reset) to come back before
	// Read and Write fail with ErrPortGone. 0 means DefaultReopenWithin;
	// negative means never reopen.
	ReopenWithin time.Duration
	// OnEvent, if set, hears when the port is lost, reopened or gone.
	OnEvent func(PortEvent)
}

// PortOptions returns how to open the board's serial port: by its device
// path, or by USB serial number and location. An emulated board has no
// port of its own: its emulator gives the pseudo-terminal's path (use
// PathResolver).
func (b BoardSpec) PortOptions() (PortOptions, error) {
	opts := PortOptions{Board: b.Name, Baud: b.Baud}
	switch {
	case b.Emulate:
		return opts, fmt.Errorf("%w: board %s is emulated: its port is the emulator's pseudo-terminal", ErrPortNotFound, b.Name)
	case b.Port != "":
		opts.Resolve = PathResolver(b.Port)
	case b.SerialNumber != "" || b.Location != "":
		opts.Resolve = USBResolver(b.SerialNumber, b.Location)
	default:
		return opts, fmt.Errorf("%w: board %s has no port, serial_number or location", ErrPortNotFound, b.Name)
	}
	return opts, nil
}

// PortEventKind says what happened to a Port.
type PortEventKind int

// Port events.
const (
	PortLost     PortEventKind = iota + 1 // a read or write failed; reopening
	PortReopened                          // open again, possibly under another path
	PortGone                              // did not come back in time
)

// PortEvent is something that happened to a Port.
type PortEvent struct {
	Kind     PortEventKind
	Board    string
	Path     string
	Attempts int   // PortReopened, PortGone: opens tried
	Err      error // PortLost: the cause; PortGone: the last error
}

func (e PortEvent) String() string {
	switch e.Kind {
	case PortLost:
		return fmt.Sprintf("port %s lost (%v); reopening", e.Path, e.Err)
	case PortReopened:
		return fmt.Sprintf("port reopened as %s after %d attempt(s)", e.Path, e.Attempts)
	case PortGone:
		return fmt.Sprintf("port did not come back: %v", e.Err)
	}
	return fmt.Sprintf("port event %d", int(e.Kind))
}

// Port is a board's serial port, opened with go.bug.st/serial. When the
// port disappears (read or write fails, as a USB CDC port does when the
// board resets) it is closed and reopened with backoff, found again through
// the Resolver, and Read and Write carry on; they fail with ErrPortGone
// only if it does not come back within ReopenWithin. Bytes written while
// the port was away are written after it comes back.
//
// SetDTR and SetRTS pass through, so Run(ctx, port, steps) resets a board.
// Read, Write and the modem calls may be used from different goroutines.
type Port struct {
	opts   PortOptions
	mode   serial.Mode
	ctx    context.Context // done on Close
	cancel context.CancelFunc

	mu        sync.Mutex
	sp        serial.Port // nil while the port is away
	path      string
	gen       uint64 // counts opens
	reopening bool
	cycles    uint64 // reopen cycles finished
	lastErr   error  // how the last cycle failed
	changed   chan struct{}
	closed    bool
	observers []func(PortEvent)
}

// OpenPort resolves and opens the port once; it does not wait for a port
// that is not there.
func OpenPort(ctx context.Context, opts PortOptions) (*Port, error) {
	if opts.Resolve == nil {
		return nil, &SerialError{Board: opts.Board, Op: "open", Kind: ErrPortNotFound, Detail: "no Resolve in PortOptions"}
	}
	if opts.Baud == 0 {
		opts.Baud = DefaultBaud
	}
	if opts.ReopenWithin == 0 {
		opts.ReopenWithin = DefaultReopenWithin
	}
	p := &Port{opts: opts, mode: serial.Mode{BaudRate: opts.Baud}, changed: make(chan struct{})}
	sp, path, err := p.openOnce(ctx)
	if err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.sp, p.path, p.gen = sp, path, 1
	return p, nil
}

func (p *Port) openOnce(ctx context.Context) (serial.Port, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", &SerialError{Board: p.opts.Board, Op: "open", Err: err}
	}
	path, err := p.opts.Resolve(ctx)
	if err != nil {
		return nil, "", &SerialError{Board: p.opts.Board, Op: "find port", Err: err}
	}
	mode := p.mode
	sp, err := serial.Open(path, &mode)
	if err != nil {
		return nil, "", &SerialError{Board: p.opts.Board, Op: "open", Path: path, Kind: openKind(err), Err: err}
	}
	return sp, path, nil
}

// Board is the board's name from PortOptions.
func (p *Port) Board() string { return p.opts.Board }

// Path is the device path the port was last opened at.
func (p *Port) Path() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.path
}

func (p *Port) String() string {
	return fmt.Sprintf("board %s on %s", p.opts.Board, p.Path())
}

// observe adds a listener for events (the console logs them).
func (p *Port) observe(f func(PortEvent)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observers = append(p.observers, f)
}

// broadcast wakes everyone waiting for a change; p.mu is held.
func (p *Port) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Port) emit(ev PortEvent) {
	ev.Board = p.opts.Board
	p.mu.Lock()
	obs := append([]func(PortEvent){}, p.observers...)
	p.mu.Unlock()
	if p.opts.OnEvent != nil {
		p.opts.OnEvent(ev)
	}
	for _, f := range obs {
		f(ev)
	}
}

func (p *Port) closedErr(op string) error {
	return &SerialError{Board: p.opts.Board, Op: op, Path: p.Path(), Kind: ErrPortClosed}
}

func (p *Port) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// acquire returns the open port, reopening it (or waiting for whoever is
// reopening it) when it is away.
func (p *Port) acquire(op string) (serial.Port, uint64, error) {
	p.mu.Lock()
	for {
		switch {
		case p.closed:
			p.mu.Unlock()
			return nil, 0, p.closedErr(op)
		case p.sp != nil:
			sp, gen := p.sp, p.gen
			p.mu.Unlock()
			return sp, gen, nil
		case p.reopening:
			cycles, ch := p.cycles, p.changed
			p.mu.Unlock()
			<-ch
			p.mu.Lock()
			if p.sp == nil && !p.reopening && !p.closed && p.cycles > cycles && p.lastErr != nil {
				err := p.lastErr
				p.mu.Unlock()
				return nil, 0, err
			}
			continue
		case p.opts.ReopenWithin < 0:
			err := &SerialError{Board: p.opts.Board, Op: op, Path: p.path, Kind: ErrPortGone, Detail: "reopening is off"}
			p.mu.Unlock()
			return nil, 0, err
		}
		p.reopening = true
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.ctx, p.opts.ReopenWithin)
		err := p.reopen(ctx, fmt.Sprintf("within %v", p.opts.ReopenWithin))
		cancel()
		if err != nil {
			return nil, 0, err
		}
		p.mu.Lock()
	}
}

// reopen runs one reopen cycle; the caller has set p.reopening.
func (p *Port) reopen(ctx context.Context, within string) error {
	wait := minBackoff
	attempts := 0
	var sp serial.Port
	var path string
	var err error
	for {
		attempts++
		sp, path, err = p.openOnce(ctx)
		if err == nil || sleepCtx(ctx, wait) != nil {
			break
		}
		wait = min(2*wait, maxBackoff)
	}
	p.mu.Lock()
	p.reopening = false
	p.cycles++
	if p.closed {
		if err == nil {
			_ = sp.Close()
		}
		p.lastErr = &SerialError{Board: p.opts.Board, Op: "reopen", Path: p.path, Kind: ErrPortClosed}
		p.broadcast()
		p.mu.Unlock()
		return p.lastErr
	}
	if err != nil {
		p.lastErr = &SerialError{Board: p.opts.Board, Op: "reopen", Path: p.path, Kind: ErrPortGone,
			Detail: fmt.Sprintf("%s, %d attempt(s)", within, attempts), Err: err}
		err = p.lastErr
		last := p.path
		p.broadcast()
		p.mu.Unlock()
		p.emit(PortEvent{Kind: PortGone, Path: last, Attempts: attempts, Err: err})
		return err
	}
	p.sp, p.path, p.lastErr = sp, path, nil
	p.gen++
	p.broadcast()
	p.mu.Unlock()
	p.emit(PortEvent{Kind: PortReopened, Path: path, Attempts: attempts})
	return nil
}

// lost takes the port of generation gen down after err, unless that has
// happened already.
func (p *Port) lost(gen uint64, err error) {
	p.mu.Lock()
	if p.closed || p.gen != gen || p.sp == nil {
		p.mu.Unlock()
		return
	}
	sp, path := p.sp, p.path
	p.sp = nil
	p.broadcast()
	p.mu.Unlock()
	_ = sp.Close()
	p.emit(PortEvent{Kind: PortLost, Path: path, Err: err})
}

// Reopen closes the port and opens it again, trying until ctx is done:
// for after a power cycle, or to bring back a port that is gone.
func (p *Port) Reopen(ctx context.Context) error {
	p.mu.Lock()
	for p.reopening && !p.closed {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return &SerialError{Board: p.opts.Board, Op: "reopen", Path: p.Path(), Err: ctx.Err()}
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return p.closedErr("reopen")
	}
	sp := p.sp
	p.sp = nil
	p.reopening = true
	p.broadcast()
	p.mu.Unlock()
	if sp != nil {
		_ = sp.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	within := "before the deadline"
	if d, ok := ctx.Deadline(); ok {
		within = fmt.Sprintf("by %s", d.Format(time.TimeOnly))
	}
	return p.reopen(ctx, within)
}

// Read reads what the board sent. It blocks until there is something, the
// port is closed, or the port disappeared and did not come back.
func (p *Port) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		sp, gen, err := p.acquire("read")
		if err != nil {
			return 0, err
		}
		n, err := sp.Read(b)
		if n > 0 {
			return n, nil
		}
		if p.isClosed() {
			return 0, p.closedErr("read")
		}
		if err == nil {
			err = errors.New("read returned nothing")
		}
		p.lost(gen, err)
	}
}

// Write sends b to the board. If the port disappears, the rest of b is
// written once it is back.
func (p *Port) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		sp, gen, err := p.acquire("write")
		if err != nil {
			return done, err
		}
		n, err := sp.Write(b[done:])
		done += max(n, 0)
		if err == nil && n > 0 {
			continue
		}
		if p.isClosed() {
			return done, p.closedErr("write")
		}
		if err == nil {
			err = errors.New("write wrote nothing")
		}
		p.lost(gen, err)
	}
	return done, nil
}

// modem runs a modem-line call. A port without modem lines (a
// pseudo-terminal) fails with ErrModemLines; a port that disappeared is
// reopened and the call tried once more.
func (p *Port) modem(op string, f func(serial.Port) error) error {
	for try := 0; ; try++ {
		sp, gen, err := p.acquire(op)
		if err != nil {
			return err
		}
		err = f(sp)
		if err == nil {
			return nil
		}
		if k := modemKind(err); k != nil {
			return &SerialError{Board: p.opts.Board, Op: op, Path: p.Path(), Kind: k,
				Detail: "pseudo-terminals and some adapters have none; reset the board another way", Err: err}
		}
		if try > 0 || p.isClosed() {
			return &SerialError{Board: p.opts.Board, Op: op, Path: p.Path(), Err: err}
		}
		p.lost(gen, err)
	}
}

// SetDTR sets the DTR line (true: asserted, which drives the pin low).
func (p *Port) SetDTR(dtr bool) error {
	return p.modem("set DTR", func(sp serial.Port) error { return sp.SetDTR(dtr) })
}

// SetRTS sets the RTS line.
func (p *Port) SetRTS(rts bool) error {
	return p.modem("set RTS", func(sp serial.Port) error { return sp.SetRTS(rts) })
}

// Drain waits until everything written has been sent.
func (p *Port) Drain() error {
	sp, _, err := p.acquire("drain")
	if err != nil {
		return err
	}
	if err := sp.Drain(); err != nil {
		return &SerialError{Board: p.opts.Board, Op: "drain", Path: p.Path(), Err: err}
	}
	return nil
}

// ResetInputBuffer drops what was received and not read yet.
func (p *Port) ResetInputBuffer() error {
	sp, _, err := p.acquire("reset input buffer")
	if err != nil {
		return err
	}
	if err := sp.ResetInputBuffer(); err != nil {
		return &SerialError{Board: p.opts.Board, Op: "reset input buffer", Path: p.Path(), Err: err}
	}
	return nil
}

// Close closes the port, stops any reopening and waits for it. Pending
// and later calls fail with ErrPortClosed. Close may be called again.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	sp, path := p.sp, p.path
	p.sp = nil
	p.broadcast()
	p.mu.Unlock()
	p.cancel()
	var err error
	if sp != nil {
		if cerr := sp.Close(); cerr != nil {
			err = &SerialError{Board: p.opts.Board, Op: "close", Path: path, Err: cerr}
		}
	}
	p.mu.Lock()
	for p.reopening {
		ch := p.changed
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	p.mu.Unlock()
	return err
}
