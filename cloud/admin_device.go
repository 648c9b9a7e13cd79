package cloud

// The admin's device operations: devices and their PSKs, disabling,
// certificate states (JITR activation), the run-time CSR allowlist and
// expiring certificates.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// PSKLen is the length of a PSK the admin generates.
const PSKLen = 16

// PSK is a pre-shared key to add to a device. A nil Key is generated
// (PSKLen random bytes) and returned once, in NewPSK.Key.
type PSK struct {
	Identity string // NAME@PROJECT; default DEVICE@PROJECT for a device's first
	Key      []byte
}

// NewPSK is a PSK added to a device.
type NewPSK struct {
	Credential registry.Credential
	// Key is the key; Generated says the admin made it, so it exists
	// nowhere else: show it once, and never log it.
	Key       []byte
	Generated bool
}

// PSKInUseError: a PSK identity is taken (identities are unique in the
// registry). It wraps registry.ErrExists.
type PSKInUseError struct{ Identity string }

func (e *PSKInUseError) Error() string {
	return fmt.Sprintf("cloud: PSK identity %s is already in use", e.Identity)
}

func (e *PSKInUseError) Unwrap() error { return registry.ErrExists }

// CheckPSKIdentity makes sure identity is NAME@PROJECT of project.
func CheckPSKIdentity(identity, project string) error {
	_, p, err := registry.ParsePSKIdentity(identity)
	if err != nil {
		return err
	}
	if p != project {
		return fmt.Errorf("%w: PSK identity %q does not end in @%s", registry.ErrInvalid, identity, project)
	}
	return nil
}

// AddDevice creates a device in a project (device.created) with up to two
// PSKs (credential.added each). When a PSK cannot be added the device is
// removed again: nothing is left half made.
func (a *Admin) AddDevice(ctx context.Context, project, id string, psks ...PSK) (registry.Device, []NewPSK, error) {
	if len(psks) > registry.MaxPSKsPerDevice {
		return registry.Device{}, nil, fmt.Errorf("add device %s: %w: %d PSKs", id, registry.ErrTooManyPSKs, len(psks))
	}
	psks = slices.Clone(psks)
	if len(psks) > 0 && psks[0].Identity == "" {
		psks[0].Identity = id + "@" + project
	}
	for _, p := range psks {
		if err := CheckPSKIdentity(p.Identity, project); err != nil {
			return registry.Device{}, nil, fmt.Errorf("add device %s: %w", id, err)
		}
	}
	if err := a.needProject(ctx, project); err != nil {
		return registry.Device{}, nil, err
	}
	d, err := a.reg.CreateDevice(ctx, project, id)
	if err != nil {
		return d, nil, err
	}
	added, err := a.addPSKs(ctx, project, id, psks)
	if err != nil {
		// Leave nothing half made: the device goes with its keys.
		if derr := a.reg.DeleteDevice(ctx, project, id); derr != nil {
			return d, nil, errors.Join(err, fmt.Errorf("device %s was created without its keys: %w", id, derr))
		}
		return d, nil, err
	}
	a.record(ctx, registry.Event{Project: project, Device: id, Kind: registry.EventDeviceCreated,
		Reason: a.reason("created with %d psk(s)", len(psks))})
	a.recordPSKs(ctx, added)
	return d, added, nil
}

// AddPSK adds a PSK to an existing device, for rotation
// (credential.added). A device holds at most registry.MaxPSKsPerDevice
// PSKs that are not revoked (registry.ErrTooManyPSKs).
func (a *Admin) AddPSK(ctx context.Context, project, device string, p PSK) (NewPSK, error) {
	if err := CheckPSKIdentity(p.Identity, project); err != nil {
		return NewPSK{}, fmt.Errorf("add psk: %w", err)
	}
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return NewPSK{}, err
	}
	added, err := a.addPSKs(ctx, project, device, []PSK{p})
	if err != nil {
		return NewPSK{}, err
	}
	a.recordPSKs(ctx, added)
	return added[0], nil
}

func (a *Admin) addPSKs(ctx context.Context, project, device string, psks []PSK) ([]NewPSK, error) {
	var added []NewPSK
	for _, p := range psks {
		n := NewPSK{Key: p.Key}
		if n.Key == nil {
			n.Key, n.Generated = make([]byte, PSKLen), true
			if _, err := io.ReadFull(a.rand, n.Key); err != nil {
				return added, fmt.Errorf("generate psk: %w", err)
			}
		}
		c, err := a.reg.AddPSK(ctx, project, device, p.Identity, n.Key)
		if errors.Is(err, registry.ErrExists) {
			return added, &PSKInUseError{Identity: p.Identity}
		}
		if err != nil {
			return added, err
		}
		n.Credential = c
		added = append(added, n)
	}
	return added, nil
}

func (a *Admin) recordPSKs(ctx context.Context, added []NewPSK) {
	for _, n := range added {
		c := n.Credential
		a.record(ctx, registry.Event{Project: c.Project, Device: c.Device, Credential: c.PSKIdentity, Kind: registry.EventCredentialAdded,
			Reason: a.reason("psk %s fp=%s added", c.PSKIdentity, short(c.Fingerprint, 8))})
	}
}

// RevokePSK revokes a PSK of a device (credential.revoked): the cloud
// refuses it from the next handshake on, and a running cloud drops its
// sessions. already reports it was revoked before (nothing changed).
func (a *Admin) RevokePSK(ctx context.Context, project, device, identity string) (c registry.Credential, already bool, err error) {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return c, false, err
	}
	creds, err := a.reg.Credentials(ctx, project, device)
	if err != nil {
		return c, false, err
	}
	for _, c := range creds {
		if c.Kind != registry.KindPSK || c.PSKIdentity != identity {
			continue
		}
		if c.State == registry.StateRevoked {
			return c, true, nil
		}
		ev := registry.Event{Project: project, Device: device, Credential: c.PSKIdentity, Kind: registry.EventCredentialRevoked,
			Reason: a.reason("psk %s fp=%s revoked", c.PSKIdentity, short(c.Fingerprint, 8))}
		if err := a.reg.SetCredentialState(ctx, c.ID, registry.StateRevoked, ev); err != nil {
			return c, false, err
		}
		c.State = registry.StateRevoked
		a.enforce(ctx, "psk revoked")
		return c, false, nil
	}
	return c, false, fmt.Errorf("%w: %s of %s/%s", ErrNoPSK, identity, project, device)
}

// DeviceSummary is a device with the number of its credentials.
type DeviceSummary struct {
	registry.Device
	Credentials int
}

// Devices lists the devices of a project, or of all when project is "".
func (a *Admin) Devices(ctx context.Context, project string) ([]DeviceSummary, error) {
	if project != "" {
		if err := a.needProject(ctx, project); err != nil {
			return nil, err
		}
	}
	devs, err := a.reg.Devices(ctx, project)
	if err != nil {
		return nil, err
	}
	creds, err := a.reg.Credentials(ctx, project, "")
	if err != nil {
		return nil, err
	}
	count := map[[2]string]int{}
	for _, c := range creds {
		count[[2]string{c.Project, c.Device}]++
	}
	out := make([]DeviceSummary, 0, len(devs))
	for _, d := range devs {
		out = append(out, DeviceSummary{Device: d, Credentials: count[[2]string{d.Project, d.ID}]})
	}
	return out, nil
}

// DeviceDetail is a device with its credentials and its last events.
type DeviceDetail struct {
	registry.Device
	Credentials []registry.Credential
	Events      []registry.Event
}

// Device shows a device with its credentials and its last events (at
// most events of them).
func (a *Admin) Device(ctx context.Context, project, id string, events int) (DeviceDetail, error) {
	d, err := a.needDevice(ctx, project, id)
	if err != nil {
		return DeviceDetail{}, err
	}
	out := DeviceDetail{Device: d}
	if out.Credentials, err = a.reg.Credentials(ctx, project, id); err != nil {
		return out, err
	}
	if events > 0 {
		evs, err := a.reg.Events(ctx, registry.Filter{Project: project, Device: id})
		if err != nil {
			return out, err
		}
		out.Events = evs[max(0, len(evs)-events):]
	}
	return out, nil
}

// Events lists the events of the log that match f, oldest first.
func (a *Admin) Events(ctx context.Context, f registry.Filter) ([]registry.Event, error) {
	return a.reg.Events(ctx, f)
}

// DisableDevice makes the cloud refuse a device's handshakes, whatever
// credential it presents (device.disabled), and drops its live sessions.
// changed is false when it was disabled already.
func (a *Admin) DisableDevice(ctx context.Context, project, id string) (changed bool, err error) {
	return a.setDisabled(ctx, project, id, true)
}

// EnableDevice accepts a disabled device again (device.enabled).
func (a *Admin) EnableDevice(ctx context.Context, project, id string) (changed bool, err error) {
	return a.setDisabled(ctx, project, id, false)
}

func (a *Admin) setDisabled(ctx context.Context, project, id string, disabled bool) (bool, error) {
	d, err := a.needDevice(ctx, project, id)
	if err != nil {
		return false, err
	}
	if d.Disabled == disabled {
		return false, nil
	}
	kind := registry.EventDeviceEnabled
	if disabled {
		kind = registry.EventDeviceDisabled
	}
	ev := registry.Event{Project: project, Device: id, Kind: kind, Reason: a.reason("")}
	if err := a.reg.SetDeviceDisabled(ctx, project, id, disabled, ev); err != nil {
		return false, err
	}
	if disabled {
		a.enforce(ctx, "device disabled")
	}
	return true, nil
}

// CertChange is a certificate's change of state.
type CertChange struct {
	Credential registry.Credential // as it is now
	From, To   registry.CredState
	// Changed is false when the certificate was in state To already.
	Changed bool
}

// ActivateCertificate makes a registered certificate ACTIVE
// (certificate.activated), as AWS IoT's update-certificate does: a
// certificate that connected under a JITR CA waits PENDING_ACTIVATION for
// this. id is its certificateId (hex SHA-256 of the DER) or a unique
// prefix of at least 8 hex digits. A REVOKED certificate stays revoked
// (ErrFinal).
func (a *Admin) ActivateCertificate(ctx context.Context, id string) (CertChange, error) {
	return a.setCertState(ctx, id, registry.StateActive)
}

// DeactivateCertificate makes a registered certificate INACTIVE
// (certificate.deactivated): the cloud refuses it, and drops its live
// sessions.
func (a *Admin) DeactivateCertificate(ctx context.Context, id string) (CertChange, error) {
	return a.setCertState(ctx, id, registry.StateInactive)
}

// ActivatePending activates every PENDING_ACTIVATION certificate of a
// device, as an operator approving a JITR device does.
func (a *Admin) ActivatePending(ctx context.Context, project, device string) ([]CertChange, error) {
	creds, err := a.reg.Credentials(ctx, project, device)
	if err != nil {
		return nil, err
	}
	var out []CertChange
	for _, c := range creds {
		if c.Kind != registry.KindCert || c.State != registry.StatePendingActivation {
			continue
		}
		ch, err := a.ActivateCertificate(ctx, c.Fingerprint)
		if err != nil {
			return out, err
		}
		out = append(out, ch)
	}
	return out, nil
}

func (a *Admin) setCertState(ctx context.Context, id string, to registry.CredState) (CertChange, error) {
	c, err := a.FindCertificate(ctx, id)
	if err != nil {
		return CertChange{}, err
	}
	ch := CertChange{Credential: c, From: c.State, To: to}
	switch c.State {
	case to:
		return ch, nil
	case registry.StateRevoked:
		return ch, fmt.Errorf("%w: certificate %s of %s/%s", ErrFinal, c.Fingerprint, c.Project, c.Device)
	}
	kind := registry.EventCertDeactivated
	if to == registry.StateActive {
		kind = registry.EventCertActivated
	}
	ev := registry.Event{Project: c.Project, Device: c.Device, Credential: c.Fingerprint, Kind: kind,
		Reason: a.reason("%s -> %s", c.State, to)}
	if err := a.reg.SetCredentialState(ctx, c.ID, to, ev); err != nil {
		return ch, err
	}
	ch.Credential.State, ch.Changed = to, true
	if to != registry.StateActive {
		a.enforce(ctx, "certificate deactivated")
	}
	return ch, nil
}

// AmbiguousError: a prefix matches N records. It wraps ErrAmbiguous.
type AmbiguousError struct {
	Prefix string
	N      int
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("cloud: prefix %s matches %d: give more digits", e.Prefix, e.N)
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// FindCertificate returns the registered certificate whose certificateId
// is id, or starts with id (8 hex digits at least; colons allowed).
func (a *Admin) FindCertificate(ctx context.Context, id string) (registry.Credential, error) {
	want := hexPrefix(id)
	if len(want) < 8 || len(want) > 64 || strings.Trim(want, "0123456789abcdef") != "" {
		return registry.Credential{}, fmt.Errorf("%w: certificateId %q: want 64 hex digits, or a prefix of at least 8", registry.ErrInvalid, clipArg(id))
	}
	if len(want) == 64 {
		c, err := a.reg.CertificateByFingerprint(ctx, want)
		if errors.Is(err, registry.ErrNotFound) {
			return c, fmt.Errorf("%w: certificateId %s", ErrNoCertificate, want)
		}
		return c, err
	}
	creds, err := a.reg.Credentials(ctx, "", "")
	if err != nil {
		return registry.Credential{}, err
	}
	var match []registry.Credential
	for _, c := range creds {
		if c.Kind == registry.KindCert && strings.HasPrefix(c.Fingerprint, want) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return registry.Credential{}, fmt.Errorf("%w: no certificateId starts with %s", ErrNoCertificate, want)
	case 1:
		return match[0], nil
	}
	return registry.Credential{}, &AmbiguousError{Prefix: want, N: len(match)}
}

// Allowed is what Allow did.
type Allowed struct {
	Entry registry.AllowEntry
	// KeyType is the key's type (ecdsa-p256...), "unknown key type" when
	// credloop does not sign for it.
	KeyType string
	// Already: the UDID was allowed with this key before; nothing changed.
	Already bool
}

// Allow puts a device on the allowlist of run-time CSR provisioning (TI
// CC3220 style): the HTTPS endpoint signs a CSR whose CN is the UDID and
// whose key is publicKeyDER (SubjectPublicKeyInfo) (allowlist.added). A
// UDID is listed once: allowing it again with the same key changes
// nothing; with another key, or in another project, it fails wrapping
// registry.ErrExists and Entry is the existing entry.
func (a *Admin) Allow(ctx context.Context, project, udid string, publicKeyDER []byte) (Allowed, error) {
	if err := a.needProject(ctx, project); err != nil {
		return Allowed{}, err
	}
	before, _ := a.reg.AllowEntry(ctx, udid)
	e, err := a.reg.Allow(ctx, project, udid, publicKeyDER)
	if errors.Is(err, registry.ErrExists) {
		return Allowed{Entry: before}, err
	}
	if err != nil {
		return Allowed{}, err
	}
	out := Allowed{Entry: e, KeyType: "unknown key type", Already: before.UDID != ""}
	if pub, perr := x509.ParsePKIXPublicKey(publicKeyDER); perr == nil {
		if t, terr := fakeca.KeyTypeOf(pub); terr == nil {
			out.KeyType = string(t)
		}
	}
	if !out.Already {
		a.record(ctx, registry.Event{Project: project, Device: udid, Credential: e.PublicKeyFingerprint, Kind: registry.EventAllowlistAdded,
			Reason: a.reason("UDID %s allowed with key fp=%s", udid, short(e.PublicKeyFingerprint, 8))})
	}
	return out, nil
}

// Allowlist lists the allowlist of a project, or of all when project is
// "".
func (a *Admin) Allowlist(ctx context.Context, project string) ([]registry.AllowEntry, error) {
	if project != "" {
		if err := a.needProject(ctx, project); err != nil {
			return nil, err
		}
	}
	return a.reg.Allowlist(ctx, project)
}

// Expiring is a certificate that expires soon.
type Expiring struct {
	registry.Credential
	// DaysLeft is whole days to NotAfter, rounded toward zero; negative
	// when expired.
	DaysLeft int
	Expired  bool
}

// ExpiringCertificates lists the ACTIVE and PENDING_ACTIVATION
// certificates, of a project or of all, whose NotAfter falls within
// `within` from now, soonest first; expired ones too.
func (a *Admin) ExpiringCertificates(ctx context.Context, project string, within time.Duration) ([]Expiring, error) {
	if project != "" {
		if err := a.needProject(ctx, project); err != nil {
			return nil, err
		}
	}
	now := a.now()
	creds, err := a.reg.ExpiringCertificates(ctx, within, now)
	if err != nil {
		return nil, err
	}
	out := []Expiring{}
	for _, c := range creds {
		if project != "" && c.Project != project {
			continue
		}
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		out = append(out, Expiring{Credential: c, DaysLeft: days, Expired: days < 0 || !c.NotAfter.After(now)})
	}
	return out, nil
}

// ActivePSK returns the first ACTIVE PSK of a device, key included, to
// install on a board: the registry is where the cloud's copy of a PSK
// lives (a certificate's private key never is). ErrNoPSK when it has none.
func (a *Admin) ActivePSK(ctx context.Context, project, device string) (registry.Credential, error) {
	creds, err := a.reg.Credentials(ctx, project, device)
	if err != nil {
		return registry.Credential{}, err
	}
	for _, c := range creds {
		if c.Kind == registry.KindPSK && c.State == registry.StateActive {
			return c, nil
		}
	}
	return registry.Credential{}, fmt.Errorf("%w: no active PSK for %s/%s", ErrNoPSK, project, device)
}
