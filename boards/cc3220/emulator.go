// Package cc3220 drives a TI CC3220 SimpleLink board over its serial console and emulates one behind a pseudo-terminal: a pre-burned UDID and key pair, run-time CSR provisioning over HTTPS (TI's CC3220 run-time provisioning flow), then MQTT.
package cc3220

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/sim"
)

// Errors.
var (
	ErrFlash         = errors.New("cc3220: bad flash image")
	ErrFlashMismatch = errors.New("cc3220: the flash holds another board's identity")
	ErrRefused       = errors.New("cc3220: provisioning refused by the cloud")
	ErrProvision     = errors.New("cc3220: provisioning failed")
	ErrUnsupported   = errors.New("cc3220: the board makes its own CSR with its pre-burned key; it takes no credentials")
	ErrBadOutput     = errors.New("cc3220: unexpected console output")
)

// Console facts shared by the emulator and the driver.
const (
	// Prompt is the shell's prompt.
	Prompt = "cc3220> "
	// BootBanner starts the first line of the boot banner.
	BootBanner = "SimpleLink CC3220SF"
	// FirmwareVersion is the emulated application's version.
	FirmwareVersion = "1.0.0"
)

// Emulator defaults.
const (
	// DefaultReconnectDelay is the first pause before the firmware
	// connects again after losing the cloud; it doubles up to
	// MaxReconnectDelay.
	DefaultReconnectDelay = time.Second
	MaxReconnectDelay     = 30 * time.Second
	// writeTimeout bounds one write to the UART: a UART nobody listens
	// to loses bytes, it does not block the firmware.
	writeTimeout = 250 * time.Millisecond
)

// Endpoints are where the firmware finds the cloud (host:port each).
// The cc3220 firmware uses HTTPS (provisioning) and MQTTS.
type Endpoints struct {
	CoAPS string `json:"coaps,omitempty"`
	MQTTS string `json:"mqtts,omitempty"`
	HTTPS string `json:"https,omitempty"`
}

// EmulatorOptions configures an emulated CC3220. Zero values mean
// defaults.
type EmulatorOptions struct {
	// Name is the board's name in the emulator's log; default "cc3220".
	Name string
	// FlashPath is the file that keeps the board's flash: the UDID and
	// key pair burned at first start, the provisioned certificate and a
	// rotated one. It is created if missing, survives Reset and an
	// emulator restart, and is rewritten atomically on every change.
	// Empty keeps the flash in memory.
	FlashPath string
	// Cloud is where the firmware provisions (HTTPS) and connects (MQTTS).
	Cloud Endpoints
	// Now is the device clock (console timestamps, renewal window); it
	// must be safe for concurrent use. Default time.Now.
	Now func() time.Time
	// Log, if set, receives the emulator's own debug lines (not the
	// console). It never sees a secret.
	Log io.Writer

	// UDID is the UDID burned at first start; default 32 hex digits from
	// Seed or Rand. If the flash already holds a UDID it must match.
	UDID string
	// KeyFile holds the private key (PEM or DER) burned at first start;
	// default a P-256 key from Seed or Rand. If the flash already holds
	// a key it must match.
	KeyFile string
	// Seed, if set, makes the UDID and key burned at first start
	// deterministic: the same seed makes the same board (for tests, not
	// for real keys).
	Seed string
	// Rand is the source of everything else random (keys the firmware
	// makes for renewal), and of the identity when Seed is empty.
	// Default crypto/rand.
	Rand io.Reader
	// RootCAs verifies the cloud's HTTPS and MQTT servers, as the trust
	// anchor compiled into the firmware does. Nil: not verified.
	RootCAs *x509.CertPool
	// ReconnectDelay is the first pause before connecting again after the
	// cloud was lost or refused the board (DefaultReconnectDelay); it
	// doubles up to MaxReconnectDelay while the cloud keeps refusing. A
	// lost connection that comes back by itself within it (the device
	// rebooting into a rotated certificate) is not reconnected.
	ReconnectDelay time.Duration
}

// Emulator is an emulated CC3220 board behind a pseudo-terminal. Its
// firmware boots at StartEmulator, provisions itself when its flash holds
// no certificate, connects over MQTT, and answers console commands.
type Emulator struct {
	opts  EmulatorOptions
	id    identity
	flash *flash
	rand  io.Reader

	master, slave *os.File
	path          string

	outMu   sync.Mutex // orders console output
	dead    bool       // power lost: output and input are dropped until the next boot
	stalled bool       // the last write timed out

	logMu sync.Mutex

	lines chan string
	power chan chan struct{}
	cut   chan struct{}

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex // guards model, dev and cmdCancel
	model     *devicemodel.Device
	dev       *sim.MQTTDevice
	cmdCancel context.CancelFunc // interrupts the running command (power loss)

	net *netTask // the firmware goroutine's
}

// netTask is the firmware's network task of one boot.
type netTask struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// StartEmulator opens the flash (burning the UDID and key pair on a
// blank board), creates the pseudo-terminal and boots the firmware.
func StartEmulator(ctx context.Context, o EmulatorOptions) (*Emulator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "cc3220"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = DefaultReconnectDelay
	}
	f, err := openFlash(o.FlashPath)
	if err != nil {
		return nil, err
	}
	idRand := o.Rand
	if o.Seed != "" {
		idRand = &seedReader{seed: []byte(o.Seed)}
	}
	id, err := f.burn(o, idRand)
	if err != nil {
		return nil, err
	}
	pt, err := hil.OpenPTY(hil.DefaultBaud)
	if err != nil {
		return nil, fmt.Errorf("cc3220: %w", err)
	}
	master, slave := pt.Master, pt.Slave
	e := &Emulator{
		opts: o, id: id, flash: f, rand: o.Rand,
		master: master, slave: slave, path: slave.Name(),
		lines: make(chan string, 16),
		power: make(chan chan struct{}),
		cut:   make(chan struct{}, 1),
	}
	f.onCut = e.powerLost
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.logf("started on %s, UDID %s, pubkey fp=%s, flash %q", e.path, id.udid, id.pubFP(), o.FlashPath)
	e.wg.Add(2)
	go e.readLoop()
	go e.run()
	return e, nil
}

// PortPath is the pseudo-terminal's slave path (e.g. /dev/pts/7): open it
// like a USB serial port.
func (e *Emulator) PortPath() string { return e.path }

// UDID is the board's pre-burned UDID.
func (e *Emulator) UDID() string { return e.id.udid }

// CutPowerAt arms a power cut: the next flash write whose point matches
// ("set:<key>", "delete:<key>", a prefix ending in "*", or "any") loses
// power instead of happening. The board then boots again with its RTC
// lost and its flash as the atomic store left it (the old contents).
// Keys: devcert (provisioning), client_cert/client_key/client_ok and
// csr_key (rotation and renewal). An empty point disarms.
func (e *Emulator) CutPowerAt(point string) { e.flash.armCut(point) }

// PowerCycle turns the board off and on: RTC lost, flash kept. It returns
// once the board has booted again (not once it is online).
func (e *Emulator) PowerCycle() {
	e.mu.Lock()
	if e.cmdCancel != nil {
		e.cmdCancel() // a command in progress dies with the power
	}
	e.mu.Unlock()
	done := make(chan struct{})
	select {
	case e.power <- done:
	case <-e.ctx.Done():
		return
	}
	select {
	case <-done:
	case <-e.ctx.Done():
	}
}

// Close stops the firmware and its network sessions, closes the
// pseudo-terminal and waits for all of it. It may be called again.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		err := e.master.Close() // ends the reader
		e.wg.Wait()
		e.closeErr = errors.Join(err, e.slave.Close())
		e.logf("closed")
	})
	return e.closeErr
}

func (e *Emulator) logf(format string, args ...any) {
	if e.opts.Log == nil {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.opts.Log, "%s cc3220 %s: %s\n", time.Now().UTC().Format("15:04:05.000"), e.opts.Name, fmt.Sprintf(format, args...))
}

// powerLost is the flash's power-cut hook: from now on the board is off
// until the firmware goroutine boots it again.
func (e *Emulator) powerLost(point string) {
	e.outMu.Lock()
	e.dead = true
	e.outMu.Unlock()
	e.logf("power cut at flash write %s", point)
	select {
	case e.cut <- struct{}{}:
	default:
	}
}

func (e *Emulator) isDead() bool {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	return e.dead
}

// write sends b to the UART; e.outMu is held. Bytes nobody reads in time
// are lost, as on a real UART.
func (e *Emulator) write(b []byte) {
	if e.dead || len(b) == 0 {
		return
	}
	// Once nobody drains the UART, lose output at once rather than wait
	// on every line.
	timeout := writeTimeout
	if e.stalled {
		timeout = time.Millisecond
	}
	_ = e.master.SetWriteDeadline(time.Now().Add(timeout))
	_, err := e.master.Write(b)
	if err != nil && !e.stalled && e.ctx.Err() == nil {
		e.logf("console output lost (nobody reads the port?): %v", err)
	}
	e.stalled = err != nil
}

// printLines prints whole lines (and the prompt, if asked) in one write,
// so no other output lands in between.
func (e *Emulator) printLines(lines []string, prompt bool) {
	var b []byte
	for _, l := range lines {
		b = append(b, sanitizeLine(l)...)
		b = append(b, '\r', '\n')
	}
	if prompt {
		b = append(b, Prompt...)
	}
	e.outMu.Lock()
	defer e.outMu.Unlock()
	e.write(b)
}

func (e *Emulator) printf(format string, args ...any) {
	e.printLines([]string{fmt.Sprintf(format, args...)}, false)
}

// sanitizeLine keeps a console line on one printable, bounded line.
func sanitizeLine(s string) string {
	const limit = 400
	b := make([]byte, 0, min(len(s), limit+3))
	for i := 0; i < len(s); i++ {
		if len(b) >= limit {
			return string(b) + "..."
		}
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// readLoop reads the UART: bytes become command lines for the firmware,
// echoed as the terminal shows them.
func (e *Emulator) readLoop() {
	defer e.wg.Done()
	var ed lineEditor
	b := make([]byte, 1024)
	for {
		n, err := e.master.Read(b)
		if n > 0 {
			e.outMu.Lock()
			dead := e.dead
			var lines []string
			if dead {
				ed = lineEditor{} // nothing is listening
			} else {
				var echo []byte
				lines, echo = ed.feed(b[:n])
				e.write(echo)
			}
			e.outMu.Unlock()
			for _, l := range lines {
				select {
				case e.lines <- l:
				case <-e.ctx.Done():
					return
				}
			}
		}
		if err != nil {
			if e.ctx.Err() == nil {
				e.logf("console read: %v", err)
			}
			return
		}
	}
}

// lineWriter turns what the MQTT device prints into console lines.
type lineWriter struct {
	e   *Emulator
	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := 0
		for i < len(w.buf) && w.buf[i] != '\n' {
			i++
		}
		if i == len(w.buf) {
			break
		}
		w.e.printLines([]string{string(w.buf[:i])}, false)
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 4096 {
		w.e.printLines([]string{string(w.buf)}, false)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}
