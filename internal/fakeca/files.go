package fakeca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
)

// Size limits for files handed to the parsers.
const (
	MaxKeySize  = 64 << 10
	MaxCertSize = 1 << 20
)

// PEM block types, as openssl writes them.
const (
	pemCert      = "CERTIFICATE"
	pemECKey     = "EC PRIVATE KEY"
	pemRSAKey    = "RSA PRIVATE KEY"
	pemPKCS8Key  = "PRIVATE KEY"
	pemECParams  = "EC PARAMETERS"
	pemEncrypted = "ENCRYPTED PRIVATE KEY"
	pemCRL       = "X509 CRL"
)

// EncodeCertPEM returns c as a "CERTIFICATE" PEM block.
func EncodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: c.Raw})
}

// EncodeCRLPEM wraps a DER CRL (from CA.CRL) in an "X509 CRL" PEM block,
// as `openssl crl` reads it.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCRL, Bytes: der})
}

// EncodeKeyPEM encodes a private key the way openssl writes it: EC keys as
// SEC1 "EC PRIVATE KEY" (`openssl ecparam -genkey -noout`), RSA keys as
// PKCS#1 "RSA PRIVATE KEY", Ed25519 keys as PKCS#8 "PRIVATE KEY".
func EncodeKeyPEM(k crypto.Signer) ([]byte, error) {
	der, typ, err := encodeKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

// EncodeKeyDER encodes a private key as DER: SEC1 for EC (`openssl ec
// -outform DER`), PKCS#1 for RSA, PKCS#8 for Ed25519.
func EncodeKeyDER(k crypto.Signer) ([]byte, error) {
	der, _, err := encodeKey(k)
	return der, err
}

func encodeKey(k crypto.Signer) (der []byte, pemType string, err error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		der, err = x509.MarshalECPrivateKey(k)
		pemType = pemECKey
	case *rsa.PrivateKey:
		der, pemType = x509.MarshalPKCS1PrivateKey(k), pemRSAKey
	case ed25519.PrivateKey:
		der, err = x509.MarshalPKCS8PrivateKey(k)
		pemType = pemPKCS8Key
	default:
		return nil, "", fmt.Errorf("%w: cannot encode %T", ErrKeyType, k)
	}
	if err != nil {
		// The x509 errors name the curve or type, never key material.
		return nil, "", fmt.Errorf("%w: encode: %w", ErrBadKey, err)
	}
	return der, pemType, nil
}

// ParseCertPEMOrDER parses one or more "CERTIFICATE" PEM blocks (other
// blocks are skipped) or a single DER certificate.
func ParseCertPEMOrDER(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxCertSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCert, len(data), MaxCertSize)
	}
	if !looksPEM(data) {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: empty", ErrBadCert)
		}
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCert, err)
		}
		return []*x509.Certificate{c}, nil
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCert {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %w", ErrBadCert, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE PEM block", ErrBadCert)
	}
	return certs, nil
}

// ParseKey parses a private key, PEM or DER, in SEC1, PKCS#8 or PKCS#1
// form. An "EC PARAMETERS" block before the key (`openssl ecparam -genkey`
// without -noout) is skipped; encrypted keys are refused. Errors wrap
// ErrBadKey and never contain key material.
func ParseKey(data []byte) (crypto.Signer, error) {
	if len(data) > MaxKeySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadKey, len(data), MaxKeySize)
	}
	if !looksPEM(data) {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: empty", ErrBadKey)
		}
		for _, parse := range []func([]byte) (crypto.Signer, error){parsePKCS8, parseSEC1, parsePKCS1} {
			if k, err := parse(data); err == nil {
				return k, nil
			}
		}
		return nil, fmt.Errorf("%w: DER is not a SEC1, PKCS#8 or PKCS#1 private key", ErrBadKey)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: no private key PEM block", ErrBadKey)
		}
		if _, enc := b.Headers["Proc-Type"]; enc || b.Type == pemEncrypted {
			return nil, fmt.Errorf("%w: encrypted keys are not supported", ErrBadKey)
		}
		var parse func([]byte) (crypto.Signer, error)
		switch b.Type {
		case pemECParams:
			continue
		case pemECKey:
			parse = parseSEC1
		case pemRSAKey:
			parse = parsePKCS1
		case pemPKCS8Key:
			parse = parsePKCS8
		default:
			return nil, fmt.Errorf("%w: PEM block %q is not a private key", ErrBadKey, b.Type)
		}
		k, err := parse(b.Bytes)
		if err != nil {
			// Deliberately not wrapping the parser's error: asn1 errors can
			// quote the input.
			return nil, fmt.Errorf("%w: %s block does not parse (key %s)", ErrBadKey, b.Type, ShortFingerprint(b.Bytes))
		}
		return k, nil
	}
}

func parseSEC1(der []byte) (crypto.Signer, error) {
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func parsePKCS1(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// looksPEM tells PEM text from DER: DER starts with a SEQUENCE tag, PEM
// has a BEGIN line (possibly after some text).
func looksPEM(data []byte) bool {
	return len(data) > 0 && data[0] != 0x30 && bytes.Contains(data, []byte("-----BEGIN"))
}

func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T cannot sign", ErrKeyType, k)
	}
	return s, nil
}

// Fingerprint is the hex SHA-256 of b (64 characters), e.g. of a
// certificate's DER.
func Fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// ShortFingerprint is the first 8 hex characters of the SHA-256 of b: safe
// to show in logs and errors in place of a secret.
func ShortFingerprint(b []byte) string {
	return Fingerprint(b)[:8]
}
