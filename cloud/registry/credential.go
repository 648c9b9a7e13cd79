package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// CredKind is the kind of a credential.
type CredKind string

// Credential kinds.
const (
	KindPSK  CredKind = "psk"
	KindCert CredKind = "cert"
)

// CredState is the lifecycle state of a credential.
type CredState string

// Credential states. REVOKED is final: a revoked credential cannot change
// state again.
const (
	StateActive            CredState = "ACTIVE"
	StatePendingActivation CredState = "PENDING_ACTIVATION"
	StateInactive          CredState = "INACTIVE"
	StateRevoked           CredState = "REVOKED"
)

// Valid reports whether s is one of the four states.
func (s CredState) Valid() bool {
	switch s {
	case StateActive, StatePendingActivation, StateInactive, StateRevoked:
		return true
	}
	return false
}

// MaxPSKLen is the longest pre-shared key accepted.
const MaxPSKLen = 64

// Credential is a PSK or a certificate of a device.
//
// A Credential formats (fmt, any verb), logs (slog) and JSON-encodes
// without its key: it shows "psk:<identity> fp=<first 8 hex of
// SHA-256(key)>" or "cert:<serial> fp=<first 8 hex of the fingerprint>".
type Credential struct {
	ID      int64
	Project string
	Device  string
	Kind    CredKind
	State   CredState

	PSKIdentity string // psk only: "<name>@<project>"
	PSK         []byte `json:"-"` // psk only: the secret key

	Serial            string // cert: lowercase hex, no leading zeros
	Fingerprint       string // cert: hex SHA-256 of DER; psk: hex SHA-256 of the key
	IssuerFingerprint string // cert: hex SHA-256 of the issuing CA's DER, "" if unknown
	Issuer            string // cert
	Subject           string // cert
	NotBefore         time.Time
	NotAfter          time.Time
	DER               []byte // cert

	Created time.Time
}

// String shows the credential without its secret.
func (c Credential) String() string {
	fp := c.Fingerprint
	if len(fp) > 8 {
		fp = fp[:8]
	}
	if c.Kind == KindPSK {
		return "psk:" + c.PSKIdentity + " fp=" + fp
	}
	return string(c.Kind) + ":" + c.Serial + " fp=" + fp
}

// GoString is String for %#v.
func (c Credential) GoString() string {
	return "registry.Credential{" + strconv.Quote(c.String()) + "}"
}

// Format implements fmt.Formatter so that no verb (%v, %+v, %d, %x...)
// prints the key.
func (c Credential) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, c.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(c.String()))
	default:
		_, _ = io.WriteString(f, c.String())
	}
}

// LogValue implements slog.LogValuer, without the key.
func (c Credential) LogValue() slog.Value {
	fp := c.Fingerprint
	if len(fp) > 8 {
		fp = fp[:8]
	}
	attrs := []slog.Attr{
		slog.Int64("id", c.ID),
		slog.String("project", c.Project),
		slog.String("device", c.Device),
		slog.String("kind", string(c.Kind)),
		slog.String("state", string(c.State)),
	}
	if c.Kind == KindPSK {
		attrs = append(attrs, slog.String("identity", c.PSKIdentity))
	} else {
		attrs = append(attrs, slog.String("serial", c.Serial), slog.String("subject", c.Subject))
	}
	return slog.GroupValue(append(attrs, slog.String("fp", fp))...)
}

const credColumns = `c.id, c.project, COALESCE(c.device, ''), c.kind, c.state, COALESCE(c.psk_identity, ''), c.psk, c.serial,
	c.fingerprint, c.issuer_fp, c.issuer, c.subject, c.not_before, c.not_after, c.der, c.created`

func scanCred(s rowScanner) (Credential, error) {
	var c Credential
	err := s.Scan(credDest(&c)...)
	return c, err
}

func credDest(c *Credential) []any {
	return []any{&c.ID, &c.Project, &c.Device, &c.Kind, &c.State, &c.PSKIdentity, &c.PSK, &c.Serial,
		&c.Fingerprint, &c.IssuerFingerprint, &c.Issuer, &c.Subject, timeScan{&c.NotBefore}, timeScan{&c.NotAfter}, &c.DER, timeScan{&c.Created}}
}

// deviceExists returns ErrNotFound (wrapped) if the device does not exist.
func deviceExists(ctx context.Context, q querier, project, device string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM devices WHERE project = ? AND id = ?`, project, device)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("device %s/%s: %w", project, device, ErrNotFound)
	}
	return nil
}

// AddPSK adds an ACTIVE pre-shared key to a device. The identity must be
// "<name>@<project>" (see ParsePSKIdentity) for the device's project and
// is unique across the registry (ErrExists). A device holds at most
// MaxPSKsPerDevice PSKs that are not REVOKED (ErrTooManyPSKs). The key is
// 1..MaxPSKLen bytes.
func (r *Registry) AddPSK(ctx context.Context, project, device, identity string, key []byte) (Credential, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return Credential{}, fmt.Errorf("add psk: %w", err)
	}
	_, idProject, err := ParsePSKIdentity(identity)
	if err != nil {
		return Credential{}, fmt.Errorf("add psk to %s/%s: %w", project, device, err)
	}
	if idProject != project {
		return Credential{}, fmt.Errorf("add psk to %s/%s: %w: identity %q is not in project %s", project, device, ErrInvalid, identity, project)
	}
	if len(key) == 0 || len(key) > MaxPSKLen {
		return Credential{}, fmt.Errorf("add psk %s: %w: key is %d bytes, want 1..%d", identity, ErrInvalid, len(key), MaxPSKLen)
	}
	key = bytes.Clone(key)
	var c Credential
	err = r.write(ctx, func(tx *sql.Tx) error {
		if err := deviceExists(ctx, tx, project, device); err != nil {
			return err
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE kind = 'psk' AND psk_identity = ?`, identity); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("identity %s: %w", identity, ErrExists)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM credentials WHERE project = ? AND device = ? AND kind = 'psk' AND state != 'REVOKED'`,
			project, device).Scan(&n); err != nil {
			return err
		}
		if n >= MaxPSKsPerDevice {
			return fmt.Errorf("%w: device has %d", ErrTooManyPSKs, n)
		}
		var err error
		c, err = insertCred(ctx, tx, `INSERT INTO credentials (project, device, kind, state, psk_identity, psk, fingerprint, created)
			VALUES (?, ?, 'psk', 'ACTIVE', ?, ?, ?, ?)`, project, device, identity, key, Fingerprint(key), r.stamp())
		return err
	})
	if err != nil {
		return Credential{}, fmt.Errorf("add psk %s to %s/%s: %w", identity, project, device, err)
	}
	r.log.Debug("psk added", "credential", c)
	return c, nil
}

// PSKByIdentity returns the PSK credential with the identity, in any state,
// and its device, in one indexed query (the DTLS handshake's hot path).
func (r *Registry) PSKByIdentity(ctx context.Context, identity string) (Credential, Device, error) {
	if err := r.check(); err != nil {
		return Credential{}, Device{}, err
	}
	var (
		c Credential
		d Device
	)
	dest := append(credDest(&c), &d.Disabled, &d.AutoProvisioned, timeScan{&d.Created}, timeScan{&d.LastSeen})
	if err := r.stPSK.QueryRowContext(ctx, identity).Scan(dest...); err != nil {
		return Credential{}, Device{}, fmt.Errorf("psk identity %q: %w", clip(identity), notFound(err))
	}
	d.Project, d.ID = c.Project, c.Device
	return c, d, nil
}

// AddCertificate registers a device certificate (DER; a PEM CERTIFICATE
// block is also accepted) in the given state, filling serial,
// fingerprint, issuer, subject and validity from it. The fingerprint is
// unique across the registry (ErrExists); the device must exist.
//
// With device "" the certificate is stored unattached (Device ""): it
// belongs to the project, which must exist, and no device yet; fleet
// provisioning creates such certificates before RegisterThing, and
// AttachCertificate gives them a device.
//
// The issuer fingerprint, which Revoke matches on, is filled in when one
// of the project's trusted roots signed the certificate; otherwise set it
// with SetIssuerFingerprint (e.g. to the intermediate of the chain the
// device presented). If that issuer has already revoked the serial, the
// certificate is stored as REVOKED.
func (r *Registry) AddCertificate(ctx context.Context, project, device string, der []byte, state CredState) (Credential, error) {
	if device == "" {
		if err := ValidID(project); err != nil {
			return Credential{}, fmt.Errorf("add certificate: project: %w", err)
		}
	} else if err := validDeviceIDs(project, device); err != nil {
		return Credential{}, fmt.Errorf("add certificate: %w", err)
	}
	if !state.Valid() {
		return Credential{}, fmt.Errorf("add certificate to %s/%s: %w: state %q", project, device, ErrInvalid, clip(string(state)))
	}
	cert, err := parseCert(der)
	if err != nil {
		return Credential{}, fmt.Errorf("add certificate to %s/%s: %w", project, device, err)
	}
	fp := Fingerprint(cert.Raw)
	serial := fmt.Sprintf("%x", cert.SerialNumber)
	// The issuer is looked for (a signature check per candidate) before
	// the write transaction, which holds the registry's one writer: a root
	// trusted meanwhile fills it in later (backfillIssuer).
	if err := r.check(); err != nil {
		return Credential{}, err
	}
	issuerFP, err := issuerFromRoots(ctx, r.rd, project, cert)
	if err != nil {
		return Credential{}, fmt.Errorf("add certificate %.8s to %s/%s: %w", fp, project, device, err)
	}
	var c Credential
	err = r.write(ctx, func(tx *sql.Tx) error {
		if device == "" {
			if err := projectExists(ctx, tx, project); err != nil {
				return err
			}
		} else if err := deviceExists(ctx, tx, project, device); err != nil {
			return err
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM credentials WHERE kind = 'cert' AND fingerprint = ?`, fp); err != nil {
			return err
		} else if ok {
			return ErrExists
		}
		if issuerFP != "" && state != StateRevoked {
			if revoked, err := exists(ctx, tx, `SELECT 1 FROM revocations WHERE issuer_fp = ? AND serial = ?`, issuerFP, serial); err != nil {
				return err
			} else if revoked {
				state = StateRevoked
			}
		}
		c, err = insertCred(ctx, tx, `INSERT INTO credentials
			(project, device, kind, state, serial, fingerprint, issuer_fp, issuer, subject, not_before, not_after, der, created)
			VALUES (?, ?, 'cert', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			project, nullable(device), string(state), serial, fp, issuerFP, cert.Issuer.String(), cert.Subject.String(),
			dbTime(cert.NotBefore), dbTime(cert.NotAfter), cert.Raw, r.stamp())
		return err
	})
	if err != nil {
		return Credential{}, fmt.Errorf("add certificate %.8s to %s/%s: %w", fp, project, device, err)
	}
	r.log.Debug("certificate added", "credential", c)
	return c, nil
}

// insertCred runs insert, an INSERT of one credential, in tx and returns
// the credential stored.
func insertCred(ctx context.Context, tx *sql.Tx, insert string, args ...any) (Credential, error) {
	res, err := tx.ExecContext(ctx, insert, args...)
	if err != nil {
		return Credential{}, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return Credential{}, err
	}
	return scanCred(tx.QueryRowContext(ctx, `SELECT `+credColumns+` FROM credentials c WHERE c.id = ?`, id))
}

// issuerFromRoots returns the fingerprint of the project's trusted root
// or registered CA (see RegisterCA) that signed cert, or "".
func issuerFromRoots(ctx context.Context, q querier, project string, cert *x509.Certificate) (string, error) {
	type cand struct {
		fp  string
		der []byte
	}
	cands, err := queryAll(ctx, q, func(s rowScanner) (cand, error) {
		var c cand
		return c, s.Scan(&c.fp, &c.der)
	}, `SELECT fingerprint, der FROM trusted_roots WHERE project = ?
		UNION ALL SELECT id, der FROM ca_registrations WHERE project = ?`, project, project)
	if err != nil {
		return "", err
	}
	for _, c := range cands {
		rc, err := x509.ParseCertificate(c.der)
		if err != nil {
			continue
		}
		if signedBy(cert, rc) {
			return c.fp, nil
		}
	}
	return "", nil
}

// nullable stores "" as NULL (an unattached certificate's device).
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func signedBy(cert, parent *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, parent.RawSubject) &&
		parent.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// backfillIssuer sets issuerFP on the project's certificates without an
// issuer fingerprint that root signed, revoking those the issuer revoked.
func (r *Registry) backfillIssuer(ctx context.Context, tx *sql.Tx, project string, root *x509.Certificate, issuerFP string) error {
	type pending struct {
		id  int64
		der []byte
	}
	var todo []pending
	rows, err := tx.QueryContext(ctx, `SELECT id, der FROM credentials WHERE project = ? AND kind = 'cert' AND issuer_fp = ''`, project)
	if err != nil {
		return err
	}
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.der); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range todo {
		cert, err := x509.ParseCertificate(p.der)
		if err != nil || !signedBy(cert, root) {
			continue
		}
		if err := setIssuer(ctx, tx, p.id, issuerFP); err != nil {
			return err
		}
	}
	return nil
}

// setIssuer stores the issuer fingerprint of credential id and marks it
// REVOKED if the issuer has revoked its serial.
func setIssuer(ctx context.Context, tx *sql.Tx, id int64, issuerFP string) error {
	if err := mustAffect(tx.ExecContext(ctx, `UPDATE credentials SET issuer_fp = ? WHERE id = ? AND kind = 'cert'`, issuerFP, id)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE credentials SET state = 'REVOKED'
		WHERE id = ? AND state != 'REVOKED' AND EXISTS (SELECT 1 FROM revocations v WHERE v.issuer_fp = ? AND v.serial = credentials.serial)`,
		id, issuerFP)
	return err
}

// SetIssuerFingerprint records which CA issued certificate credential id
// (the hex SHA-256 of the CA certificate's DER), so that Revoke by that
// issuer finds it. If the issuer has already revoked its serial, the
// credential becomes REVOKED. ErrNotFound if id is not a certificate.
func (r *Registry) SetIssuerFingerprint(ctx context.Context, id int64, issuerFP string) error {
	fp, err := NormalizeFingerprint(issuerFP)
	if err != nil {
		return fmt.Errorf("set issuer of credential %d: %w", id, err)
	}
	err = r.write(ctx, func(tx *sql.Tx) error { return setIssuer(ctx, tx, id, fp) })
	if err != nil {
		return fmt.Errorf("set issuer of credential %d: %w", id, err)
	}
	return nil
}

// CertificateByFingerprint returns the certificate credential with the
// fingerprint (hex SHA-256 of its DER), in any state.
func (r *Registry) CertificateByFingerprint(ctx context.Context, fp string) (Credential, error) {
	nfp, err := NormalizeFingerprint(fp)
	if err != nil {
		return Credential{}, fmt.Errorf("certificate by fingerprint: %w", err)
	}
	if err := r.check(); err != nil {
		return Credential{}, err
	}
	c, err := scanCred(r.stCertFP.QueryRowContext(ctx, nfp))
	if err != nil {
		return Credential{}, fmt.Errorf("certificate %.8s: %w", nfp, notFound(err))
	}
	return c, nil
}

// AttachCertificate attaches the certificate with the fingerprint, stored
// unattached (see AddCertificate), to a device of its project, which must
// exist. Attaching it to the device it is attached to already is a no-op;
// a certificate attached to another device fails with ErrExists, one of
// another project with ErrInvalid, an unknown one with ErrNotFound.
func (r *Registry) AttachCertificate(ctx context.Context, fingerprint, project, device string) error {
	fp, err := NormalizeFingerprint(fingerprint)
	if err != nil {
		return fmt.Errorf("attach certificate: %w", err)
	}
	if err := validDeviceIDs(project, device); err != nil {
		return fmt.Errorf("attach certificate %.8s: %w", fp, err)
	}
	attached := false
	err = r.write(ctx, func(tx *sql.Tx) error {
		var (
			id           int64
			owner, attTo string
		)
		if err := tx.QueryRowContext(ctx, `SELECT id, project, COALESCE(device, '') FROM credentials WHERE kind = 'cert' AND fingerprint = ?`, fp).
			Scan(&id, &owner, &attTo); err != nil {
			return fmt.Errorf("certificate: %w", notFound(err))
		}
		switch {
		case owner != project:
			return fmt.Errorf("%w: certificate belongs to project %s", ErrInvalid, owner)
		case attTo == device:
			return nil
		case attTo != "":
			return fmt.Errorf("%w: certificate is attached to %s", ErrExists, attTo)
		}
		if err := deviceExists(ctx, tx, project, device); err != nil {
			return err
		}
		attached = true
		return mustAffect(tx.ExecContext(ctx, `UPDATE credentials SET device = ? WHERE id = ? AND device IS NULL`, device, id))
	})
	if err != nil {
		return fmt.Errorf("attach certificate %.8s to %s/%s: %w", fp, project, device, err)
	}
	if attached {
		r.log.Debug("certificate attached", "certificate", fp[:8], "project", project, "device", device)
	}
	return nil
}

// Credentials returns credentials ordered by id: those of one device, of
// a whole project (device ""; unattached certificates included), or of
// all projects (both "").
func (r *Registry) Credentials(ctx context.Context, project, device string) ([]Credential, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	q := `SELECT ` + credColumns + ` FROM credentials c`
	var args []any
	switch {
	case project == "" && device != "":
		return nil, fmt.Errorf("credentials: %w: device %q without a project", ErrInvalid, clip(device))
	case project == "":
	case device == "":
		if err := ValidID(project); err != nil {
			return nil, fmt.Errorf("credentials: project: %w", err)
		}
		q += ` WHERE c.project = ?`
		args = append(args, project)
	default:
		if err := validDeviceIDs(project, device); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		q += ` WHERE c.project = ? AND c.device = ?`
		args = append(args, project, device)
	}
	cs, err := queryAll(ctx, r.rd, scanCred, q+` ORDER BY c.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("credentials of %s/%s: %w", project, device, err)
	}
	return cs, nil
}

// Credential returns the credential with the id.
func (r *Registry) Credential(ctx context.Context, id int64) (Credential, error) {
	if err := r.check(); err != nil {
		return Credential{}, err
	}
	c, err := scanCred(r.stCred.QueryRowContext(ctx, id))
	if err != nil {
		return Credential{}, fmt.Errorf("credential %d: %w", id, notFound(err))
	}
	return c, nil
}

// SetCredentialState changes a credential's state. REVOKED is final:
// changing a revoked credential to another state fails with ErrInvalid
// (setting REVOKED again is a no-op). The events evs are recorded in the
// same transaction (see Record).
func (r *Registry) SetCredentialState(ctx context.Context, id int64, s CredState, evs ...Event) error {
	if !s.Valid() {
		return fmt.Errorf("set state of credential %d: %w: state %q", id, ErrInvalid, clip(string(s)))
	}
	var old CredState
	err := r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT state FROM credentials WHERE id = ?`, id).Scan(&old); err != nil {
			return notFound(err)
		}
		if old == StateRevoked && s != StateRevoked {
			return fmt.Errorf("%w: credential is REVOKED", ErrInvalid)
		}
		_, err := tx.ExecContext(ctx, `UPDATE credentials SET state = ? WHERE id = ?`, string(s), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("set state of credential %d to %s: %w", id, s, err)
	}
	r.log.Debug("credential state", "id", id, "from", old, "to", s)
	return nil
}

// DeleteCredential deletes a credential.
func (r *Registry) DeleteCredential(ctx context.Context, id int64) error {
	err := r.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM credentials WHERE id = ?`, id))
	})
	if err != nil {
		return fmt.Errorf("delete credential %d: %w", id, err)
	}
	r.log.Debug("credential deleted", "id", id)
	return nil
}

// ExpiringCertificates returns the ACTIVE and PENDING_ACTIVATION
// certificates whose NotAfter is at or before now+within, soonest first.
// Certificates already expired are included.
func (r *Registry) ExpiringCertificates(ctx context.Context, within time.Duration, now time.Time) ([]Credential, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	cs, err := queryAll(ctx, r.rd, scanCred, `SELECT `+credColumns+` FROM credentials c
		WHERE c.kind = 'cert' AND c.not_after <= ? AND c.state IN ('ACTIVE', 'PENDING_ACTIVATION')
		ORDER BY c.not_after, c.id`, now.Add(within).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("expiring certificates: %w", err)
	}
	return cs, nil
}
