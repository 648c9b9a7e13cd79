package devicemodel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
)

// PrepareCSR generates a P-256 key on the device, keeps it in the pending
// slot of the store (KeyCSRKey) and returns a DER certificate signing
// request for it. A zero subject means O=<Project>, CN=<ID> (the Golioth
// certificate convention of Golioth's guide). The private key never leaves the
// model. Calling PrepareCSR again replaces the pending key, which makes
// the earlier CSR useless.
//
// The key is derived only from bytes read from rng (nil means
// crypto/rand.Reader), so a deterministic reader gives a deterministic key.
// The CSR's ECDSA signature is randomised by the standard library, so the
// CSR bytes themselves differ between runs.
func (d *Device) PrepareCSR(rng io.Reader, subject pkix.Name) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return nil, ErrPoweredOff
	}
	if rng == nil {
		rng = rand.Reader
	}
	key, err := generateP256(rng)
	if err != nil {
		return nil, fmt.Errorf("prepare CSR: %w", err)
	}
	if subject.CommonName == "" && len(subject.Organization) == 0 && len(subject.Names) == 0 && len(subject.ExtraNames) == 0 &&
		len(subject.Country) == 0 && subject.SerialNumber == "" {
		subject = pkix.Name{CommonName: d.cfg.ID}
		if d.cfg.Project != "" {
			subject.Organization = []string{d.cfg.Project}
		}
	}
	csr, err := x509.CreateCertificateRequest(rng, &x509.CertificateRequest{
		Subject:            subject,
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("prepare CSR: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("prepare CSR: %w", err)
	}
	if err := d.store.Set(KeyCSRKey, pkcs8); err != nil {
		return nil, fmt.Errorf("prepare CSR: %w", d.fail(err))
	}
	return csr, nil
}

// generateP256 derives a P-256 key from rng by rejection sampling, so that
// the key depends on rng alone (ecdsa.GenerateKey ignores its reader since
// Go 1.26).
func generateP256(rng io.Reader) (*ecdsa.PrivateKey, error) {
	buf := make([]byte, 32)
	for range 64 {
		if _, err := io.ReadFull(rng, buf); err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), buf); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("devicemodel: random source yields no valid P-256 scalar")
}

// CompleteCSR installs the certificate issued for the pending CSR key:
// certDER is one DER certificate or several concatenated (leaf first). The
// leaf must match the pending key. Cert and key move to the rotated slot
// and the pending key is removed, in one atomic update; then the same path
// as ApplyRotation follows (unconfirmed, BootCount zeroed, reboot to use it).
// On any error nothing changes.
func (d *Device) CompleteCSR(certDER []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPoweredOff
	}
	keyDER, ok := d.store.Get(KeyCSRKey)
	if !ok {
		return ErrNoPendingCSR
	}
	key, err := parsePrivateKeyDER(keyDER)
	if err != nil {
		return fmt.Errorf("complete CSR: pending key: %w", err)
	}
	certs, err := x509.ParseCertificates(certDER)
	if err != nil {
		return fmt.Errorf("complete CSR: %w: %w", ErrBadCert, err)
	}
	if len(certs) == 0 {
		return fmt.Errorf("complete CSR: %w: no certificate", ErrBadCert)
	}
	if err := matchKey(certs[0], key); err != nil {
		return fmt.Errorf("complete CSR: %w", err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	if err := d.storeRotated(chain, key, KeyCSRKey); err != nil {
		return fmt.Errorf("complete CSR: %w", err)
	}
	return nil
}
