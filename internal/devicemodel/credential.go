package devicemodel

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Credential kinds.
const (
	KindPSK  = "psk"
	KindCert = "cert"
)

// Credential errors.
var (
	ErrBadCredential = errors.New("devicemodel: invalid credential")
	ErrBadCert       = errors.New("devicemodel: invalid certificate")
	ErrBadPrivateKey = errors.New("devicemodel: invalid private key")
	ErrKeyMismatch   = errors.New("devicemodel: certificate does not match private key")
)

// Credential is what a device presents to the cloud: a PSK identity and key,
// or a certificate chain and private key. Its String, GoString, Format,
// LogValue and MarshalJSON never reveal PSK or private key bytes; they show
// fingerprints (first 8 hex of SHA-256) instead.
type Credential struct {
	Kind         string   // KindPSK or KindCert
	PSKIdentity  string   // psk: e.g. "<device>@<project>"
	PSK          []byte   // psk: the key (secret)
	CertChainDER [][]byte // cert: DER certificates, leaf first
	KeyDER       []byte   // cert: private key, PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) DER (secret)
}

// Fingerprint returns the first 8 hex characters of the SHA-256 of b, or
// "none" if b is empty.
func Fingerprint(b []byte) string {
	if len(b) == 0 {
		return "none"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// Fingerprint identifies the credential without revealing it: the leaf
// certificate's fingerprint for a certificate, the PSK's for a PSK.
func (c Credential) Fingerprint() string {
	if c.Kind == KindPSK {
		return Fingerprint(c.PSK)
	}
	if len(c.CertChainDER) == 0 {
		return Fingerprint(nil)
	}
	return Fingerprint(c.CertChainDER[0])
}

// KeyFingerprint is the fingerprint of the secret: the PSK or the private key.
func (c Credential) KeyFingerprint() string {
	if c.Kind == KindPSK {
		return Fingerprint(c.PSK)
	}
	return Fingerprint(c.KeyDER)
}

// IsZero reports whether c is the zero Credential.
func (c Credential) IsZero() bool {
	return c.Kind == "" && c.PSKIdentity == "" && len(c.PSK) == 0 && len(c.CertChainDER) == 0 && len(c.KeyDER) == 0
}

// Clone returns a deep copy of c.
func (c Credential) Clone() Credential {
	out := Credential{Kind: c.Kind, PSKIdentity: c.PSKIdentity, PSK: bytes.Clone(c.PSK), KeyDER: bytes.Clone(c.KeyDER)}
	if c.CertChainDER != nil {
		out.CertChainDER = make([][]byte, len(c.CertChainDER))
		for i, d := range c.CertChainDER {
			out.CertChainDER[i] = bytes.Clone(d)
		}
	}
	return out
}

// Equal reports whether c and o hold the same kind, identity and bytes.
func (c Credential) Equal(o Credential) bool {
	if c.Kind != o.Kind || c.PSKIdentity != o.PSKIdentity || !bytes.Equal(c.PSK, o.PSK) ||
		!bytes.Equal(c.KeyDER, o.KeyDER) || len(c.CertChainDER) != len(o.CertChainDER) {
		return false
	}
	for i := range c.CertChainDER {
		if !bytes.Equal(c.CertChainDER[i], o.CertChainDER[i]) {
			return false
		}
	}
	return true
}

// Validate checks that the credential is complete and, for a certificate,
// that the chain parses and the leaf matches the private key.
func (c Credential) Validate() error {
	switch c.Kind {
	case KindPSK:
		if c.PSKIdentity == "" || len(c.PSK) == 0 {
			return fmt.Errorf("%w: psk needs an identity and a key", ErrBadCredential)
		}
		return nil
	case KindCert:
		_, _, err := c.parse()
		return err
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrBadCredential, c.Kind)
	}
}

// Leaf parses the leaf certificate.
func (c Credential) Leaf() (*x509.Certificate, error) {
	if c.Kind != KindCert || len(c.CertChainDER) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrBadCredential)
	}
	leaf, err := x509.ParseCertificate(c.CertChainDER[0])
	if err != nil {
		return nil, fmt.Errorf("%w: leaf: %w", ErrBadCert, err)
	}
	return leaf, nil
}

// Signer parses the private key.
func (c Credential) Signer() (crypto.Signer, error) {
	if c.Kind != KindCert {
		return nil, fmt.Errorf("%w: not a certificate credential", ErrBadCredential)
	}
	return parsePrivateKeyDER(c.KeyDER)
}

// TLSCertificate returns the credential as a tls.Certificate for a client.
func (c Credential) TLSCertificate() (tls.Certificate, error) {
	leaf, key, err := c.parse()
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: c.Clone().CertChainDER, PrivateKey: key, Leaf: leaf}, nil
}

// parse checks a certificate credential: every certificate parses and the
// leaf's public key matches the private key.
func (c Credential) parse() (*x509.Certificate, crypto.Signer, error) {
	if c.Kind != KindCert {
		return nil, nil, fmt.Errorf("%w: not a certificate credential", ErrBadCredential)
	}
	if len(c.CertChainDER) == 0 {
		return nil, nil, fmt.Errorf("%w: empty certificate chain", ErrBadCredential)
	}
	var leaf *x509.Certificate
	for i, der := range c.CertChainDER {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: chain[%d]: %w", ErrBadCert, i, err)
		}
		if i == 0 {
			leaf = cert
		}
	}
	key, err := parsePrivateKeyDER(c.KeyDER)
	if err != nil {
		return nil, nil, err
	}
	if err := matchKey(leaf, key); err != nil {
		return nil, nil, err
	}
	return leaf, key, nil
}

func matchKey(leaf *x509.Certificate, key crypto.Signer) error {
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%w: leaf fp=%s, key fp=%s", ErrKeyMismatch, Fingerprint(leaf.Raw), Fingerprint(publicKeyBytes(key)))
	}
	return nil
}

func publicKeyBytes(key crypto.Signer) []byte {
	b, _ := x509.MarshalPKIXPublicKey(key.Public())
	return b
}

// parsePrivateKeyDER accepts PKCS#8, SEC 1 and PKCS#1. Its errors never
// include key material.
func parsePrivateKeyDER(der []byte) (crypto.Signer, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadPrivateKey)
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return asSigner(k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: not PKCS#8, SEC 1 or PKCS#1 DER (fp=%s)", ErrBadPrivateKey, Fingerprint(der))
}

func asSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadPrivateKey, k)
	}
}

// String describes the credential without secrets, e.g.
// `psk identity="dev1@proj" key fp=1a2b3c4d` or
// `cert cn="dev1" fp=0badc0de chain=2 key fp=1a2b3c4d`.
func (c Credential) String() string {
	switch c.Kind {
	case KindPSK:
		return fmt.Sprintf("psk identity=%q key fp=%s", c.PSKIdentity, Fingerprint(c.PSK))
	case KindCert:
		cn := ""
		if len(c.CertChainDER) > 0 {
			if leaf, err := x509.ParseCertificate(c.CertChainDER[0]); err == nil {
				cn = leaf.Subject.CommonName
			}
		}
		return fmt.Sprintf("cert cn=%q fp=%s chain=%d key fp=%s", cn, c.Fingerprint(), len(c.CertChainDER), Fingerprint(c.KeyDER))
	case "":
		if c.IsZero() {
			return "none"
		}
	}
	return fmt.Sprintf("%s identity=%q fp=%s key fp=%s", strings.ToValidUTF8(c.Kind, "?"), c.PSKIdentity, c.Fingerprint(), c.KeyFingerprint())
}

// GoString is like String in Go syntax, with secrets replaced by fingerprints.
func (c Credential) GoString() string {
	return fmt.Sprintf("devicemodel.Credential{Kind:%q, PSKIdentity:%q, PSK:<fp %s>, CertChainDER:<%d certs, leaf fp %s>, KeyDER:<fp %s>}",
		c.Kind, c.PSKIdentity, Fingerprint(c.PSK), len(c.CertChainDER), c.certFingerprint(), Fingerprint(c.KeyDER))
}

func (c Credential) certFingerprint() string {
	if len(c.CertChainDER) == 0 {
		return Fingerprint(nil)
	}
	return Fingerprint(c.CertChainDER[0])
}

// Format makes every fmt verb (%v, %+v, %s, %x, %d, ...) print String, and
// %#v print GoString, so no verb can reveal the secret bytes.
func (c Credential) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.String()))
}

// LogValue implements slog.LogValuer without secrets.
func (c Credential) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", c.Kind)}
	if c.Kind == KindPSK {
		attrs = append(attrs, slog.String("identity", c.PSKIdentity))
	} else {
		attrs = append(attrs, slog.String("cert_fp", c.certFingerprint()), slog.Int("chain", len(c.CertChainDER)))
	}
	return slog.GroupValue(append(attrs, slog.String("key_fp", c.KeyFingerprint()))...)
}

// MarshalJSON encodes the redacted view (kind, identity, fingerprints), so a
// Credential inside a JSON report or log never carries its secret.
func (c Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Kind        string `json:"kind,omitempty"`
		PSKIdentity string `json:"psk_identity,omitempty"`
		CertFP      string `json:"cert_fp,omitempty"`
		Chain       int    `json:"chain,omitempty"`
		KeyFP       string `json:"key_fp"`
	}{c.Kind, c.PSKIdentity, certFPIfAny(c), len(c.CertChainDER), c.KeyFingerprint()})
}

func certFPIfAny(c Credential) string {
	if len(c.CertChainDER) == 0 {
		return ""
	}
	return c.certFingerprint()
}
