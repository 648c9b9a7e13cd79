package fakeca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names inside an authority directory.
const (
	RootCertFile         = "root.pem"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.pem"
	IntermediateKeyFile  = "intermediate.key"
)

// Common names Init gives its CAs.
const (
	InitRootCN         = "credloop Root CA"
	InitIntermediateCN = "credloop Intermediate CA"
)

// Authority is what a credloop directory keeps under DIR/ca/<name>/: a root
// and, optionally, an intermediate that issues.
type Authority struct {
	Root    *CA
	Issuing *CA // the intermediate, or Root when there is none
}

// Init makes a fresh root "credloop Root CA" (10 years) and intermediate
// "credloop Intermediate CA" (5 years), both with keys of type kt.
func Init(kt KeyType, opts Options) (*Authority, error) {
	root, err := NewRoot(InitRootCN, kt, DefaultRootValidity, opts)
	if err != nil {
		return nil, err
	}
	inter, err := root.NewIntermediate(InitIntermediateCN, kt, DefaultIntermediateValidity)
	if err != nil {
		return nil, err
	}
	return &Authority{Root: root, Issuing: inter}, nil
}

// Import brings your own root: a certificate (PEM or DER; the first one is
// used) and its private key (PEM or DER), as made for example by
//
//	openssl ecparam -name prime256v1 -genkey -noout -out k.pem
//	openssl req -x509 -new -nodes -key k.pem -sha256 -subj "/C=BR/CN=Root x" -days 1024 -out root.pem
//
// The key must match the certificate (ErrKeyMismatch), and the certificate
// must be self-signed and usable as a CA: CA:TRUE, or a v1 certificate
// (ErrNotCA). With withIntermediate, a new intermediate with a key of type
// kt is made under it and does the issuing.
func Import(rootCertPEM, rootKeyPEM []byte, withIntermediate bool, kt KeyType, opts Options) (*Authority, error) {
	root, err := loadCA(rootCertPEM, rootKeyPEM, nil, opts)
	if err != nil {
		return nil, fmt.Errorf("fakeca: import: %w", err)
	}
	a := &Authority{Root: root, Issuing: root}
	if withIntermediate {
		if a.Issuing, err = root.NewIntermediate(InitIntermediateCN, kt, DefaultIntermediateValidity); err != nil {
			return nil, fmt.Errorf("fakeca: import: %w", err)
		}
	}
	return a, nil
}

// SetOptions gives both CAs of a the same clock and randomness.
func (a *Authority) SetOptions(o Options) {
	a.Root.SetOptions(o)
	a.Issuing.SetOptions(o)
}

// hasIntermediate reports whether a keeps an intermediate apart from its root.
func (a *Authority) hasIntermediate() bool {
	return a.Issuing != nil && a.Issuing != a.Root
}

// Save writes dir/root.pem, dir/root.key and, when there is an
// intermediate, dir/intermediate.pem and dir/intermediate.key (stale ones
// are removed when there is none). Keys are 0600, the directory 0700, and
// every file is replaced atomically.
func (a *Authority) Save(dir string) error {
	if a == nil || a.Root == nil {
		return errors.New("fakeca: save: no root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fakeca: save: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("fakeca: save: %w", err)
	}
	if err := saveCA(dir, a.Root, RootCertFile, RootKeyFile); err != nil {
		return err
	}
	if a.hasIntermediate() {
		return saveCA(dir, a.Issuing, IntermediateCertFile, IntermediateKeyFile)
	}
	var errs []error
	for _, f := range []string{IntermediateCertFile, IntermediateKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fakeca: save: %w", err)
	}
	return nil
}

func saveCA(dir string, ca *CA, certFile, keyFile string) error {
	keyPEM, err := EncodeKeyPEM(ca.Key)
	if err != nil {
		return fmt.Errorf("fakeca: save %s: %w", keyFile, err)
	}
	// Key first: a certificate on disk without its key would not load.
	if err := writeAtomic(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, certFile), EncodeCertPEM(ca.Cert), 0o644)
}

// writeAtomic writes data to a temporary file next to name, syncs it and
// renames it over name.
func writeAtomic(name string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("fakeca: save: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("fakeca: save %s: %w", filepath.Base(name), err), os.Remove(f.Name()))
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// Load reads an authority written by Save. A directory without root.pem
// gives an error wrapping ErrNoCA that tells the user to run `credloop ca
// init`.
func Load(dir string, opts Options) (*Authority, error) {
	rootCert, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: run `credloop ca init`", ErrNoCA, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("fakeca: load: %w", err)
	}
	rootKey, err := os.ReadFile(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, fmt.Errorf("fakeca: load: %w", err)
	}
	root, err := loadCA(rootCert, rootKey, nil, opts)
	if err != nil {
		return nil, fmt.Errorf("fakeca: load %s: %w", filepath.Join(dir, RootCertFile), err)
	}
	a := &Authority{Root: root, Issuing: root}
	interCert, err := os.ReadFile(filepath.Join(dir, IntermediateCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fakeca: load: %w", err)
	}
	interKey, err := os.ReadFile(filepath.Join(dir, IntermediateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("fakeca: load: %w", err)
	}
	if a.Issuing, err = loadCA(interCert, interKey, root, opts); err != nil {
		return nil, fmt.Errorf("fakeca: load %s: %w", filepath.Join(dir, IntermediateCertFile), err)
	}
	return a, nil
}

// loadCA parses a CA certificate and its key and checks that they belong
// together, that the certificate can sign, and that it is self-signed
// (parent nil) or signed by parent.
func loadCA(certData, keyData []byte, parent *CA, opts Options) (*CA, error) {
	certs, err := ParseCertPEMOrDER(certData)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	key, err := ParseKey(keyData)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(cert.PublicKey, key) {
		return nil, fmt.Errorf("%w: %q (key %s)", ErrKeyMismatch, cert.Subject.CommonName, keyFingerprint(key))
	}
	if _, err := KeyTypeOf(cert.PublicKey); err != nil {
		return nil, err
	}
	if err := canSign(cert, false); err != nil {
		return nil, err
	}
	if parent == nil {
		if !selfSigned(cert) {
			return nil, fmt.Errorf("%w: %q is not self-signed, so cannot be a root", ErrNotCA, cert.Subject.CommonName)
		}
		return &CA{Cert: cert, Key: key, opts: opts}, nil
	}
	if err := cert.CheckSignatureFrom(parent.Cert); err != nil {
		return nil, fmt.Errorf("%w: %q is not signed by %q: %w", ErrNotCA, cert.Subject.CommonName, parent.Cert.Subject.CommonName, err)
	}
	chain := append([]*x509.Certificate{parent.Cert}, parent.Chain...)
	return &CA{Cert: cert, Key: key, Chain: chain, opts: opts}, nil
}

// keyFingerprint names a private key by the short fingerprint of its
// public half.
func keyFingerprint(k crypto.Signer) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return "?"
	}
	return ShortFingerprint(der)
}
