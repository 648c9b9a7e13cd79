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

// CAMode says what happens to certificates signed by a registered CA
// (AWS RegisterCACertificate with or without auto-registration).
type CAMode string

// CA registration modes.
const (
	// CAModeNone: registered, no auto-registration; only certificates
	// already registered connect.
	CAModeNone CAMode = "none"
	// CAModeJITP: an unknown certificate is registered PENDING_ACTIVATION,
	// a registration event is published, the connection closed, and the
	// template applied (the certificate becomes ACTIVE).
	CAModeJITP CAMode = "jitp"
	// CAModeJITR: as JITP, but the certificate stays PENDING_ACTIVATION
	// until activated.
	CAModeJITR CAMode = "jitr"
	// CAModeClaim: certificates under this CA are fleet-provisioning claim
	// (bootstrap) certificates.
	CAModeClaim CAMode = "claim"
)

// Valid reports whether m is one of the four modes.
func (m CAMode) Valid() bool {
	switch m {
	case CAModeNone, CAModeJITP, CAModeJITR, CAModeClaim:
		return true
	}
	return false
}

// ParseCAMode returns the mode named s ("none", "jitp", "jitr",
// "claim"); the error wraps ErrInvalid.
func ParseCAMode(s string) (CAMode, error) {
	if m := CAMode(s); m.Valid() {
		return m, nil
	}
	return "", fmt.Errorf("%w: CA mode %q, want none, jitp, jitr or claim", ErrInvalid, clip(s))
}

// CARegistration is a CA certificate registered with a project (AWS
// RegisterCACertificate). A certificate presented over MQTT must chain to
// an Active registered CA (or be one the cloud issued and registered).
type CARegistration struct {
	ID           string // caCertificateId: hex SHA-256 of DER
	Project      string
	Subject      string
	DER          []byte
	Mode         CAMode
	TemplateName string // claim: the provisioning template claim certificates may use; jitp: optional template
	Active       bool
	Created      time.Time
}

const caRegColumns = `id, project, subject, der, mode, template, active, created`

func scanCAReg(s rowScanner) (CARegistration, error) {
	var c CARegistration
	err := s.Scan(&c.ID, &c.Project, &c.Subject, &c.DER, &c.Mode, &c.TemplateName, &c.Active, timeScan{&c.Created})
	return c, err
}

// isCA reports whether cert may be registered as a CA or trusted root: a
// CA by its basic constraints, or self-signed.
func isCA(cert *x509.Certificate) bool {
	selfSigned := bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
	return cert.BasicConstraintsValid && cert.IsCA || selfSigned
}

// RegisterCA registers a CA certificate (DER, or the first CERTIFICATE
// block of PEM) with a project, Active, in the given mode; template is
// the name of a provisioning template ("" for none; it need not exist
// yet). The certificate must be a CA or self-signed. Registering the
// same certificate again updates its mode and template (Active is kept);
// registering it with another project fails with ErrExists.
// Certificates of the project stored without an issuer fingerprint that
// this CA signed get it now (see SetIssuerFingerprint).
func (r *Registry) RegisterCA(ctx context.Context, project string, der []byte, mode CAMode, template string) (CARegistration, error) {
	if err := ValidID(project); err != nil {
		return CARegistration{}, fmt.Errorf("register CA: project: %w", err)
	}
	if !mode.Valid() {
		return CARegistration{}, fmt.Errorf("register CA for %s: %w: mode %q, want none, jitp, jitr or claim", project, ErrInvalid, clip(string(mode)))
	}
	if template != "" {
		if err := ValidTemplateName(template); err != nil {
			return CARegistration{}, fmt.Errorf("register CA for %s: template: %w", project, err)
		}
	}
	cert, err := parseCert(der)
	if err != nil {
		return CARegistration{}, fmt.Errorf("register CA for %s: %w", project, err)
	}
	if !isCA(cert) {
		return CARegistration{}, fmt.Errorf("register CA for %s: %w: %q is neither a CA nor self-signed", project, ErrInvalid, cert.Subject.String())
	}
	id := Fingerprint(cert.Raw)
	var reg CARegistration
	err = r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, project); err != nil {
			return err
		}
		var owner string
		switch err := tx.QueryRowContext(ctx, `SELECT project FROM ca_registrations WHERE id = ?`, id).Scan(&owner); {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO ca_registrations (`+caRegColumns+`) VALUES (?, ?, ?, ?, ?, ?, 1, ?)`,
				id, project, cert.Subject.String(), cert.Raw, string(mode), template, r.stamp()); err != nil {
				return err
			}
		case err != nil:
			return err
		case owner != project:
			return fmt.Errorf("%w: registered with project %s", ErrExists, owner)
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE ca_registrations SET mode = ?, template = ? WHERE id = ?`, string(mode), template, id); err != nil {
				return err
			}
		}
		if err := r.backfillIssuer(ctx, tx, project, cert, id); err != nil {
			return err
		}
		var err error
		reg, err = scanCAReg(tx.QueryRowContext(ctx, `SELECT `+caRegColumns+` FROM ca_registrations WHERE id = ?`, id))
		return err
	})
	if err != nil {
		return CARegistration{}, fmt.Errorf("register CA %.8s for %s: %w", id, project, err)
	}
	r.log.Debug("CA registered", "project", project, "ca", id[:8], "subject", reg.Subject, "mode", mode, "template", template)
	return reg, nil
}

// CARegistrationByID returns the CA registration with the id (the hex
// SHA-256 of the CA certificate's DER; upper case and colons accepted).
func (r *Registry) CARegistrationByID(ctx context.Context, id string) (CARegistration, error) {
	nid, err := NormalizeFingerprint(id)
	if err != nil {
		return CARegistration{}, fmt.Errorf("CA registration: %w", err)
	}
	if err := r.check(); err != nil {
		return CARegistration{}, err
	}
	c, err := scanCAReg(r.rd.QueryRowContext(ctx, `SELECT `+caRegColumns+` FROM ca_registrations WHERE id = ?`, nid))
	if err != nil {
		return CARegistration{}, fmt.Errorf("CA registration %.8s: %w", nid, notFound(err))
	}
	return c, nil
}

// qAllCAs selects every CA registration; ofProject adds WHERE and ORDER BY.
const qAllCAs = `SELECT ` + caRegColumns + ` FROM ca_registrations`

// stmtQuerier runs a prepared statement where a querier is wanted; the
// query text is the statement's own.
type stmtQuerier struct{ st *sql.Stmt }

func (q stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}

func (q stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
}

// CARegistrations returns the CA registrations of a project ("" for all
// projects), ordered by project, then oldest first.
func (r *Registry) CARegistrations(ctx context.Context, project string) ([]CARegistration, error) {
	if project == "" {
		// Every MQTT handshake asks for all of them: a prepared statement.
		if err := r.check(); err != nil {
			return nil, err
		}
		out, err := queryAll(ctx, stmtQuerier{r.stAllCAs}, scanCAReg, "")
		if err != nil {
			return nil, fmt.Errorf("CA registrations: %w", err)
		}
		return out, nil
	}
	return ofProject(ctx, r, "CA registrations", scanCAReg, qAllCAs, `project, created, id`, project)
}

// SetCAActive activates or deactivates a CA registration (AWS
// UpdateCACertificate ACTIVE/INACTIVE). The events evs are recorded in the
// same transaction (see Record).
func (r *Registry) SetCAActive(ctx context.Context, id string, active bool, evs ...Event) error {
	nid, err := NormalizeFingerprint(id)
	if err != nil {
		return fmt.Errorf("set CA active: %w", err)
	}
	err = r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE ca_registrations SET active = ? WHERE id = ?`, boolInt(active), nid))
	})
	if err != nil {
		return fmt.Errorf("set CA %.8s active=%t: %w", nid, active, err)
	}
	r.log.Debug("CA active", "ca", nid[:8], "active", active)
	return nil
}
