package nrf

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// Log modules of the firmware.
const (
	modApp  = "golioth_certificate_provisioning"
	modCoAP = "golioth_coap_client_zephyr"
)

// maxChain bounds the certificates crt.der may hold.
const maxChain = 8

// ErrBadCertFile is a crt.der that is not one or more DER certificates.
var ErrBadCertFile = errors.New("nrf: crt.der is not DER certificates")

// SplitDER splits the content of crt.der into certificates: the leaf, then
// any intermediates, each DER, one after the other. (Golioth's sample
// stores the leaf alone; appending the intermediates lets a device
// certificate from an intermediate CA verify against a trusted root.)
func SplitDER(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(out) == maxChain {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrBadCertFile, maxChain)
		}
		var raw asn1.RawValue
		rest, err := asn1.Unmarshal(b, &raw)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrBadCertFile, len(out)+1, err)
		}
		if raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagSequence || !raw.IsCompound {
			return nil, fmt.Errorf("%w: certificate %d is not a SEQUENCE", ErrBadCertFile, len(out)+1)
		}
		out = append(out, b[:len(b)-len(rest)])
		b = rest
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCertFile)
	}
	return out, nil
}

// runApp is the firmware's main: load the credentials, connect, say hello.
func (e *Emulator) runApp(ctx context.Context) {
	e.logf(lvlDbg, modApp, "main: Start certificate provisioning sample")
	cfg, ok := e.loadCredential()
	if !ok {
		<-ctx.Done()
		return
	}
	if e.o.Cloud.CoAPS == "" {
		e.logf(lvlErr, modCoAP, "No CoAP host configured (CONFIG_GOLIOTH_COAP_HOST_URI)")
		<-ctx.Done()
		return
	}
	e.mu.Lock()
	model := e.modelFor(cfg)
	e.mu.Unlock()
	e.logf(lvlInf, "golioth_mbox", "Mbox created, bufsize: 1232, num_items: 10, item_size: 112")
	dev := simmodel.NewDevice(model, sim.DeviceOptions{
		Addr:             e.o.Cloud.CoAPS,
		RootCAs:          e.o.RootCAs,
		HandshakeTimeout: e.o.HandshakeTimeout,
		Console:          &simLog{e: e, prefix: " [" + cfg.ID + "] "},
		Now:              e.o.Now,
		Rand:             e.o.Rand,
	})
	e.mu.Lock()
	e.dev = dev
	e.mu.Unlock()
	defer dev.Stop()
	hello := 0
	for {
		err := dev.Start(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, devicemodel.ErrPowerCut) || errors.Is(err, devicemodel.ErrPoweredOff) {
				<-ctx.Done() // the supervisor boots the board again
				return
			}
			e.logf(lvlErr, modCoAP, "Failed to connect: %v", err)
			if !sleep(ctx, e.o.RetryInterval) {
				return
			}
			continue
		}
		e.logf(lvlInf, modCoAP, "Golioth CoAP client connected")
		e.logf(lvlInf, modApp, "Golioth client connected")
		e.logf(lvlInf, modCoAP, "Entering CoAP I/O loop")
		e.online(ctx, dev, &hello)
		if ctx.Err() != nil {
			return
		}
		e.logf(lvlInf, modApp, "Golioth client disconnected")
		if !sleep(ctx, e.o.RetryInterval) {
			return
		}
	}
}

// online runs while the session lives: hellos and keepalives.
func (e *Emulator) online(ctx context.Context, dev *sim.Device, hello *int) {
	done := dev.Done()
	var helloC, kaC <-chan time.Time
	if e.o.HelloInterval > 0 {
		t := time.NewTicker(e.o.HelloInterval)
		defer t.Stop()
		helloC = t.C
	}
	if e.o.KeepaliveInterval > 0 {
		t := time.NewTicker(e.o.KeepaliveInterval)
		defer t.Stop()
		kaC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			e.logf(lvlWrn, modCoAP, "Session closed by the server")
			dev.Stop()
			return
		case <-helloC:
			e.logf(lvlInf, modApp, "Sending hello! %d", *hello)
			*hello++
		case <-kaC:
			s, err := dev.Session()
			if err == nil {
				kctx, cancel := context.WithTimeout(ctx, keepaliveWait)
				err = s.Keepalive(kctx)
				cancel()
			}
			if err != nil && ctx.Err() == nil {
				e.logf(lvlWrn, modCoAP, "Receive timeout: %v", err)
				dev.Stop()
				return
			}
		}
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

// loadFile reads a credential file as load_credential_from_fs does, with
// its log lines.
func (e *Emulator) loadFile(p string) ([]byte, bool) {
	size, err := e.fl.Stat(p)
	switch {
	case errors.Is(err, smp.ErrIsDir):
		e.logf(lvlErr, modApp, "%s is not a file", p)
	case err != nil:
		e.logf(lvlWrn, modApp, "Could not stat %s, err: %d", p, errno(err))
	case size == 0:
		e.logf(lvlErr, modApp, "%s is an empty file", p)
	default:
		b, err := e.fl.ReadFile(p)
		if err != nil {
			e.logf(lvlErr, modApp, "Could not read %s, err: %d", p, errno(err))
			return nil, false
		}
		e.logf(lvlInf, modApp, "Read %d bytes from %s", len(b), p)
		return b, true
	}
	return nil, false
}

// loadCredential picks what the firmware connects with: the certificate
// and key in /lfs1/credentials, else the PSK in the settings.
func (e *Emulator) loadCredential() (devicemodel.Config, bool) {
	crt, okC := e.loadFile(CertPath)
	key, okK := e.loadFile(KeyPath)
	if okC && okK {
		chain, err := SplitDER(crt)
		c := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain, KeyDER: key}
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			e.logf(lvlErr, modApp, "Failed to load certificate credentials: %v", err)
			return devicemodel.Config{}, false
		}
		leaf, _ := c.Leaf()
		project := ""
		if len(leaf.Subject.Organization) > 0 {
			project = leaf.Subject.Organization[0]
		}
		e.logf(lvlInf, modApp, "Certificate CN=%s O=%s fp %s, key fp %s", leaf.Subject.CommonName, project, c.Fingerprint(), c.KeyFingerprint())
		return devicemodel.Config{ID: leaf.Subject.CommonName, Project: project, Factory: c}, true
	}
	st := e.settings()
	id, okI := st.Get(SettingPSKID)
	psk, okP := st.Get(SettingPSK)
	if okI && okP && len(id) > 0 && len(psk) > 0 {
		ident := string(id)
		dev, project := ident, ""
		if d, p, err := registry.ParsePSKIdentity(ident); err == nil {
			dev, project = d, p
		}
		e.logf(lvlInf, modApp, "No certificate in %s: using the PSK from settings", CredentialsDir)
		e.logf(lvlInf, modApp, "Session PSK-ID: %s (key fp %s)", ident, devicemodel.Fingerprint(psk))
		return devicemodel.Config{ID: dev, Project: project,
			Factory: devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: ident, PSK: psk}}, true
	}
	e.logf(lvlErr, modApp, "Error reading certificate credentials from filesystem")
	e.logf(lvlErr, modApp, "No PSK credentials in settings (%s, %s)", SettingPSKID, SettingPSK)
	return devicemodel.Config{}, false
}

// modelFor returns the device model for cfg: the one from earlier boots
// while the credential is the same (its RTC state survives resets), a new
// one (RTC state zero) when the flash now holds another credential. e.mu
// is held.
func (e *Emulator) modelFor(cfg devicemodel.Config) *devicemodel.Device {
	f := cfg.Factory
	key := strings.Join([]string{cfg.ID, cfg.Project, f.Kind, f.PSKIdentity,
		devicemodel.Fingerprint(bytes.Join(f.CertChainDER, nil)), f.KeyFingerprint()}, "\x00")
	if e.model == nil || key != e.modelKey {
		e.model = devicemodel.New(cfg, e.settings())
		e.modelKey = key
	}
	return e.model
}

// simLog turns sim.Device's console lines into Zephyr log lines.
type simLog struct {
	e      *Emulator
	prefix string // " [<device id>] " after the time stamp
}

func (w *simLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if i := strings.Index(line, w.prefix); i >= 0 && i <= len("15:04:05.000") {
			line = line[i+len(w.prefix):]
		}
		if line == "" || line == "boot" {
			continue
		}
		level := lvlInf
		l := strings.ToLower(line)
		switch {
		case strings.Contains(l, "failed") || strings.Contains(l, "rejected"):
			level = lvlErr
		case strings.Contains(l, "falling back") || strings.Contains(l, "unreadable"):
			level = lvlWrn
		}
		w.e.logf(level, modCoAP, "%s", line)
	}
	return len(p), nil
}
