package cc3220

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// The firmware: one goroutine (run) plays the application's main loop
// (boot, shell commands, power events); a network task per boot
// provisions the board when needed and keeps it connected over MQTT.
// Every credential decision is internal/devicemodel's: the provisioned
// certificate is the model's factory credential, a certificate rotated
// over MQTT its rotated slot (with the boot-counter fallback to the
// provisioned one).

// run is the firmware's main loop.
func (e *Emulator) run() {
	defer e.wg.Done()
	e.boot(false)
	for {
		// A power cut comes first: a board without power runs nothing.
		select {
		case <-e.cut:
			e.coldBoot()
			continue
		default:
		}
		select {
		case <-e.ctx.Done():
			e.powerOff(false)
			return
		case <-e.cut:
			e.coldBoot()
		case done := <-e.power:
			e.coldBoot()
			close(done)
		case line := <-e.lines:
			e.command(line)
		}
	}
}

// coldBoot removes power (the board goes silent at once) and boots.
func (e *Emulator) coldBoot() {
	e.outMu.Lock()
	e.dead = true
	e.outMu.Unlock()
	e.powerOff(false)
	e.boot(false)
}

// powerOff stops the network task and the MQTT session. A cold power-off
// also loses the RTC (the model goes; the next boot makes a new one).
func (e *Emulator) powerOff(warm bool) {
	e.stopNet()
	e.mu.Lock()
	dev := e.dev
	e.dev = nil
	if !warm {
		e.model = nil
	}
	e.mu.Unlock()
	if dev != nil {
		dev.Stop()
	}
}

func (e *Emulator) stopNet() {
	if e.net == nil {
		return
	}
	e.net.cancel()
	<-e.net.done
	e.net = nil
}

// startNet starts the boot's network task: provision first if asked,
// then connect when the flash holds a certificate.
func (e *Emulator) startNet(provision bool) {
	ctx, cancel := context.WithCancel(e.ctx)
	t := &netTask{cancel: cancel, done: make(chan struct{})}
	e.net = t
	go func() {
		defer close(t.done)
		e.netMain(ctx, provision)
	}()
}

// storedCert reads the provisioned certificate: the credential (zero when
// there is none) and a line for the boot log.
func (e *Emulator) storedCert() (devicemodel.Credential, string, error) {
	pemChain, ok := e.flash.Get(KeyDeviceCert)
	if !ok {
		return devicemodel.Credential{}, "[FS] /cert/device.crt: not found (not provisioned yet)", nil
	}
	cred := devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: e.id.keyDER}
	chain, err := devicemodel.ParseCertChainPEM(pemChain)
	if err == nil {
		cred.CertChainDER = chain
		err = cred.Validate()
	}
	if err != nil {
		// Unreadable, or not for the pre-burned key: erase it and
		// provision again.
		if derr := e.flash.Delete(KeyDeviceCert); derr != nil {
			return devicemodel.Credential{}, "", derr
		}
		return devicemodel.Credential{}, fmt.Sprintf("[FS] /cert/device.crt: unreadable (fp=%s), erased", devicemodel.Fingerprint(pemChain)), nil
	}
	leaf, _ := cred.Leaf()
	return cred, fmt.Sprintf("[FS] /cert/device.crt: found, fp=%s CN=%s O=%s expires %s",
		cred.Fingerprint(), leaf.Subject.CommonName, strings.Join(leaf.Subject.Organization, ","), leaf.NotAfter.UTC().Format(time.RFC3339)), nil
}

// boot runs the boot sequence: banner, certificate check, prompt, then
// the network task. warm keeps the RTC (the model) when the certificate
// did not change.
func (e *Emulator) boot(warm bool) {
	e.outMu.Lock()
	e.dead = false
	e.outMu.Unlock()
	cred, fsLine, err := e.storedCert()
	if err != nil {
		e.logf("boot: %v", err) // a power cut while erasing: off again
		return
	}
	e.setup(cred, warm)
	cause := "power-on reset"
	if warm {
		cause = "warm reset (RTC kept)"
	}
	sum := sha256.Sum256([]byte(e.id.udid))
	e.printLines([]string{
		"",
		"==============================================",
		"   " + BootBanner + " Wi-Fi MCU - credloop firmware " + FirmwareVersion,
		"==============================================",
		"   CHIP:  0x31100019",
		"   NWP:   3.22.0.1",
		"   PHY:   2.2.0.7",
		"   HOST:  3.0.1.71",
		"   UDID:  " + e.id.udid,
		fmt.Sprintf("   MAC:   04:a3:16:%02x:%02x:%02x", sum[0], sum[1], sum[2]),
		"==============================================",
		"[APP] Reset cause: " + cause,
		"[WLAN] Connected to AP: credloop-lab",
		fmt.Sprintf("[NETAPP] IPv4 acquired: 10.0.%d.%d", sum[3], 1+sum[4]%253),
		fsLine,
		fmt.Sprintf("[CRYPTO] Pre-burned key pair (index 0): ECDSA, pubkey fp=%s", e.id.pubFP()),
	}, true)
	e.logf("booted (%s)", cause)
	e.startNet(cred.IsZero())
}

// setup makes the model and the MQTT device for the certificate in
// flash. A warm boot keeps the model (its RTC) if the certificate is the
// same.
func (e *Emulator) setup(cred devicemodel.Credential, warm bool) {
	factory := cred
	if factory.IsZero() {
		factory = devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: e.id.keyDER}
	}
	project := ""
	if leaf, err := cred.Leaf(); err == nil && len(leaf.Subject.Organization) > 0 {
		project = leaf.Subject.Organization[0]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if warm && e.model != nil && e.model.Config().Factory.Equal(factory) {
		e.model.Reset()
	} else {
		e.model = devicemodel.New(devicemodel.Config{ID: e.id.udid, Project: project, Factory: factory}, e.flash)
	}
	e.dev = nil
	if !cred.IsZero() {
		e.dev = simmodel.NewMQTTDevice(e.model, sim.MQTTDeviceOptions{
			Addr:    e.opts.Cloud.MQTTS,
			RootCAs: e.opts.RootCAs,
			Console: &lineWriter{e: e},
			Now:     e.opts.Now,
			Rand:    e.rand,
		})
	}
}

// netMain is the network task of one boot.
func (e *Emulator) netMain(ctx context.Context, provision bool) {
	if provision {
		e.printf("[PROV] No device certificate in flash: requesting one from %s", e.provisionURL())
		if !e.provision(ctx) {
			if ctx.Err() == nil {
				e.printf("[PROV] Type 'provision' to try again.")
			}
			return
		}
	}
	e.mu.Lock()
	dev := e.dev
	e.mu.Unlock()
	switch {
	case dev == nil:
	case e.opts.Cloud.MQTTS == "":
		e.printf("[MQTT] No broker configured; staying offline")
	default:
		e.keepConnected(ctx, dev)
	}
}

func (e *Emulator) provisionURL() string {
	if e.opts.Cloud.HTTPS == "" {
		return "(no provisioning server configured)"
	}
	return "https://" + e.opts.Cloud.HTTPS + "/v1/provision/csr"
}

// provision runs the run-time CSR provisioning of TI's CC3220 flow and stores the
// certificate. It prints the outcome; a refusal prints the cloud's reason.
func (e *Emulator) provision(ctx context.Context) bool {
	if e.opts.Cloud.HTTPS == "" {
		e.printf("[PROV] Provisioning failed: no provisioning server configured")
		return false
	}
	e.printf("[PROV] CSR: CN=%s, signed with the pre-burned key (index 0, pubkey fp=%s)", e.id.udid, e.id.pubFP())
	chain, err := sim.ProvisionHTTPS(ctx, sim.HTTPSProvisionOptions{
		URL: "https://" + e.opts.Cloud.HTTPS, UDID: e.id.udid, Key: e.id.key, RootCAs: e.opts.RootCAs,
	})
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		if re := (*sim.RefusedError)(nil); errors.As(err, &re) {
			e.printf("[PROV] Refused by the cloud: %s: %s", re.Status, re.Reason)
		} else {
			e.printf("[PROV] Provisioning failed: %s", strings.TrimPrefix(err.Error(), "sim: "))
		}
		return false
	}
	cred := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain, KeyDER: e.id.keyDER}
	if err := cred.Validate(); err != nil {
		e.printf("[PROV] Provisioning failed: the certificate is unusable: %v", err)
		return false
	}
	// The certificate is the device's own, for its pre-burned key: the
	// model installs it as its primary credential (no fallback), replacing
	// any earlier one and any rotated one, all at once.
	e.mu.Lock()
	model := e.model
	e.mu.Unlock()
	if model == nil {
		e.printf("[PROV] Provisioning failed: the device is powered off")
		return false
	}
	err = model.InstallCertificate(chain)
	if errors.Is(err, devicemodel.ErrPowerCut) {
		return false
	}
	if err != nil {
		e.printf("[PROV] Provisioning failed: storing the certificate: %v", err)
		return false
	}
	leaf, _ := cred.Leaf()
	e.printf("[PROV] Certificate stored: fp=%s CN=%s O=%s serial=%s expires %s", cred.Fingerprint(), leaf.Subject.CommonName,
		strings.Join(leaf.Subject.Organization, ","), leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339))
	e.setup(cred, false)
	return true
}

// keepConnected connects and stays connected: it reports every
// connection, and reconnects (with back-off) when the cloud is lost and
// the device does not come back by itself.
func (e *Emulator) keepConnected(ctx context.Context, dev *sim.MQTTDevice) {
	delay := e.opts.ReconnectDelay
	seen := dev.State().Connects
	for {
		e.printf("[MQTT] Connecting to mqtts://%s as %s", e.opts.Cloud.MQTTS, e.id.udid)
		err := dev.Start(ctx)
		if ctx.Err() != nil || e.isDead() {
			return
		}
		if err != nil {
			e.printf("[MQTT] Offline: %s; retrying in %s", strings.TrimPrefix(err.Error(), "sim: "), delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, MaxReconnectDelay)
			continue
		}
		delay = e.opts.ReconnectDelay
		for {
			st := dev.State()
			if st.Online && st.Connects != seen {
				seen = st.Connects
				slot := "provisioned"
				if st.Model.Slot == sim.SlotRotated {
					slot = "rotated"
				}
				e.printf("[MQTT] Connected to mqtts://%s as %s with certificate fp=%s (%s)", e.opts.Cloud.MQTTS, e.id.udid, st.Model.Fingerprint, slot)
			}
			st, err := dev.Wait(ctx, func(s sim.MQTTState) bool { return !s.Online || s.Connects != seen })
			if err != nil {
				return
			}
			if st.Online {
				continue
			}
			// After a rotation the device reboots into the new
			// certificate by itself; give it the reconnect delay to.
			gctx, cancel := context.WithTimeout(ctx, delay)
			st, _ = dev.Wait(gctx, func(s sim.MQTTState) bool { return s.Online })
			cancel()
			if ctx.Err() != nil || e.isDead() {
				return
			}
			if !st.Online {
				e.printf("[MQTT] Connection lost; reconnecting")
				break
			}
		}
	}
}

// command runs one shell command line.
func (e *Emulator) command(line string) {
	if e.isDead() {
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		e.printLines(nil, true)
		return
	}
	name := f[0]
	if len(f) > 1 {
		if _, known := commands[name]; known {
			e.printLines([]string{fmt.Sprintf("%s: unexpected argument '%s'", name, clip(f[1], 32)), "usage: " + name}, true)
			return
		}
	}
	switch name {
	case "help":
		out := []string{"Commands:"}
		for _, c := range commandOrder {
			out = append(out, fmt.Sprintf("  %-10s %s", c, commands[c]))
		}
		e.printLines(out, true)
	case "udid":
		e.printLines([]string{"UDID: " + e.id.udid}, true)
	case "pubkey":
		out := []string{fmt.Sprintf("Public key of the pre-burned key pair (index 0), fp=%s:", e.id.pubFP())}
		out = append(out, strings.Split(strings.TrimSuffix(string(encodePublicKeyPEM(e.id.pubDER)), "\n"), "\n")...)
		e.printLines(out, true)
	case "status":
		e.printLines([]string{e.statusLine()}, true)
	case "provision":
		e.cmdProvision()
	case "reset":
		e.printf("[APP] Reset requested: rebooting")
		e.powerOff(true)
		e.boot(true)
	default:
		e.printLines([]string{fmt.Sprintf("Unknown command '%s'. Type 'help' for the list of commands.", clip(name, 32))}, true)
	}
}

// commands are the shell's commands and their help.
var commands = map[string]string{
	"help":      "list the commands",
	"udid":      "print the pre-burned UDID",
	"pubkey":    "print the pre-burned public key (PEM)",
	"provision": "request a certificate: CSR with the UDID as CN, signed by the pre-burned key, over HTTPS",
	"status":    "print the identity, the certificate and the cloud connection",
	"reset":     "reboot (RTC kept)",
}

var commandOrder = []string{"help", "udid", "pubkey", "provision", "status", "reset"}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// cmdProvision is the provision command: it stops the network, asks the
// cloud for a certificate and connects with whatever the flash then
// holds.
func (e *Emulator) cmdProvision() {
	e.stopNet()
	e.mu.Lock()
	dev := e.dev
	e.mu.Unlock()
	if dev != nil {
		dev.Stop()
	}
	e.printf("[PROV] provision: requesting a certificate from %s", e.provisionURL())
	ctx, cancel := context.WithCancel(e.ctx)
	e.mu.Lock()
	e.cmdCancel = cancel
	e.mu.Unlock()
	e.provision(ctx)
	interrupted := ctx.Err() != nil // power lost or emulator closed
	e.mu.Lock()
	e.cmdCancel = nil
	e.mu.Unlock()
	cancel()
	if interrupted || e.isDead() {
		return
	}
	e.printLines(nil, true)
	e.mu.Lock()
	have := e.dev != nil
	e.mu.Unlock()
	if have {
		e.startNet(false)
	}
}

// statusLine is the status command's answer: key=value fields on one line
// (the driver parses it; see parseStatus).
func (e *Emulator) statusLine() string {
	e.mu.Lock()
	model, dev := e.model, e.dev
	e.mu.Unlock()
	certFP, project, notAfter, slot, mqtt, connects, boots := "none", "-", "-", "none", "offline", 0, 0
	if model != nil {
		cfg := model.Config()
		if cfg.Project != "" {
			project = cfg.Project
		}
		if len(cfg.Factory.CertChainDER) > 0 {
			certFP, slot = cfg.Factory.Fingerprint(), "provisioned"
			if leaf, err := cfg.Factory.Leaf(); err == nil {
				notAfter = leaf.NotAfter.UTC().Format(time.RFC3339)
			}
		}
		st := model.State()
		if st.Booted && st.Kind == devicemodel.KindCert {
			certFP = st.Fingerprint
			if st.Slot == devicemodel.SlotRotated {
				slot = "rotated"
			}
			if !st.NotAfter.IsZero() {
				notAfter = st.NotAfter.UTC().Format(time.RFC3339)
			}
		}
		boots = st.RTC.BootCount
	}
	if dev != nil {
		st := dev.State()
		if st.Online {
			mqtt = "online"
		}
		connects = st.Connects
	}
	return fmt.Sprintf("[STATUS] udid=%s pubkey_fp=%s cert_fp=%s project=%s not_after=%s slot=%s mqtt=%s connects=%d boot_count=%d",
		e.id.udid, e.id.pubFP(), certFP, project, notAfter, slot, mqtt, connects, boots)
}
