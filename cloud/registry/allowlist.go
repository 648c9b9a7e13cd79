package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AllowEntry is an entry of the allowlist for run-time CSR provisioning:
// a device UDID and the public key its CSR must carry (TI CC3220 style).
type AllowEntry struct {
	UDID                 string
	Project              string
	PublicKeyDER         []byte // PKIX SubjectPublicKeyInfo DER
	PublicKeyFingerprint string // hex SHA-256 of PublicKeyDER
	Provisioned          bool   // a certificate has been issued for it
	Added                time.Time
}

const allowColumns = `udid, project, pubkey, pubkey_fp, provisioned, added`

func scanAllow(s rowScanner) (AllowEntry, error) {
	var a AllowEntry
	err := s.Scan(&a.UDID, &a.Project, &a.PublicKeyDER, &a.PublicKeyFingerprint, &a.Provisioned, timeScan{&a.Added})
	return a, err
}

// Allow puts a UDID (a valid id; unique across the registry) with its
// public key (PKIX SubjectPublicKeyInfo DER) on the project's allowlist.
// Allowing the same UDID with the same key in the same project again
// returns the stored entry; a different key or project for a listed UDID
// fails with ErrExists. The project must exist.
func (r *Registry) Allow(ctx context.Context, project, udid string, publicKeyDER []byte) (AllowEntry, error) {
	if err := ValidID(project); err != nil {
		return AllowEntry{}, fmt.Errorf("allow: project: %w", err)
	}
	if err := ValidID(udid); err != nil {
		return AllowEntry{}, fmt.Errorf("allow: udid: %w", err)
	}
	if _, err := x509.ParsePKIXPublicKey(publicKeyDER); err != nil {
		return AllowEntry{}, fmt.Errorf("allow %s: %w: public key: %v", udid, ErrInvalid, err)
	}
	der := bytes.Clone(publicKeyDER)
	fp := Fingerprint(der)
	var e AllowEntry
	err := r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, project); err != nil {
			return err
		}
		old, err := scanAllow(tx.QueryRowContext(ctx, `SELECT `+allowColumns+` FROM allowlist WHERE udid = ?`, udid))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case old.Project != project:
			return fmt.Errorf("%w: listed in project %s", ErrExists, old.Project)
		case old.PublicKeyFingerprint != fp:
			return fmt.Errorf("%w: listed with another public key (fp=%.8s)", ErrExists, old.PublicKeyFingerprint)
		default:
			e = old
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO allowlist (`+allowColumns+`) VALUES (?, ?, ?, ?, 0, ?)`,
			udid, project, der, fp, r.stamp()); err != nil {
			return err
		}
		e, err = scanAllow(tx.QueryRowContext(ctx, `SELECT `+allowColumns+` FROM allowlist WHERE udid = ?`, udid))
		return err
	})
	if err != nil {
		return AllowEntry{}, fmt.Errorf("allow %s in %s: %w", udid, project, err)
	}
	r.log.Debug("udid allowed", "project", project, "udid", udid, "key", fp[:8])
	return e, nil
}

// AllowEntry returns the allowlist entry of a UDID.
func (r *Registry) AllowEntry(ctx context.Context, udid string) (AllowEntry, error) {
	if err := ValidID(udid); err != nil {
		return AllowEntry{}, fmt.Errorf("allow entry: udid: %w", err)
	}
	if err := r.check(); err != nil {
		return AllowEntry{}, err
	}
	e, err := scanAllow(r.rd.QueryRowContext(ctx, `SELECT `+allowColumns+` FROM allowlist WHERE udid = ?`, udid))
	if err != nil {
		return AllowEntry{}, fmt.Errorf("allow entry %s: %w", udid, notFound(err))
	}
	return e, nil
}

// Allowlist returns the allowlist of a project ("" for all projects),
// ordered by project and UDID.
func (r *Registry) Allowlist(ctx context.Context, project string) ([]AllowEntry, error) {
	return ofProject(ctx, r, "allowlist", scanAllow, `SELECT `+allowColumns+` FROM allowlist`, `project, udid`, project)
}

// MarkProvisioned records that a certificate was issued for the UDID.
func (r *Registry) MarkProvisioned(ctx context.Context, udid string) error {
	if err := ValidID(udid); err != nil {
		return fmt.Errorf("mark provisioned: udid: %w", err)
	}
	err := r.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE allowlist SET provisioned = 1 WHERE udid = ?`, udid))
	})
	if err != nil {
		return fmt.Errorf("mark %s provisioned: %w", udid, err)
	}
	r.log.Debug("udid provisioned", "udid", udid)
	return nil
}
