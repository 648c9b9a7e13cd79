package registry

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] moves the schema from version i to version i+1.
var migrations = []string{
	// 0 -> 1
	`
CREATE TABLE projects (
	id      TEXT PRIMARY KEY,
	created INTEGER
) STRICT;

CREATE TABLE trusted_roots (
	project     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	fingerprint TEXT NOT NULL,
	subject     TEXT NOT NULL,
	not_after   INTEGER,
	der         BLOB NOT NULL,
	added       INTEGER,
	PRIMARY KEY (project, fingerprint)
) STRICT;

CREATE TABLE devices (
	project   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	id        TEXT NOT NULL,
	disabled  INTEGER NOT NULL DEFAULT 0,
	auto      INTEGER NOT NULL DEFAULT 0,
	created   INTEGER,
	last_seen INTEGER,
	PRIMARY KEY (project, id)
) STRICT;

CREATE TABLE credentials (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	project      TEXT NOT NULL,
	device       TEXT NOT NULL,
	kind         TEXT NOT NULL,
	state        TEXT NOT NULL,
	psk_identity TEXT,
	psk          BLOB,
	serial       TEXT NOT NULL DEFAULT '',
	fingerprint  TEXT NOT NULL,
	issuer_fp    TEXT NOT NULL DEFAULT '',
	issuer       TEXT NOT NULL DEFAULT '',
	subject      TEXT NOT NULL DEFAULT '',
	not_before   INTEGER,
	not_after    INTEGER,
	der          BLOB,
	created      INTEGER,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE UNIQUE INDEX credentials_psk_identity ON credentials(psk_identity) WHERE kind = 'psk';
CREATE UNIQUE INDEX credentials_cert_fp ON credentials(fingerprint) WHERE kind = 'cert';
CREATE INDEX credentials_device ON credentials(project, device);
CREATE INDEX credentials_serial ON credentials(serial) WHERE kind = 'cert';
CREATE INDEX credentials_not_after ON credentials(not_after) WHERE kind = 'cert';

CREATE TABLE revocations (
	issuer_fp TEXT NOT NULL,
	serial    TEXT NOT NULL,
	reason    INTEGER NOT NULL,
	time      INTEGER,
	PRIMARY KEY (issuer_fp, serial)
) STRICT, WITHOUT ROWID;

CREATE TABLE crl_numbers (
	issuer_fp TEXT PRIMARY KEY,
	last      INTEGER NOT NULL
) STRICT;

CREATE TABLE device_state (
	project TEXT NOT NULL,
	device  TEXT NOT NULL,
	doc     BLOB NOT NULL,
	updated INTEGER,
	PRIMARY KEY (project, device),
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE events (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	time       INTEGER,
	project    TEXT NOT NULL,
	device     TEXT NOT NULL,
	credential TEXT NOT NULL,
	kind       TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	reason     TEXT NOT NULL
) STRICT;
CREATE INDEX events_device ON events(project, device, seq);
`,
	// 1 -> 2: certificates not attached to a device (fleet provisioning
	// creates them before RegisterThing), CA registrations, provisioning
	// templates, ownership tokens and the run-time CSR allowlist.
	//
	// SQLite cannot drop a NOT NULL constraint, so credentials is rebuilt
	// with device nullable (NULL: unattached; the composite foreign key is
	// not enforced then, the one on project is). Ids and the AUTOINCREMENT
	// counter are kept, so ids are never reused.
	`
CREATE TABLE credentials_v2 (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	project      TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	device       TEXT,
	kind         TEXT NOT NULL,
	state        TEXT NOT NULL,
	psk_identity TEXT,
	psk          BLOB,
	serial       TEXT NOT NULL DEFAULT '',
	fingerprint  TEXT NOT NULL,
	issuer_fp    TEXT NOT NULL DEFAULT '',
	issuer       TEXT NOT NULL DEFAULT '',
	subject      TEXT NOT NULL DEFAULT '',
	not_before   INTEGER,
	not_after    INTEGER,
	der          BLOB,
	created      INTEGER,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE,
	CHECK (device IS NOT NULL OR kind = 'cert')
) STRICT;
INSERT INTO credentials_v2 (id, project, device, kind, state, psk_identity, psk, serial, fingerprint,
		issuer_fp, issuer, subject, not_before, not_after, der, created)
	SELECT id, project, device, kind, state, psk_identity, psk, serial, fingerprint,
		issuer_fp, issuer, subject, not_before, not_after, der, created FROM credentials;
DELETE FROM sqlite_sequence WHERE name = 'credentials_v2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'credentials_v2', seq FROM sqlite_sequence WHERE name = 'credentials';
DROP TABLE credentials;
ALTER TABLE credentials_v2 RENAME TO credentials;
CREATE UNIQUE INDEX credentials_psk_identity ON credentials(psk_identity) WHERE kind = 'psk';
CREATE UNIQUE INDEX credentials_cert_fp ON credentials(fingerprint) WHERE kind = 'cert';
CREATE INDEX credentials_device ON credentials(project, device);
CREATE INDEX credentials_serial ON credentials(serial) WHERE kind = 'cert';
CREATE INDEX credentials_not_after ON credentials(not_after) WHERE kind = 'cert';

CREATE TABLE ca_registrations (
	id       TEXT PRIMARY KEY,
	project  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	subject  TEXT NOT NULL,
	der      BLOB NOT NULL,
	mode     TEXT NOT NULL,
	template TEXT NOT NULL DEFAULT '',
	active   INTEGER NOT NULL DEFAULT 1,
	created  INTEGER
) STRICT;
CREATE INDEX ca_registrations_project ON ca_registrations(project);

CREATE TABLE templates (
	name             TEXT PRIMARY KEY,
	project          TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	thing_name_param TEXT NOT NULL,
	thing_prefix     TEXT NOT NULL DEFAULT '',
	required         TEXT NOT NULL DEFAULT '[]',
	activate         INTEGER NOT NULL DEFAULT 1,
	created          INTEGER
) STRICT;

CREATE TABLE ownership_tokens (
	hash        TEXT PRIMARY KEY,
	fingerprint TEXT NOT NULL,
	expires     INTEGER NOT NULL,
	used        INTEGER,
	created     INTEGER
) STRICT;
CREATE INDEX ownership_tokens_expires ON ownership_tokens(expires);

CREATE TABLE allowlist (
	udid        TEXT PRIMARY KEY,
	project     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	pubkey      BLOB NOT NULL,
	pubkey_fp   TEXT NOT NULL,
	provisioned INTEGER NOT NULL DEFAULT 0,
	added       INTEGER
) STRICT;
CREATE INDEX allowlist_project ON allowlist(project, udid);
`,
	// 2 -> 3: Golioth's device services. LightDB state stays in
	// device_state; these hold the rest: LightDB Stream records, device
	// logs, settings (project-wide when device is ''), the settings status
	// devices report, RPC calls and their results, OTA releases (the
	// component's bytes kept here) and the state devices report per
	// component.
	`
CREATE TABLE stream (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	project        TEXT NOT NULL,
	device         TEXT NOT NULL,
	path           TEXT NOT NULL DEFAULT '',
	time           INTEGER NOT NULL,
	content_format INTEGER NOT NULL,
	data           BLOB NOT NULL,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX stream_device ON stream(project, device, id);

CREATE TABLE logs (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	project TEXT NOT NULL,
	device  TEXT NOT NULL,
	time    INTEGER NOT NULL,
	level   TEXT NOT NULL DEFAULT '',
	module  TEXT NOT NULL DEFAULT '',
	msg     TEXT NOT NULL DEFAULT '',
	fields  TEXT NOT NULL DEFAULT '{}',
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX logs_device ON logs(project, device, id);

CREATE TABLE settings (
	project TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	device  TEXT NOT NULL DEFAULT '',
	key     TEXT NOT NULL,
	value   TEXT NOT NULL,
	updated INTEGER NOT NULL,
	PRIMARY KEY (project, device, key)
) STRICT;

CREATE TABLE settings_status (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	project TEXT NOT NULL,
	device  TEXT NOT NULL,
	version INTEGER NOT NULL,
	errors  TEXT NOT NULL DEFAULT '[]',
	time    INTEGER NOT NULL,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX settings_status_device ON settings_status(project, device, id);

CREATE TABLE rpc_calls (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	call_id     TEXT NOT NULL,
	project     TEXT NOT NULL,
	device      TEXT NOT NULL,
	method      TEXT NOT NULL,
	params      TEXT NOT NULL DEFAULT '[]',
	status_code INTEGER,
	detail      TEXT,
	created     INTEGER NOT NULL,
	completed   INTEGER,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE UNIQUE INDEX rpc_calls_call_id ON rpc_calls(project, device, call_id);

CREATE TABLE ota_releases (
	project  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	device   TEXT NOT NULL DEFAULT '',
	package  TEXT NOT NULL,
	version  TEXT NOT NULL,
	sequence INTEGER NOT NULL,
	hash     TEXT NOT NULL,
	size     INTEGER NOT NULL,
	data     BLOB NOT NULL,
	created  INTEGER NOT NULL,
	PRIMARY KEY (project, device, package)
) STRICT;

CREATE TABLE ota_reports (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	project TEXT NOT NULL,
	device  TEXT NOT NULL,
	package TEXT NOT NULL,
	state   INTEGER NOT NULL,
	reason  INTEGER NOT NULL,
	version TEXT NOT NULL DEFAULT '',
	target  TEXT NOT NULL DEFAULT '',
	time    INTEGER NOT NULL,
	FOREIGN KEY (project, device) REFERENCES devices(project, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX ota_reports_device ON ota_reports(project, device, id);
`,
}

// migrate brings the schema up to SchemaVersion. It runs in an IMMEDIATE
// transaction, so two processes opening a new file at once do not both
// create it.
func (r *Registry) migrate(ctx context.Context) error {
	if len(migrations) != SchemaVersion {
		return fmt.Errorf("registry: %d migrations for schema version %d", len(migrations), SchemaVersion)
	}
	return r.write(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this program's %d", v, SchemaVersion)
		}
		for ; v < SchemaVersion; v++ {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate schema %d -> %d: %w", v, v+1, err)
			}
			// PRAGMA takes no parameters; v+1 is our own integer.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
				return fmt.Errorf("set schema version %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// prepare prepares the statements of the hot paths (DTLS handshakes and
// the event log).
func (r *Registry) prepare(ctx context.Context) error {
	var err error
	prep := func(db *sql.DB, q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, q)
		return st
	}
	r.stPSK = prep(r.rd, qPSKByIdentity)
	r.stCertFP = prep(r.rd, qCertByFingerprint)
	r.stRecord = prep(r.w, `INSERT INTO events (time, project, device, credential, kind, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	r.stTouch = prep(r.w, `UPDATE devices SET last_seen = ? WHERE project = ? AND id = ?`)
	r.stRevoked = prep(r.rd, qIsRevoked)
	r.stDevice = prep(r.rd, qDevice)
	r.stCred = prep(r.rd, qCredential)
	r.stLastSeq = prep(r.rd, `SELECT COALESCE(MAX(seq), 0) FROM events`)
	r.stAllCAs = prep(r.rd, qAllCAs+` ORDER BY project, created, id`)
	r.stAddLog = prep(r.w, qAddLog)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	return nil
}

// Queries of the handshake hot path; plan_test.go checks they use an
// index.
const (
	qPSKByIdentity = `SELECT ` + credColumns + `, d.disabled, d.auto, d.created, d.last_seen
		FROM credentials c JOIN devices d ON d.project = c.project AND d.id = c.device
		WHERE c.kind = 'psk' AND c.psk_identity = ?`
	qCertByFingerprint = `SELECT ` + credColumns + ` FROM credentials c WHERE c.kind = 'cert' AND c.fingerprint = ?`
	qIsRevoked         = `SELECT 1 FROM revocations WHERE issuer_fp = ? AND serial = ?`
	qDevice            = `SELECT ` + deviceColumns + ` FROM devices WHERE project = ? AND id = ?`
	qCredential        = `SELECT ` + credColumns + ` FROM credentials c WHERE c.id = ?`
	qRevokeCredentials = `UPDATE credentials SET state = 'REVOKED'
		WHERE kind = 'cert' AND serial = ? AND issuer_fp = ? AND state != 'REVOKED'`
)
