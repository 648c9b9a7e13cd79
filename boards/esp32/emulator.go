// Package esp32 provisions ESP-IDF boards over their serial console and
// emulates one behind a pseudo-terminal.
package esp32

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Endpoints are where the firmware connects, host:port each. A
// cloud.Addrs converts to it: Endpoints(c.Addrs()).
type Endpoints struct {
	CoAPS string
	MQTTS string
	HTTPS string
}

// EmulatorOptions configures an emulated ESP32. Zero values mean
// defaults.
type EmulatorOptions struct {
	// Name is the board's name, for the emulator's log.
	Name string
	// FlashPath keeps the board's NVS partition image. A missing file is
	// created blank (FlashSize bytes); an existing one, such as the
	// output of `credloop nvs build`, is what the board boots from
	// ("flashing"). It survives resets and emulator restarts. Empty keeps
	// the flash in memory.
	FlashPath string
	// FlashSize is the size of a partition created at FlashPath (default
	// DefaultFlashSize, 0x6000).
	FlashSize int
	// Cloud is where the firmware connects: CoAPS for a Golioth PSK,
	// MQTTS for a certificate.
	Cloud Endpoints
	// Now is the device clock; default time.Now.
	Now func() time.Time
	// Log, if set, receives the emulator's own debug log (never the
	// console, never a secret).
	Log io.Writer
	// Rand is the source of the keys the firmware generates; default
	// crypto/rand.
	Rand io.Reader

	// DeviceID is the device id in certificate mode (MQTT client id and
	// topics); default the CN of the certificate in use, else the
	// MAC-derived id.
	DeviceID string
	// Project is the project in certificate mode (CSR subjects); default
	// the O of the certificate in use.
	Project string
	// Factory is the certificate compiled into the firmware (the ESP32 rotation example's
	// factory certificate, the fallback after a failed rotation); zero
	// means none. Only its certificate fields are used.
	Factory Credentials
	// MAC is the base MAC address; default one derived from Name with
	// Espressif's OUI 24:0a:c4.
	MAC net.HardwareAddr
	// RootCAs verifies the cloud's server certificates; nil means not
	// verified.
	RootCAs *x509.CertPool
}

// resetReason is the ROM's reset cause.
type resetReason int

const (
	powerOnReset resetReason = iota // rst:0x1 (POWERON_RESET)
	swReset                         // rst:0xc (SW_CPU_RESET)
)

// Emulator plays an ESP32 running ESP-IDF firmware behind a
// pseudo-terminal: the ESP32 rotation example's MQTT/TLS firmware with certificate rotation
// and the boot-counter fallback, plus Golioth's PSK over CoAP/DTLS, with
// the ESP-IDF console (nvs commands, Golioth settings). Its flash is an
// NVS partition image in a file. Every credential decision comes from
// internal/devicemodel; the network sessions are sim devices.
type Emulator struct {
	opts    EmulatorOptions
	ptm     *os.File // master: the board's side
	pts     *os.File // slave, held open so the pair lives while the driver reopens it
	path    string
	tx      *uart
	con     *conlog
	fl      *flash
	sh      *shell
	mac     net.HardwareAddr
	factory devicemodel.Credential

	lines chan line
	cutCh chan string
	ctl   chan ctlReq

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	logMu     sync.Mutex

	mu     sync.Mutex // guards the fields below
	models map[string]*modelEntry
	app    *appRun
}

type ctlReq struct {
	fn   func()
	done chan struct{}
}

// StartEmulator opens a pseudo-terminal and boots the board on it (ctx
// bounds the start only). The board's console is at PortPath; its boot
// output waits there until someone opens it.
func StartEmulator(ctx context.Context, o EmulatorOptions) (*Emulator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Name == "" {
		o.Name = "esp32"
	}
	e := &Emulator{opts: o, tx: newUART(), models: map[string]*modelEntry{},
		lines: make(chan line, 64), cutCh: make(chan string, 1), ctl: make(chan ctlReq)}
	e.mac = o.MAC
	if len(e.mac) != 6 {
		sum := sha256.Sum256([]byte("esp32:" + o.Name))
		e.mac = net.HardwareAddr{0x24, 0x0a, 0xc4, sum[0], sum[1], sum[2]}
	}
	if o.Factory.HasCert() {
		f, err := certCredential(o.Factory)
		if err != nil {
			return nil, fmt.Errorf("esp32: factory certificate: %w", err)
		}
		e.factory = f
	}
	e.con = &conlog{w: e.tx, now: o.Now}
	fl, erased, err := openFlash(o.FlashPath, o.FlashSize, e.powerCut, e.logf)
	if err != nil {
		return nil, err
	}
	e.fl = fl
	e.sh = newShell(e.con, fl, e.infoLines)
	pt, err := hil.OpenPTY(hil.DefaultBaud)
	if err != nil {
		return nil, fmt.Errorf("esp32: %w", err)
	}
	e.ptm, e.pts, e.path = pt.Master, pt.Slave, pt.Path()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.logf("board %s on %s, flash %s (%d bytes)", o.Name, e.path, o.FlashPath, fl.size())
	if erased != nil {
		e.logf("flash image was unreadable and has been erased: %v", erased)
	}
	e.wg.Add(3)
	go func() {
		defer e.wg.Done()
		e.tx.pump(e.ptm, e.ctx.Done())
	}()
	go e.read()
	go e.run(erased)
	return e, nil
}

// PortPath is the pseudo-terminal's slave path (e.g. /dev/pts/7): open it
// with go.bug.st/serial (hil.OpenPort) like a USB serial port.
func (e *Emulator) PortPath() string { return e.path }

// FlashImage returns the NVS partition image as the board holds it now.
func (e *Emulator) FlashImage() []byte { return e.fl.snapshot() }

// CutPowerAt arms a power cut: the next flash write matching point
// ("set:<key>", "delete:<key>", a prefix ending in "*", or "any") loses
// power. The write is lost whole (NVS commits are atomic), the RTC is
// cleared, and the board boots again from what the flash held. An empty
// point disarms.
func (e *Emulator) CutPowerAt(point string) {
	e.logf("power cut armed at %q", point)
	e.fl.arm(point)
}

// PowerCycle removes power and restores it: the RTC is lost, the flash
// kept, and the board boots (POWERON_RESET).
func (e *Emulator) PowerCycle() {
	e.control(func() {
		e.logf("power cycle")
		e.powerOff()
		e.boot(powerOnReset, nil)
	})
}

// control runs fn on the board's main loop and waits for it, unless the
// emulator is closed.
func (e *Emulator) control(fn func()) {
	r := ctlReq{fn: fn, done: make(chan struct{})}
	select {
	case e.ctl <- r:
	case <-e.ctx.Done():
		return
	}
	select {
	case <-r.done:
	case <-e.ctx.Done():
	}
}

// Close stops the firmware and its network sessions, closes the
// pseudo-terminal and waits for everything. It may be called again.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		e.cancel()
		err := e.ptm.Close() // unblocks the reader and the pump
		e.wg.Wait()
		e.closeErr = errors.Join(err, e.pts.Close())
		e.logf("closed")
	})
	return e.closeErr
}

// logf writes to the emulator's debug log.
func (e *Emulator) logf(format string, args ...any) {
	if e.opts.Log == nil {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.opts.Log, "%s esp32 %s: %s\n", e.opts.Now().UTC().Format("15:04:05.000"), e.opts.Name, fmt.Sprintf(format, args...))
}

// powerCut is the flash's callback when an armed cut fired: the main loop
// turns the board off and on.
func (e *Emulator) powerCut(point string) {
	select {
	case e.cutCh <- point:
	default:
	}
}

// read turns console input into lines for the main loop.
func (e *Emulator) read() {
	defer e.wg.Done()
	lr := lineReader{max: MaxLine}
	b := make([]byte, 4096)
	for {
		n, err := e.ptm.Read(b)
		for _, l := range lr.feed(b[:n]) {
			select {
			case e.lines <- l:
			case <-e.ctx.Done():
				return
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

// run is the board's main loop: console commands, power events and
// control requests, one at a time.
func (e *Emulator) run(erased error) {
	defer e.wg.Done()
	defer e.stopApp()
	e.boot(powerOnReset, erased)
	for {
		select {
		case <-e.ctx.Done():
			return
		case point := <-e.cutCh:
			e.powerLoss(point)
		case r := <-e.ctl:
			r.fn()
			close(r.done)
		case l := <-e.lines:
			e.input(l)
		}
	}
}

// input echoes and runs one console line, as the REPL does.
func (e *Emulator) input(l line) {
	if l.tooLong {
		e.con.printf("\n")
	} else {
		e.con.printf("%s\n", l.text)
	}
	switch e.sh.exec(l) {
	case restarting:
		e.powerOffSoft()
		e.boot(swReset, nil)
		return
	case powerLost:
		point := ""
		select {
		case point = <-e.cutCh:
		default:
		}
		e.powerLoss(point)
		return
	}
	select {
	case point := <-e.cutCh:
		e.powerLoss(point)
		return
	default:
	}
	e.con.printf("%s", Prompt)
}

// powerLoss handles a power cut: off, then on again.
func (e *Emulator) powerLoss(point string) {
	e.logf("power lost at %q: RTC cleared, flash as last committed", point)
	e.powerOff()
	e.boot(powerOnReset, nil)
}

// powerOff stops the firmware and drops console input that arrived while
// the board was going down.
func (e *Emulator) powerOff() {
	e.stopApp()
	for {
		select {
		case <-e.lines:
		default:
			return
		}
	}
}

// powerOffSoft stops the firmware for a software reset.
func (e *Emulator) powerOffSoft() { e.stopApp() }

// boot prints the ROM and bootloader output and starts the firmware.
func (e *Emulator) boot(reason resetReason, erased error) {
	e.resetModels(reason == powerOnReset)
	e.banner(reason)
	if erased != nil {
		e.con.logf('W', "nvs", "NVS partition is unreadable (%v); erasing it", erased)
	}
	e.startApp()
}

// banner prints what an ESP32 prints from reset to the console prompt, and
// restarts the log clock.
func (e *Emulator) banner(reason resetReason) {
	e.con.reboot()
	e.sh.resetNamespace()
	rst := "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"
	if reason == swReset {
		rst = "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"
	}
	e.con.printf("ets Jul 29 2019 12:21:46\r\n\r\n%s\r\n%s", rst, romBoot)
	e.con.printf("I (29) boot: ESP-IDF %s 2nd stage bootloader\n%s", idfVersion, bootloader)
	items, namespaces := e.nvsSummary()
	e.con.printf("I (%d) app_init: Project name:     %s\nI (%d) app_init: ESP-IDF:          %s\n", bootMillis-30, appName, bootMillis-30, idfVersion)
	e.con.logf('I', appTag, "[APP] Startup..")
	e.con.logf('I', appTag, "[APP] Free memory: 276428 bytes")
	e.con.logf('I', appTag, "[APP] IDF version: %s", idfVersion)
	e.con.logf('I', "system_api", "Base MAC address: %s (MAC-derived id %s)", e.mac, e.macID())
	e.con.logf('I', "nvs", "NVS partition \"nvs\": 0x%x bytes, %d keys in %d namespaces", e.fl.size(), items, namespaces)
	e.con.printf("%s", replIntro)
	e.con.printf("%s", Prompt)
}

func (e *Emulator) nvsSummary() (items, namespaces int) {
	seen := map[string]bool{}
	for _, it := range e.fl.items() {
		items++
		seen[it.Namespace] = true
	}
	return items, len(seen)
}

// macID is the id derived from the base MAC, as AWS and Golioth samples
// name boards.
func (e *Emulator) macID() string { return "esp32-" + hex.EncodeToString(e.mac) }

// Firmware identity.
const (
	idfVersion = "v5.2.1"
	appName    = "mqtt_example"
	appTag     = "mqtt_example"
)

const romBoot = "configsip: 0, SPIWP:0xee\r\n" +
	"clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n" +
	"mode:DIO, clock div:2\r\n" +
	"load:0x3fff0030,len:7112\r\n" +
	"load:0x40078000,len:15624\r\n" +
	"load:0x40080400,len:4\r\n" +
	"ho 8 tail 4 room 4\r\n" +
	"load:0x40080404,len:3876\r\n" +
	"entry 0x4008064c\r\n"

const bootloader = "I (29) boot: compile time Jun  3 2024 10:12:44\n" +
	"I (30) boot: Multicore bootloader\n" +
	"I (34) boot: chip revision: v3.0\n" +
	"I (38) boot.esp32: SPI Speed      : 40MHz\n" +
	"I (42) boot.esp32: SPI Mode       : DIO\n" +
	"I (47) boot.esp32: SPI Flash Size : 4MB\n" +
	"I (51) boot: Enabling RNG early entropy source...\n" +
	"I (57) boot: Partition Table:\n" +
	"I (60) boot: ## Label            Usage          Type ST Offset   Length\n" +
	"I (68) boot:  0 nvs              WiFi data        01 02 00009000 00006000\n" +
	"I (75) boot:  1 phy_init         RF data          01 01 0000f000 00001000\n" +
	"I (83) boot:  2 factory          factory app      00 00 00010000 00100000\n" +
	"I (90) boot: End of partition table\n" +
	"I (95) esp_image: segment 0: paddr=00010020 vaddr=3f400020 size=2a8c4h (174276) map\n" +
	"I (167) esp_image: segment 1: paddr=0003a8ec vaddr=3ffb0000 size=03d5ch ( 15708) load\n" +
	"I (173) esp_image: segment 2: paddr=0003e650 vaddr=40080000 size=019c8h (  6600) load\n" +
	"I (246) boot: Loaded app from partition at offset 0x10000\n" +
	"I (246) boot: Disabling RNG early entropy source...\n" +
	"I (258) cpu_start: Multicore app\n" +
	"I (266) cpu_start: Pro cpu start user code\n" +
	"I (266) cpu_start: cpu freq: 160000000 Hz\n" +
	"I (280) app_init: Application information:\n"

const replIntro = "\n" +
	"Type 'help' to get the list of commands.\n" +
	"Use UP/DOWN arrows to navigate through command history.\n" +
	"Press TAB when typing command name to auto-complete.\n" +
	"\n" +
	"Your terminal application does not support escape sequences.\n" +
	"Line editing and history features are disabled.\n" +
	"On Windows, try using Putty instead.\n"
