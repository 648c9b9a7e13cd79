package registry

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"
)

// writeV1 writes a schema-1 database the way the previous version of this
// package did, with a project p, device d1, a PSK and a certificate, and
// a deleted credential so that the AUTOINCREMENT counter is ahead of the
// highest id.
func writeV1(t *testing.T, path string, certDER []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		migrations[0],
		`PRAGMA user_version = 1`,
		`INSERT INTO projects (id, created) VALUES ('p', 1)`,
		`INSERT INTO devices (project, id, created) VALUES ('p', 'd1', 1)`,
		`INSERT INTO credentials (project, device, kind, state, psk_identity, psk, fingerprint, created)
			VALUES ('p', 'd1', 'psk', 'ACTIVE', 'd1@p', X'6b6579', 'fp', 1)`,
		`INSERT INTO credentials (project, device, kind, state, fingerprint, created)
			VALUES ('p', 'd1', 'psk', 'REVOKED', 'gone', 1)`,
		`DELETE FROM credentials WHERE fingerprint = 'gone'`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%.40s: %v", s, err)
		}
	}
	if _, err := db.Exec(`INSERT INTO credentials (project, device, kind, state, serial, fingerprint, der, created)
		VALUES ('p', 'd1', 'cert', 'ACTIVE', '5', ?, ?, 1)`, Fingerprint(certDER), certDER); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromV1 opens a database written with schema 1: everything in
// it is still there, ids are not reused, and the new tables work.
func TestMigrateFromV1(t *testing.T) {
	path := tempDB(t)
	ca := newCA(t, "root", nil)
	certDER := ca.leaf(t, "p", "d1", 5, t0.Add(time.Hour))
	writeV1(t, path, certDER)

	r := openFile(t, path, newClock())
	ctx := ctxT(t)
	var v int
	if err := r.rd.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("user_version = %d, %v; want %d", v, err, SchemaVersion)
	}
	psk, dev, err := r.PSKByIdentity(ctx, "d1@p")
	if err != nil || psk.ID != 1 || string(psk.PSK) != "key" || dev.ID != "d1" {
		t.Fatalf("PSKByIdentity = %v %+v %v", psk, dev, err)
	}
	cert, err := r.CertificateByFingerprint(ctx, Fingerprint(certDER))
	if err != nil || cert.ID != 3 || cert.Device != "d1" || cert.State != StateActive {
		t.Fatalf("CertificateByFingerprint = %v (id %d) %v", cert, cert.ID, err)
	}
	// The counter was at 3 (2 was deleted): the next id is 4.
	other := ca.leaf(t, "p", "", 6, t0.Add(time.Hour))
	c := must[Credential](t)(r.AddCertificate(ctx, "p", "", other, StatePendingActivation))
	if c.ID != 4 || c.Device != "" {
		t.Errorf("new certificate id %d device %q, want 4 and unattached", c.ID, c.Device)
	}
	must[CARegistration](t)(r.RegisterCA(ctx, "p", ca.cert.Raw, CAModeJITR, ""))
	must[Template](t)(r.PutTemplate(ctx, Template{Name: "t", Project: "p"}))
	// A device deleted still cascades to its credentials.
	if err := r.DeleteDevice(ctx, "p", "d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CertificateByFingerprint(ctx, Fingerprint(certDER)); !errors.Is(err, ErrNotFound) {
		t.Errorf("certificate of a deleted device: %v", err)
	}
	var fk int
	if err := r.rd.QueryRow(`SELECT count(*) FROM pragma_foreign_key_check`).Scan(&fk); err != nil || fk != 0 {
		t.Errorf("foreign key violations: %d %v", fk, err)
	}
	var integrity string
	if err := r.rd.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check = %q %v", integrity, err)
	}
}

// TestSchemaIndexes checks that the migrated and the fresh schema are the
// same.
func TestSchemaIndexes(t *testing.T) {
	schema := func(r *Registry) string {
		rows, err := r.rd.Query(`SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var s string
		for rows.Next() {
			var typ, name, tbl string
			if err := rows.Scan(&typ, &name, &tbl); err != nil {
				t.Fatal(err)
			}
			s += fmt.Sprintf("%s %s on %s\n", typ, name, tbl)
		}
		return s
	}
	path := tempDB(t)
	writeV1(t, path, newCA(t, "root", nil).leaf(t, "p", "d1", 5, t0.Add(time.Hour)))
	migrated := schema(openFile(t, path, nil))
	fresh := schema(openFile(t, tempDB(t), nil))
	if migrated != fresh {
		t.Errorf("migrated schema:\n%s\nfresh schema:\n%s", migrated, fresh)
	}
}
