// Package devicemodel is the firmware's credential logic (slots, NVS-like store, RTC boot counter, rotation with fallback, PSK main/backup) as a deterministic state machine without I/O.
package devicemodel

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Store keys used by the model. All fit the NVS 15-byte key limit. The
// rotated slot uses the names of the ESP32 rotation example's firmware and holds
// PEM strings, so an NVS image built from a MemStore looks like the real one.
const (
	KeyRotatedCert  = "client_cert" // rotated chain, PEM, leaf first
	KeyRotatedKey   = "client_key"  // rotated private key, PKCS#8 PEM
	KeyRotatedOK    = "client_ok"   // "1" once the rotated credential authenticated
	KeyPSKMainID    = "psk_main_id" // PSK main slot identity (absent: factory PSK is main)
	KeyPSKMain      = "psk_main"    // PSK main slot key
	KeyPSKBackupID  = "psk_bak_id"  // PSK backup slot identity
	KeyPSKBackup    = "psk_bak"     // PSK backup slot key
	KeyPSKBackupNew = "psk_bak_new" // "1": the backup is new and untried
	KeyCSRKey       = "csr_key"     // pending CSR private key, PKCS#8 DER
	// KeyDeviceCert is the certificate chain the device obtained for its
	// factory key by its own first provisioning (InstallCertificate), PEM,
	// leaf first: SimpleLink's /cert/device.crt in TI's CC3220 flow.
	KeyDeviceCert = "devcert"
)

// Defaults for Config.
const (
	DefaultMaxRotatedFailures = 3
	DefaultRenewBefore        = 30 * 24 * time.Hour
)

// PSK limits accepted by InstallBackupPSK.
const (
	MaxPSKLen         = 64
	MaxPSKIdentityLen = 128
)

// Device errors.
var (
	ErrPoweredOff   = errors.New("devicemodel: device lost power; call PowerCycle")
	ErrNotBooted    = errors.New("devicemodel: device has not booted")
	ErrNotPSK       = errors.New("devicemodel: device does not use PSK credentials")
	ErrBadPSK       = errors.New("devicemodel: invalid PSK")
	ErrNoPendingCSR = errors.New("devicemodel: no pending CSR key")
)

// Slot names where the credential in use comes from.
type Slot string

// Slots.
const (
	SlotNone    Slot = ""        // not booted
	SlotFactory Slot = "factory" // Config.Factory, with the certificate InstallCertificate stored for its key
	SlotRotated Slot = "rotated" // rotated certificate in the store
	SlotMain    Slot = "main"    // PSK main slot in the store
	SlotBackup  Slot = "backup"  // PSK backup slot in the store, new and untried
)

// Config describes one device. Zero values mean defaults.
type Config struct {
	ID      string
	Project string
	// Factory is the credential in read-only factory storage (embedded in
	// the firmware, as in the ESP32 rotation example). It is kept here, never in the Store,
	// so no store operation or power cut can damage it. For a PSK device it
	// is the main key until the first swap writes the main slot.
	Factory Credential
	// MaxRotatedFailures is how many boots an unconfirmed rotated
	// certificate gets before it is erased (default 3).
	MaxRotatedFailures int
	// RenewBefore is how long before NotAfter NeedsRenewal turns true
	// (default 30 days).
	RenewBefore time.Duration
}

// RTC is the state that survives Reset but not a power loss (ESP32 RTC
// memory). PowerCycle and a power cut zero it.
type RTC struct {
	// BootCount counts boots that started with the unconfirmed rotated
	// certificate since it was stored (or since the last power loss).
	BootCount int
	// RotationPending is set when a new rotated credential was stored
	// (ApplyRotation, CompleteCSR) and cleared by the next Boot.
	RotationPending bool
}

// Plan is what the firmware connects with after a Boot.
type Plan struct {
	Credential Credential
	Slot       Slot
	// FellBack is set when this boot erased a rotated certificate that had
	// used up its boots, or erased an unreadable one.
	FellBack bool
	// BootCount is the RTC boot counter after this boot.
	BootCount int
	// Log holds the lines the firmware prints, free of secrets.
	Log []string
	// Err is non-nil only when the store failed (errors.Is(Err,
	// ErrPowerCut): the device is then off until Reset or PowerCycle).
	Err error
}

// Decision tells the caller what to do after a connection attempt.
// Exactly one of Connected, Reboot and Retry is set unless Err is non-nil.
type Decision struct {
	Connected bool // online; nothing to do
	Reboot    bool // call Reset, then Boot
	Retry     bool // connect again now with Next (the caller applies its own back-off)
	Next      Plan // the plan for the retry (Retry only)
	Log       []string
	Err       error
}

// State is a snapshot for assertions and logs. It holds no secrets.
type State struct {
	ID               string
	Booted           bool
	PoweredOff       bool
	Slot             Slot
	Kind             string
	Fingerprint      string    // of the credential in use ("none" before Boot)
	NotAfter         time.Time // leaf NotAfter of the credential in use; zero for PSK
	FellBack         bool      // the last Boot fell back
	RTC              RTC
	HasRotated       bool
	RotatedConfirmed bool
	HasMainPSK       bool
	HasBackupPSK     bool
	BackupPending    bool // the backup PSK is new and will be tried first
	CSRPending       bool
}

// String renders the state on one line.
func (s State) String() string {
	return fmt.Sprintf("device=%s booted=%t off=%t slot=%s kind=%s fp=%s fellback=%t boots=%d rotation_pending=%t rotated=%t confirmed=%t main_psk=%t backup_psk=%t backup_new=%t csr_pending=%t",
		s.ID, s.Booted, s.PoweredOff, s.Slot, s.Kind, s.Fingerprint, s.FellBack, s.RTC.BootCount, s.RTC.RotationPending,
		s.HasRotated, s.RotatedConfirmed, s.HasMainPSK, s.HasBackupPSK, s.BackupPending, s.CSRPending)
}

// Device is the credential state machine of one device. It performs no I/O:
// the caller connects, reports the outcome, and resets or power cycles it.
// Methods are safe for concurrent use.
//
// Lifecycle, for a certificate rotation (the ESP32 rotation example, with the fallback of its
// "common mistakes" section):
//
//	ApplyRotation        store cert+key in the rotated slot (unconfirmed), BootCount=0
//	Reset, Boot #1..#N   each boot with the unconfirmed rotated cert increments
//	                     BootCount (1..N, N = MaxRotatedFailures)
//	ConnectResult(false) Decision{Reboot}
//	ConnectResult(true)  confirmed for good, BootCount=0
//	Boot #N+1            BootCount == N: erase the rotated slot, use factory
//
// So N failed connections in a row with the rotated certificate, each
// followed by a reboot, make boot N+1 fall back. A boot that crashes before
// reporting counts as a failure too. A power loss zeroes BootCount (it lives
// in RTC memory), which restarts the count, as on real hardware.
type Device struct {
	mu     sync.Mutex
	cfg    Config
	store  Store
	rtc    RTC
	plan   Plan
	booted bool
	off    bool
	// confirmed is whether the rotated credential of plan was confirmed.
	confirmed bool
}

// New returns a powered-on device that has not booted yet. A nil store means
// a new MemStore. The factory credential is copied.
func New(cfg Config, store Store) *Device {
	if cfg.MaxRotatedFailures <= 0 {
		cfg.MaxRotatedFailures = DefaultMaxRotatedFailures
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	cfg.Factory = cfg.Factory.Clone()
	if store == nil {
		store = NewMemStore()
	}
	return &Device{cfg: cfg, store: store}
}

// Config returns the configuration with defaults filled in.
func (d *Device) Config() Config {
	c := d.cfg
	c.Factory = c.Factory.Clone()
	return c
}

// Store returns the device's store (for images and fault injection).
func (d *Device) Store() Store { return d.store }

// Reset is a warm reset: the RTC survives, the running session is gone.
// Call Boot next. After a power cut, Reset powers the device back on (the
// RTC was already lost with the power).
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.off = false
	d.booted = false
	d.plan = Plan{}
	d.confirmed = false
}

// PowerCycle removes and restores power: the RTC is zeroed, the store is
// kept. Call Boot next.
func (d *Device) PowerCycle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rtc = RTC{}
	d.off = false
	d.booted = false
	d.plan = Plan{}
	d.confirmed = false
}

// RTC returns the RTC memory.
func (d *Device) RTC() RTC {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rtc
}

// Current returns the credential of the current plan; the zero Credential
// before the first Boot after New, Reset or PowerCycle.
func (d *Device) Current() Credential {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan.Credential.Clone()
}

// fail records a store error. A power cut turns the device off and loses
// the RTC.
func (d *Device) fail(err error) error {
	if errors.Is(err, ErrPowerCut) {
		d.off = true
		d.booted = false
		d.rtc = RTC{}
		d.plan = Plan{}
		d.confirmed = false
	}
	return err
}

// Boot runs the firmware's credential selection at start-up and returns the
// plan; it is called after New, Reset or PowerCycle (calling it again acts
// as a reboot). The order is:
//
//  1. A rotated certificate in the store that is unreadable or incomplete is
//     erased (FellBack).
//  2. An unconfirmed rotated certificate: if RTC.BootCount has reached
//     MaxRotatedFailures it is erased atomically, BootCount is zeroed and
//     the boot falls back (FellBack, log "rotated certificate failed N
//     boots, falling back to factory credentials"); otherwise BootCount is
//     incremented and the rotated certificate is used (SlotRotated).
//  3. A confirmed rotated certificate is used (SlotRotated).
//  4. A PSK device uses a new, untried backup PSK (SlotBackup), else the
//     main slot (SlotMain), else the factory PSK (SlotFactory).
//  5. A certificate device uses the factory certificate (SlotFactory).
func (d *Device) Boot() Plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return Plan{Err: ErrPoweredOff}
	}
	d.booted = false
	d.plan = Plan{}
	d.confirmed = false
	d.rtc.RotationPending = false
	var log []string
	logf := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }

	fellBack := false
	rot, state := d.loadRotated()
	switch state {
	case rotCorrupt:
		logf("rotated certificate in NVS is unreadable, erasing it")
		if err := d.store.Update(eraseRotated); err != nil {
			err = d.fail(err)
			return Plan{Log: append(log, "erasing rotated certificate failed: "+err.Error()), Err: err}
		}
		d.rtc.BootCount = 0
		fellBack = true
	case rotUnconfirmed:
		if d.rtc.BootCount >= d.cfg.MaxRotatedFailures {
			n := d.rtc.BootCount
			if err := d.store.Update(eraseRotated); err != nil {
				err = d.fail(err)
				return Plan{Log: append(log, "erasing rotated certificate failed: "+err.Error()), Err: err}
			}
			d.rtc.BootCount = 0
			fellBack = true
			base := d.basePlan(nil)
			what := "factory credentials"
			if base.Slot != SlotFactory {
				what = string(base.Slot) + " PSK"
			}
			logf("rotated certificate failed %d boots, falling back to %s", n, what)
			break
		}
		d.rtc.BootCount++
		logf("Found rotated certificates in NVS. Attempting to use them.")
		logf("rotated certificate %s is unconfirmed: boot %d of %d", rot.Fingerprint(), d.rtc.BootCount, d.cfg.MaxRotatedFailures)
		return d.setPlan(Plan{Credential: rot, Slot: SlotRotated, BootCount: d.rtc.BootCount, Log: log}, false)
	case rotConfirmed:
		logf("Found rotated certificates in NVS. Attempting to use them.")
		logf("rotated certificate %s is confirmed", rot.Fingerprint())
		return d.setPlan(Plan{Credential: rot, Slot: SlotRotated, BootCount: d.rtc.BootCount, Log: log}, true)
	}
	p := d.basePlan(&log)
	p.FellBack = fellBack
	p.BootCount = d.rtc.BootCount
	p.Log = log
	return d.setPlan(p, false)
}

func (d *Device) setPlan(p Plan, confirmed bool) Plan {
	d.booted = true
	d.plan = p
	d.confirmed = confirmed
	out := p
	out.Credential = p.Credential.Clone()
	out.Log = append([]string(nil), p.Log...)
	return out
}

// basePlan picks the credential when no rotated certificate is in use.
func (d *Device) basePlan(log *[]string) Plan {
	logf := func(format string, args ...any) {
		if log != nil {
			*log = append(*log, fmt.Sprintf(format, args...))
		}
	}
	f := d.cfg.Factory
	if f.Kind != KindPSK {
		if p, ok := d.loadProvisioned(); ok {
			f = p
		} else if _, stored := d.store.Get(KeyDeviceCert); stored {
			logf("provisioned certificate in NVS is unusable, ignored")
		}
		if log != nil && len(*log) > 0 {
			logf("Using factory certificates.")
		} else {
			logf("No rotated certificates found. Using factory certificates.")
		}
		return Plan{Credential: f.Clone(), Slot: SlotFactory}
	}
	if b, ok := d.loadPSK(KeyPSKBackupID, KeyPSKBackup); ok && d.backupPending() {
		logf("trying new backup PSK identity=%q key fp=%s; main key kept until it authenticates", b.PSKIdentity, Fingerprint(b.PSK))
		return Plan{Credential: b, Slot: SlotBackup}
	}
	if m, ok := d.loadPSK(KeyPSKMainID, KeyPSKMain); ok {
		logf("using main PSK identity=%q key fp=%s", m.PSKIdentity, Fingerprint(m.PSK))
		return Plan{Credential: m, Slot: SlotMain}
	}
	logf("using factory PSK identity=%q key fp=%s", f.PSKIdentity, Fingerprint(f.PSK))
	return Plan{Credential: f.Clone(), Slot: SlotFactory}
}

// loadProvisioned returns the factory key with the certificate
// InstallCertificate stored for it, if there is one and it still matches.
func (d *Device) loadProvisioned() (Credential, bool) {
	certPEM, ok := d.store.Get(KeyDeviceCert)
	if !ok {
		return Credential{}, false
	}
	chain, err := decodeCertChainPEM(certPEM)
	if err != nil {
		return Credential{}, false
	}
	c := Credential{Kind: KindCert, CertChainDER: chain, KeyDER: d.cfg.Factory.KeyDER}
	if _, _, err := c.parse(); err != nil {
		return Credential{}, false
	}
	return c.Clone(), true
}

type rotState int

const (
	rotNone rotState = iota
	rotCorrupt
	rotUnconfirmed
	rotConfirmed
)

func (d *Device) loadRotated() (Credential, rotState) {
	certPEM, okc := d.store.Get(KeyRotatedCert)
	keyPEM, okk := d.store.Get(KeyRotatedKey)
	_, okf := d.store.Get(KeyRotatedOK)
	if !okc && !okk {
		if okf {
			return Credential{}, rotCorrupt
		}
		return Credential{}, rotNone
	}
	if !okc || !okk {
		return Credential{}, rotCorrupt
	}
	chain, err := decodeCertChainPEM(certPEM)
	if err != nil {
		return Credential{}, rotCorrupt
	}
	key, err := decodeKeyPEM(keyPEM)
	if err != nil {
		return Credential{}, rotCorrupt
	}
	c := Credential{Kind: KindCert, CertChainDER: chain, KeyDER: key}
	if _, _, err := c.parse(); err != nil {
		return Credential{}, rotCorrupt
	}
	if d.rotatedConfirmed() {
		return c, rotConfirmed
	}
	return c, rotUnconfirmed
}

func (d *Device) rotatedConfirmed() bool {
	v, ok := d.store.Get(KeyRotatedOK)
	return ok && string(v) == "1"
}

func (d *Device) backupPending() bool {
	v, ok := d.store.Get(KeyPSKBackupNew)
	return ok && string(v) == "1"
}

func (d *Device) loadPSK(idKey, keyKey string) (Credential, bool) {
	id, ok1 := d.store.Get(idKey)
	key, ok2 := d.store.Get(keyKey)
	if !ok1 || !ok2 || len(id) == 0 || len(key) == 0 {
		return Credential{}, false
	}
	return Credential{Kind: KindPSK, PSKIdentity: string(id), PSK: key}, true
}

func eraseRotated(tx *Tx) error {
	return errors.Join(tx.Delete(KeyRotatedCert), tx.Delete(KeyRotatedKey), tx.Delete(KeyRotatedOK))
}

// ConnectResult reports the outcome of a connection attempt with the
// current plan's credential; reason is free text for the log. Semantics:
//
//   - ok, rotated unconfirmed: store KeyRotatedOK (the rotated certificate
//     is now the device's credential for good; factory stays the last
//     resort), zero BootCount. Connected.
//   - ok, PSK backup: swap atomically, main := backup, backup := old main
//     (the factory PSK if the main slot was empty); the backup is no longer
//     new. Connected; the current plan becomes SlotMain.
//   - ok, anything else: Connected (BootCount zeroed).
//   - failed, rotated unconfirmed: Reboot. Nothing is written; the next
//     Boot counts (see Device).
//   - failed, PSK backup: the backup is erased atomically and the main key
//     kept ("keep things as they are and try the key update again": the
//     cloud must InstallBackupPSK again). Retry with main (or factory).
//   - failed, anything else (factory, main, confirmed rotated): Retry
//     with the same credential.
//
// A store failure sets Err; on ErrPowerCut the device is off.
func (d *Device) ConnectResult(ok bool, reason string) Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return Decision{Err: ErrPoweredOff}
	}
	if !d.booted {
		return Decision{Err: ErrNotBooted}
	}
	var log []string
	logf := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
	why := ""
	if reason != "" {
		why = ": " + sanitize(reason)
	}
	p := d.plan
	switch {
	case ok && p.Slot == SlotRotated && !d.confirmed:
		if err := d.store.Set(KeyRotatedOK, []byte("1")); err != nil {
			err = d.fail(err)
			return Decision{Log: []string{"confirming rotated certificate failed: " + err.Error()}, Err: err}
		}
		d.confirmed = true
		d.rtc.BootCount = 0
		logf("connected with rotated certificate %s; rotation confirmed, boot counter reset", p.Credential.Fingerprint())
		return Decision{Connected: true, Log: log}
	case ok && p.Slot == SlotBackup:
		oldMain, hasMain := d.loadPSK(KeyPSKMainID, KeyPSKMain)
		if !hasMain {
			oldMain = d.cfg.Factory
		}
		nb := p.Credential
		err := d.store.Update(func(tx *Tx) error {
			return errors.Join(
				tx.Set(KeyPSKMainID, []byte(nb.PSKIdentity)), tx.Set(KeyPSKMain, nb.PSK),
				tx.Set(KeyPSKBackupID, []byte(oldMain.PSKIdentity)), tx.Set(KeyPSKBackup, oldMain.PSK),
				tx.Delete(KeyPSKBackupNew))
		})
		if err != nil {
			err = d.fail(err)
			return Decision{Log: []string{"swapping PSK keys failed: " + err.Error()}, Err: err}
		}
		d.plan.Slot = SlotMain
		d.rtc.BootCount = 0
		logf("backup PSK key fp=%s authenticated; swapped: main key fp=%s, backup key fp=%s",
			Fingerprint(nb.PSK), Fingerprint(nb.PSK), Fingerprint(oldMain.PSK))
		return Decision{Connected: true, Log: log}
	case ok:
		d.rtc.BootCount = 0
		logf("connected with %s credential %s", p.Slot, p.Credential.Fingerprint())
		return Decision{Connected: true, Log: log}
	case p.Slot == SlotRotated && !d.confirmed:
		logf("connection with unconfirmed rotated certificate %s failed%s (boot %d of %d); rebooting",
			p.Credential.Fingerprint(), why, d.rtc.BootCount, d.cfg.MaxRotatedFailures)
		return Decision{Reboot: true, Log: log}
	case p.Slot == SlotBackup:
		err := d.store.Update(func(tx *Tx) error {
			return errors.Join(tx.Delete(KeyPSKBackupID), tx.Delete(KeyPSKBackup), tx.Delete(KeyPSKBackupNew))
		})
		if err != nil {
			err = d.fail(err)
			return Decision{Log: []string{"discarding backup PSK failed: " + err.Error()}, Err: err}
		}
		logf("backup PSK key fp=%s rejected%s; keeping main key, key update must be repeated", Fingerprint(p.Credential.PSK), why)
		next := d.basePlan(&log)
		next.BootCount = d.rtc.BootCount
		d.plan = next
		return Decision{Retry: true, Next: clonePlan(next), Log: log}
	default:
		logf("connection with %s credential %s failed%s; retrying", p.Slot, p.Credential.Fingerprint(), why)
		next := p
		next.Log = nil
		return Decision{Retry: true, Next: clonePlan(next), Log: log}
	}
}

func clonePlan(p Plan) Plan {
	p.Credential = p.Credential.Clone()
	p.Log = append([]string(nil), p.Log...)
	return p
}

// sanitize keeps a caller-supplied reason on one printable line.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// InstallBackupPSK writes a new key into the PSK backup slot atomically and
// marks it new, replacing whatever the backup slot held. The running
// session keeps its credential; the next Boot tries the backup first, and
// the swap with main happens only after it authenticated (ConnectResult).
// A power cut leaves the old slots intact.
func (d *Device) InstallBackupPSK(identity string, key []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPoweredOff
	}
	if d.cfg.Factory.Kind != KindPSK {
		return ErrNotPSK
	}
	if identity == "" || len(identity) > MaxPSKIdentityLen {
		return fmt.Errorf("%w: identity must be 1..%d bytes", ErrBadPSK, MaxPSKIdentityLen)
	}
	if len(key) == 0 || len(key) > MaxPSKLen {
		return fmt.Errorf("%w: key must be 1..%d bytes", ErrBadPSK, MaxPSKLen)
	}
	err := d.store.Update(func(tx *Tx) error {
		return errors.Join(tx.Set(KeyPSKBackupID, []byte(identity)), tx.Set(KeyPSKBackup, key), tx.Set(KeyPSKBackupNew, []byte("1")))
	})
	if err != nil {
		return fmt.Errorf("install backup PSK: %w", d.fail(err))
	}
	return nil
}

// ApplyRotation stores r in the rotated slot atomically (unconfirmed,
// replacing any earlier rotated certificate), zeroes RTC.BootCount and sets
// RTC.RotationPending. The running session keeps its credential: the
// caller reboots (Reset, Boot) to use the new one. An invalid r or a store
// failure changes nothing.
func (d *Device) ApplyRotation(r Rotation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPoweredOff
	}
	_, key, err := r.Credential.parse()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRotation, err)
	}
	if err := d.storeRotated(r.Credential.CertChainDER, key); err != nil {
		return fmt.Errorf("apply rotation: %w", err)
	}
	return nil
}

// InstallCertificate stores a certificate chain that the device obtained
// for its factory key by its own first provisioning — TI's CC3220 run-time
// provisioning flow: a CSR signed with the pre-burned key, answered by the
// cloud's provisioning service — as the device's primary credential. It is
// not a rotation on trial: from the next Boot on the device connects with
// it in SlotFactory, with no boot counter and nothing to fall back to
// (before it the device had no certificate at all), and a later rotation
// falls back to it. It replaces an earlier provisioned certificate and
// erases any rotated one, in one atomic update; the RTC boot counter is
// zeroed. The leaf must match Config.Factory's key; on any error nothing
// changes. The running session keeps its credential.
func (d *Device) InstallCertificate(chain [][]byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPoweredOff
	}
	if d.cfg.Factory.Kind != KindCert {
		return fmt.Errorf("install certificate: %w: the device has no factory key", ErrBadCredential)
	}
	c := Credential{Kind: KindCert, CertChainDER: chain, KeyDER: d.cfg.Factory.KeyDER}
	if _, _, err := c.parse(); err != nil {
		return fmt.Errorf("install certificate: %w", err)
	}
	certPEM := encodeChainPEM(chain)
	if len(certPEM) > MaxValueLen {
		return fmt.Errorf("install certificate: %w", ErrValueTooLarge)
	}
	err := d.store.Update(func(tx *Tx) error {
		return errors.Join(tx.Set(KeyDeviceCert, certPEM), eraseRotated(tx))
	})
	if err != nil {
		return fmt.Errorf("install certificate: %w", d.fail(err))
	}
	d.rtc.BootCount = 0
	return nil
}

// storeRotated writes chain and key into the rotated slot (unconfirmed) and
// deletes alsoDelete, in one atomic update, then arms the RTC.
func (d *Device) storeRotated(chain [][]byte, key crypto.Signer, alsoDelete ...string) error {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%w: cannot encode as PKCS#8", ErrBadPrivateKey)
	}
	certPEM, keyPEM := encodeChainPEM(chain), encodeKeyPEM(pkcs8)
	if len(certPEM) > MaxValueLen || len(keyPEM) > MaxValueLen {
		return fmt.Errorf("%w: rotated credential", ErrValueTooLarge)
	}
	err = d.store.Update(func(tx *Tx) error {
		errs := []error{tx.Set(KeyRotatedCert, certPEM), tx.Set(KeyRotatedKey, keyPEM), tx.Delete(KeyRotatedOK)}
		for _, k := range alsoDelete {
			errs = append(errs, tx.Delete(k))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return d.fail(err)
	}
	d.rtc.BootCount = 0
	d.rtc.RotationPending = true
	return nil
}

// HandleRotation is the firmware's handler for a message on
// devices/<id>/certs/rotate: parse, store, reboot. A malformed payload is
// logged and ignored (Decision without Reboot, Err set, nothing changed);
// success returns Decision{Reboot}.
func (d *Device) HandleRotation(payload []byte) Decision {
	log := []string{"Certificate rotation command received."}
	r, err := ParseRotation(payload)
	if err != nil {
		switch {
		case errors.Is(err, ErrBadJSON):
			log = append(log, "Failed to parse rotation JSON")
		case errors.Is(err, ErrMissingField):
			log = append(log, "Invalid JSON format for rotation.")
		default:
			log = append(log, "Invalid certificate or key in rotation: "+err.Error())
		}
		return Decision{Log: log, Err: err}
	}
	if err := d.ApplyRotation(r); err != nil {
		return Decision{Log: append(log, "Storing rotated certificates failed: "+err.Error()), Err: err}
	}
	return Decision{Reboot: true, Log: append(log, fmt.Sprintf("New certificates (%s) stored in NVS. Rebooting in 5 seconds...", r.Credential.Fingerprint()))}
}

// NeedsRenewal reports whether the certificate in use expires within
// RenewBefore of now: NotAfter - RenewBefore <= now. It is false for PSK,
// before Boot, and for a certificate that does not parse.
func (d *Device) NeedsRenewal(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.booted || d.plan.Credential.Kind != KindCert {
		return false
	}
	leaf, err := d.plan.Credential.Leaf()
	if err != nil {
		return false
	}
	return !now.Before(leaf.NotAfter.Add(-d.cfg.RenewBefore))
}

// State returns a snapshot of the device.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := State{
		ID:          d.cfg.ID,
		Booted:      d.booted,
		PoweredOff:  d.off,
		Slot:        d.plan.Slot,
		Kind:        d.plan.Credential.Kind,
		Fingerprint: d.plan.Credential.Fingerprint(),
		FellBack:    d.plan.FellBack,
		RTC:         d.rtc,
	}
	if d.plan.Credential.Kind == KindCert {
		if leaf, err := d.plan.Credential.Leaf(); err == nil {
			s.NotAfter = leaf.NotAfter
		}
	}
	_, st := d.loadRotated()
	s.HasRotated = st == rotUnconfirmed || st == rotConfirmed
	s.RotatedConfirmed = st == rotConfirmed
	_, s.HasMainPSK = d.loadPSK(KeyPSKMainID, KeyPSKMain)
	_, s.HasBackupPSK = d.loadPSK(KeyPSKBackupID, KeyPSKBackup)
	s.BackupPending = s.HasBackupPSK && d.backupPending()
	_, s.CSRPending = d.store.Get(KeyCSRKey)
	return s
}
