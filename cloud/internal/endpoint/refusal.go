package endpoint

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/internal/fakeca"
)

// RefusalKind is why an endpoint refused a device, as a value: it decides
// the DTLS alert and the MQTT reason code of the refusal, and the sentinel
// it wraps.
type RefusalKind uint8

const (
	// RefusedHandshake: no check refused the peer; the handshake failed
	// on its own (no common suite, garbage, timeout).
	RefusedHandshake RefusalKind = iota
	// RefusedUnknownIdentity: a PSK identity that is malformed or names
	// no credential the registry holds.
	RefusedUnknownIdentity
	// RefusedKeyMismatch: the client's Finished did not decrypt with the
	// registered PSK.
	RefusedKeyMismatch
	// RefusedNoCertificate: the client sent no certificate.
	RefusedNoCertificate
	// RefusedBadCertificate: a certificate that cannot be used (unreadable,
	// a subject of the wrong form, not for client authentication).
	RefusedBadCertificate
	// RefusedUnknownProject: the certificate's O names no project.
	RefusedUnknownProject
	// RefusedUnknownDevice: the certificate's thing is not in the registry.
	RefusedUnknownDevice
	// RefusedWrongDevice: the certificate is registered to another device.
	RefusedWrongDevice
	// RefusedNotRegistered: the certificate is unknown and its CA does
	// not register certificates on connect.
	RefusedNotRegistered
	// RefusedUntrusted: the chain ends at no root the project trusts (or
	// at a CA whose registration is missing or INACTIVE).
	RefusedUntrusted
	// RefusedExpired: a certificate of the chain is expired.
	RefusedExpired
	// RefusedNotYetValid: a certificate of the chain is not yet valid.
	RefusedNotYetValid
	// RefusedRevoked: the credential, or a certificate of its chain, is
	// revoked.
	RefusedRevoked
	// RefusedPendingActivation: the certificate is PENDING_ACTIVATION.
	RefusedPendingActivation
	// RefusedNotActive: the credential is in another state than ACTIVE.
	RefusedNotActive
	// RefusedDisabled: the device is disabled.
	RefusedDisabled
	// RefusedUnavailable: the registry could not answer in time.
	RefusedUnavailable
	numRefusalKinds
)

// MQTT 5 CONNACK reason codes of refusals (MQTT 5.0, 3.2.2.2).
const (
	MQTTUnspecifiedError  byte = 0x80
	MQTTBadUserOrPassword byte = 0x86
	MQTTNotAuthorized     byte = 0x87
	MQTTServerUnavailable byte = 0x88
)

// ErrHandshake is wrapped by a refusal of kind RefusedHandshake.
var ErrHandshake = errors.New("endpoint: handshake failed")

// ErrBadCertificate is wrapped by a refusal of a certificate that cannot
// be used whatever the registry says.
var ErrBadCertificate = errors.New("endpoint: certificate not usable")

// ErrUnavailable is wrapped by a refusal because the registry could not
// answer.
var ErrUnavailable = errors.New("endpoint: registry unavailable")

// refusalKinds gives each kind the alert a certificate handshake ends
// with, its MQTT reason code and the sentinel it wraps.
var refusalKinds = [numRefusalKinds]struct {
	alert dtlspsk.AlertDescription
	mqtt  byte
	err   error
}{
	RefusedHandshake:         {dtlspsk.AlertHandshakeFailure, MQTTUnspecifiedError, ErrHandshake},
	RefusedUnknownIdentity:   {dtlspsk.AlertUnknownPSKIdentity, MQTTBadUserOrPassword, registry.ErrUnknownDevice},
	RefusedKeyMismatch:       {dtlspsk.AlertBadRecordMAC, MQTTBadUserOrPassword, dtlspsk.ErrKeyMismatch},
	RefusedNoCertificate:     {dtlspsk.AlertBadCertificate, MQTTBadUserOrPassword, fakeca.ErrNoCert},
	RefusedBadCertificate:    {dtlspsk.AlertBadCertificate, MQTTBadUserOrPassword, ErrBadCertificate},
	RefusedUnknownProject:    {dtlspsk.AlertBadCertificate, MQTTNotAuthorized, registry.ErrUnknownDevice},
	RefusedUnknownDevice:     {dtlspsk.AlertBadCertificate, MQTTNotAuthorized, registry.ErrUnknownDevice},
	RefusedWrongDevice:       {dtlspsk.AlertBadCertificate, MQTTNotAuthorized, registry.ErrUnknownDevice},
	RefusedNotRegistered:     {dtlspsk.AlertBadCertificate, MQTTNotAuthorized, registry.ErrNotRegistered},
	RefusedUntrusted:         {dtlspsk.AlertUnknownCA, MQTTBadUserOrPassword, fakeca.ErrUnknownAuthority},
	RefusedExpired:           {dtlspsk.AlertCertificateExpired, MQTTBadUserOrPassword, fakeca.ErrExpired},
	RefusedNotYetValid:       {dtlspsk.AlertCertificateExpired, MQTTBadUserOrPassword, fakeca.ErrNotYetValid},
	RefusedRevoked:           {dtlspsk.AlertCertificateRevoked, MQTTNotAuthorized, registry.ErrRevoked},
	RefusedPendingActivation: {dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrPendingActivation},
	RefusedNotActive:         {dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrNotActive},
	RefusedDisabled:          {dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrDisabled},
	RefusedUnavailable:       {dtlspsk.AlertInternalError, MQTTServerUnavailable, ErrUnavailable},
}

// Refusal is why an endpoint refused a device, carried from the check that
// refused it to the wire (the DTLS alert; the MQTT reason code) and to the
// event log (Text is the event's Reason). It unwraps to the sentinel of
// its kind (registry.ErrRevoked, fakeca.ErrExpired, ...) and to its cause.
type Refusal struct {
	Kind RefusalKind
	// Alert is the fatal DTLS alert the handshake ends with.
	Alert dtlspsk.AlertDescription
	// MQTTCode is the MQTT 5 CONNACK reason code of the refusal.
	MQTTCode byte
	// Text says why, for people: events, logs.
	Text string
	// Err is the cause (a verifier's or the registry's error), or nil.
	Err error
}

// Refuse returns the refusal of a certificate (or MQTT) handshake of kind
// k, with its alert and MQTT code.
func Refuse(k RefusalKind, text string, cause error) *Refusal {
	if k >= numRefusalKinds {
		k = RefusedHandshake
	}
	d := refusalKinds[k]
	return &Refusal{Kind: k, Alert: d.alert, MQTTCode: d.mqtt, Text: text, Err: cause}
}

// RefusePSK returns the refusal of a PSK handshake of kind k. A PSK client
// learns less than a certificate client: unknown_psk_identity for an
// identity the registry does not hold, internal_error when the registry
// could not answer, bad_record_mac for a wrong key, access_denied for the
// rest (RFC 4279 2).
func RefusePSK(k RefusalKind, text string, cause error) *Refusal {
	r := Refuse(k, text, cause)
	switch k {
	case RefusedUnknownIdentity, RefusedUnavailable, RefusedKeyMismatch, RefusedHandshake:
	default:
		r.Alert = dtlspsk.AlertAccessDenied
	}
	return r
}

func (r *Refusal) Error() string { return r.Text }

// Unwrap returns the sentinel of the refusal's kind and its cause.
func (r *Refusal) Unwrap() []error {
	errs := []error{ErrHandshake}
	if r.Kind < numRefusalKinds {
		errs[0] = refusalKinds[r.Kind].err
	}
	if r.Err != nil {
		errs = append(errs, r.Err)
	}
	return errs
}

// AsRefusal returns the refusal err wraps, or nil.
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// Recheck reports why an established session may no longer stay
// connected, or nil while it may: the device disabled, its credential no
// longer ACTIVE (stateText names it), a certificate of its chain (leaf
// first) revoked by the certificate above it. Endpoints call it when a
// session becomes visible and after revocations.
func Recheck(ctx context.Context, reg *registry.Registry, project, device string, credentialID int64, chain []*x509.Certificate, stateText func(registry.CredState) string) *Refusal {
	if project != "" && device != "" {
		if d, err := reg.Device(ctx, project, device); err == nil && d.Disabled {
			return Refuse(RefusedDisabled, "device disabled", nil)
		}
	}
	if credentialID != 0 {
		if c, err := reg.Credential(ctx, credentialID); err == nil && c.State != registry.StateActive {
			return Refuse(StateKind(c.State), stateText(c.State), nil)
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		revoked, err := reg.IsRevoked(ctx, registry.Fingerprint(chain[i+1].Raw), fmt.Sprintf("%x", chain[i].SerialNumber))
		if err == nil && revoked {
			if i == 0 {
				return Refuse(RefusedRevoked, "certificate revoked", nil)
			}
			return Refuse(RefusedRevoked, "issuing CA certificate revoked: "+chain[i].Subject.CommonName, nil)
		}
	}
	return nil
}

// StateKind is the kind of a refusal of a credential in state s (not
// ACTIVE).
func StateKind(s registry.CredState) RefusalKind {
	switch {
	case errors.Is(s.Err(), registry.ErrRevoked):
		return RefusedRevoked
	case errors.Is(s.Err(), registry.ErrPendingActivation):
		return RefusedPendingActivation
	}
	return RefusedNotActive
}
