package cloud

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/credloop/credloop/internal/fakeca"
)

// KeyType names a key algorithm and size for the keys of a CA.
type KeyType string

// Key types a CA supports.
const (
	ECDSAP256 KeyType = "ecdsa-p256" // the default, when ""
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
)

// ErrNoCA is returned by LoadCA for a directory that holds no CA.
var ErrNoCA = fakeca.ErrNoCA

// CAOptions configures NewCA, LoadCA and ImportCA. The zero value makes a
// "credloop Root CA" and a "credloop Intermediate CA" with ECDSA P-256
// keys, on the real clock and crypto/rand.
type CAOptions struct {
	// KeyType of the keys NewCA makes (and of the intermediate ImportCA
	// makes); default ECDSAP256. Device certificates are ECDSA P-256.
	KeyType KeyType
	// Name is the root's common name (NewCA only); default
	// "credloop Root CA".
	Name string
	// NoIntermediate makes the root issue device certificates itself
	// (NewCA and ImportCA); by default an intermediate issues them.
	NoIntermediate bool
	// Now is the clock of validity windows; default time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers and signatures; default
	// crypto/rand.
	Rand io.Reader
}

func (o CAOptions) fakeca() fakeca.Options { return fakeca.Options{Now: o.Now, Rand: o.Rand} }

// CA is a certificate authority for tests: a root and, unless made
// without, an intermediate that issues device certificates. A Cloud's
// server certificates chain to its CA's root, and the Cloud accepts a
// device certificate its CA issued once the certificate is registered
// (registry.AddCertificate); a certificate it has not seen is accepted only
// when the device's project trusts the root (registry.TrustRoot). It is
// safe for concurrent use.
type CA struct {
	a *fakeca.Authority
}

// NewCA makes a fresh root (10 years) and, unless o.NoIntermediate, an
// intermediate (5 years) under it.
func NewCA(o CAOptions) (*CA, error) {
	kt := fakeca.KeyType(o.KeyType)
	name := o.Name
	if name == "" {
		name = fakeca.InitRootCN
	}
	root, err := fakeca.NewRoot(name, kt, fakeca.DefaultRootValidity, o.fakeca())
	if err != nil {
		return nil, fmt.Errorf("cloud: new CA: %w", err)
	}
	a := &fakeca.Authority{Root: root, Issuing: root}
	if !o.NoIntermediate {
		if a.Issuing, err = root.NewIntermediate(fakeca.InitIntermediateCN, kt, fakeca.DefaultIntermediateValidity); err != nil {
			return nil, fmt.Errorf("cloud: new CA: %w", err)
		}
	}
	return &CA{a: a}, nil
}

// LoadCA reads a CA saved by Save (or by `credloop ca init`, in
// DIR/ca/default: see CADir). A directory without one gives an error
// wrapping ErrNoCA.
func LoadCA(dir string, o CAOptions) (*CA, error) {
	a, err := fakeca.Load(dir, o.fakeca())
	if err != nil {
		return nil, fmt.Errorf("cloud: load CA: %w", err)
	}
	return &CA{a: a}, nil
}

// ImportCA brings your own root: its certificate and private key, PEM or
// DER. The key must match the certificate and the certificate must be a
// self-signed CA. Unless o.NoIntermediate, a new intermediate with a key of
// type o.KeyType is made under it and issues device certificates.
func ImportCA(rootCert, rootKey []byte, o CAOptions) (*CA, error) {
	a, err := fakeca.Import(rootCert, rootKey, !o.NoIntermediate, fakeca.KeyType(o.KeyType), o.fakeca())
	if err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	return &CA{a: a}, nil
}

// OpenCA loads the CA called name ("" means DefaultCA) from dir, as a
// Cloud with that Dir does; with create, a missing CA is made (with o) and
// saved. An empty dir means a fresh CA, kept nowhere.
func OpenCA(dir, name string, create bool, o CAOptions, log *slog.Logger) (*CA, error) {
	if dir == "" {
		return NewCA(o)
	}
	ca, err := LoadCA(CADir(dir, name), o)
	if err == nil || !create || !errors.Is(err, ErrNoCA) {
		return ca, err
	}
	if ca, err = NewCA(o); err != nil {
		return nil, err
	}
	if err := ca.Save(CADir(dir, name)); err != nil {
		return nil, err
	}
	if log != nil {
		log.Info("created CA", "dir", CADir(dir, name), "root", fakeca.Fingerprint(ca.a.Root.Cert.Raw)[:16])
	}
	return ca, nil
}

// Save writes the CA to dir (root.pem, root.key and, with an intermediate,
// intermediate.pem and intermediate.key), keys readable by the owner only.
// LoadCA reads it back.
func (ca *CA) Save(dir string) error {
	if err := ca.a.Save(dir); err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	return nil
}

// Root is the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.a.Root.Cert }

// Issuer is the certificate that signs device certificates: the
// intermediate, or the root when there is none.
func (ca *CA) Issuer() *x509.Certificate { return ca.a.Issuing.Cert }

// RootPEM is the root certificate, PEM-encoded: what a device or a TLS
// client provisions as its trust anchor.
func (ca *CA) RootPEM() []byte { return fakeca.EncodeCertPEM(ca.a.Root.Cert) }

// RootPool is a pool holding the root alone: it verifies the Cloud's
// server certificates and the device certificates the CA issues.
func (ca *CA) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.a.Root.Cert)
	return p
}

// Fingerprint is the SHA-256 fingerprint of the root certificate, in hex.
func (ca *CA) Fingerprint() string { return fakeca.Fingerprint(ca.a.Root.Cert.Raw) }

// DeviceCert is a device certificate with its key, ready for a TLS or DTLS
// client and, as PEM, for a device's storage.
type DeviceCert struct {
	// TLS holds the chain (the leaf, then the intermediate when there is
	// one; never the root), the private key and the parsed leaf.
	TLS tls.Certificate
	// CertPEM is the same chain, PEM-encoded, leaf first.
	CertPEM []byte
	// KeyPEM is the private key, PEM-encoded (SEC 1 for ECDSA).
	KeyPEM []byte
}

// IssueDevice issues a client certificate for device of project: subject
// O=project (omitted when project is ""), CN=device, a new ECDSA P-256
// key, valid for a year from a minute ago on the CA's clock.
func (ca *CA) IssueDevice(project, device string) (DeviceCert, error) {
	cert, key, err := ca.a.Issuing.Issue(device, project, fakeca.ECDSAP256, 0)
	if err != nil {
		return DeviceCert{}, fmt.Errorf("cloud: %w", err)
	}
	keyPEM, err := fakeca.EncodeKeyPEM(key)
	if err != nil {
		return DeviceCert{}, fmt.Errorf("cloud: %w", err)
	}
	chain := [][]byte{cert.Raw}
	if ca.a.Issuing != ca.a.Root {
		chain = append(chain, ca.a.Issuing.Cert.Raw)
	}
	var certPEM []byte
	for _, der := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return DeviceCert{
		TLS:     tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert},
		CertPEM: certPEM,
		KeyPEM:  keyPEM,
	}, nil
}
