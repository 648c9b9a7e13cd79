// Package crl builds certificate revocation lists from the registry's revocations and keeps them current.
package crl

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// DefaultNext is the nextUpdate interval when none is given.
const DefaultNext = 7 * 24 * time.Hour

// ErrBadSerial is returned when the registry holds a revocation whose
// serial is not hex.
var ErrBadSerial = errors.New("crl: revocation serial is not hex")

// List is a CRL built by BuildList.
type List struct {
	DER        []byte // X.509 v2 CRL, DER
	Number     int64  // its CRL number
	Revoked    int    // entries
	ThisUpdate time.Time
	NextUpdate time.Time
	// Digest identifies the revocations listed (hex SHA-256 over issuer,
	// serials, reasons and times): equal digests, same contents.
	Digest string
}

// Build returns a DER CRL signed by ca, listing the registry's
// revocations for it (ca.Cert's fingerprint is the issuer), with the
// issuer's next CRL number from the registry, thisUpdate the CA's clock
// and nextUpdate next later (zero: DefaultNext). Every call takes a new
// CRL number; Cache builds only when the revocations changed.
func Build(ctx context.Context, reg *registry.Registry, ca *fakeca.CA, next time.Duration) ([]byte, error) {
	l, err := BuildList(ctx, reg, ca, next)
	if err != nil {
		return nil, err
	}
	return l.DER, nil
}

// BuildList is Build, with what the CRL holds.
func BuildList(ctx context.Context, reg *registry.Registry, ca *fakeca.CA, next time.Duration) (List, error) {
	if reg == nil || ca == nil || ca.Cert == nil {
		return List{}, errors.New("crl: build: registry and CA are required")
	}
	if next == 0 {
		next = DefaultNext
	}
	if next < 0 {
		return List{}, fmt.Errorf("crl: build: nextUpdate interval %s must be positive", next)
	}
	issuerFP := fakeca.Fingerprint(ca.Cert.Raw)
	revs, err := reg.Revocations(ctx, issuerFP)
	if err != nil {
		return List{}, fmt.Errorf("crl: %w", err)
	}
	entries, err := Entries(revs)
	if err != nil {
		return List{}, err
	}
	number, err := reg.NextCRLNumber(ctx, issuerFP)
	if err != nil {
		return List{}, fmt.Errorf("crl: %w", err)
	}
	der, err := ca.CRL(entries, big.NewInt(number), next)
	if err != nil {
		return List{}, err
	}
	parsed, err := x509.ParseRevocationList(der)
	if err != nil {
		return List{}, fmt.Errorf("crl: parse what was built: %w", err)
	}
	return List{
		DER: der, Number: number, Revoked: len(entries),
		ThisUpdate: parsed.ThisUpdate, NextUpdate: parsed.NextUpdate,
		Digest: digest(issuerFP, revs),
	}, nil
}

// Entries converts registry revocations to CRL entries.
func Entries(revs []registry.Revocation) ([]x509.RevocationListEntry, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revs))
	for _, r := range revs {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrBadSerial, clip(r.Serial))
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.Time, ReasonCode: r.Reason})
	}
	return entries, nil
}

// digest identifies the list of revocations.
func digest(issuerFP string, revs []registry.Revocation) string {
	h := sha256.New()
	h.Write([]byte(issuerFP))
	for _, r := range revs {
		h.Write([]byte{0})
		h.Write([]byte(r.Serial))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(r.Reason)))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatInt(r.Time.UnixMicro(), 10)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Cache keeps one CA's CRL current: Get rebuilds it (taking a new CRL
// number) only when the registry's revocations for the CA changed, or
// when half of its validity has passed, so a cached CRL is never served
// past its nextUpdate. It is safe for concurrent use.
type Cache struct {
	reg  *registry.Registry
	ca   *fakeca.CA
	next time.Duration

	mu  sync.Mutex
	cur *List
}

// NewCache returns a cache of ca's CRL with nextUpdate next after each
// build (zero: DefaultNext). Times come from the CA's clock.
func NewCache(reg *registry.Registry, ca *fakeca.CA, next time.Duration) *Cache {
	if next <= 0 {
		next = DefaultNext
	}
	return &Cache{reg: reg, ca: ca, next: next}
}

// CA returns the CA whose CRL the cache keeps.
func (c *Cache) CA() *fakeca.CA { return c.ca }

// Get returns the current CRL, building it first when there is none, the
// revocations changed, or it is halfway to its nextUpdate.
func (c *Cache) Get(ctx context.Context) (List, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		fresh, err := c.fresh(ctx)
		if err != nil {
			return List{}, err
		}
		if fresh {
			return *c.cur, nil
		}
	}
	l, err := BuildList(ctx, c.reg, c.ca, c.next)
	if err != nil {
		return List{}, err
	}
	c.cur = &l
	return l, nil
}

// fresh reports whether the cached CRL still lists exactly the
// registry's revocations and is not yet halfway to its nextUpdate.
func (c *Cache) fresh(ctx context.Context) (bool, error) {
	now := c.ca.Options().Now
	t := time.Now()
	if now != nil {
		t = now()
	}
	half := c.cur.ThisUpdate.Add(c.cur.NextUpdate.Sub(c.cur.ThisUpdate) / 2)
	if !t.Before(half) {
		return false, nil
	}
	issuerFP := fakeca.Fingerprint(c.ca.Cert.Raw)
	revs, err := c.reg.Revocations(ctx, issuerFP)
	if err != nil {
		return false, fmt.Errorf("crl: %w", err)
	}
	return digest(issuerFP, revs) == c.cur.Digest, nil
}
