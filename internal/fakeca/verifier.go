package fakeca

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// DefaultVerifierSize bounds how many issuing CA certificates a Verifier
// remembers when Verifier.Max is zero.
const DefaultVerifierSize = 1024

// Verifier verifies client certificate chains exactly as VerifyClient
// does, and remembers the intermediates it has verified up to a trusted
// root. A later chain whose first certificate after the leaf is a
// remembered intermediate is verified against that intermediate alone (the leaf's
// signature, validity and key usage), and the intermediate is accepted
// only while its root is among the roots given and the time is inside
// the validity of both: one signature check instead of two, which is
// what a server accepting many devices of one fleet spends most of its
// chain verification on.
//
// Chains whose intermediate or root carries name or policy constraints
// are never shortened (those constrain the leaf and are only checked on
// the full chain). Revocation is not the Verifier's business: callers
// check the returned chain as they would VerifyClient's. The zero value
// is ready to use and safe for concurrent use.
type Verifier struct {
	// Max bounds the remembered intermediates (default
	// DefaultVerifierSize); when full, an arbitrary one is forgotten.
	Max int

	mu    sync.Mutex
	known map[[32]byte]verifiedIssuer
}

type verifiedIssuer struct {
	issuer    *x509.Certificate
	root      *x509.Certificate
	notBefore time.Time
	notAfter  time.Time
}

// Verify returns the verified chain, leaf first and root last, like
// VerifyClient; its errors are VerifyClient's.
func (v *Verifier) Verify(certs, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if len(certs) >= 2 && certs[0] != nil && certs[1] != nil {
		if chain := v.short(certs, roots, now); chain != nil {
			return chain, nil
		}
	}
	chain, err := VerifyClient(certs, roots, now)
	if err == nil && len(chain) == 3 && chain[1].Equal(certs[1]) &&
		!constrained(chain[1]) && !constrained(chain[2]) {
		v.remember(chain[1], chain[2])
	}
	return chain, err
}

// short verifies certs[0] against a remembered certs[1], or returns nil.
func (v *Verifier) short(certs, roots []*x509.Certificate, now time.Time) []*x509.Certificate {
	key := sha256.Sum256(certs[1].Raw)
	v.mu.Lock()
	e, ok := v.known[key]
	v.mu.Unlock()
	if !ok || now.Before(e.notBefore) || now.After(e.notAfter) {
		return nil
	}
	trusted := false
	for _, r := range roots {
		if r != nil && r.Equal(e.root) {
			trusted = true
			break
		}
	}
	if !trusted {
		return nil
	}
	anchor := x509.NewCertPool()
	anchor.AddCert(e.issuer)
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:       anchor,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil || len(chains[0]) != 2 {
		return nil // the full verification names the error
	}
	return []*x509.Certificate{chains[0][0], e.issuer, e.root}
}

func (v *Verifier) remember(issuer, root *x509.Certificate) {
	e := verifiedIssuer{issuer: issuer, root: root, notBefore: issuer.NotBefore, notAfter: issuer.NotAfter}
	if root.NotBefore.After(e.notBefore) {
		e.notBefore = root.NotBefore
	}
	if root.NotAfter.Before(e.notAfter) {
		e.notAfter = root.NotAfter
	}
	limit := v.Max
	if limit <= 0 {
		limit = DefaultVerifierSize
	}
	key := sha256.Sum256(issuer.Raw)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.known == nil {
		v.known = make(map[[32]byte]verifiedIssuer)
	}
	if _, ok := v.known[key]; !ok && len(v.known) >= limit {
		for k := range v.known {
			delete(v.known, k)
			break
		}
	}
	v.known[key] = e
}

// constrained reports whether c carries constraints that bear on the
// certificates below it beyond its own signature and validity.
func constrained(c *x509.Certificate) bool {
	return c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains) > 0 || len(c.ExcludedDNSDomains) > 0 ||
		len(c.PermittedIPRanges) > 0 || len(c.ExcludedIPRanges) > 0 ||
		len(c.PermittedEmailAddresses) > 0 || len(c.ExcludedEmailAddresses) > 0 ||
		len(c.PermittedURIDomains) > 0 || len(c.ExcludedURIDomains) > 0 ||
		len(c.PolicyIdentifiers) > 0 || len(c.Policies) > 0 ||
		c.RequireExplicitPolicy > 0 || c.RequireExplicitPolicyZero ||
		c.InhibitPolicyMapping > 0 || c.InhibitPolicyMappingZero ||
		c.InhibitAnyPolicy > 0 || c.InhibitAnyPolicyZero || len(c.PolicyMappings) > 0
}
