package esp32

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// Firmware modes: what the flash held at boot.
const (
	modeNone = "none"        // nothing to connect with
	modePSK  = "golioth-psk" // Golioth PSK in namespace example: CoAP/DTLS
	modeCert = "mqtt-cert"   // certificate (NVS certs or factory): MQTT/TLS
)

// Reconnection back-off of the firmware after a failed start.
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
	// rebootGrace is how long the firmware's own reboot (after a
	// rotation) may take to get back online before the app reconnects.
	rebootGrace = 20 * time.Second
)

type modelEntry struct {
	cfg devicemodel.Config
	m   *devicemodel.Device
}

// appRun is one boot's firmware: its goroutine and its network device.
type appRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	// dead is set when power was cut under this run: nothing it does
	// reaches the console any more.
	dead atomic.Bool

	mu     sync.Mutex
	mode   string
	model  *devicemodel.Device
	stop   func()
	online func() bool
}

func (r *appRun) set(mode string, model *devicemodel.Device, stop func(), online func() bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode, r.model, r.stop, r.online = mode, model, stop, online
}

func (r *appRun) state() (mode string, model *devicemodel.Device, online bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.online != nil {
		online = r.online()
	}
	return r.mode, r.model, online
}

// logf prints a firmware log line unless power was cut under run.
func (e *Emulator) runLogf(run *appRun, level byte, tag, format string, args ...any) {
	if run.dead.Load() {
		return
	}
	e.con.logf(level, tag, format, args...)
}

// resetModels resets the credential logic of every mode for a new boot:
// a software reset keeps the RTC, a power-on clears it.
func (e *Emulator) resetModels(powerOn bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, me := range e.models {
		if powerOn {
			me.m.PowerCycle()
		} else {
			me.m.Reset()
		}
	}
}

// model returns the credential logic for a mode, kept across boots (its
// RTC lives there) as long as its configuration is the same.
func (e *Emulator) model(mode string, cfg devicemodel.Config, store devicemodel.Store) *devicemodel.Device {
	e.mu.Lock()
	defer e.mu.Unlock()
	if me := e.models[mode]; me != nil && me.cfg.ID == cfg.ID && me.cfg.Project == cfg.Project && me.cfg.Factory.Equal(cfg.Factory) {
		return me.m
	}
	m := devicemodel.New(cfg, store)
	e.models[mode] = &modelEntry{cfg: cfg, m: m}
	return m
}

// startApp starts the firmware's application for this boot.
func (e *Emulator) startApp() {
	ctx, cancel := context.WithCancel(e.ctx)
	run := &appRun{cancel: cancel, done: make(chan struct{}), mode: modeNone}
	e.mu.Lock()
	e.app = run
	e.mu.Unlock()
	go func() {
		defer close(run.done)
		e.firmware(ctx, run)
	}()
}

// stopApp stops the application and its network device, and waits.
func (e *Emulator) stopApp() {
	e.mu.Lock()
	run := e.app
	e.app = nil
	e.mu.Unlock()
	if run == nil {
		return
	}
	run.dead.Store(true) // a reset or power loss: the app prints nothing more
	run.cancel()
	<-run.done
	run.mu.Lock()
	stop := run.stop
	run.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (e *Emulator) currentApp() *appRun {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.app
}

// pskSettings reads Golioth's credentials from namespace example.
func (e *Emulator) pskSettings() (id string, key []byte, ok bool) {
	idItem, ok1 := e.fl.item(nsGolioth, keyPSKID)
	keyItem, ok2 := e.fl.item(nsGolioth, keyPSK)
	if !ok1 || !ok2 {
		return "", nil, false
	}
	// Golioth stores strings; a blob from an image made with hex2bin
	// works too.
	id, key = string(idItem.Bytes()), keyItem.Bytes()
	return id, key, id != "" && len(key) > 0
}

// certIdentity returns the device id and project in certificate mode:
// the options, else the subject of the NVS certificate, else of the
// factory certificate, else the MAC-derived id.
func (e *Emulator) certIdentity() (id, project string) {
	id, project = e.opts.DeviceID, e.opts.Project
	var leaves [][]byte
	if it, ok := e.fl.item(nsCerts, devicemodel.KeyRotatedCert); ok {
		if chain, err := devicemodel.ParseCertChainPEM(it.Bytes()); err == nil {
			leaves = append(leaves, chain[0])
		}
	}
	if len(e.factory.CertChainDER) > 0 {
		leaves = append(leaves, e.factory.CertChainDER[0])
	}
	for _, der := range leaves {
		cn, org := leafName(der)
		if id == "" {
			id = cn
		}
		if project == "" {
			project = org
		}
	}
	if id == "" {
		id = e.macID()
	}
	return id, project
}

// hasCert reports whether the firmware has a certificate to try: in NVS
// or compiled in.
func (e *Emulator) hasCert() bool {
	if len(e.factory.CertChainDER) > 0 {
		return true
	}
	_, ok := e.fl.item(nsCerts, devicemodel.KeyRotatedCert)
	return ok
}

// firmware is the application of one boot: pick the credentials the flash
// holds and connect the way the firmware does.
func (e *Emulator) firmware(ctx context.Context, run *appRun) {
	if pskID, psk, ok := e.pskSettings(); ok {
		e.runPSK(ctx, run, pskID, psk)
		return
	}
	e.runCert(ctx, run)
}

func (e *Emulator) runPSK(ctx context.Context, run *appRun, pskID string, psk []byte) {
	const tag = "golioth_example"
	id, project := pskID, ""
	if d, p, err := registry.ParsePSKIdentity(pskID); err == nil {
		id, project = d, p
	}
	cred := devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: pskID, PSK: psk}
	model := e.model(modePSK, devicemodel.Config{ID: id, Project: project, Factory: cred}, nsStore{f: e.fl, ns: nsGolioth})
	e.runLogf(run, 'I', tag, "Golioth credentials in NVS: PSK-ID %s, PSK fp=%s (%d bytes)", pskID, devicemodel.Fingerprint(psk), len(psk))
	out := &simLines{e: e, run: run, mode: modePSK, pskID: pskID, addr: e.opts.Cloud.CoAPS, model: model}
	if e.opts.Cloud.CoAPS == "" {
		run.set(modePSK, model, nil, nil)
		e.bootOffline(run, out, model, tag, "No Golioth CoAP host configured; not connecting")
		return
	}
	dev := simmodel.NewDevice(model, sim.DeviceOptions{Addr: e.opts.Cloud.CoAPS, Console: out, Now: e.opts.Now, Rand: e.opts.Rand})
	run.set(modePSK, model, dev.Stop, dev.Online)
	start := func(ctx context.Context) error {
		out.expectBoot()
		return dev.Start(ctx)
	}
	e.connectLoop(ctx, run, tag, start, dev.Done, nil, func() bool { return true })
}

func (e *Emulator) runCert(ctx context.Context, run *appRun) {
	const tag = appTag
	if !e.hasCert() {
		e.runLogf(run, 'E', tag, "No credentials: no Golioth PSK (namespace %s), no certificate in NVS (namespace %s: %s, %s) and no factory certificate; provision and restart",
			nsGolioth, nsCerts, devicemodel.KeyRotatedCert, devicemodel.KeyRotatedKey)
		return
	}
	id, project := e.certIdentity()
	model := e.model(modeCert, devicemodel.Config{ID: id, Project: project, Factory: e.factory}, nsStore{f: e.fl, ns: nsCerts})
	out := &simLines{e: e, run: run, mode: modeCert, addr: e.opts.Cloud.MQTTS, model: model}
	if e.opts.Cloud.MQTTS == "" {
		run.set(modeCert, model, nil, nil)
		e.bootOffline(run, out, model, tag, "No MQTT broker URI configured; not connecting")
		return
	}
	dev := simmodel.NewMQTTDevice(model, sim.MQTTDeviceOptions{Addr: e.opts.Cloud.MQTTS, RootCAs: e.opts.RootCAs,
		Console: out, Now: e.opts.Now, Rand: e.opts.Rand})
	run.set(modeCert, model, dev.Stop, dev.Online)
	back := func(ctx context.Context) bool {
		wctx, cancel := context.WithTimeout(ctx, rebootGrace)
		defer cancel()
		_, err := dev.Wait(wctx, func(st sim.MQTTState) bool { return st.Online })
		return err == nil
	}
	start := func(ctx context.Context) error {
		out.expectBoot()
		return dev.Start(ctx)
	}
	e.connectLoop(ctx, run, tag, start, dev.Done, back, e.hasCert)
}

// bootOffline runs the firmware's credential selection (the boot
// counter counts) when it has nowhere to connect.
func (e *Emulator) bootOffline(run *appRun, out *simLines, model *devicemodel.Device, tag, why string) {
	plan := model.Boot()
	out.mu.Lock()
	for _, l := range plan.Log {
		out.line(l)
	}
	out.mu.Unlock()
	e.runLogf(run, 'E', tag, "%s", why)
}

// connectLoop starts the device and keeps it connected: a failed start is
// retried with back-off while there is a credential to try; a connection
// that ends is given the firmware's own reboot (back) to come back, then
// reconnected.
func (e *Emulator) connectLoop(ctx context.Context, run *appRun, tag string, start func(context.Context) error, done func() <-chan struct{},
	back func(context.Context) bool, canTry func() bool) {
	backoff := firstBackoff
	for {
		err := start(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !canTry() {
				e.runLogf(run, 'E', tag, "No credentials left to try (%v); provision and restart", err)
				return
			}
			e.runLogf(run, 'E', tag, "Failed to connect: %v; retrying in %s", err, backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = firstBackoff
		for {
			select {
			case <-ctx.Done():
				return
			case <-done():
			}
			if back == nil || !back(ctx) {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		e.runLogf(run, 'W', tag, "Connection lost; reconnecting")
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// simLines turns a sim device's console lines ("15:04:05.000 [id] text")
// into the firmware's ESP_LOGx lines, and a reboot the device makes by
// itself (after a rotation) into a reset on the console.
type simLines struct {
	e     *Emulator
	run   *appRun
	mode  string
	pskID string
	addr  string
	model *devicemodel.Device

	mu        sync.Mutex
	buf       []byte
	first     bool // the next "boot" is not a reset of the chip
	rebooting bool // esp_restart was called: the session just vanishes
}

// expectBoot says the next "boot" line comes from the app starting the
// device, not from the firmware restarting the chip.
func (s *simLines) expectBoot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.first = true
}

func (s *simLines) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := strings.IndexByte(string(s.buf), '\n')
		if i < 0 {
			break
		}
		text := string(s.buf[:i])
		s.buf = s.buf[i+1:]
		s.line(stripSimPrefix(text))
	}
	if len(s.buf) > MaxLine {
		s.buf = s.buf[:0]
	}
	return len(p), nil
}

// stripSimPrefix drops the time and [id] a sim device puts before a line.
func stripSimPrefix(l string) string {
	sp := strings.IndexByte(l, ' ')
	if sp < 0 {
		return l
	}
	rest := l[sp+1:]
	if !strings.HasPrefix(rest, "[") {
		return l
	}
	if j := strings.Index(rest, "] "); j >= 0 {
		return rest[j+2:]
	}
	return l
}

// Lines the driver waits for.
const (
	connectedGolioth = "Golioth client connected"
	connectedMQTT    = "MQTT client connected"
)

// line prints one device line; s.mu is held.
func (s *simLines) line(text string) {
	if s.run.dead.Load() {
		return
	}
	if strings.Contains(text, devicemodel.ErrPowerCut.Error()) {
		// The write that lost power: the board printed nothing more.
		s.run.dead.Store(true)
		return
	}
	con := s.e.con
	if text == "boot" {
		s.rebooting = false
		if s.first {
			s.first = false
			return
		}
		// The firmware called esp_restart (a rotation, or the
		// boot-counter fallback): the chip resets.
		s.e.banner(swReset)
		return
	}
	if s.mode == modePSK {
		s.goliothLine(text)
		return
	}
	switch {
	case text == "rebooting":
		s.rebooting = true
		con.logf('W', appTag, "Restarting now")
	case text == "disconnected" && s.rebooting:
		// esp_restart does not close the connection politely.
	case strings.HasPrefix(text, "MQTT_EVENT_CONNECTED"):
		con.logf('I', appTag, "MQTT_EVENT_CONNECTED")
	case strings.HasPrefix(text, "subscribed to "):
		topic, _, _ := strings.Cut(strings.TrimPrefix(text, "subscribed to "), " and ")
		con.logf('I', appTag, "sent subscribe successful, topic=%s", topic)
		st := s.model.State()
		con.logf('I', appTag, "%s to mqtts://%s as %s (%s certificate fp=%s)", connectedMQTT, s.addr, st.ID, slotName(st.Slot), st.Fingerprint)
	case strings.HasPrefix(text, "connecting to "):
		con.logf('I', appTag, "%s", "C"+strings.TrimPrefix(text, "c"))
	case strings.HasPrefix(text, "connection failed: "):
		con.logf('E', appTag, "MQTT_EVENT_ERROR: %s", strings.TrimPrefix(text, "connection failed: "))
	case text == "disconnected" || strings.HasPrefix(text, "MQTT_EVENT_DISCONNECTED"):
		con.logf('I', appTag, "MQTT_EVENT_DISCONNECTED")
	default:
		con.logf(level(text), appTag, "%s", text)
	}
}

func (s *simLines) goliothLine(text string) {
	con := s.e.con
	const tag = "golioth_coap_client"
	switch {
	case strings.HasPrefix(text, "connecting to "):
		con.logf('I', tag, "Start CoAP session with host: coaps://%s", s.addr)
		con.logf('I', tag, "Session PSK-ID: %s", s.pskID)
	case strings.HasPrefix(text, "online ("):
		suite := strings.TrimSuffix(strings.TrimPrefix(text, "online ("), ")")
		con.logf('I', "golioth_coap_client_libcoap", "Golioth CoAP client connected")
		con.logf('I', "golioth_example", "%s (PSK-ID %s, %s)", connectedGolioth, s.pskID, suite)
	case strings.HasPrefix(text, "connection failed: "):
		con.logf('E', tag, "Failed to connect: %s", strings.TrimPrefix(text, "connection failed: "))
	case text == "disconnected":
		con.logf('W', tag, "Golioth CoAP client disconnected")
	default:
		con.logf(level(text), "golioth_example", "%s", text)
	}
}

// slotName says where the certificate in use comes from.
func slotName(s devicemodel.Slot) string {
	switch s {
	case devicemodel.SlotRotated:
		return "NVS"
	case devicemodel.SlotNone:
		return "no"
	}
	return string(s)
}

// level picks the ESP_LOGx level of a firmware line.
func level(text string) byte {
	l := strings.ToLower(text)
	switch {
	case strings.Contains(l, "failed:") || strings.HasPrefix(l, "invalid") || strings.HasPrefix(l, "failed") ||
		strings.Contains(l, "rejected") || strings.Contains(l, "unreadable"):
		return 'E'
	case strings.Contains(l, "falling back") || strings.Contains(l, "unconfirmed") || strings.Contains(l, "rebooting") ||
		strings.Contains(l, "retry") || strings.Contains(l, "failed"):
		return 'W'
	}
	return 'I'
}

// infoLines is the info command's output: identity, credential
// fingerprints and the RTC boot counter. No secrets.
func (e *Emulator) infoLines() []string {
	var out []string
	add := func(k, format string, args ...any) {
		out = append(out, fmt.Sprintf("%-22s%s", k+":", fmt.Sprintf(format, args...)))
	}
	mode, model, online := modeNone, (*devicemodel.Device)(nil), false
	if run := e.currentApp(); run != nil {
		mode, model, online = run.state()
	}
	id, project := e.certIdentity()
	pskID, psk, hasPSK := e.pskSettings()
	if hasPSK {
		id, project = pskID, ""
		if d, p, err := registry.ParsePSKIdentity(pskID); err == nil {
			id, project = d, p
		}
	}
	add("Device ID", "%s", id)
	add("Project", "%s", orNone(project))
	add("MAC", "%s (MAC-derived id %s)", e.mac, e.macID())
	add("Mode", "%s", mode)
	if hasPSK {
		add("Golioth PSK-ID", "%s", pskID)
		add("Golioth PSK", "fp=%s (%d bytes)", devicemodel.Fingerprint(psk), len(psk))
	} else {
		add("Golioth PSK", "(not set)")
	}
	if len(e.factory.CertChainDER) > 0 {
		cn, org := leafName(e.factory.CertChainDER[0])
		add("Factory certificate", "fp=%s CN=%s O=%s key fp=%s", e.factory.Fingerprint(), cn, org, e.factory.KeyFingerprint())
	} else {
		add("Factory certificate", "(none)")
	}
	if it, ok := e.fl.item(nsCerts, devicemodel.KeyRotatedCert); ok {
		desc := fmt.Sprintf("%d bytes, unreadable", len(it.Bytes()))
		if chain, err := devicemodel.ParseCertChainPEM(it.Bytes()); err == nil {
			cn, org := leafName(chain[0])
			desc = fmt.Sprintf("fp=%s CN=%s O=%s", devicemodel.Fingerprint(chain[0]), cn, org)
		}
		keyDesc := "(missing)"
		if k, ok := e.fl.item(nsCerts, devicemodel.KeyRotatedKey); ok {
			keyDesc = "fp=" + devicemodel.Fingerprint(k.Bytes())
		}
		_, confirmed := e.fl.item(nsCerts, devicemodel.KeyRotatedOK)
		add("NVS certificate", "%s key %s confirmed=%s", desc, keyDesc, yesNo(confirmed))
	} else {
		add("NVS certificate", "(none)")
	}
	if model != nil {
		st := model.State()
		add("Credential in use", "%s %s fp=%s", slotName(st.Slot), st.Kind, st.Fingerprint)
		add("Boot count (RTC)", "%d of %d", st.RTC.BootCount, model.Config().MaxRotatedFailures)
	} else {
		add("Credential in use", "(none)")
		add("Boot count (RTC)", "0")
	}
	add("Online", "%s", yesNo(online))
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
