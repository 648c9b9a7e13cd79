package registry

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Revocation is a revoked certificate serial of an issuer, as a CRL lists
// it. IssuerFingerprint is the hex SHA-256 of the issuing CA
// certificate's DER.
type Revocation struct {
	IssuerFingerprint string
	Serial            string // normalized, see NormalizeSerial
	Reason            int    // RFC 5280 CRLReason
	Time              time.Time
}

// Revoke records that the issuer revoked the serial (case-insensitive;
// see NormalizeSerial) and marks REVOKED every certificate credential
// with that serial whose issuer fingerprint is issuerFP. A certificate
// with no issuer fingerprint recorded is matched too when the registry
// holds the issuer's certificate (a trusted root, a registered CA or a
// registered certificate) and it verifiably signed it. Revoking again returns the
// first Revocation unchanged (and re-applies it to credentials). The
// events evs are recorded in the same transaction (see Record).
func (r *Registry) Revoke(ctx context.Context, issuerFP, serial string, reason int, evs ...Event) (Revocation, error) {
	ifp, err := NormalizeFingerprint(issuerFP)
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke: issuer: %w", err)
	}
	s, err := NormalizeSerial(serial)
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	if reason < 0 || reason > 10 {
		return Revocation{}, fmt.Errorf("revoke %s: %w: reason %d is not an RFC 5280 CRLReason", s, ErrInvalid, reason)
	}
	var (
		rev     Revocation
		revoked int64
	)
	err = r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (issuer_fp, serial, reason, time) VALUES (?, ?, ?, ?)
			ON CONFLICT (issuer_fp, serial) DO NOTHING`, ifp, s, reason, r.stamp()); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT issuer_fp, serial, reason, time FROM revocations WHERE issuer_fp = ? AND serial = ?`, ifp, s).
			Scan(&rev.IssuerFingerprint, &rev.Serial, &rev.Reason, timeScan{&rev.Time}); err != nil {
			return err
		}
		if err := r.matchUnknownIssuer(ctx, tx, ifp, s); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, qRevokeCredentials, s, ifp)
		if err != nil {
			return err
		}
		revoked, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s of issuer %.8s: %w", s, ifp, err)
	}
	r.log.Debug("revoked", "issuer", ifp[:8], "serial", s, "reason", reason, "credentials", revoked)
	return rev, nil
}

// matchUnknownIssuer sets the issuer fingerprint of certificates with the
// serial and no issuer recorded, when the issuer's certificate is in the
// registry and signed them.
func (r *Registry) matchUnknownIssuer(ctx context.Context, tx *sql.Tx, issuerFP, serial string) error {
	type cand struct {
		id  int64
		der []byte
	}
	cands, err := queryAll(ctx, tx, func(s rowScanner) (cand, error) {
		var c cand
		return c, s.Scan(&c.id, &c.der)
	}, `SELECT id, der FROM credentials WHERE kind = 'cert' AND serial = ? AND issuer_fp = ''`, serial)
	if err != nil || len(cands) == 0 {
		return err
	}
	var der []byte
	err = tx.QueryRowContext(ctx, `SELECT der FROM trusted_roots WHERE fingerprint = ?
		UNION ALL SELECT der FROM ca_registrations WHERE id = ?
		UNION ALL SELECT der FROM credentials WHERE kind = 'cert' AND fingerprint = ? LIMIT 1`, issuerFP, issuerFP, issuerFP).Scan(&der)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	issuer, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	for _, c := range cands {
		cert, err := x509.ParseCertificate(c.der)
		if err != nil || !signedBy(cert, issuer) {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE credentials SET issuer_fp = ? WHERE id = ?`, issuerFP, c.id); err != nil {
			return err
		}
	}
	return nil
}

// IsRevoked reports whether the issuer has revoked the serial.
func (r *Registry) IsRevoked(ctx context.Context, issuerFP, serial string) (bool, error) {
	ifp, err := NormalizeFingerprint(issuerFP)
	if err != nil {
		return false, fmt.Errorf("is revoked: issuer: %w", err)
	}
	s, err := NormalizeSerial(serial)
	if err != nil {
		return false, fmt.Errorf("is revoked: %w", err)
	}
	if err := r.check(); err != nil {
		return false, err
	}
	var one int
	err = r.stRevoked.QueryRowContext(ctx, ifp, s).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("is revoked %s of issuer %.8s: %w", s, ifp, err)
	}
	return true, nil
}

// RevokedInChain returns the index of the first certificate of chain
// (leaf first, each certificate followed by its issuer) that the
// certificate after it revoked, or -1 when none was revoked. The last
// certificate, the anchor, is not checked.
func (r *Registry) RevokedInChain(ctx context.Context, chain []*x509.Certificate) (int, error) {
	for i := 0; i+1 < len(chain); i++ {
		revoked, err := r.IsRevoked(ctx, Fingerprint(chain[i+1].Raw), fmt.Sprintf("%x", chain[i].SerialNumber))
		if err != nil {
			return -1, err
		}
		if revoked {
			return i, nil
		}
	}
	return -1, nil
}

// Revocations returns the issuer's revocations, oldest first: the
// contents of its next CRL.
func (r *Registry) Revocations(ctx context.Context, issuerFP string) ([]Revocation, error) {
	ifp, err := NormalizeFingerprint(issuerFP)
	if err != nil {
		return nil, fmt.Errorf("revocations: issuer: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	revs, err := queryAll(ctx, r.rd, func(s rowScanner) (Revocation, error) {
		var v Revocation
		return v, s.Scan(&v.IssuerFingerprint, &v.Serial, &v.Reason, timeScan{&v.Time})
	}, `SELECT issuer_fp, serial, reason, time FROM revocations WHERE issuer_fp = ? ORDER BY time, serial`, ifp)
	if err != nil {
		return nil, fmt.Errorf("revocations of issuer %.8s: %w", ifp, err)
	}
	return revs, nil
}

// NextCRLNumber returns the issuer's next CRL number: 1, 2, 3... It is
// persisted, so it keeps increasing across restarts and processes.
func (r *Registry) NextCRLNumber(ctx context.Context, issuerFP string) (int64, error) {
	ifp, err := NormalizeFingerprint(issuerFP)
	if err != nil {
		return 0, fmt.Errorf("next crl number: issuer: %w", err)
	}
	var n int64
	err = r.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO crl_numbers (issuer_fp, last) VALUES (?, 1)
			ON CONFLICT (issuer_fp) DO UPDATE SET last = last + 1 RETURNING last`, ifp).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("next crl number of issuer %.8s: %w", ifp, err)
	}
	return n, nil
}
