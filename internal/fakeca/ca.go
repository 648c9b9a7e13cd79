// Package fakeca is a small certificate authority for tests and the cloud stand-in: roots, intermediates, CSR signing and CRLs.
package fakeca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Every error the package returns for one of these
// conditions wraps the matching sentinel, so callers can use errors.Is.
var (
	ErrBadCSR           = errors.New("fakeca: bad certificate request")
	ErrPolicy           = errors.New("fakeca: request violates policy")
	ErrKeyMismatch      = errors.New("fakeca: private key does not match certificate")
	ErrNoCA             = errors.New("fakeca: no CA")
	ErrNotCA            = errors.New("fakeca: certificate cannot act as a CA")
	ErrKeyType          = errors.New("fakeca: unsupported key type")
	ErrBadKey           = errors.New("fakeca: bad private key")
	ErrBadCert          = errors.New("fakeca: bad certificate")
	ErrExpired          = errors.New("fakeca: certificate expired")
	ErrNotYetValid      = errors.New("fakeca: certificate not yet valid")
	ErrUnknownAuthority = errors.New("fakeca: certificate signed by unknown authority")
	ErrVerify           = errors.New("fakeca: certificate chain not valid")
	ErrNoCert           = errors.New("fakeca: no certificate")
	// ErrIssuerNotValid is wrapped, with ErrExpired or ErrNotYetValid,
	// when the certificate out of its validity is an issuer of the leaf.
	ErrIssuerNotValid = errors.New("fakeca: an issuer is not valid at the time")
)

// Default validities used when a caller passes zero.
const (
	DefaultRootValidity         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 5 * 365 * 24 * time.Hour
	DefaultLeafValidity         = 365 * 24 * time.Hour

	// clockSkew is how far NotBefore is backdated when the caller does not
	// set it, so a peer whose clock is slightly behind accepts the cert.
	clockSkew = time.Minute
)

// KeyType names a key algorithm and size.
type KeyType string

// Supported key types.
const (
	ECDSAP256 KeyType = "ecdsa-p256" // default when ""
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
)

// KeyTypes lists the supported key types, default first.
func KeyTypes() []KeyType { return []KeyType{ECDSAP256, ECDSAP384, RSA2048} }

// ParseKeyType accepts the usual spellings of a key type, case-insensitive:
// "p256", "ecdsa-p256", "prime256v1", "secp256r1", "p384", "secp384r1",
// "rsa", "rsa-2048", "rsa:2048", ... The empty string means ECDSAP256.
func ParseKeyType(s string) (KeyType, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	k = strings.NewReplacer("_", "", "-", "", ":", "", " ", "").Replace(k)
	switch k {
	case "", "p256", "ecdsap256", "ecdsa", "ec", "ecdsa256", "ecp256", "prime256v1", "secp256r1", "nistp256":
		return ECDSAP256, nil
	case "p384", "ecdsap384", "ecdsa384", "ecp384", "secp384r1", "nistp384":
		return ECDSAP384, nil
	case "rsa", "rsa2048", "rsa2k":
		return RSA2048, nil
	}
	return "", fmt.Errorf("%w: %q (want ecdsa-p256, ecdsa-p384 or rsa-2048)", ErrKeyType, s)
}

func (kt KeyType) orDefault() KeyType {
	if kt == "" {
		return ECDSAP256
	}
	return kt
}

// GenerateKey makes a new private key of type kt ("" means ECDSAP256).
// Recent Go releases ignore rand for key generation and always use a
// secure source; it is passed on for older behaviour.
func GenerateKey(kt KeyType, rand io.Reader) (crypto.Signer, error) {
	if rand == nil {
		rand = cryptoRand
	}
	switch kt.orDefault() {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand)
	case RSA2048:
		return rsa.GenerateKey(rand, 2048)
	}
	return nil, fmt.Errorf("%w: %q", ErrKeyType, string(kt))
}

// KeyTypeOf names the type of a public key. Keys outside the supported set
// get a descriptive name ("ecdsa-p521", "rsa-4096", "ed25519") and ErrKeyType.
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			break
		}
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		name := strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
		return KeyType("ecdsa-" + name), fmt.Errorf("%w: ecdsa %s", ErrKeyType, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N == nil {
			break
		}
		kt := KeyType(fmt.Sprintf("rsa-%d", k.N.BitLen()))
		if kt == RSA2048 {
			return kt, nil
		}
		return kt, fmt.Errorf("%w: %s", ErrKeyType, string(kt))
	case ed25519.PublicKey:
		return "ed25519", fmt.Errorf("%w: ed25519", ErrKeyType)
	}
	return "unknown", fmt.Errorf("%w: %T", ErrKeyType, pub)
}

var cryptoRand = rand.Reader

// Options carries the clock and randomness a CA uses. Zero means default.
type Options struct {
	// Now is the clock for NotBefore/NotAfter and CRL times.
	// Default time.Now.
	Now func() time.Time
	// Rand supplies serial numbers and is passed to the signer.
	// Default crypto/rand.Reader. It must be safe for concurrent use when
	// the CA is used from several goroutines.
	Rand io.Reader
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o Options) rand() io.Reader {
	if o.Rand == nil {
		return cryptoRand
	}
	return o.Rand
}

// CA is one signing certificate and its key, with the chain above it.
// Its methods are safe for concurrent use.
type CA struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // issuers above Cert, nearest first, root last; empty for a root

	mu   sync.Mutex
	opts Options
}

// NewRoot makes a self-signed root CA with subject CN=cn. Validity zero
// means DefaultRootValidity.
func NewRoot(cn string, kt KeyType, validity time.Duration, opts Options) (*CA, error) {
	if validity == 0 {
		validity = DefaultRootValidity
	}
	key, err := GenerateKey(kt, opts.rand())
	if err != nil {
		return nil, fmt.Errorf("fakeca: root %q: %w", cn, err)
	}
	now := opts.now()
	tmpl := caTemplate(pkix.Name{CommonName: cn}, now.Add(-clockSkew), now.Add(validity))
	cert, err := sign(tmpl, nil, key.Public(), key, opts.rand())
	if err != nil {
		return nil, fmt.Errorf("fakeca: root %q: %w", cn, err)
	}
	return &CA{Cert: cert, Key: key, opts: opts}, nil
}

// NewIntermediate makes a CA signed by ca with path length 0 (it can
// issue only end-entity certificates). It inherits ca's Options.
// Validity zero means DefaultIntermediateValidity.
func (ca *CA) NewIntermediate(cn string, kt KeyType, validity time.Duration) (*CA, error) {
	if err := canSign(ca.Cert, true); err != nil {
		return nil, fmt.Errorf("fakeca: intermediate %q: %w", cn, err)
	}
	if validity == 0 {
		validity = DefaultIntermediateValidity
	}
	opts := ca.Options()
	key, err := GenerateKey(kt, opts.rand())
	if err != nil {
		return nil, fmt.Errorf("fakeca: intermediate %q: %w", cn, err)
	}
	now := opts.now()
	tmpl := caTemplate(pkix.Name{CommonName: cn}, now.Add(-clockSkew), now.Add(validity))
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	cert, err := sign(tmpl, ca, key.Public(), nil, opts.rand())
	if err != nil {
		return nil, fmt.Errorf("fakeca: intermediate %q: %w", cn, err)
	}
	chain := append([]*x509.Certificate{ca.Cert}, ca.Chain...)
	return &CA{Cert: cert, Key: key, Chain: chain, opts: opts}, nil
}

// Root returns the root at the top of the chain: the last of Chain, or
// Cert for a root.
func (ca *CA) Root() *x509.Certificate {
	if len(ca.Chain) == 0 {
		return ca.Cert
	}
	return ca.Chain[len(ca.Chain)-1]
}

// Options returns the CA's clock and randomness.
func (ca *CA) Options() Options {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.opts
}

// SetOptions replaces the CA's clock and randomness, e.g. to give a loaded
// CA a virtual clock.
func (ca *CA) SetOptions(o Options) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.opts = o
}

// Template describes a client certificate for IssueWith.
type Template struct {
	CN        string
	Org       string        // subject O; omitted when ""
	KeyType   KeyType       // for a generated key; "" means ECDSAP256
	NotBefore time.Time     // zero: Now minus one minute
	NotAfter  time.Time     // zero: Now plus DefaultLeafValidity
	Key       crypto.Signer // optional; generated when nil
}

// Issue generates a key and a client certificate with subject O=org
// (omitted if ""), CN=cn. Validity zero means DefaultLeafValidity.
func (ca *CA) Issue(cn, org string, kt KeyType, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	now := ca.Options().now()
	return ca.IssueWith(Template{CN: cn, Org: org, KeyType: kt, NotBefore: now.Add(-clockSkew), NotAfter: now.Add(validity)})
}

// IssueWith issues a client certificate with exactly the given validity
// window, which may lie in the past or the future (for tests of expired and
// not-yet-valid credentials). No policy is applied.
func (ca *CA) IssueWith(t Template) (*x509.Certificate, crypto.Signer, error) {
	opts := ca.Options()
	now := opts.now()
	if t.NotBefore.IsZero() {
		t.NotBefore = now.Add(-clockSkew)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = now.Add(DefaultLeafValidity)
	}
	if t.NotAfter.Before(t.NotBefore) {
		return nil, nil, fmt.Errorf("fakeca: issue %q: NotAfter %s before NotBefore %s", t.CN, t.NotAfter.Format(time.RFC3339), t.NotBefore.Format(time.RFC3339))
	}
	key := t.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(t.KeyType, opts.rand()); err != nil {
			return nil, nil, fmt.Errorf("fakeca: issue %q: %w", t.CN, err)
		}
	}
	subj := pkix.Name{CommonName: t.CN}
	if t.Org != "" {
		subj.Organization = []string{t.Org}
	}
	tmpl := leafTemplate(t.NotBefore, t.NotAfter, x509.ExtKeyUsageClientAuth)
	tmpl.Subject = subj
	cert, err := sign(tmpl, ca, key.Public(), nil, opts.rand())
	if err != nil {
		return nil, nil, fmt.Errorf("fakeca: issue %q: %w", t.CN, err)
	}
	return cert, key, nil
}

// ServerCert issues a TLS server certificate (ExtKeyUsage ServerAuth, ECDSA
// P-256) for hosts: each is an IP SAN when it parses as one, else a DNS SAN;
// the first is also the CN. The returned chain is the leaf, then ca.Cert
// and its intermediates, without the root. Validity zero means
// DefaultLeafValidity.
func (ca *CA) ServerCert(hosts []string, validity time.Duration) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("fakeca: server certificate needs at least one host")
	}
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	opts := ca.Options()
	key, err := GenerateKey(ECDSAP256, opts.rand())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("fakeca: server certificate: %w", err)
	}
	now := opts.now()
	tmpl := leafTemplate(now.Add(-clockSkew), now.Add(validity), x509.ExtKeyUsageServerAuth)
	tmpl.Subject = pkix.Name{CommonName: hosts[0]}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, err := sign(tmpl, ca, key.Public(), nil, opts.rand())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("fakeca: server certificate: %w", err)
	}
	chain := [][]byte{cert.Raw}
	if len(ca.Chain) > 0 {
		chain = append(chain, ca.Cert.Raw)
		for _, c := range ca.Chain[:len(ca.Chain)-1] {
			chain = append(chain, c.Raw)
		}
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert}, nil
}

// CRL builds a DER X.509 v2 CRL signed by ca with thisUpdate Now and
// nextUpdate Now+next. A nil number means the Unix time of thisUpdate, which
// grows with the clock as CRL numbers must.
func (ca *CA) CRL(entries []x509.RevocationListEntry, number *big.Int, next time.Duration) ([]byte, error) {
	opts := ca.Options()
	now := opts.now()
	if number == nil {
		number = big.NewInt(now.Unix())
	}
	if next <= 0 {
		return nil, fmt.Errorf("fakeca: crl: nextUpdate interval %s must be positive", next)
	}
	// RFC 5280: an absent keyUsage extension permits CRL signing, and the
	// key identifier can be derived; Go insists on both, so give an
	// imported root without them what it implicitly has.
	issuer := ca.Cert
	if issuer.KeyUsage == 0 || len(issuer.SubjectKeyId) == 0 {
		cp := *issuer
		if cp.KeyUsage == 0 {
			cp.KeyUsage = x509.KeyUsageCRLSign
		}
		if len(cp.SubjectKeyId) == 0 {
			id, err := keyID(cp.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("fakeca: crl: %w", err)
			}
			cp.SubjectKeyId = id
		}
		issuer = &cp
	}
	der, err := x509.CreateRevocationList(opts.rand(), &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(next),
	}, issuer, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("fakeca: crl: %w", err)
	}
	return der, nil
}

// ParseChain parses the DER certificates a peer presented in a TLS or
// DTLS handshake, leaf first. It fails with ErrNoCert when there are none
// and with an error wrapping ErrBadCert when one does not parse.
func ParseChain(raw [][]byte) ([]*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, ErrNoCert
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of %d: %w", ErrBadCert, i+1, len(raw), err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// VerifyClient verifies a client certificate chain (certs[0] the leaf, the
// rest intermediates) against roots at time now, for ExtKeyUsage
// ClientAuth. It returns the verified chain, leaf first. Errors wrap
// ErrExpired, ErrNotYetValid or ErrUnknownAuthority when that is the
// reason, ErrVerify otherwise, and name the offending certificate.
func VerifyClient(certs []*x509.Certificate, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if len(certs) == 0 || certs[0] == nil {
		return nil, fmt.Errorf("%w: no client certificate", ErrVerify)
	}
	vo := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, r := range roots {
		if r != nil {
			vo.Roots.AddCert(r)
		}
	}
	for _, c := range certs[1:] {
		if c != nil {
			vo.Intermediates.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(vo)
	if err == nil {
		return chains[0], nil
	}
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && inv.Cert != nil:
		return nil, timeError(inv.Cert, now)
	case errors.As(err, &unk):
		// Go reports an issuer outside its validity as an unknown
		// authority; name the real cause when that is it.
		if p := issuerOutOfTime(certs[0], certs[1:], roots, now); p != nil {
			return nil, fmt.Errorf("%w (issuer of %s)%.0w", timeError(p, now), describe(certs[0]), ErrIssuerNotValid)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnknownAuthority, describe(certs[0]), err)
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrVerify, describe(certs[0]), err)
}

// timeError says why c is not valid at now.
func timeError(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: %s: valid from %s, now %s", ErrNotYetValid, describe(c), c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: %s: expired at %s, now %s", ErrExpired, describe(c), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

// issuerOutOfTime walks up from leaf through the candidate issuers by
// signature alone and returns the first issuer on the way that is not valid
// at now, or nil when the path breaks for another reason.
func issuerOutOfTime(leaf *x509.Certificate, inters, roots []*x509.Certificate, now time.Time) *x509.Certificate {
	cands := append(slices.Clone(inters), roots...)
	valid := func(c *x509.Certificate) bool { return !now.Before(c.NotBefore) && !now.After(c.NotAfter) }
	c := leaf
	for range 8 {
		var parent, stale *x509.Certificate
		for _, p := range cands {
			if p == nil || p == c || !bytes.Equal(c.RawIssuer, p.RawSubject) || c.CheckSignatureFrom(p) != nil {
				continue
			}
			if !valid(p) {
				stale = p
				continue
			}
			parent = p
			break
		}
		switch {
		case parent == nil:
			return stale
		case selfSigned(parent):
			return nil
		}
		c = parent
	}
	return nil
}

// describe names a certificate for an error message.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %x)", c.Subject.CommonName, c.SerialNumber)
}

// caTemplate is the profile of a CA certificate.
func caTemplate(subj pkix.Name, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               subj,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// leafTemplate is the profile of an end-entity certificate.
func leafTemplate(notBefore, notAfter time.Time, eku x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true,
	}
}

// sign fills in the serial and key identifiers and signs tmpl for pub with
// ca, or self-signs with selfKey when ca is nil.
func sign(tmpl *x509.Certificate, ca *CA, pub crypto.PublicKey, selfKey crypto.Signer, rnd io.Reader) (*x509.Certificate, error) {
	serial, err := NewSerial(rnd)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.SubjectKeyId, err = keyID(pub); err != nil {
		return nil, err
	}
	parent, signer := tmpl, selfKey
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
		if tmpl.AuthorityKeyId, err = issuerKeyID(ca.Cert); err != nil {
			return nil, err
		}
	}
	der, err := x509.CreateCertificate(rnd, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// NewSerial returns a random positive serial number of at most 128 bits,
// never zero.
func NewSerial(rnd io.Reader) (*big.Int, error) {
	if rnd == nil {
		rnd = cryptoRand
	}
	var b [16]byte
	for range 8 {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("fakeca: serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("fakeca: serial: random source keeps returning zeros")
}

// keyID is the key identifier of RFC 7093 section 2 method 1: the leftmost
// 160 bits of the SHA-256 of the subjectPublicKey bit string.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// issuerKeyID is the identifier children of c carry as AuthorityKeyId.
func issuerKeyID(c *x509.Certificate) ([]byte, error) {
	if len(c.SubjectKeyId) > 0 {
		return c.SubjectKeyId, nil
	}
	return keyID(c.PublicKey)
}

// canSign reports whether c may issue certificates; withCA asks whether it
// may issue CA certificates too.
func canSign(c *x509.Certificate, withCA bool) error {
	switch {
	case c.BasicConstraintsValid && !c.IsCA:
		return fmt.Errorf("%w: %q has CA:FALSE", ErrNotCA, c.Subject.CommonName)
	case !c.BasicConstraintsValid && c.Version >= 3:
		return fmt.Errorf("%w: %q is v3 without basicConstraints", ErrNotCA, c.Subject.CommonName)
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("%w: %q lacks keyUsage keyCertSign", ErrNotCA, c.Subject.CommonName)
	case withCA && c.MaxPathLenZero && c.MaxPathLen == 0:
		return fmt.Errorf("%w: %q has pathlen 0 and cannot issue a CA", ErrNotCA, c.Subject.CommonName)
	}
	return nil
}

// publicKeyEqual reports whether a private key belongs to a public key.
func publicKeyEqual(pub crypto.PublicKey, key crypto.Signer) bool {
	k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

// selfSigned reports whether c names itself as issuer and its signature
// verifies with its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
