package cloud_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// peer finds a third-party program: missing, the test skips, unless CI is
// set, where it fails so that CI can never pass without running it.
func peer(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed and CI is set (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// libcoap's client authenticates with a PSK and reads /hello.
func TestLibcoapClientPSK(t *testing.T) {
	client := peer(t, "coap-client-openssl")
	c := newCloud(t, cloud.Options{})
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", []byte("libcoap-secret-1")); err != nil {
		t.Fatal(err)
	}
	url := "coaps://" + c.Addrs().CoAPS + "/hello"
	out := run(t, "", client, "-m", "get", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", url)
	if !strings.Contains(out, `"device":"dev1"`) || !strings.Contains(out, `"project":"acme"`) {
		t.Fatalf("hello over libcoap = %q", out)
	}
	// The Golioth libcoap port's keepalive: CON DELETE without a path.
	run(t, "", client, "-m", "delete", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", "coaps://"+c.Addrs().CoAPS)
	// Discovery lists the EST resources.
	out = run(t, "", client, "-m", "get", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", "coaps://"+c.Addrs().CoAPS+"/.well-known/core?rt=ace.est*")
	if !strings.Contains(out, "ace.est.sen") || strings.Contains(out, "hello") {
		t.Fatalf("filtered discovery = %q", out)
	}
	ev, err := c.Registry.Events(ctx, registry.Filter{Kind: "auth.psk", Outcome: "ok"})
	if err != nil || len(ev) < 1 {
		t.Fatalf("events = %v, %v", ev, err)
	}
}

// A device certificate made with the openssl commands of seed 001, used by
// libcoap's client: the device is auto-provisioned on its first connect.
func TestLibcoapClientCertificateAutoProvision(t *testing.T) {
	client := peer(t, "coap-client-openssl")
	openssl := peer(t, "openssl")
	dir := t.TempDir()
	run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key.pem")
	run(t, dir, openssl, "req", "-x509", "-new", "-nodes", "-key", "root.key.pem", "-sha256", "-subj", "/C=BR/CN=Root acme", "-days", "1024", "-out", "root.crt.pem")
	run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "dev.key.pem")
	run(t, dir, openssl, "req", "-new", "-key", "dev.key.pem", "-subj", "/C=BR/O=acme/CN=hw-77", "-out", "dev.csr.pem")
	run(t, dir, openssl, "x509", "-req", "-in", "dev.csr.pem", "-CA", "root.crt.pem", "-CAkey", "root.key.pem", "-CAcreateserial", "-out", "dev.crt.pem", "-days", "500", "-sha256")

	c := newCloud(t, cloud.Options{})
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.crt.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := fakeca.ParseCertPEMOrDER(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.TrustRoot(ctx, "acme", roots[0].Raw); err != nil {
		t.Fatal(err)
	}
	// The client checks the cloud's certificate against the cloud's root.
	cloudRoot := filepath.Join(dir, "cloud-root.pem")
	if err := os.WriteFile(cloudRoot, fakeca.EncodeCertPEM(c.Authority.Root.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, client, "-m", "get", "-B", "10", "-c", "dev.crt.pem", "-j", "dev.key.pem", "-R", cloudRoot,
		"coaps://"+c.Addrs().CoAPS+"/hello")
	if !strings.Contains(out, `"device":"hw-77"`) || !strings.Contains(out, `"method":"cert"`) {
		t.Fatalf("hello over libcoap = %q", out)
	}
	d, err := c.Registry.Device(ctx, "acme", "hw-77")
	if err != nil || !d.AutoProvisioned {
		t.Fatalf("device = %+v, %v", d, err)
	}
}

// EST over CoAPS with libcoap as the client: an openssl-made CSR posted to
// /.well-known/est/sen in 64-byte blocks (Block1), the PKCS#7 answer read
// back in 64-byte blocks (Block2), then parsed by openssl. /crts with
// Accept 287 returns the root as a single DER certificate.
func TestLibcoapESTBlockwise(t *testing.T) {
	client := peer(t, "coap-client-openssl")
	openssl := peer(t, "openssl")
	dir := t.TempDir()
	c := newCloud(t, cloud.Options{})
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", []byte("est-secret-00001")); err != nil {
		t.Fatal(err)
	}
	run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
	run(t, dir, openssl, "req", "-new", "-key", "k.pem", "-subj", "/O=acme/CN=dev1", "-outform", "DER", "-out", "csr.der")
	base := "coaps://" + c.Addrs().CoAPS + "/.well-known/est/"
	psk := []string{"-B", "10", "-u", "dev1@acme", "-k", "est-secret-00001"}

	args := append([]string{"-m", "post", "-b", "64", "-t", "286", "-A", "281", "-f", "csr.der", "-o", "cert.p7"}, psk...)
	run(t, dir, client, append(args, base+"sen")...)
	out := run(t, dir, openssl, "pkcs7", "-inform", "DER", "-in", "cert.p7", "-print_certs", "-noout")
	if !strings.Contains(out, "CN = dev1") || !strings.Contains(out, "O = acme") {
		t.Fatalf("issued certificate: %s", out)
	}
	creds, err := c.Registry.Credentials(ctx, "acme", "dev1")
	if err != nil {
		t.Fatal(err)
	}
	var certs int
	for _, cr := range creds {
		if cr.Kind == registry.KindCert && cr.State == registry.StateActive {
			certs++
		}
	}
	if certs != 1 {
		t.Fatalf("%d active certificates registered, want 1", certs)
	}

	args = append([]string{"-m", "get", "-b", "64", "-A", "287", "-o", "root.der"}, psk...)
	run(t, dir, client, append(args, base+"crts")...)
	out = run(t, dir, openssl, "x509", "-inform", "DER", "-in", "root.der", "-noout", "-subject")
	if !strings.Contains(out, c.Authority.Root.Cert.Subject.CommonName) {
		t.Fatalf("crts with Accept 287: %s", out)
	}

	// A CSR for another device is forbidden, and says why.
	run(t, dir, openssl, "req", "-new", "-key", "k.pem", "-subj", "/O=acme/CN=dev2", "-outform", "DER", "-out", "other.der")
	args = append([]string{"-m", "post", "-t", "286", "-f", "other.der"}, psk...)
	out = run(t, dir, client, append(args, base+"sen")...)
	if !strings.Contains(out, "4.03") && !strings.Contains(out, "not the authenticated device") {
		t.Fatalf("enroll for another device: %q", out)
	}
}
