package registry

import (
	"strings"
	"testing"
)

// TestHotPathQueryPlans checks that the handshake lookups use an index
// rather than scanning a table.
func TestHotPathQueryPlans(t *testing.T) {
	r := openMem(t, nil)
	fp := strings.Repeat("a", 64)
	waitQuery, waitArgs := Filter{Kind: "auth.*", Device: "d", AfterSeq: 5, Limit: 1}.query()
	tests := []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"PSKByIdentity", qPSKByIdentity, []any{"d@p"}, "credentials_psk_identity"},
		{"CertificateByFingerprint", qCertByFingerprint, []any{fp}, "credentials_cert_fp"},
		{"IsRevoked", qIsRevoked, []any{fp, "1"}, "PRIMARY KEY"},
		{"Device", qDevice, []any{"p", "d"}, "sqlite_autoindex_devices_1 (project=? AND id=?)"},
		{"Credential", qCredential, []any{1}, "INTEGER PRIMARY KEY"},
		{"Revoke", qRevokeCredentials, []any{"1", fp}, "credentials_serial"},
		{"WaitEvent", waitQuery, waitArgs, "INTEGER PRIMARY KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := r.rd.Query(`EXPLAIN QUERY PLAN `+tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			all := strings.Join(plan, "; ")
			if !strings.Contains(all, tt.index) {
				t.Errorf("plan %q does not use %s", all, tt.index)
			}
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN ") {
					t.Errorf("plan %q scans a table", all)
				}
			}
		})
	}
}
