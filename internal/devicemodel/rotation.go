package devicemodel

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// MaxRotationPayload bounds a rotation message.
const MaxRotationPayload = 64 << 10

// Rotation errors. Every ParseRotation error wraps ErrBadRotation and one of
// the more specific sentinels.
var (
	ErrBadRotation   = errors.New("devicemodel: malformed rotation")
	ErrBadJSON       = errors.New("devicemodel: rotation payload is not valid JSON")
	ErrMissingField  = errors.New("devicemodel: rotation payload lacks a field")
	ErrBadPEM        = errors.New("devicemodel: invalid PEM")
	errTooLargeRotat = errors.New("devicemodel: rotation payload too large")
)

// Rotation is a validated certificate rotation: a certificate chain and the
// matching private key, as pushed on MQTT `devices/<id>/certs/rotate`.
type Rotation struct {
	// Credential is of kind KindCert; KeyDER is normalised to PKCS#8.
	Credential Credential
}

// String describes the rotation without secrets.
func (r Rotation) String() string { return "rotation to " + r.Credential.String() }

// rotationPayload is the JSON of the ESP32 rotation example:
// {"new_certificate": "<PEM>", "new_private_key": "<PEM>"}.
type rotationPayload struct {
	NewCertificate *string `json:"new_certificate"`
	NewPrivateKey  *string `json:"new_private_key"`
}

// ParseRotation parses and validates a rotation payload
// {"new_certificate": "<PEM chain, leaf first>", "new_private_key": "<PEM key>"}.
// It rejects invalid JSON (including PEM whose newlines are not escaped as
// \n), missing or non-string fields, PEM without BEGIN/END lines, blocks of
// the wrong type, encrypted keys, unparsable certificates or keys, and a key
// that does not match the leaf certificate. Unknown fields are ignored.
// Errors never contain key material.
func ParseRotation(payload []byte) (Rotation, error) {
	bad := func(kind error, format string, args ...any) (Rotation, error) {
		return Rotation{}, fmt.Errorf("%w: %w: %s", ErrBadRotation, kind, fmt.Sprintf(format, args...))
	}
	if len(payload) > MaxRotationPayload {
		return bad(errTooLargeRotat, "%d bytes, limit %d", len(payload), MaxRotationPayload)
	}
	var p rotationPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		// Report only the position: the message of a syntax error quotes
		// a character of the input, which may be part of a key.
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return bad(ErrBadJSON, "syntax error at offset %d", syn.Offset)
		case errors.As(err, &typ):
			if typ.Field != "" {
				return bad(ErrMissingField, "%s is a JSON %s, want a string", typ.Field, typ.Value)
			}
			return bad(ErrBadJSON, "top level is a JSON %s, want an object", typ.Value)
		default:
			return bad(ErrBadJSON, "cannot decode")
		}
	}
	if p.NewCertificate == nil {
		return bad(ErrMissingField, "new_certificate is missing")
	}
	if p.NewPrivateKey == nil {
		return bad(ErrMissingField, "new_private_key is missing")
	}
	return rotationFromPEM([]byte(*p.NewCertificate), []byte(*p.NewPrivateKey), "new_certificate", "new_private_key")
}

// RotationFromPEM validates a certificate chain (PEM, leaf first) and its
// private key (PEM) as a Rotation: the checks of ParseRotation without the
// JSON envelope, for answers that carry the two PEM strings under other
// names (fleet provisioning's CreateKeysAndCertificate: certificatePem,
// privateKey). Errors wrap ErrBadRotation and never contain key material.
func RotationFromPEM(certPEM, keyPEM []byte) (Rotation, error) {
	return rotationFromPEM(certPEM, keyPEM, "certificate", "private key")
}

func rotationFromPEM(certPEM, keyPEM []byte, certName, keyName string) (Rotation, error) {
	chain, err := decodeCertChainPEM(certPEM)
	if err != nil {
		return Rotation{}, fmt.Errorf("%w: %s: %w", ErrBadRotation, certName, err)
	}
	keyDER, err := decodeKeyPEM(keyPEM)
	if err != nil {
		return Rotation{}, fmt.Errorf("%w: %s: %w", ErrBadRotation, keyName, err)
	}
	r := Rotation{Credential: Credential{Kind: KindCert, CertChainDER: chain, KeyDER: keyDER}}
	if _, _, err := r.Credential.parse(); err != nil {
		return Rotation{}, fmt.Errorf("%w: %w", ErrBadRotation, err)
	}
	return r, nil
}

// ParseCertChainPEM returns the DER of every CERTIFICATE block of data,
// leaf first, as the rotated slot would store them (for example the
// certificatePem of a CSR answer, to pass to CompleteCSR). Text around
// blocks is ignored; a truncated block, a block of another type or no block
// at all is an error wrapping ErrBadPEM or ErrBadCert.
func ParseCertChainPEM(data []byte) ([][]byte, error) {
	return decodeCertChainPEM(data)
}

// decodeCertChainPEM returns the DER of every CERTIFICATE block, leaf first.
// Text around blocks is ignored (as encoding/pem does); a BEGIN line without
// its END is an error, as is a block of another type or no block at all.
func decodeCertChainPEM(data []byte) ([][]byte, error) {
	var chain [][]byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: block %d is %q, want CERTIFICATE", ErrBadPEM, len(chain), b.Type)
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("%w: block %d has headers", ErrBadPEM, len(chain))
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("%w: block %d: %w", ErrBadCert, len(chain), err)
		}
		chain = append(chain, b.Bytes)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: truncated or malformed block after %d certificates", ErrBadPEM, len(chain))
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no PEM block (BEGIN/END lines missing or newlines lost)", ErrBadPEM)
	}
	return chain, nil
}

// decodeKeyPEM returns the key as PKCS#8 DER. It accepts exactly one block
// of type PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC 1) or RSA PRIVATE KEY
// (PKCS#1), unencrypted.
func decodeKeyPEM(data []byte) ([]byte, error) {
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: no PEM block (BEGIN/END lines missing or newlines lost)", ErrBadPEM)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: more than one block", ErrBadPEM)
	}
	if len(b.Headers) != 0 {
		return nil, fmt.Errorf("%w: encrypted or annotated key blocks are not supported", ErrBadPrivateKey)
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%w: block type %q", ErrBadPrivateKey, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s block does not parse (fp=%s)", ErrBadPrivateKey, b.Type, Fingerprint(b.Bytes))
	}
	signer, err := asSigner(key)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot re-encode as PKCS#8", ErrBadPrivateKey)
	}
	return der, nil
}

// encodeChainPEM and encodeKeyPEM produce what the rotated slot stores:
// PEM strings, as the ESP32 rotation example's firmware keeps them in NVS.
func encodeChainPEM(chain [][]byte) []byte {
	var buf bytes.Buffer
	for _, der := range chain {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return buf.Bytes()
}

func encodeKeyPEM(pkcs8 []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}
