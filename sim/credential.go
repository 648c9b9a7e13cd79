package sim

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/credloop/credloop/internal/devicemodel"
)

// ErrCredential is returned for a credential that cannot be used: a key
// that does not parse or does not match its certificate.
var ErrCredential = errors.New("sim: invalid credential")

// Credential is the device runtime's one public credential type: what a
// simulated device presents (Dial, bench) and what a board is provisioned
// with (boards.Credentials and the board drivers are this type). It holds
// a PSK (a Golioth-style identity "<device>@<project>", built with
// registry.PSKIdentity, and its key), a certificate chain with its private
// key, or both: a board may hold both, and a session uses the PSK when
// there is one. Inside the runtime the firmware's model works on its own
// devicemodel.Credential. String, GoString, Format, LogValue and
// MarshalJSON show fingerprints (first 8 hex of SHA-256), never the PSK or
// the private key.
type Credential struct {
	// PSKIdentity is "<device>@<project>".
	PSKIdentity string
	// PSK is the pre-shared key (secret). Golioth's PSKs are text, so
	// boards that take them over a shell need printable ASCII.
	PSK []byte
	// Chain is the certificate chain, DER: the device's certificate, then
	// the intermediates sent after it.
	Chain [][]byte
	// KeyDER is the certificate's private key as a file or a board holds
	// it: PKCS #8, SEC 1 or PKCS #1 DER (secret). Boards are sent these
	// very bytes.
	KeyDER []byte
	// Key is the private key parsed, like tls.Certificate's Leaf: set it
	// (NewCredential does) to spare a parse on every Dial, as a load
	// generator must; without KeyDER, boards are sent it as PKCS #8.
	Key crypto.Signer
}

// HasPSK reports whether c carries a PSK identity or key.
func (c Credential) HasPSK() bool { return c.PSKIdentity != "" || len(c.PSK) > 0 }

// HasCert reports whether c carries a certificate or a private key.
func (c Credential) HasCert() bool { return len(c.Chain) > 0 || len(c.KeyDER) > 0 || c.Key != nil }

// IsZero reports whether c carries nothing.
func (c Credential) IsZero() bool { return !c.HasPSK() && !c.HasCert() }

// Leaf returns the device certificate, DER (nil without a chain).
func (c Credential) Leaf() []byte {
	if len(c.Chain) == 0 {
		return nil
	}
	return c.Chain[0]
}

// Clone returns a copy of c that shares only the (immutable) Key.
func (c Credential) Clone() Credential {
	out := Credential{PSKIdentity: c.PSKIdentity, PSK: bytes.Clone(c.PSK), KeyDER: bytes.Clone(c.KeyDER), Key: c.Key}
	if c.Chain != nil {
		out.Chain = make([][]byte, len(c.Chain))
		for i, der := range c.Chain {
			out.Chain[i] = bytes.Clone(der)
		}
	}
	return out
}

// EncodedKey returns the private key as a board stores it: KeyDER, or
// else Key as PKCS #8 DER (nil without a key).
func (c Credential) EncodedKey() ([]byte, error) {
	if len(c.KeyDER) > 0 || c.Key == nil {
		return c.KeyDER, nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: private key: %w", ErrCredential, err)
	}
	return der, nil
}

// Signer returns the private key parsed: Key, or else KeyDER parsed.
func (c Credential) Signer() (crypto.Signer, error) {
	if c.Key != nil {
		return c.Key, nil
	}
	key, err := devicemodel.Credential{Kind: devicemodel.KindCert, KeyDER: c.KeyDER}.Signer()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredential, err)
	}
	return key, nil
}

// keyFingerprint identifies the private key by the fingerprint of its
// encoded form (EncodedKey).
func (c Credential) keyFingerprint() string {
	der, _ := c.EncodedKey()
	return devicemodel.Fingerprint(der)
}

// NewCredential makes a certificate credential from DER, as files and
// boards hold it: the chain (leaf first) and its private key (PKCS #8,
// SEC 1 or PKCS #1). The key must parse and match the leaf.
func NewCredential(chain [][]byte, keyDER []byte) (Credential, error) {
	m := devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: chain, KeyDER: keyDER}
	if err := m.Validate(); err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrCredential, err)
	}
	key, err := m.Signer()
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrCredential, err)
	}
	m = m.Clone()
	return Credential{Chain: m.CertChainDER, KeyDER: m.KeyDER, Key: key}, nil
}

// fromModel is the public form of a model's credential.
func fromModel(m devicemodel.Credential) (Credential, error) {
	switch m.Kind {
	case devicemodel.KindPSK:
		return Credential{PSKIdentity: m.PSKIdentity, PSK: m.PSK}, nil
	case devicemodel.KindCert:
		key, err := m.Signer()
		if err != nil {
			return Credential{}, fmt.Errorf("%w: %w", ErrCredential, err)
		}
		return Credential{Chain: m.CertChainDER, KeyDER: m.KeyDER, Key: key}, nil
	}
	return Credential{}, fmt.Errorf("%w: none to connect with", ErrCredential)
}

// String describes c without secrets, e.g. `psk identity="dev1@acme" key
// fp=1a2b3c4d; cert cn="dev1" fp=0badc0de chain=2 key fp=5e6f7a8b`.
func (c Credential) String() string {
	var parts []string
	if c.HasPSK() {
		parts = append(parts, fmt.Sprintf("psk identity=%q key fp=%s", c.PSKIdentity, devicemodel.Fingerprint(c.PSK)))
	}
	if c.HasCert() {
		cn := ""
		if leaf, err := x509.ParseCertificate(c.Leaf()); err == nil {
			cn = leaf.Subject.CommonName
		}
		parts = append(parts, fmt.Sprintf("cert cn=%q fp=%s chain=%d key fp=%s", cn, devicemodel.Fingerprint(c.Leaf()), len(c.Chain), c.keyFingerprint()))
	}
	if len(parts) == 0 {
		return "no credentials"
	}
	return strings.Join(parts, "; ")
}

// GoString is like String in Go syntax, with secrets replaced by
// fingerprints.
func (c Credential) GoString() string {
	return fmt.Sprintf("sim.Credential{PSKIdentity:%q, PSK:<fp %s>, Chain:<%d certs, leaf fp %s>, KeyDER:<fp %s>}",
		c.PSKIdentity, devicemodel.Fingerprint(c.PSK), len(c.Chain), devicemodel.Fingerprint(c.Leaf()), c.keyFingerprint())
}

// Format makes every fmt verb print String, and %#v GoString, so no verb
// can reveal the secret bytes.
func (c Credential) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.String()))
}

// LogValue implements slog.LogValuer without secrets.
func (c Credential) LogValue() slog.Value {
	var attrs []slog.Attr
	if c.HasPSK() {
		attrs = append(attrs, slog.String("identity", c.PSKIdentity), slog.String("psk_fp", devicemodel.Fingerprint(c.PSK)))
	}
	if c.HasCert() {
		attrs = append(attrs, slog.String("cert_fp", devicemodel.Fingerprint(c.Leaf())), slog.Int("chain", len(c.Chain)),
			slog.String("key_fp", c.keyFingerprint()))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the redacted view (identity, fingerprints).
func (c Credential) MarshalJSON() ([]byte, error) {
	type view struct {
		PSKIdentity string `json:"psk_identity,omitempty"`
		PSKFP       string `json:"psk_fp,omitempty"`
		CertFP      string `json:"cert_fp,omitempty"`
		Chain       int    `json:"chain,omitempty"`
		KeyFP       string `json:"key_fp,omitempty"`
	}
	v := view{PSKIdentity: c.PSKIdentity, Chain: len(c.Chain)}
	if c.HasPSK() {
		v.PSKFP = devicemodel.Fingerprint(c.PSK)
	}
	if c.HasCert() {
		v.CertFP, v.KeyFP = devicemodel.Fingerprint(c.Leaf()), c.keyFingerprint()
	}
	return json.Marshal(v)
}
