package sim_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/sim"
)

func TestIdentity(t *testing.T) {
	ca, err := cloud.NewCA(cloud.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := ca.IssueDevice("acme", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueDevice("acme", "dev-2")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, dc.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		id      sim.Identity
		mqtt    bool
		wantErr bool
		wantID  string
	}{
		{name: "psk", id: sim.Identity{PSKIdentity: "dev-1@acme", PSK: []byte("0123456789abcdef")}, wantID: "dev-1"},
		{name: "psk from id and project", id: sim.Identity{ID: "dev-3", Project: "acme", PSK: []byte("k")}, wantID: "dev-3"},
		{name: "cert pem", id: sim.Identity{Cert: dc.CertPEM, Key: dc.KeyPEM}, wantID: "dev-1"},
		{name: "cert pem, mqtt", id: sim.Identity{Cert: dc.CertPEM, Key: dc.KeyPEM}, mqtt: true, wantID: "dev-1"},
		{name: "cert, id given", id: sim.Identity{ID: "other", Cert: dc.CertPEM, Key: dc.KeyPEM}, wantID: "other"},
		{name: "no credential", id: sim.Identity{ID: "dev-1", Project: "acme"}, wantErr: true},
		{name: "psk and cert", id: sim.Identity{PSK: []byte("k"), ID: "d", Cert: dc.CertPEM, Key: dc.KeyPEM}, wantErr: true},
		{name: "psk without id", id: sim.Identity{PSK: []byte("k")}, wantErr: true},
		{name: "key of another certificate", id: sim.Identity{Cert: dc.CertPEM, Key: other.KeyPEM}, wantErr: true},
		{name: "certificate without key", id: sim.Identity{Cert: dc.CertPEM}, wantErr: true},
		{name: "garbage certificate", id: sim.Identity{Cert: []byte("not a certificate"), Key: dc.KeyPEM}, wantErr: true},
		{name: "missing key file", id: sim.Identity{CertFile: certFile, KeyFile: filepath.Join(dir, "none.key")}, wantErr: true},
		{name: "bytes and files", id: sim.Identity{Cert: dc.CertPEM, Key: dc.KeyPEM, CertFile: certFile}, wantErr: true},
		{name: "psk over mqtt", id: sim.Identity{PSKIdentity: "dev-1@acme", PSK: []byte("k")}, mqtt: true, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var gotID string
			var err error
			if tt.mqtt {
				var d *sim.MQTTDevice
				if d, err = sim.NewMQTTDevice(sim.MQTTDeviceOptions{Identity: tt.id, Addr: "127.0.0.1:1"}); err == nil {
					gotID = d.ID()
				}
			} else {
				var d *sim.Device
				if d, err = sim.NewDevice(sim.DeviceOptions{Identity: tt.id, Addr: "127.0.0.1:1"}); err == nil {
					gotID = d.ID()
				}
			}
			if tt.wantErr {
				if !errors.Is(err, sim.ErrIdentity) {
					t.Fatalf("err = %v, want ErrIdentity", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gotID != tt.wantID {
				t.Errorf("ID = %q, want %q", gotID, tt.wantID)
			}
		})
	}
}

// TestIdentityErrorHasNoSecret: a refused identity never puts key
// material in its error.
func TestIdentityErrorHasNoSecret(t *testing.T) {
	key := []byte("-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END EC PRIVATE KEY-----\n")
	_, err := sim.NewDevice(sim.DeviceOptions{Identity: sim.Identity{ID: "d", Cert: []byte("x"), Key: key}})
	if err == nil {
		t.Fatal("accepted garbage")
	}
	if s := err.Error(); strings.Contains(s, "c2VjcmV0") || strings.Contains(s, "secret") {
		t.Fatalf("error shows the key: %s", s)
	}
}
