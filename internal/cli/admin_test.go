package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// copyDir copies a credloop directory (its CAs and its registry, closed).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		fi, _ := in.Stat()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCLIAndGoAPIRecordTheSameEvents: the operator operations of the CLI
// and of the Go API (cloud.Cloud and its Admin) are one code path, so the
// same operations on two copies of a directory leave the same events:
// kind, project, device, credential, outcome, and the reason but for the
// CLI's "by credloop CLI" marker.
func TestCLIAndGoAPIRecordTheSameEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := filepath.Join(t.TempDir(), "base")
	work := t.TempDir()
	mustCLI(t, "ca", "init", "--dir", base)
	mustCLI(t, "project", "create", "proj", "--dir", base)
	mustCLI(t, "device", "add", "--dir", base, "--project", "proj", "dev1", "--psk", "00112233445566778899aabbccddeeff")
	for _, dev := range []string{"dev1", "dev2", "dev3"} {
		mustCLI(t, "ca", "issue", "--dir", base, "--cn", dev, "--org", "proj", "--out", work)
	}
	mustCLI(t, "ca", "register", "--dir", base, "--project", "proj", "--mode", "jitr")
	caDir := cloud.CADir(base, cloud.DefaultCA)
	root := readCert(t, filepath.Join(caDir, fakeca.RootCertFile))
	inter := readCert(t, filepath.Join(caDir, fakeca.IntermediateCertFile))
	certs := map[string]string{}
	func() {
		reg := openTestRegistry(t, base)
		defer reg.Close()
		for dev, state := range map[string]registry.CredState{"dev1": registry.StateActive, "dev2": registry.StatePendingActivation, "dev3": registry.StateActive} {
			cert := readCert(t, filepath.Join(work, dev+".crt.pem"))
			if _, _, err := reg.EnsureDevice(ctx, "proj", dev, true); err != nil {
				t.Fatal(err)
			}
			cred, err := reg.AddCertificate(ctx, "proj", dev, cert.Raw, state)
			if err != nil {
				t.Fatal(err)
			}
			if err := reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(inter.Raw)); err != nil {
				t.Fatal(err)
			}
			certs[dev] = cred.Fingerprint
		}
		if err := reg.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	byCLI, byAPI := filepath.Join(t.TempDir(), "cli"), filepath.Join(t.TempDir(), "api")
	copyDir(t, base, byCLI)
	copyDir(t, base, byAPI)
	mark := func(dir string) int64 {
		reg := openTestRegistry(t, dir)
		seq, err := reg.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	markCLI, markAPI := mark(byCLI), mark(byAPI)
	dev1 := readCert(t, filepath.Join(work, "dev1.crt.pem"))
	dev3 := readCert(t, filepath.Join(work, "dev3.crt.pem"))

	// The CLI, one process at a time.
	mustCLI(t, "device", "activate", "--dir", byCLI, "--cert-id", certs["dev2"][:12])
	mustCLI(t, "device", "disable", "--dir", byCLI, "--project", "proj", "dev1")
	mustCLI(t, "ca", "revoke", "--dir", byCLI, "--cert", filepath.Join(work, "dev1.crt.pem"), "--reason", "keyCompromise")
	mustCLI(t, "ca", "revoke", "--dir", byCLI, "--serial", fmt.Sprintf("%x", dev3.SerialNumber), "--reason", "superseded")
	mustCLI(t, "ca", "revoke", "--dir", byCLI, "--issuer", "root", "--cert", filepath.Join(caDir, fakeca.IntermediateCertFile), "--reason", "cACompromise")

	// The Go API: a cloud on the other copy, through its admin and its
	// own methods.
	c, err := cloud.New(cloud.Options{Dir: byAPI, CoAPAddr: "-", MQTTAddr: "-", HTTPSAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Admin().ActivateCertificate(ctx, certs["dev2"]); err != nil {
		t.Fatal(err)
	}
	if err := c.DisableDevice(ctx, "proj", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin().Revoke(ctx, cloud.RevokeOptions{Cert: dev1, Reason: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, fakeca.Fingerprint(inter.Raw), fmt.Sprintf("%X", dev3.SerialNumber), 4); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, fakeca.Fingerprint(root.Raw), fmt.Sprintf("%x", inter.SerialNumber), 2); err != nil {
		t.Fatal(err)
	}
	apiEvents, err := c.Registry.Events(ctx, registry.Filter{AfterSeq: markAPI})
	if err != nil {
		t.Fatal(err)
	}
	cliEvents, err := openTestRegistry(t, byCLI).Events(ctx, registry.Filter{AfterSeq: markCLI})
	if err != nil {
		t.Fatal(err)
	}

	wantKinds := []registry.EventKind{registry.EventCertActivated, registry.EventDeviceDisabled,
		registry.EventCARevoke, registry.EventCredentialRevoked, // dev1 by certificate
		registry.EventCARevoke, registry.EventCredentialRevoked, // dev3 by serial
		registry.EventCARevoke, registry.EventCADeactivated} // the intermediate by the root
	type ev struct {
		Kind                        registry.EventKind
		Project, Device, Credential string
		Outcome, Reason             string
	}
	norm := func(evs []registry.Event, marker string) []ev {
		var out []ev
		for _, e := range evs {
			out = append(out, ev{e.Kind, e.Project, e.Device, e.Credential, e.Outcome, strings.TrimSuffix(strings.TrimSuffix(e.Reason, marker), " ")})
		}
		return out
	}
	got, want := norm(apiEvents, ""), norm(cliEvents, cliEventReasonFrom)
	if len(got) != len(wantKinds) || len(want) != len(wantKinds) {
		t.Fatalf("Go API recorded %d events, the CLI %d, want %d:\nAPI %+v\nCLI %+v", len(got), len(want), len(wantKinds), got, want)
	}
	for i := range wantKinds {
		if got[i] != want[i] || got[i].Kind != wantKinds[i] {
			t.Errorf("event %d:\nGo API %+v\nCLI    %+v\nwant kind %s", i, got[i], want[i], wantKinds[i])
		}
	}
	for _, e := range cliEvents {
		if !strings.HasSuffix(e.Reason, cliEventReasonFrom) {
			t.Errorf("CLI event %s without its origin: %q", e.Kind, e.Reason)
		}
	}
}
