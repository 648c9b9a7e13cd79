package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Project is a namespace of devices, like a Golioth project.
type Project struct {
	ID      string
	Created time.Time
}

// CreateProject creates a project. It fails with ErrExists if the id is
// taken.
func (r *Registry) CreateProject(ctx context.Context, id string) (Project, error) {
	if err := ValidID(id); err != nil {
		return Project{}, fmt.Errorf("create project: %w", err)
	}
	var p Project
	err := r.write(ctx, func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM projects WHERE id = ?`, id); err != nil {
			return err
		} else if ok {
			return ErrExists
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO projects (id, created) VALUES (?, ?)`, id, r.stamp()); err != nil {
			return err
		}
		var err error
		p, err = scanProject(tx.QueryRowContext(ctx, `SELECT id, created FROM projects WHERE id = ?`, id))
		return err
	})
	if err != nil {
		return Project{}, fmt.Errorf("create project %s: %w", id, err)
	}
	r.log.Debug("project created", "project", id)
	return p, nil
}

// Project returns the project with the given id.
func (r *Registry) Project(ctx context.Context, id string) (Project, error) {
	if err := ValidID(id); err != nil {
		return Project{}, fmt.Errorf("project: %w", err)
	}
	if err := r.check(); err != nil {
		return Project{}, err
	}
	p, err := scanProject(r.rd.QueryRowContext(ctx, `SELECT id, created FROM projects WHERE id = ?`, id))
	if err != nil {
		return Project{}, fmt.Errorf("project %s: %w", id, notFound(err))
	}
	return p, nil
}

// Projects returns all projects, ordered by id.
func (r *Registry) Projects(ctx context.Context) ([]Project, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	ps, err := queryAll(ctx, r.rd, scanProject, `SELECT id, created FROM projects ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("projects: %w", err)
	}
	return ps, nil
}

func scanProject(s rowScanner) (Project, error) {
	var p Project
	err := s.Scan(&p.ID, timeScan{&p.Created})
	return p, err
}

// TrustedRoot is a CA certificate a project trusts: devices presenting a
// certificate chaining to it are auto-provisioned on first connect.
type TrustedRoot struct {
	Project     string
	Fingerprint string // hex SHA-256 of DER
	Subject     string
	NotAfter    time.Time
	DER         []byte
	Added       time.Time
}

// TrustRoot adds a CA certificate (DER; a PEM "CERTIFICATE" block is also
// accepted) to the project's trusted roots. The certificate must be a CA
// (basic constraints) or self-signed. Trusting the same certificate again
// returns the stored root. Certificates of the project stored without an
// issuer fingerprint that this root signed get it now (see
// SetIssuerFingerprint).
func (r *Registry) TrustRoot(ctx context.Context, project string, der []byte) (TrustedRoot, error) {
	if err := ValidID(project); err != nil {
		return TrustedRoot{}, fmt.Errorf("trust root: %w", err)
	}
	cert, err := parseCert(der)
	if err != nil {
		return TrustedRoot{}, fmt.Errorf("trust root for %s: %w", project, err)
	}
	selfSigned := bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
	if !(cert.BasicConstraintsValid && cert.IsCA) && !selfSigned {
		return TrustedRoot{}, fmt.Errorf("trust root for %s: %w: %q is neither a CA nor self-signed", project, ErrInvalid, cert.Subject.String())
	}
	fp := Fingerprint(cert.Raw)
	var root TrustedRoot
	err = r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, project); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO trusted_roots (project, fingerprint, subject, not_after, der, added)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project, fingerprint) DO NOTHING`,
			project, fp, cert.Subject.String(), dbTime(cert.NotAfter), cert.Raw, r.stamp()); err != nil {
			return err
		}
		if err := r.backfillIssuer(ctx, tx, project, cert, fp); err != nil {
			return err
		}
		var err error
		root, err = scanRoot(tx.QueryRowContext(ctx, `SELECT `+rootColumns+` FROM trusted_roots WHERE project = ? AND fingerprint = ?`, project, fp))
		return err
	})
	if err != nil {
		return TrustedRoot{}, fmt.Errorf("trust root %.8s for %s: %w", fp, project, err)
	}
	r.log.Debug("root trusted", "project", project, "root", fp[:8], "subject", root.Subject)
	return root, nil
}

// TrustedRoots returns the project's trusted roots, oldest first. A
// project that does not exist has none.
func (r *Registry) TrustedRoots(ctx context.Context, project string) ([]TrustedRoot, error) {
	if err := ValidID(project); err != nil {
		return nil, fmt.Errorf("trusted roots: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	roots, err := queryAll(ctx, r.rd, scanRoot, `SELECT `+rootColumns+` FROM trusted_roots WHERE project = ? ORDER BY added, fingerprint`, project)
	if err != nil {
		return nil, fmt.Errorf("trusted roots of %s: %w", project, err)
	}
	return roots, nil
}

// UntrustRoot removes a trusted root from the project. Certificates it
// signed stay registered.
func (r *Registry) UntrustRoot(ctx context.Context, project, fingerprint string) error {
	if err := ValidID(project); err != nil {
		return fmt.Errorf("untrust root: %w", err)
	}
	fp, err := NormalizeFingerprint(fingerprint)
	if err != nil {
		return fmt.Errorf("untrust root: %w", err)
	}
	err = r.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM trusted_roots WHERE project = ? AND fingerprint = ?`, project, fp))
	})
	if err != nil {
		return fmt.Errorf("untrust root %.8s for %s: %w", fp, project, err)
	}
	r.log.Debug("root untrusted", "project", project, "root", fp[:8])
	return nil
}

const rootColumns = `project, fingerprint, subject, not_after, der, added`

func scanRoot(s rowScanner) (TrustedRoot, error) {
	var t TrustedRoot
	err := s.Scan(&t.Project, &t.Fingerprint, &t.Subject, timeScan{&t.NotAfter}, &t.DER, timeScan{&t.Added})
	return t, err
}

// parseCert parses one DER certificate, or the first CERTIFICATE block of
// PEM input.
func parseCert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty certificate", ErrInvalid)
	}
	if bytes.HasPrefix(bytes.TrimSpace(der), []byte("-----BEGIN")) {
		rest := der
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				return nil, fmt.Errorf("%w: no CERTIFICATE block in PEM", ErrInvalid)
			}
			if b.Type == "CERTIFICATE" {
				der = b.Bytes
				break
			}
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: parse certificate: %v", ErrInvalid, err)
	}
	return cert, nil
}

// projectExists returns ErrNotFound (wrapped) if the project does not
// exist.
func projectExists(ctx context.Context, q querier, project string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM projects WHERE id = ?`, project)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("project %s: %w", project, ErrNotFound)
	}
	return nil
}

// querier is *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func queryAll[T any](ctx context.Context, q querier, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ofProject runs query, a SELECT without WHERE or ORDER BY on a table
// with a project column, for the rows of project ("" for all projects)
// sorted by order; what names the list in errors.
func ofProject[T any](ctx context.Context, r *Registry, what string, scan func(rowScanner) (T, error), query, order, project string) ([]T, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var args []any
	if project != "" {
		if err := ValidID(project); err != nil {
			return nil, fmt.Errorf("%s: project: %w", what, err)
		}
		query += ` WHERE project = ?`
		args = append(args, project)
	}
	out, err := queryAll(ctx, r.rd, scan, query+` ORDER BY `+order, args...)
	if err != nil {
		return nil, fmt.Errorf("%s of %q: %w", what, project, err)
	}
	return out, nil
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// mustAffect turns an Exec that changed no row into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
