package registry

import "errors"

// Why a device may not connect, as the registry knows it. The endpoints'
// refusals wrap these, so that callers match a refusal with errors.Is
// rather than by its text.
var (
	// ErrUnknownDevice: the identity names no device (or project) the
	// registry holds.
	ErrUnknownDevice = errors.New("registry: unknown device")
	// ErrDisabled: the device is disabled.
	ErrDisabled = errors.New("registry: device disabled")
	// ErrRevoked: the credential, or a certificate of its chain, is
	// revoked.
	ErrRevoked = errors.New("registry: credential revoked")
	// ErrPendingActivation: the certificate is registered but still
	// PENDING_ACTIVATION.
	ErrPendingActivation = errors.New("registry: credential pending activation")
	// ErrNotActive: the credential is in another state that is not
	// ACTIVE (INACTIVE, PENDING_TRANSFER, ...).
	ErrNotActive = errors.New("registry: credential not active")
	// ErrNotRegistered: the certificate is not registered and nothing
	// registers it on connect.
	ErrNotRegistered = errors.New("registry: credential not registered")
)

// Err is why a credential in state s may not be used: nil for ACTIVE,
// ErrRevoked, ErrPendingActivation or ErrNotActive.
func (s CredState) Err() error {
	switch s {
	case StateActive:
		return nil
	case StateRevoked:
		return ErrRevoked
	case StatePendingActivation:
		return ErrPendingActivation
	}
	return ErrNotActive
}
