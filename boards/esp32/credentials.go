package esp32

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/sim"
)

// Errors.
var (
	ErrNoCredentials = errors.New("esp32: no credentials")
	ErrBadCredential = errors.New("esp32: invalid credentials")
	ErrBoardReset    = errors.New("esp32: the board reset")
	ErrCommand       = errors.New("esp32: command failed")
	ErrNoRedactor    = errors.New("esp32: no redactor for the secrets sent to the board")
)

// Credentials are what a board is provisioned with: the device runtime's
// one credential type. For an ESP32, a Golioth-style PSK (identity
// "<device>@<project>" and a printable key), or a device certificate with
// its key and the intermediates sent after it, or both.
type Credentials = sim.Credential

// certCredential returns the certificate as a devicemodel credential,
// checked: the chain parses and the leaf matches the key.
func certCredential(c Credentials) (devicemodel.Credential, error) {
	if len(c.Chain) == 0 || (c.Key == nil && len(c.KeyDER) == 0) {
		return devicemodel.Credential{}, fmt.Errorf("%w: a certificate needs a chain and a key", ErrBadCredential)
	}
	keyDER, err := c.EncodedKey()
	if err != nil {
		return devicemodel.Credential{}, fmt.Errorf("%w: %w", ErrBadCredential, err)
	}
	cred := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: c.Chain, KeyDER: keyDER}
	cred = cred.Clone()
	if err := cred.Validate(); err != nil {
		return devicemodel.Credential{}, fmt.Errorf("%w: %w", ErrBadCredential, err)
	}
	return cred, nil
}

// pskCredential returns the PSK as a devicemodel credential, checked for
// what the settings shell can carry.
func pskCredential(c Credentials) (devicemodel.Credential, error) {
	id := c.PSKIdentity
	if id == "" || len(c.PSK) == 0 {
		return devicemodel.Credential{}, fmt.Errorf("%w: a PSK needs a key and an identity", ErrBadCredential)
	}
	if err := shellText(id); err != nil {
		return devicemodel.Credential{}, fmt.Errorf("%w: PSK identity: %w", ErrBadCredential, err)
	}
	if err := shellText(string(c.PSK)); err != nil {
		// Never quote the key: only its fingerprint.
		return devicemodel.Credential{}, fmt.Errorf("%w: PSK fp=%s: %w", ErrBadCredential, devicemodel.Fingerprint(c.PSK), err)
	}
	return devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: id, PSK: bytes.Clone(c.PSK)}, nil
}

// shellText checks that s can be typed as one console argument.
func shellText(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxPSKLen {
		return fmt.Errorf("%d bytes, at most %d", len(s), maxPSKLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("byte %d is not printable ASCII (the settings shell takes text)", i)
		}
	}
	return nil
}

// maxPSKLen bounds the PSK identity and key, as the Golioth settings do.
const maxPSKLen = 127

// chainPEM is the certificate chain as the firmware keeps it in NVS
// (client_cert): PEM, leaf first.
func chainPEM(chain [][]byte) []byte {
	var b bytes.Buffer
	for _, der := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

// keyPEM is the private key as the firmware keeps it (client_key): PKCS #8
// PEM.
func keyPEM(keyDER []byte) ([]byte, error) {
	cred := devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: keyDER}
	signer, err := cred.Signer()
	if err != nil {
		return nil, fmt.Errorf("%w: private key fp=%s does not parse", ErrBadCredential, devicemodel.Fingerprint(keyDER))
	}
	p8, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: private key fp=%s cannot be encoded as PKCS #8", ErrBadCredential, devicemodel.Fingerprint(keyDER))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), nil
}

// leafName describes a certificate for the console: its subject's CN and O.
func leafName(der []byte) (cn, org string) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", ""
	}
	if len(c.Subject.Organization) > 0 {
		org = c.Subject.Organization[0]
	}
	return c.Subject.CommonName, org
}
