package fakeca

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxCSRSize is the largest CSR, PEM or DER, that ParseCSR accepts.
const MaxCSRSize = 64 << 10

// maxCNLen is ub-common-name of RFC 5280, in characters.
const maxCNLen = 64

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// Policy decides which CSRs SignCSR accepts. The zero value allows all
// three key types, requires a CN, accepts any O and issues for 365 days.
type Policy struct {
	AllowedKeys  []KeyType     `json:"allowed_keys,omitempty" yaml:"allowed_keys,omitempty"` // empty = all of KeyTypes()
	Organization string        `json:"organization,omitempty" yaml:"organization,omitempty"` // when non-empty, the subject must have exactly this O
	Validity     time.Duration `json:"validity,omitempty" yaml:"validity,omitempty"`         // default DefaultLeafValidity
	NotBefore    time.Time     `json:"not_before,omitzero" yaml:"not_before,omitempty"`      // zero = Now minus one minute
}

// ParseCSR parses a PKCS#10 request, PEM ("CERTIFICATE REQUEST" or "NEW
// CERTIFICATE REQUEST") or DER, at most MaxCSRSize bytes, and checks its
// self-signature (proof of possession). Errors wrap ErrBadCSR.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCSR, len(data), MaxCSRSize)
	}
	der := data
	if looksPEM(data) {
		der = nil
		for rest := data; der == nil; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				return nil, fmt.Errorf("%w: no CERTIFICATE REQUEST PEM block", ErrBadCSR)
			}
			if b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST" {
				der = b.Bytes
			}
		}
	}
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	return csr, nil
}

// CheckCSR applies p to csr: the key type is allowed, the subject has
// exactly one CN of 1..64 printable characters, and its O is exactly
// p.Organization when that is set. Errors wrap ErrPolicy and say which rule
// failed.
func CheckCSR(csr *x509.CertificateRequest, p Policy) error {
	if csr == nil {
		return fmt.Errorf("%w: no request", ErrPolicy)
	}
	if p.Validity < 0 {
		return fmt.Errorf("%w: validity %s is negative", ErrPolicy, p.Validity)
	}
	allowed := p.AllowedKeys
	if len(allowed) == 0 {
		allowed = KeyTypes()
	}
	kt, _ := KeyTypeOf(csr.PublicKey)
	if !slices.ContainsFunc(allowed, func(a KeyType) bool { return a.orDefault() == kt }) {
		return fmt.Errorf("%w: key type %s not allowed (allowed: %v)", ErrPolicy, kt, allowed)
	}
	ncn := 0
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			ncn++
		}
	}
	switch {
	case ncn == 0 || csr.Subject.CommonName == "":
		return fmt.Errorf("%w: subject has no CN", ErrPolicy)
	case ncn > 1:
		return fmt.Errorf("%w: subject has %d CNs, want one", ErrPolicy, ncn)
	}
	if err := checkCN(csr.Subject.CommonName); err != nil {
		return err
	}
	if p.Organization != "" {
		if o := csr.Subject.Organization; len(o) != 1 || o[0] != p.Organization {
			return fmt.Errorf("%w: subject O %q, want exactly %q", ErrPolicy, o, p.Organization)
		}
	}
	return nil
}

func checkCN(cn string) error {
	if !utf8.ValidString(cn) {
		return fmt.Errorf("%w: CN is not valid UTF-8", ErrPolicy)
	}
	if n := utf8.RuneCountInString(cn); n > maxCNLen {
		return fmt.Errorf("%w: CN is %d characters, limit %d", ErrPolicy, n, maxCNLen)
	}
	for i, r := range cn {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: CN has unprintable character %U at byte %d", ErrPolicy, r, i)
		}
	}
	return nil
}

// SignCSR checks csr against p and issues a client certificate (KeyUsage
// DigitalSignature, ExtKeyUsage ClientAuth) with the CSR's subject and
// public key. Extensions requested in the CSR are ignored. When p.NotBefore
// is set the certificate runs from it for p.Validity; otherwise from one
// minute before Now to Now plus p.Validity.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, p Policy) (*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	return ca.SignParsedCSR(csr, p)
}

// SignParsedCSR is SignCSR for a CSR returned by ParseCSR, which already
// checked its signature: it applies the policy and signs without checking
// the signature a second time (an ECDSA verification, about a third of an
// issuance). A CSR built in memory must go through SignCSR.
func (ca *CA) SignParsedCSR(csr *x509.CertificateRequest, p Policy) (*x509.Certificate, error) {
	if err := CheckCSR(csr, p); err != nil {
		return nil, err
	}
	validity := p.Validity
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	opts := ca.Options()
	notBefore, notAfter := p.NotBefore, p.NotBefore.Add(validity)
	if notBefore.IsZero() {
		now := opts.now()
		notBefore, notAfter = now.Add(-clockSkew), now.Add(validity)
	}
	tmpl := leafTemplate(notBefore, notAfter, x509.ExtKeyUsageClientAuth)
	tmpl.RawSubject = csr.RawSubject
	cert, err := sign(tmpl, ca, csr.PublicKey, nil, opts.rand())
	if err != nil {
		return nil, fmt.Errorf("fakeca: sign %q: %w", csr.Subject.CommonName, err)
	}
	return cert, nil
}
