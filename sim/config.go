package sim

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simhook"
)

// ErrIdentity is returned by NewDevice and NewMQTTDevice for an Identity
// that does not make a device: no credential or two, a certificate that
// does not parse or does not match its key, an unreadable file.
var ErrIdentity = errors.New("sim: bad device identity")

// Identity is who a simulated device is and the factory credential it
// proves it with, as plain values: what a firmware team flashes into a
// board. Give a PSK (PSK, with PSKIdentity) or a certificate (Cert and Key,
// or CertFile and KeyFile), not both.
type Identity struct {
	// ID is the device id. Default: the certificate's CN, or the part of
	// PSKIdentity before "@".
	ID string
	// Project is the project the device belongs to. Default: the
	// certificate's O, or the part of PSKIdentity after "@".
	Project string
	// PSKIdentity is the DTLS PSK identity; default ID@Project, the form
	// the cloud expects (Golioth's).
	PSKIdentity string
	// PSK is the pre-shared key. DTLS/CoAP devices only.
	PSK []byte
	// Cert is the certificate chain, leaf first (intermediates after it,
	// the root left out), as PEM blocks or DER.
	Cert []byte
	// Key is the certificate's private key (PKCS#8, SEC 1 or PKCS#1), PEM
	// or DER.
	Key []byte
	// CertFile and KeyFile name files holding Cert and Key, read when the
	// device is made.
	CertFile, KeyFile string
}

// NewDevice returns a powered-off DTLS/CoAP device with o.Identity as its
// identity and factory credential (read-only, as flashed at the factory);
// Start boots it. Rotated credentials live in the device's own memory.
func NewDevice(o DeviceOptions) (*Device, error) {
	m, err := o.Identity.model()
	if err != nil {
		return nil, err
	}
	return newDevice(m, o), nil
}

// NewMQTTDevice returns a powered-off MQTT device with o.Identity as its
// identity and factory credential, which must be a certificate; Start
// boots it.
func NewMQTTDevice(o MQTTDeviceOptions) (*MQTTDevice, error) {
	if len(o.Identity.PSK) > 0 {
		return nil, fmt.Errorf("%w: an MQTT device authenticates with a certificate, not a PSK", ErrIdentity)
	}
	m, err := o.Identity.model()
	if err != nil {
		return nil, err
	}
	return newMQTTDevice(m, o), nil
}

// credential reads the identity's credential and fills in ID and Project.
func (id Identity) credential() (Identity, devicemodel.Credential, error) {
	certData, keyData := id.Cert, id.Key
	if id.CertFile != "" || id.KeyFile != "" {
		if len(certData) > 0 || len(keyData) > 0 {
			return id, devicemodel.Credential{}, fmt.Errorf("%w: both Cert/Key and CertFile/KeyFile", ErrIdentity)
		}
		var err error
		if certData, err = os.ReadFile(id.CertFile); err != nil {
			return id, devicemodel.Credential{}, fmt.Errorf("%w: %w", ErrIdentity, err)
		}
		if keyData, err = os.ReadFile(id.KeyFile); err != nil {
			return id, devicemodel.Credential{}, fmt.Errorf("%w: %w", ErrIdentity, err)
		}
	}
	hasCert := len(certData) > 0 || len(keyData) > 0
	switch {
	case hasCert && len(id.PSK) > 0:
		return id, devicemodel.Credential{}, fmt.Errorf("%w: both a PSK and a certificate", ErrIdentity)
	case len(id.PSK) > 0:
		if id.PSKIdentity == "" {
			id.PSKIdentity = id.ID + "@" + id.Project
		} else if dev, proj, ok := strings.Cut(id.PSKIdentity, "@"); ok {
			id.ID, id.Project = orString(id.ID, dev), orString(id.Project, proj)
		}
		return id, devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: id.PSKIdentity, PSK: id.PSK}, nil
	case hasCert:
		chain, err := decodeChain(certData)
		if err != nil {
			return id, devicemodel.Credential{}, err
		}
		keyDER := keyData
		if b, _ := pem.Decode(keyData); b != nil {
			keyDER = b.Bytes
		}
		cred := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain, KeyDER: keyDER}
		if err := cred.Validate(); err != nil {
			return id, devicemodel.Credential{}, fmt.Errorf("%w: %w", ErrIdentity, err)
		}
		leaf, _ := cred.Leaf()
		id.ID = orString(id.ID, leaf.Subject.CommonName)
		if len(leaf.Subject.Organization) > 0 {
			id.Project = orString(id.Project, leaf.Subject.Organization[0])
		}
		return id, cred, nil
	}
	return id, devicemodel.Credential{}, fmt.Errorf("%w: no credential (PSK or certificate)", ErrIdentity)
}

// model makes the device's credential logic, storage in memory.
func (id Identity) model() (*devicemodel.Device, error) {
	id, cred, err := id.credential()
	if err != nil {
		return nil, err
	}
	if id.ID == "" {
		return nil, fmt.Errorf("%w: no device id", ErrIdentity)
	}
	return devicemodel.New(devicemodel.Config{ID: id.ID, Project: id.Project, Factory: cred}, nil), nil
}

// decodeChain accepts PEM CERTIFICATE blocks or DER certificates, one
// after another.
func decodeChain(data []byte) ([][]byte, error) {
	if b, _ := pem.Decode(data); b != nil {
		chain, err := devicemodel.ParseCertChainPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate: %w", ErrIdentity, err)
		}
		return chain, nil
	}
	certs, err := x509.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrIdentity, err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return chain, nil
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Slot names where the credential in use is kept.
type Slot string

// Credential slots of a device.
const (
	SlotNone    Slot = ""        // not booted
	SlotFactory Slot = "factory" // the factory credential (read-only)
	SlotRotated Slot = "rotated" // a rotated or enrolled certificate
	SlotMain    Slot = "main"    // the main PSK
	SlotBackup  Slot = "backup"  // a backup PSK, new and untried
)

// ModelState is a snapshot of a device's credential logic (which
// credential it uses, rotation and fallback), as plain values. It holds
// no secrets: credentials appear as fingerprints.
type ModelState struct {
	// ID is the device id.
	ID string
	// Booted is set between a boot and the next reset or power cycle.
	Booted bool
	// PoweredOff is set while the device has no power.
	PoweredOff bool
	// Slot is where the credential in use is kept.
	Slot Slot
	// Kind of the credential in use: "psk" or "cert" ("" before boot).
	Kind string
	// Fingerprint of the credential in use: the first 8 hex characters of
	// the SHA-256 of the leaf certificate or of the PSK ("none" before
	// boot).
	Fingerprint string
	// NotAfter of the leaf certificate in use; zero for a PSK.
	NotAfter time.Time
	// FellBack is set when the last boot fell back to the factory
	// credential (or the main PSK).
	FellBack bool
	// BootCount counts boots with an unconfirmed rotated certificate since
	// it was stored; it lives in RTC memory, so a power loss zeroes it.
	BootCount int
	// RotationPending is set when a new rotated credential was stored and
	// cleared by the next boot.
	RotationPending bool
	// HasRotated is set when a rotated certificate is stored;
	// RotatedConfirmed once it has connected.
	HasRotated, RotatedConfirmed bool
	// HasMainPSK and HasBackupPSK report the PSK slots in use;
	// BackupPending that the backup is new and will be tried first.
	HasMainPSK, HasBackupPSK, BackupPending bool
	// CSRPending is set while a certificate request waits for its answer.
	CSRPending bool
}

// String renders the state on one line.
func (s ModelState) String() string {
	return fmt.Sprintf("device=%s booted=%t off=%t slot=%s kind=%s fp=%s fellback=%t boots=%d rotation_pending=%t rotated=%t confirmed=%t main_psk=%t backup_psk=%t backup_new=%t csr_pending=%t",
		s.ID, s.Booted, s.PoweredOff, s.Slot, s.Kind, s.Fingerprint, s.FellBack, s.BootCount, s.RotationPending,
		s.HasRotated, s.RotatedConfirmed, s.HasMainPSK, s.HasBackupPSK, s.BackupPending, s.CSRPending)
}

func modelState(st devicemodel.State) ModelState {
	return ModelState{
		ID: st.ID, Booted: st.Booted, PoweredOff: st.PoweredOff, Slot: Slot(st.Slot), Kind: st.Kind,
		Fingerprint: st.Fingerprint, NotAfter: st.NotAfter, FellBack: st.FellBack,
		BootCount: st.RTC.BootCount, RotationPending: st.RTC.RotationPending,
		HasRotated: st.HasRotated, RotatedConfirmed: st.RotatedConfirmed,
		HasMainPSK: st.HasMainPSK, HasBackupPSK: st.HasBackupPSK, BackupPending: st.BackupPending,
		CSRPending: st.CSRPending,
	}
}

func init() {
	simhook.NewDevice = func(m *devicemodel.Device, o any) any { return newDevice(m, o.(DeviceOptions)) }
	simhook.NewMQTTDevice = func(m *devicemodel.Device, o any) any { return newMQTTDevice(m, o.(MQTTDeviceOptions)) }
	simhook.Model = func(d any) *devicemodel.Device {
		switch d := d.(type) {
		case *Device:
			return d.model
		case *MQTTDevice:
			return d.model
		}
		return nil
	}
}
