package cloud

// The admin's certificate authority operations: issuing, signing CSRs,
// revoking, CRLs and registering CA certificates for MQTT.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/crl"
	"github.com/credloop/credloop/internal/fakeca"
)

// Issuer roles: which certificate of a CA signs or revokes.
const (
	IssuerRoot         = "root"
	IssuerIntermediate = "intermediate"
)

// DefaultValidity is the validity of a certificate issued or signed
// without one: a year.
const DefaultValidity = 365 * 24 * time.Hour

// CAInfo is a CA of the data directory.
type CAInfo struct {
	Name string
	Dir  string // where its files are; "" for the in-memory CA of a cloud
	Root *x509.Certificate
	// Intermediate issues device certificates; nil when the root does.
	Intermediate *x509.Certificate
}

// Issuing is the certificate that issues device certificates.
func (i CAInfo) Issuing() *x509.Certificate {
	if i.Intermediate != nil {
		return i.Intermediate
	}
	return i.Root
}

// IssuingRole is IssuerIntermediate or IssuerRoot: which one issues
// device certificates.
func (i CAInfo) IssuingRole() string {
	if i.Intermediate != nil {
		return IssuerIntermediate
	}
	return IssuerRoot
}

// CA describes the CA called name ("" is DefaultCA).
func (a *Admin) CA(name string) (CAInfo, error) {
	au, err := a.authority(name)
	if err != nil {
		return CAInfo{}, err
	}
	return a.caInfo(name, au), nil
}

func (a *Admin) caInfo(name string, au *fakeca.Authority) CAInfo {
	if name == "" {
		name = DefaultCA
	}
	info := CAInfo{Name: name, Root: au.Root.Cert}
	if a.dir != "" {
		info.Dir = CADir(a.dir, name)
	}
	if hasIntermediate(au) {
		info.Intermediate = au.Issuing.Cert
	}
	return info
}

// ValidCAName reports whether name can name a CA: one directory below
// DIR/ca.
func ValidCAName(name string) error {
	if name == "." || name == ".." || registry.ValidID(name) != nil {
		return fmt.Errorf("%w: CA name %q: want 1..64 characters of [A-Za-z0-9._:-], and neither . nor .. alone", registry.ErrInvalid, clipArg(name))
	}
	return nil
}

// authority loads the CA called name: the running cloud's own for the
// default one, else from the directory.
func (a *Admin) authority(name string) (*fakeca.Authority, error) {
	if name == "" {
		name = DefaultCA
	}
	if err := ValidCAName(name); err != nil {
		return nil, err
	}
	if name == DefaultCA && a.ca != nil {
		return a.ca, nil
	}
	if a.dir == "" {
		return nil, fmt.Errorf("%w %q: the cloud keeps no directory", ErrNoCA, name)
	}
	au, err := fakeca.Load(CADir(a.dir, name), fakeca.Options{Now: a.now, Rand: a.rand})
	if errors.Is(err, fakeca.ErrNoCA) {
		return nil, fmt.Errorf("%w in %s", ErrNoCA, CADir(a.dir, name))
	}
	return au, err
}

// ErrCAExists: the directory holds a CA of that name already.
var ErrCAExists = fmt.Errorf("cloud: CA exists: %w", registry.ErrExists)

// InitCAOptions creates the CA Name of the directory: with a new root (Init),
// or an existing one (Import).
type InitCAOptions struct {
	Name string // "" is DefaultCA
	// KeyType of the new keys: ecdsa-p256 (default), ecdsa-p384 or
	// rsa-2048. Import makes the intermediate's key of the root's type.
	KeyType KeyType
	// Force replaces an existing CA of that name: certificates it issued
	// no longer verify, and projects trusting its root must trust the new
	// one. Without it an existing CA is ErrCAExists.
	Force bool
}

// InitCA creates a CA in the directory: a self-signed root "credloop
// Root CA" (10 years) and an intermediate "credloop Intermediate CA" (5
// years) signed by it, which issues device certificates. Keys are
// written 0600.
func (a *Admin) InitCA(_ context.Context, o InitCAOptions) (CAInfo, error) {
	kt, err := a.newCA(o)
	if err != nil {
		return CAInfo{}, err
	}
	au, err := fakeca.Init(kt, fakeca.Options{Now: a.now, Rand: a.rand})
	if err != nil {
		return CAInfo{}, err
	}
	return a.saveCA(o.Name, au)
}

// ImportCA brings an existing self-signed CA certificate and its private
// key (PEM or DER; SEC1, PKCS#8 or PKCS#1; not encrypted) as a CA of the
// directory. Unless noIntermediate, a new intermediate with a key of the
// root's type is made under it and issues device certificates.
func (a *Admin) ImportCA(_ context.Context, o InitCAOptions, certPEM, keyPEM []byte, noIntermediate bool) (CAInfo, error) {
	if certs, err := fakeca.ParseCertPEMOrDER(certPEM); err == nil && o.KeyType == "" {
		kt, _ := fakeca.KeyTypeOf(certs[0].PublicKey)
		o.KeyType = KeyType(kt)
	}
	kt, err := a.newCA(o)
	if err != nil {
		return CAInfo{}, err
	}
	au, err := fakeca.Import(certPEM, keyPEM, !noIntermediate, kt, fakeca.Options{Now: a.now, Rand: a.rand})
	if err != nil {
		return CAInfo{}, err
	}
	return a.saveCA(o.Name, au)
}

// newCA checks that the CA o.Name can be created and returns its key
// type.
func (a *Admin) newCA(o InitCAOptions) (fakeca.KeyType, error) {
	name := o.Name
	if name == "" {
		name = DefaultCA
	}
	if err := ValidCAName(name); err != nil {
		return "", err
	}
	if a.dir == "" {
		return "", fmt.Errorf("cloud: create CA %q: %w: the cloud keeps no directory", name, registry.ErrInvalid)
	}
	kt := fakeca.ECDSAP256
	if o.KeyType != "" && o.KeyType != "unknown" {
		var err error
		if kt, err = fakeca.ParseKeyType(string(o.KeyType)); err != nil {
			return "", fmt.Errorf("cloud: create CA %q: %w: %w", name, registry.ErrInvalid, err)
		}
	}
	if o.Force {
		return kt, nil
	}
	if _, err := os.Stat(filepath.Join(CADir(a.dir, name), fakeca.RootCertFile)); err == nil {
		return "", fmt.Errorf("%w in %s", ErrCAExists, CADir(a.dir, name))
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return kt, nil
}

func (a *Admin) saveCA(name string, au *fakeca.Authority) (CAInfo, error) {
	if name == "" {
		name = DefaultCA
	}
	if err := au.Save(CADir(a.dir, name)); err != nil {
		return CAInfo{}, err
	}
	a.log.Info("created CA", "dir", CADir(a.dir, name), "root", fakeca.Fingerprint(au.Root.Cert.Raw)[:16])
	return a.caInfo(name, au), nil
}

// hasIntermediate reports whether a keeps an intermediate apart from its
// root.
func hasIntermediate(a *fakeca.Authority) bool {
	return a.Issuing != nil && a.Issuing != a.Root
}

// pickIssuer selects the certificate of au that which names: "" is the
// one that issues device certificates.
func pickIssuer(au *fakeca.Authority, which, name string) (*fakeca.CA, string, error) {
	switch which {
	case "":
		if hasIntermediate(au) {
			return au.Issuing, IssuerIntermediate, nil
		}
		return au.Root, IssuerRoot, nil
	case IssuerIntermediate:
		if !hasIntermediate(au) {
			return nil, "", fmt.Errorf("%w: CA %q", ErrNoIntermediate, name)
		}
		return au.Issuing, IssuerIntermediate, nil
	case IssuerRoot:
		return au.Root, IssuerRoot, nil
	}
	return nil, "", fmt.Errorf("%w: issuer %q, want intermediate or root", registry.ErrInvalid, clipArg(which))
}

// IssueOptions describes a device certificate to issue.
type IssueOptions struct {
	CA      string // "" is DefaultCA
	CN      string // the device id
	Org     string // the project; "" for none
	KeyType string // ecdsa-p256 (default), ecdsa-p384 or rsa-2048
	// NotBefore and NotAfter bound the validity; a missing bound is the
	// other one minus or plus Validity (default DefaultValidity), and
	// with neither the certificate runs from now for Validity.
	NotBefore, NotAfter time.Time
	Validity            time.Duration
}

// Issued is a certificate issued with a new key.
type Issued struct {
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte // the private key: a secret
	KeyDER   []byte
	ChainPEM []byte // the certificate and the intermediates, as a device presents them
}

// Issue issues a device (client) certificate with subject O=Org, CN=CN
// from the CA's issuing certificate, with a new key. No policy applies
// and nothing is registered: a project trusting the CA's root provisions
// the device on its first connect.
func (a *Admin) Issue(_ context.Context, o IssueOptions) (Issued, error) {
	kt, err := fakeca.ParseKeyType(string(o.KeyType))
	if o.KeyType == "" {
		kt, err = fakeca.ECDSAP256, nil
	}
	if err != nil {
		return Issued{}, fmt.Errorf("issue: %w: %w", registry.ErrInvalid, err)
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.CN == "" || o.Validity < 0 {
		return Issued{}, fmt.Errorf("issue: %w: a CN and a positive validity are required", registry.ErrInvalid)
	}
	tmpl := fakeca.Template{CN: o.CN, Org: o.Org, KeyType: kt, NotBefore: o.NotBefore, NotAfter: o.NotAfter}
	switch {
	case !tmpl.NotBefore.IsZero() && !tmpl.NotAfter.IsZero():
	case !tmpl.NotBefore.IsZero():
		tmpl.NotAfter = tmpl.NotBefore.Add(o.Validity)
	case !tmpl.NotAfter.IsZero():
		tmpl.NotBefore = tmpl.NotAfter.Add(-o.Validity)
	default:
		tmpl.NotAfter = a.now().Add(o.Validity)
	}
	if !tmpl.NotBefore.IsZero() && tmpl.NotAfter.Before(tmpl.NotBefore) {
		return Issued{}, fmt.Errorf("issue: %w: not after %s is before not before %s", registry.ErrInvalid, tmpl.NotAfter, tmpl.NotBefore)
	}
	au, err := a.authority(o.CA)
	if err != nil {
		return Issued{}, err
	}
	cert, key, err := au.Issuing.IssueWith(tmpl)
	if err != nil {
		return Issued{}, err
	}
	out := Issued{Cert: cert, CertPEM: fakeca.EncodeCertPEM(cert)}
	if out.KeyPEM, err = fakeca.EncodeKeyPEM(key); err != nil {
		return Issued{}, err
	}
	if out.KeyDER, err = fakeca.EncodeKeyDER(key); err != nil {
		return Issued{}, err
	}
	out.ChainPEM = append([]byte(nil), out.CertPEM...)
	if hasIntermediate(au) {
		out.ChainPEM = append(out.ChainPEM, fakeca.EncodeCertPEM(au.Issuing.Cert)...)
		for _, ic := range au.Issuing.Chain[:max(0, len(au.Issuing.Chain)-1)] {
			out.ChainPEM = append(out.ChainPEM, fakeca.EncodeCertPEM(ic)...)
		}
	}
	return out, nil
}

// SignOptions describes a CSR to sign.
type SignOptions struct {
	CA  string // "" is DefaultCA
	CSR []byte // PKCS#10, PEM or DER
	// Org, when set, is the O the subject must have exactly.
	Org      string
	Validity time.Duration // default DefaultValidity
	// Chain appends the intermediate to the PEM.
	Chain bool
}

// Signed is a certificate signed from a CSR.
type Signed struct {
	Cert *x509.Certificate
	PEM  []byte // the certificate, and the intermediate with Chain
}

// CSRError is a refused CSR: Subject is its subject, "" when it did not
// parse. It wraps ErrBadCSR and the reason.
type CSRError struct {
	Subject string
	Err     error
}

func (e *CSRError) Error() string {
	if e.Subject == "" {
		return fmt.Sprintf("cloud: CSR refused: %v", e.Err)
	}
	return fmt.Sprintf("cloud: CSR (subject %q) refused: %v", e.Subject, e.Err)
}

func (e *CSRError) Unwrap() []error { return []error{ErrBadCSR, e.Err} }

// SignCSR checks a device's CSR (its signature; the key is ecdsa-p256,
// ecdsa-p384 or rsa-2048; one printable CN; with Org, exactly that O) and
// signs it with the CA's issuing certificate. A refused CSR is a
// *CSRError naming the rule it broke.
func (a *Admin) SignCSR(_ context.Context, o SignOptions) (Signed, error) {
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	csr, err := fakeca.ParseCSR(o.CSR)
	if err != nil {
		return Signed{}, &CSRError{Err: err}
	}
	policy := fakeca.Policy{Organization: o.Org, Validity: o.Validity}
	if err := fakeca.CheckCSR(csr, policy); err != nil {
		return Signed{}, &CSRError{Subject: csr.Subject.String(), Err: err}
	}
	au, err := a.authority(o.CA)
	if err != nil {
		return Signed{}, err
	}
	cert, err := au.Issuing.SignCSR(csr, policy)
	if err != nil {
		return Signed{}, &CSRError{Err: err}
	}
	out := Signed{Cert: cert, PEM: fakeca.EncodeCertPEM(cert)}
	if o.Chain && hasIntermediate(au) {
		out.PEM = append(out.PEM, fakeca.EncodeCertPEM(au.Issuing.Cert)...)
	}
	return out, nil
}

// crlReasons are the RFC 5280 CRLReason names by code (7 is unused).
var crlReasons = [...]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 7: "",
	8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ParseRevocationReason accepts an RFC 5280 CRLReason name (any case) or
// its number.
func ParseRevocationReason(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if validReason(n) {
			return n, nil
		}
		return 0, fmt.Errorf("reason %d is not an RFC 5280 CRLReason (0-6, 8-10)", n)
	}
	for n, name := range crlReasons {
		if name != "" && strings.EqualFold(name, s) {
			return n, nil
		}
	}
	var names []string
	for _, n := range crlReasons {
		if n != "" {
			names = append(names, n)
		}
	}
	return 0, fmt.Errorf("unknown reason %q: want one of %s, or a number", clipArg(s), strings.Join(names, ", "))
}

func validReason(n int) bool { return n >= 0 && n < len(crlReasons) && crlReasons[n] != "" }

// RevocationReasonName is the RFC 5280 name of a CRLReason code.
func RevocationReasonName(n int) string {
	if validReason(n) {
		return crlReasons[n]
	}
	return strconv.Itoa(n)
}

// clipArg shortens an argument quoted in an error message.
func clipArg(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// RevokeOptions names a certificate to revoke: by Serial, or by Cert, of
// the issuer Issuer (IssuerIntermediate or IssuerRoot; "" is the one
// that issues device certificates, or, for a Cert it did not sign, the
// root that did) of the CA called CA.
type RevokeOptions struct {
	CA     string
	Issuer string
	Serial string // hex, as `openssl x509 -serial` prints it; colons and 0x allowed
	Cert   *x509.Certificate
	Reason int // RFC 5280 CRLReason
}

// Revoked is what a revocation changed.
type Revoked struct {
	Serial            string            // normalized
	Issuer            *x509.Certificate // nil when the issuer is not known to the cloud
	IssuerFingerprint string
	IssuerRole        string // IssuerRoot, IssuerIntermediate, or "" for a CA not of the directory
	Reason            int    // of the first revocation of this serial
	Time              time.Time
	// Already: the serial was revoked before (and no ca.revoke event was
	// recorded again).
	Already bool
	// Deactivated are the CA registrations of the revoked certificate:
	// they anchor no connection any more, as AWS does for a revoked CA.
	Deactivated []registry.CARegistration
	// Credentials are the registered device certificates now REVOKED.
	Credentials []registry.Credential
}

// NotIssuedError: the certificate to revoke was not issued by the CA
// certificate named. It wraps ErrNotIssued.
type NotIssuedError struct {
	Subject string // of the certificate
	Role    string // IssuerRoot or IssuerIntermediate
	CA      string // the CA's name
	Issuer  string // the subject of the CA certificate named
}

func (e *NotIssuedError) Error() string {
	return fmt.Sprintf("cloud: %q was not issued by the %s of CA %q (%s)", e.Subject, e.Role, e.CA, e.Issuer)
}

func (e *NotIssuedError) Unwrap() error { return ErrNotIssued }

// Revoke revokes a certificate of a CA of the directory: the registry
// records that its issuer revoked the serial (the CRL lists it), every
// registered device certificate with that issuer and serial becomes
// REVOKED (credential.revoked), and a registered CA certificate that is
// revoked is deactivated (ca.deactivated). Live sessions that used it are
// dropped.
func (a *Admin) Revoke(ctx context.Context, o RevokeOptions) (Revoked, error) {
	if (o.Serial == "") == (o.Cert == nil) {
		return Revoked{}, fmt.Errorf("revoke: %w: give a serial or a certificate", registry.ErrInvalid)
	}
	au, err := a.authority(o.CA)
	if err != nil {
		return Revoked{}, err
	}
	name := o.CA
	if name == "" {
		name = DefaultCA
	}
	issuer, role, err := pickIssuer(au, o.Issuer, name)
	if err != nil {
		return Revoked{}, err
	}
	serial := o.Serial
	if cert := o.Cert; cert != nil {
		switch {
		case o.Issuer == "" && cert.CheckSignatureFrom(issuer.Cert) != nil && cert.CheckSignatureFrom(au.Root.Cert) == nil:
			issuer, role = au.Root, IssuerRoot
		case cert.CheckSignatureFrom(issuer.Cert) != nil:
			return Revoked{}, &NotIssuedError{Subject: cert.Subject.String(), Role: role, CA: name, Issuer: issuer.Cert.Subject.String()}
		}
		serial = fmt.Sprintf("%x", cert.SerialNumber)
	}
	return a.revoke(ctx, issuer.Cert, fakeca.Fingerprint(issuer.Cert.Raw), role, serial, o.Reason)
}

// RevokeSerial revokes the serial of the issuer whose certificate has the
// SHA-256 fingerprint issuerFP, which need not be a CA of the directory:
// as Revoke otherwise.
func (a *Admin) RevokeSerial(ctx context.Context, issuerFP, serial string, reason int) (Revoked, error) {
	fp, err := registry.NormalizeFingerprint(issuerFP)
	if err != nil {
		return Revoked{}, fmt.Errorf("revoke: issuer: %w", err)
	}
	issuer, role := a.findIssuer(ctx, fp)
	return a.revoke(ctx, issuer, fp, role, serial, reason)
}

// findIssuer looks for the CA certificate with fingerprint fp: among the
// CAs of the directory, then the registered CAs, the trusted roots and
// the registered certificates.
func (a *Admin) findIssuer(ctx context.Context, fp string) (*x509.Certificate, string) {
	var names []string
	if a.ca != nil {
		names = append(names, DefaultCA)
	}
	if a.dir != "" {
		entries, _ := os.ReadDir(filepath.Join(a.dir, CADirName))
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	for _, n := range names {
		au, err := a.authority(n)
		if err != nil {
			continue
		}
		if fakeca.Fingerprint(au.Root.Cert.Raw) == fp {
			return au.Root.Cert, IssuerRoot
		}
		if hasIntermediate(au) && fakeca.Fingerprint(au.Issuing.Cert.Raw) == fp {
			return au.Issuing.Cert, IssuerIntermediate
		}
	}
	var der []byte
	if cr, err := a.reg.CARegistrationByID(ctx, fp); err == nil {
		der = cr.DER
	} else if c, err := a.reg.CertificateByFingerprint(ctx, fp); err == nil {
		der = c.DER
	} else if ps, err := a.reg.Projects(ctx); err == nil {
		for _, p := range ps {
			roots, _ := a.reg.TrustedRoots(ctx, p.ID)
			for _, r := range roots {
				if r.Fingerprint == fp {
					der = r.DER
				}
			}
		}
	}
	if cert, err := x509.ParseCertificate(der); err == nil {
		return cert, ""
	}
	return nil, ""
}

func (a *Admin) revoke(ctx context.Context, issuer *x509.Certificate, issuerFP, role, serial string, reason int) (Revoked, error) {
	serial, err := registry.NormalizeSerial(serial)
	if err != nil {
		return Revoked{}, fmt.Errorf("revoke: %w", err)
	}
	if !validReason(reason) {
		return Revoked{}, fmt.Errorf("revoke %s: %w: reason %d is not an RFC 5280 CRLReason", serial, registry.ErrInvalid, reason)
	}
	out := Revoked{Serial: serial, Issuer: issuer, IssuerFingerprint: issuerFP, IssuerRole: role}
	issuerName := "issuer"
	if issuer != nil {
		issuerName = issuer.Subject.CommonName
	}
	already, err := a.reg.IsRevoked(ctx, issuerFP, serial)
	if err != nil {
		return out, err
	}
	before, err := a.reg.Credentials(ctx, "", "")
	if err != nil {
		return out, err
	}
	var cands []registry.Credential
	for _, cr := range before {
		if cr.Kind == registry.KindCert && cr.Serial == serial && cr.State != registry.StateRevoked {
			cands = append(cands, cr)
		}
	}
	// The revocation and its ca.revoke event commit together: a cloud in
	// another process that follows the log re-checks its live sessions
	// after that event, so no revocation can be stored without reaching
	// them. The per-credential events below only tell of it.
	var evs []registry.Event
	if !already {
		evs = append(evs, registry.Event{Kind: registry.EventCARevoke, Credential: "serial:" + serial,
			Reason: a.reason("serial %s of %s %.8s revoked (%s)", serial, issuerName, issuerFP, RevocationReasonName(reason))})
	}
	rev, err := a.reg.Revoke(ctx, issuerFP, serial, reason, evs...)
	if err != nil {
		return out, err
	}
	out.Reason, out.Time, out.Already = rev.Reason, rev.Time, already
	defer a.enforce(ctx, "revocation")
	// A revoked CA certificate that is registered for MQTT (JITP, JITR,
	// claim) stops anchoring connections: its registration is
	// deactivated, as AWS does for a revoked CA certificate.
	if issuer != nil {
		regs, err := a.reg.CARegistrations(ctx, "")
		if err != nil {
			return out, err
		}
		for _, cr := range regs {
			ca, perr := x509.ParseCertificate(cr.DER)
			if perr != nil || !cr.Active || fmt.Sprintf("%x", ca.SerialNumber) != serial || ca.CheckSignatureFrom(issuer) != nil {
				continue
			}
			ev := registry.Event{Project: cr.Project, Credential: cr.ID, Kind: registry.EventCADeactivated,
				Reason: a.reason("registered CA %s revoked (%s)", ca.Subject.CommonName, RevocationReasonName(reason))}
			if err := a.reg.SetCAActive(ctx, cr.ID, false, ev); err != nil {
				return out, err
			}
			cr.Active = false
			out.Deactivated = append(out.Deactivated, cr)
		}
	}
	for _, cr := range cands {
		now, err := a.reg.Credential(ctx, cr.ID)
		if err != nil || now.State != registry.StateRevoked {
			continue
		}
		out.Credentials = append(out.Credentials, now)
		a.record(ctx, registry.Event{Project: now.Project, Device: now.Device, Credential: now.Fingerprint, Kind: registry.EventCredentialRevoked,
			Reason: a.reason("certificate serial %s revoked (%s)", serial, RevocationReasonName(reason))})
	}
	return out, nil
}

// CRLOptions says which CRL to build.
type CRLOptions struct {
	CA     string // "" is DefaultCA
	Issuer string // IssuerIntermediate or IssuerRoot; "" is the one that issues device certificates
	// NextUpdate is how far ahead the CRL's next update is (default 7
	// days).
	NextUpdate time.Duration
}

// CRL is a certificate revocation list.
type CRL struct {
	DER, PEM   []byte
	Number     int64
	Revoked    int // entries
	ThisUpdate time.Time
	NextUpdate time.Time
	Issuer     *x509.Certificate
	IssuerRole string
}

// CRL builds the issuer's X.509 v2 CRL from the revocations of the
// registry, with its next CRL number (kept in the registry).
func (a *Admin) CRL(ctx context.Context, o CRLOptions) (CRL, error) {
	au, err := a.authority(o.CA)
	if err != nil {
		return CRL{}, err
	}
	name := o.CA
	if name == "" {
		name = DefaultCA
	}
	issuer, role, err := pickIssuer(au, o.Issuer, name)
	if err != nil {
		return CRL{}, err
	}
	l, err := crl.BuildList(ctx, a.reg, issuer, o.NextUpdate)
	if err != nil {
		return CRL{}, err
	}
	return CRL{DER: l.DER, PEM: fakeca.EncodeCRLPEM(l.DER), Number: l.Number, Revoked: l.Revoked,
		ThisUpdate: l.ThisUpdate, NextUpdate: l.NextUpdate, Issuer: issuer.Cert, IssuerRole: role}, nil
}

// CertError is an error about one certificate of several given (a
// bundle): Index counts from 0.
type CertError struct {
	Index, Count int
	Subject      string
	Err          error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("cloud: certificate %d of %d (%s): %v", e.Index+1, e.Count, e.Subject, e.Err)
}

func (e *CertError) Unwrap() error { return e.Err }

// isCACert reports whether c may be trusted as a root: a CA by basic
// constraints, or self-signed.
func isCACert(c *x509.Certificate) bool {
	if c.BasicConstraintsValid && c.IsCA {
		return true
	}
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// checkCAs makes sure every certificate is a CA or self-signed.
func checkCAs(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate", registry.ErrInvalid)
	}
	for i, c := range certs {
		if !isCACert(c) {
			return &CertError{Index: i, Count: len(certs), Subject: c.Subject.String(), Err: ErrNotCA}
		}
	}
	return nil
}

// RegisterCAOptions registers CA certificates with a project for MQTT, as
// AWS IoT's register-ca-certificate does.
type RegisterCAOptions struct {
	Project  string
	Certs    []*x509.Certificate // every one must be a CA or self-signed
	Mode     registry.CAMode
	Template string // claim: the template claim certificates may use; jitp: optional
	Inactive bool   // register INACTIVE: its certificates are refused
}

// RegisteredCAs is what RegisterCA did.
type RegisteredCAs struct {
	Registrations []registry.CARegistration
	// TemplateMissing: the template named does not exist yet.
	TemplateMissing bool
}

// RegisterCA registers CA certificates with a project (ca.register): a
// device certificate presented over MQTT must chain to an ACTIVE
// registered CA, and the mode says what happens to one the registry does
// not know yet. Registering again changes the mode and template. A
// certificate registered with another project is a *CertError wrapping
// registry.ErrExists; the registrations made before it are returned.
func (a *Admin) RegisterCA(ctx context.Context, o RegisterCAOptions) (RegisteredCAs, error) {
	var out RegisteredCAs
	if !o.Mode.Valid() {
		return out, fmt.Errorf("register CA: %w: mode %q", registry.ErrInvalid, o.Mode)
	}
	if err := checkCAs(o.Certs); err != nil {
		return out, err
	}
	if err := a.needProject(ctx, o.Project); err != nil {
		return out, err
	}
	if o.Template != "" {
		t, err := a.reg.Template(ctx, o.Template)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			out.TemplateMissing = true
		case err != nil:
			return out, err
		case t.Project != o.Project:
			return out, fmt.Errorf("%w: template %s belongs to project %s, not %s", ErrTemplateProject, o.Template, t.Project, o.Project)
		}
	}
	status := "ACTIVE"
	if o.Inactive {
		status = "INACTIVE"
	}
	for i, cert := range o.Certs {
		cr, err := a.reg.RegisterCA(ctx, o.Project, cert.Raw, o.Mode, o.Template)
		if err == nil {
			ev := registry.Event{Project: o.Project, Credential: cr.ID, Kind: registry.EventCARegistered,
				Reason: a.reason("registered %s mode %s template %q %s", cr.Subject, o.Mode, o.Template, status)}
			err = a.reg.SetCAActive(ctx, cr.ID, !o.Inactive, ev)
			cr.Active = !o.Inactive
		}
		if err != nil {
			return out, &CertError{Index: i, Count: len(o.Certs), Subject: cert.Subject.String(), Err: err}
		}
		out.Registrations = append(out.Registrations, cr)
	}
	return out, nil
}

// CARegistrations lists the registered CA certificates of a project, or
// of all when project is "".
func (a *Admin) CARegistrations(ctx context.Context, project string) ([]registry.CARegistration, error) {
	if project != "" {
		if err := a.needProject(ctx, project); err != nil {
			return nil, err
		}
	}
	return a.reg.CARegistrations(ctx, project)
}
