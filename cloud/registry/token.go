package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Ownership token errors (AWS certificateOwnershipToken).
var (
	ErrTokenExpired = errors.New("registry: ownership token expired")
	ErrTokenUsed    = errors.New("registry: ownership token already used")
)

// MaxTokenLen is the longest ownership token ConsumeOwnershipToken looks
// up; longer ones are unknown.
const MaxTokenLen = 512

// tokenHash is what the registry stores of a token: the hex SHA-256. Its
// first 8 hex digits are the token's fingerprint in errors and logs.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateOwnershipToken creates a single-use ownership token for the
// certificate with the fingerprint (ErrNotFound if the registry does not
// hold it), valid until expires (AWS: one hour). The token is 32 random
// bytes, base64url without padding. Only its SHA-256 is stored: the token
// is returned once and never appears in errors or logs.
func (r *Registry) CreateOwnershipToken(ctx context.Context, certFingerprint string, expires time.Time) (string, error) {
	fp, err := NormalizeFingerprint(certFingerprint)
	if err != nil {
		return "", fmt.Errorf("create ownership token: %w", err)
	}
	if expires.IsZero() {
		return "", fmt.Errorf("create ownership token for %.8s: %w: no expiry", fp, ErrInvalid)
	}
	var b [32]byte
	if _, err := io.ReadFull(r.rand, b[:]); err != nil {
		return "", fmt.Errorf("create ownership token for %.8s: %w", fp, err)
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	h := tokenHash(token)
	err = r.write(ctx, func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE kind = 'cert' AND fingerprint = ?`, fp); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("certificate: %w", ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ownership_tokens (hash, fingerprint, expires, created) VALUES (?, ?, ?, ?)`,
			h, fp, dbTime(expires), r.stamp())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create ownership token for %.8s: %w", fp, err)
	}
	r.log.Debug("ownership token created", "certificate", fp[:8], "token", h[:8], "expires", expires)
	return token, nil
}

// ConsumeOwnershipToken uses up a token and returns the fingerprint of
// its certificate. It is atomic: of two concurrent uses, one succeeds.
// Errors wrap ErrNotFound (unknown token), ErrTokenUsed or ErrTokenExpired
// (now is at or after its expiry); they show the token's fingerprint
// only.
func (r *Registry) ConsumeOwnershipToken(ctx context.Context, token string, now time.Time) (string, error) {
	h := tokenHash(token)
	if token == "" || len(token) > MaxTokenLen {
		return "", fmt.Errorf("consume ownership token %.8s: %w", h, ErrNotFound)
	}
	var fp string
	err := r.write(ctx, func(tx *sql.Tx) error {
		var (
			expires, used time.Time
		)
		err := tx.QueryRowContext(ctx, `SELECT fingerprint, expires, used FROM ownership_tokens WHERE hash = ?`, h).
			Scan(&fp, timeScan{&expires}, timeScan{&used})
		switch {
		case err != nil:
			return notFound(err)
		case !used.IsZero():
			return ErrTokenUsed
		case !now.Before(expires):
			return ErrTokenExpired
		}
		return mustAffect(tx.ExecContext(ctx, `UPDATE ownership_tokens SET used = ? WHERE hash = ? AND used IS NULL`, dbTime(now), h))
	})
	if err != nil {
		return "", fmt.Errorf("consume ownership token %.8s: %w", h, err)
	}
	r.log.Debug("ownership token used", "certificate", fp[:8], "token", h[:8])
	return fp, nil
}

// PurgeExpiredTokens deletes the tokens that expired at or before now,
// with the certificates they were made for that are still unattached and
// PENDING_ACTIVATION (AWS deletes those), unless another token for the
// certificate is still valid. It returns how many tokens it deleted.
func (r *Registry) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	var (
		n     int64
		certs int64
	)
	t := now.UnixMicro()
	err := r.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM credentials
			WHERE kind = 'cert' AND device IS NULL AND state = 'PENDING_ACTIVATION'
			AND fingerprint IN (SELECT fingerprint FROM ownership_tokens WHERE expires <= ?)
			AND fingerprint NOT IN (SELECT fingerprint FROM ownership_tokens WHERE expires > ?)`, t, t)
		if err != nil {
			return err
		}
		if certs, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `DELETE FROM ownership_tokens WHERE expires <= ?`, t)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge expired tokens: %w", err)
	}
	if n > 0 {
		r.log.Debug("expired ownership tokens purged", "tokens", n, "certificates", certs)
	}
	return int(n), nil
}
