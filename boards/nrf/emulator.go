// Package nrf drives and emulates nRF boards running Zephyr with Golioth firmware, whose shell and mcumgr SMP share one UART.
package nrf

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/sim"
)

// What the emulated board prints.
const (
	// Prompt is the Zephyr shell prompt.
	Prompt = "uart:~$ "
	// Banner is the first line after every reset.
	Banner = "*** Booting nRF Connect SDK v2.6.1-3758bcbfa5cd ***"
	// DefaultBoard is the Zephyr board target the emulator plays.
	DefaultBoard = "nrf52840dk/nrf52840"
)

// Emulator defaults.
const (
	// DefaultHelloInterval is how often the connected sample logs
	// "Sending hello! N".
	DefaultHelloInterval = 5 * time.Second
	// DefaultKeepaliveInterval is GOLIOTH_COAP_KEEPALIVE_INTERVAL_S.
	DefaultKeepaliveInterval = 9 * time.Second
	// DefaultRetryInterval is the pause after a failed connection round.
	DefaultRetryInterval = 5 * time.Second
)

const (
	maxLine       = 256 // CONFIG_SHELL_CMD_BUFF_SIZE
	maxArgs       = 20  // CONFIG_SHELL_ARGC_MAX
	logQueueMax   = 128 // log messages kept while the log is halted
	outputMax     = 1 << 20
	netbufSize    = 384 // MCUMGR_TRANSPORT_NETBUF_SIZE
	keepaliveWait = 5 * time.Second
)

// Endpoints are the cloud addresses the firmware connects to (host:port).
// The nRF firmware uses CoAPS only.
type Endpoints struct {
	CoAPS string
	MQTTS string
	HTTPS string
}

// EmulatorOptions configures an emulated nRF board. Zero values mean
// defaults.
type EmulatorOptions struct {
	// Name is the board's name, for the emulator's log and "device info".
	Name string
	// FlashPath is the file that keeps the board's flash (the /lfs1
	// filesystem and the settings), created if missing and replaced
	// atomically on every change, so it survives Reset, PowerCycle and
	// an emulator restart. Empty keeps the flash in memory.
	FlashPath string
	// Cloud is where the firmware connects (Cloud.CoAPS).
	Cloud Endpoints
	// Now is the device clock (certificate validity, log uptime);
	// time.Now when nil.
	Now func() time.Time
	// Log, if set, receives the emulator's own debug lines (never the
	// console, never a secret).
	Log io.Writer

	// Board is the Zephyr board target shown by "device info";
	// DefaultBoard when empty.
	Board string
	// RootCAs verifies the cloud's server certificate in certificate
	// mode, as the firmware's hard-coded CA does. Nil: not verified.
	RootCAs *x509.CertPool
	// HelloInterval is how often the connected firmware logs "Sending
	// hello! N"; DefaultHelloInterval when 0, never when negative.
	HelloInterval time.Duration
	// KeepaliveInterval is how often the connected firmware sends a
	// keepalive; DefaultKeepaliveInterval when 0, never when negative.
	KeepaliveInterval time.Duration
	// RetryInterval is the pause after a failed connection round;
	// DefaultRetryInterval when 0.
	RetryInterval time.Duration
	// HandshakeTimeout bounds one DTLS handshake (sim's default when 0).
	HandshakeTimeout time.Duration
	// Rand is the device's randomness; crypto/rand when nil.
	Rand io.Reader
}

// bootKind says how the board came to boot.
type bootKind int

const (
	bootPowerOn    bootKind = iota // first power-up of the emulator
	bootReset                      // shell or SMP reset, Emulator.Reset: RTC kept
	bootPowerCycle                 // Emulator.PowerCycle: RTC lost
	bootPowerCut                   // an armed flash write lost power: RTC lost
)

func (k bootKind) lostPower() bool { return k != bootReset }

func (k bootKind) String() string {
	switch k {
	case bootPowerOn:
		return "power on"
	case bootReset:
		return "reset"
	case bootPowerCycle:
		return "power cycle"
	}
	return "power cut"
}

type rebootReq struct {
	kind bootKind
	done chan struct{}
}

type appRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// shell is the Zephyr shell's line state.
type shell struct {
	line      []byte
	cwd       string
	executing bool
	lastCR    bool
	esc       int // 1 after ESC, 2 inside a CSI sequence
}

// Emulator plays an nRF board running Zephyr and the Golioth
// certificate-provisioning firmware behind a pseudo-terminal: the Zephyr
// shell and mcumgr SMP on the same UART, a LittleFS-like filesystem at
// /lfs1 and the settings in FlashPath, and the firmware connecting to the
// cloud over DTLS/CoAP with internal/devicemodel and sim.Device.
type Emulator struct {
	o       EmulatorOptions
	master  *os.File
	tty     *os.File
	rw      io.ReadWriter
	closeRW func() error
	fl      *flash
	out     *output
	ctx     context.Context
	cancel  context.CancelFunc
	kick    chan struct{}
	// readerDone is closed when the UART reader stops (input ended or
	// the emulator closed).
	readerDone chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error

	mu         sync.Mutex // everything below; orders console output
	formatted  error      // why the flash was formatted at open; cleared by the first boot
	booted     bool
	boots      int
	kind       bootKind
	bootAt     time.Time
	pending    *rebootReq
	app        *appRun
	srv        *smp.Server
	sh         shell
	logHalted  bool
	logQueue   []string
	logDropped int
	model      *devicemodel.Device
	modelKey   string
	dev        *sim.Device
}

// StartEmulator opens a pseudo-terminal, boots the board on it and
// returns once the boot banner is out. ctx bounds the start only; Close
// stops the emulator.
func StartEmulator(ctx context.Context, o EmulatorOptions) (*Emulator, error) {
	fl, formatted, err := openFlash(o.FlashPath)
	if err != nil {
		return nil, err
	}
	pt, err := hil.OpenPTY(hil.DefaultBaud)
	if err != nil {
		return nil, fmt.Errorf("nrf: %w", err)
	}
	master, tty := pt.Master, pt.Slave
	e := newEmulator(o, fl, formatted, master, master.Close)
	e.master, e.tty = master, tty
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// newEmulator builds an emulator on the UART rw (the pty master, or a
// stand-in in fuzz tests); closeRW ends its reads and writes.
func newEmulator(o EmulatorOptions, fl *flash, formatted error, rw io.ReadWriter, closeRW func() error) *Emulator {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Board == "" {
		o.Board = DefaultBoard
	}
	if o.HelloInterval == 0 {
		o.HelloInterval = DefaultHelloInterval
	}
	if o.KeepaliveInterval == 0 {
		o.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{o: o, rw: rw, closeRW: closeRW, fl: fl, out: newOutput(), ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), readerDone: make(chan struct{}), formatted: formatted, sh: shell{cwd: "/"}}
	fl.onCut = e.powerCut
	return e
}

// start runs the UART writer and reader and the supervisor, and waits for
// the first boot.
func (e *Emulator) start(ctx context.Context) error {
	e.wg.Add(3)
	go func() { defer e.wg.Done(); e.out.run(e.rw, e.ctx.Done()) }()
	go func() { defer e.wg.Done(); e.readLoop() }()
	go func() { defer e.wg.Done(); e.supervise() }()
	r := e.requestReboot(bootPowerOn)
	select {
	case <-r.done:
		e.debugf("started on %s, flash %q", e.PortPath(), e.o.FlashPath)
		return nil
	case <-ctx.Done():
		_ = e.Close()
		return ctx.Err()
	}
}

// PortPath is the pseudo-terminal's slave path (e.g. /dev/pts/7): open it
// with go.bug.st/serial (hil.OpenPort) like a USB serial port.
func (e *Emulator) PortPath() string {
	if e.tty == nil {
		return ""
	}
	return e.tty.Name()
}

// CutPowerAt arms a fault: the next flash write whose point matches loses
// power, and the board boots again with its RTC state lost and the flash as
// it was before that write. Points are "set:<setting>" and
// "delete:<setting>" (settings, e.g. "set:golioth/psk"),
// "write:<file>", "mkdir:<dir>" and "rm:<path>" (filesystem, e.g.
// "write:/lfs1/credentials/key.der"), a prefix ending in "*", or "any". An
// empty point disarms.
func (e *Emulator) CutPowerAt(point string) {
	e.debugf("power cut armed at %q", point)
	e.fl.arm(point)
}

// PowerCycle removes and restores power: RTC state is lost, the flash is
// kept. It returns once the board has booted again.
func (e *Emulator) PowerCycle() {
	e.wait(e.requestReboot(bootPowerCycle))
}

// Reset presses the reset button: RTC state is kept. It returns once the
// board has booted again.
func (e *Emulator) Reset() {
	e.wait(e.requestReboot(bootReset))
}

// ReadFile returns a file of the board's filesystem (e.g. CertPath).
func (e *Emulator) ReadFile(name string) ([]byte, error) {
	return e.fl.ReadFile(name)
}

// Status describes the board on one line, without secrets.
func (e *Emulator) Status() string {
	e.mu.Lock()
	model, dev, boots, kind := e.model, e.dev, e.boots, e.kind
	e.mu.Unlock()
	s := fmt.Sprintf("board=%s boots=%d last=%q", e.o.Name, boots, kind.String())
	if dev != nil {
		s += fmt.Sprintf(" online=%t", dev.Online())
	}
	if model != nil {
		s += " " + model.State().String()
	}
	return s
}

// Close stops the firmware and the device's network session, closes the
// pseudo-terminal and waits for all of it. It may be called again.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		e.out.close()
		err := e.closeRW()
		e.wg.Wait()
		if e.tty != nil {
			err = errors.Join(err, e.tty.Close())
		}
		e.closeErr = err
		e.debugf("closed")
	})
	return e.closeErr
}

func (e *Emulator) debugf(format string, args ...any) {
	if e.o.Log == nil {
		return
	}
	fmt.Fprintf(e.o.Log, "%s nrf %s: %s\n", time.Now().UTC().Format("15:04:05.000"), e.o.Name, fmt.Sprintf(format, args...))
}

func (e *Emulator) now() time.Time { return e.o.Now() }

// --- reboots ---

// requestReboot asks the supervisor for a reboot; requests made while one
// is pending join it (a power loss wins over a reset).
func (e *Emulator) requestReboot(kind bootKind) *rebootReq {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.pending; r != nil {
		if kind.lostPower() && !r.kind.lostPower() {
			r.kind = kind
		}
		return r
	}
	r := &rebootReq{kind: kind, done: make(chan struct{})}
	e.pending = r
	select {
	case e.kick <- struct{}{}:
	default:
	}
	return r
}

// wait waits for r, or for the emulator to close.
func (e *Emulator) wait(r *rebootReq) {
	select {
	case <-r.done:
	case <-e.ctx.Done():
	}
}

// waitPending waits for a reboot that is under way, if any.
func (e *Emulator) waitPending() {
	e.mu.Lock()
	r := e.pending
	e.mu.Unlock()
	if r != nil {
		e.wait(r)
	}
}

// powerCut is the flash's hook: the board goes dark at once and boots
// again.
func (e *Emulator) powerCut(point string) {
	e.debugf("power cut at %s", point)
	e.out.setPower(false)
	e.requestReboot(bootPowerCut)
}

func (e *Emulator) supervise() {
	for {
		select {
		case <-e.ctx.Done():
			e.stopApp()
			return
		case <-e.kick:
		}
		e.mu.Lock()
		r := e.pending
		e.mu.Unlock()
		if r == nil {
			continue
		}
		if r.kind.lostPower() {
			e.out.setPower(false)
		}
		e.stopApp()
		e.mu.Lock()
		e.pending = nil
		kind := r.kind
		e.mu.Unlock()
		e.boot(kind)
		close(r.done)
	}
}

func (e *Emulator) stopApp() {
	e.mu.Lock()
	a := e.app
	e.app = nil
	e.mu.Unlock()
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// boot starts the board: banner, shell, boot log, then the firmware.
func (e *Emulator) boot(kind bootKind) {
	e.mu.Lock()
	model := e.model
	e.mu.Unlock()
	if model != nil {
		if kind.lostPower() {
			model.PowerCycle()
		} else {
			model.Reset()
		}
	}
	e.fl.powerOn()
	now := e.now()
	e.mu.Lock()
	e.booted = true
	e.boots++
	e.kind = kind
	e.bootAt = now
	e.srv = smp.NewServer(smp.ServerOptions{FS: e.fl, NetbufSize: netbufSize})
	e.sh = shell{cwd: "/"}
	e.logHalted, e.logQueue, e.logDropped = false, nil, 0
	e.dev = nil
	formatted := e.formatted
	e.formatted = nil
	boots := e.boots
	e.out.setPower(true)
	e.writeLocked(Banner + "\r\n" + Prompt)
	e.mu.Unlock()
	e.debugf("boot %d (%s)", boots, kind)

	e.logf(lvlInf, "fs_nvs", "2 Sectors of 4096 bytes")
	e.logf(lvlInf, "fs_nvs", "alloc wra: 0, fe8")
	e.logf(lvlInf, "fs_nvs", "data wra: 0, 0")
	e.logf(lvlInf, "littlefs", "LittleFS version 2.8, disk version 2.1")
	e.logf(lvlInf, "littlefs", "FS at flash-controller@4001e000:0xf8000 is 8 0x1000-byte blocks with 512 cycle")
	e.logf(lvlInf, "littlefs", "sizes: rd 16 ; pr 16 ; ca 64 ; la 32")
	if formatted != nil {
		e.debugf("flash formatted: %v", formatted)
		e.logf(lvlErr, "littlefs", "WEST_TOPDIR/modules/fs/littlefs/lfs.c:1389: Corrupted dir pair at {0x0, 0x1}")
		e.logf(lvlWrn, "littlefs", "can't mount (LFS -84); formatting")
	}
	e.logf(lvlInf, "littlefs", "%s mounted", MountPoint)

	ctx, cancel := context.WithCancel(e.ctx)
	a := &appRun{cancel: cancel, done: make(chan struct{})}
	e.mu.Lock()
	e.app = a
	e.mu.Unlock()
	go func() {
		defer close(a.done)
		e.runApp(ctx)
	}()
}

// --- console output ---

// Log levels as Zephyr prints them.
const (
	lvlErr = "err"
	lvlWrn = "wrn"
	lvlInf = "inf"
	lvlDbg = "dbg"
)

// writeLocked queues console output; e.mu is held so that output and shell
// state stay in step.
func (e *Emulator) writeLocked(s string) {
	e.out.write([]byte(s))
}

// uptime formats d as Zephyr's log timestamp.
func uptime(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%02d:%02d:%02d.%03d,%03d", d/time.Hour, d/time.Minute%60, d/time.Second%60,
		d/time.Millisecond%1000, d/time.Microsecond%1000)
}

// oneLine keeps text on one printable line.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// logf prints a Zephyr log message through the shell's log backend.
func (e *Emulator) logf(level, module, format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	e.mu.Lock()
	defer e.mu.Unlock()
	line := fmt.Sprintf("[%s] <%s> %s: %s", uptime(e.now().Sub(e.bootAt)), level, module, msg)
	switch level {
	case lvlErr:
		line = "\x1b[1;31m" + line + "\x1b[0m"
	case lvlWrn:
		line = "\x1b[1;33m" + line + "\x1b[0m"
	}
	if e.logHalted {
		if len(e.logQueue) >= logQueueMax {
			e.logQueue = e.logQueue[1:]
			e.logDropped++
		}
		e.logQueue = append(e.logQueue, line)
		return
	}
	e.emitLogLocked(line)
}

// emitLogLocked prints a log line: while the shell waits for input it
// erases the prompt and what was typed, prints the line and redraws them
// (with VT100 sequences, as Zephyr's shell log backend does).
func (e *Emulator) emitLogLocked(line string) {
	if e.sh.executing {
		e.writeLocked(line + "\r\n")
		return
	}
	n := len(Prompt) + len(e.sh.line)
	e.writeLocked(fmt.Sprintf("\x1b[%dD\x1b[J", n) + line + "\r\n" + Prompt + string(e.sh.line))
}

// printf prints command output.
func (e *Emulator) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.writeLocked(strings.ReplaceAll(s, "\n", "\r\n") + "\r\n")
}

// errorf prints a command error, in red.
func (e *Emulator) errorf(format string, args ...any) {
	e.printf("\x1b[1;31m"+format+"\x1b[0m", args...)
}

// output is the UART's transmit side: a queue drained by one goroutine, so
// the firmware never blocks on a host that is not reading (a real UART
// drops what nobody listens to). While the board has no power nothing is
// sent.
type output struct {
	mu      sync.Mutex
	buf     []byte
	on      bool
	closed  bool
	dropped int
	wake    chan struct{}
}

func newOutput() *output { return &output{wake: make(chan struct{}, 1)} }

func (o *output) write(p []byte) {
	o.mu.Lock()
	if !o.on || o.closed {
		o.mu.Unlock()
		return
	}
	if len(o.buf)+len(p) > outputMax {
		o.dropped += len(p)
		o.mu.Unlock()
		return
	}
	o.buf = append(o.buf, p...)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *output) setPower(on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.on = on
}

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
}

func (o *output) run(w io.Writer, done <-chan struct{}) {
	for {
		select {
		case <-o.wake:
		case <-done:
			return
		}
		o.mu.Lock()
		b := o.buf
		o.buf = nil
		o.mu.Unlock()
		if len(b) == 0 {
			continue
		}
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// --- console input ---

// readLoop reads the UART: SMP frames go to the mcumgr server, everything
// else to the shell.
func (e *Emulator) readLoop() {
	defer close(e.readerDone)
	dec := smp.NewDecoder(e.rw, smp.DecoderOptions{Console: shellInput{e}, MaxBody: netbufSize})
	for {
		pkt, err := dec.ReadPacket()
		var fe *smp.FrameError
		if errors.As(err, &fe) {
			continue
		}
		if err != nil {
			return
		}
		e.handleSMP(pkt)
	}
}

func (e *Emulator) handleSMP(pkt []byte) {
	e.mu.Lock()
	srv := e.srv
	busy := e.pending != nil
	e.mu.Unlock()
	if srv == nil || busy {
		return
	}
	rsps, reset := srv.Handle(pkt)
	for _, r := range rsps {
		if f, err := smp.EncodeFrames(r); err == nil {
			e.out.write(f)
		}
	}
	if reset {
		e.debugf("mcumgr os reset")
		e.requestReboot(bootReset)
	}
	e.waitPending()
}

// shellInput is the shell's receive side.
type shellInput struct{ e *Emulator }

func (s shellInput) Write(p []byte) (int, error) {
	s.e.feed(p)
	s.e.waitPending()
	return len(p), nil
}

// feed runs the shell's line editor over received bytes and executes
// complete lines. Bytes received while the board resets are lost.
func (e *Emulator) feed(p []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !e.booted || e.pending != nil {
			return
		}
		sh := &e.sh
		if sh.esc == 1 {
			sh.esc = 0
			if c == '[' {
				sh.esc = 2
			}
			continue
		}
		if sh.esc == 2 {
			if c >= 0x40 && c <= 0x7e {
				sh.esc = 0
			}
			continue
		}
		cr := sh.lastCR
		sh.lastCR = false
		switch {
		case c == '\n' && cr:
			// \r\n is one Enter
		case c == '\r' || c == '\n':
			sh.lastCR = c == '\r'
			line := string(sh.line)
			sh.line = sh.line[:0]
			sh.executing = true
			e.writeLocked("\r\n")
			boots := e.boots
			e.mu.Unlock()
			e.exec(line)
			e.waitPending()
			e.mu.Lock()
			if e.boots != boots || e.pending != nil {
				return // the board reset: the rest is lost
			}
			e.sh.executing = false
			e.writeLocked(Prompt)
		case c == 0x7f || c == 0x08:
			if len(sh.line) > 0 {
				sh.line = sh.line[:len(sh.line)-1]
				e.writeLocked("\b \b")
			}
		case c == 0x1b:
			sh.esc = 1
		case c == 0x03: // Ctrl-C drops the line
			sh.line = sh.line[:0]
			e.writeLocked("\r\n" + Prompt)
		case c < 0x20:
			// other control characters (Tab completion and the like)
		default:
			if len(sh.line) < maxLine {
				sh.line = append(sh.line, c)
				e.writeLocked(string([]byte{c}))
			}
		}
	}
}
