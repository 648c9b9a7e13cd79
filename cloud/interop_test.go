package cloud_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
)

// libcoap's client authenticates with a PSK and reads /hello.
func TestLibcoapClientPSK(t *testing.T) {
	client := peer.Require(t, "coap-client-openssl")
	c, _ := pskCloud(t, cloud.Options{}, "libcoap-secret-1")
	ctx := ctxT(t)
	url := "coaps://" + c.Addrs().CoAPS + "/hello"
	out := peer.Run(t, "", client, "-m", "get", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", url)
	if !strings.Contains(out, `"device":"dev1"`) || !strings.Contains(out, `"project":"acme"`) {
		t.Fatalf("hello over libcoap = %q", out)
	}
	// The Golioth libcoap port's keepalive: CON DELETE without a path.
	peer.Run(t, "", client, "-m", "delete", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", "coaps://"+c.Addrs().CoAPS)
	// Discovery lists the EST resources.
	out = peer.Run(t, "", client, "-m", "get", "-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-1", "coaps://"+c.Addrs().CoAPS+"/.well-known/core?rt=ace.est*")
	if !strings.Contains(out, "ace.est.sen") || strings.Contains(out, "hello") {
		t.Fatalf("filtered discovery = %q", out)
	}
	ev, err := c.Registry.Events(ctx, registry.Filter{Kind: "auth.psk", Outcome: "ok"})
	if err != nil || len(ev) < 1 {
		t.Fatalf("events = %v, %v", ev, err)
	}
}

// A device certificate made with the openssl commands of Golioth's certificate guide, used by
// libcoap's client: the device is auto-provisioned on its first connect.
func TestLibcoapClientCertificateAutoProvision(t *testing.T) {
	client := peer.Require(t, "coap-client-openssl")
	openssl := peer.Require(t, "openssl")
	dir := t.TempDir()
	peer.Run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key.pem")
	peer.Run(t, dir, openssl, "req", "-x509", "-new", "-nodes", "-key", "root.key.pem", "-sha256", "-subj", "/C=BR/CN=Root acme", "-days", "1024", "-out", "root.crt.pem")
	peer.Run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "dev.key.pem")
	peer.Run(t, dir, openssl, "req", "-new", "-key", "dev.key.pem", "-subj", "/C=BR/O=acme/CN=hw-77", "-out", "dev.csr.pem")
	peer.Run(t, dir, openssl, "x509", "-req", "-in", "dev.csr.pem", "-CA", "root.crt.pem", "-CAkey", "root.key.pem", "-CAcreateserial", "-out", "dev.crt.pem", "-days", "500", "-sha256")

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
	if err := os.WriteFile(cloudRoot, c.CA().RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := peer.Run(t, dir, client, "-m", "get", "-B", "10", "-c", "dev.crt.pem", "-j", "dev.key.pem", "-R", cloudRoot,
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
	client := peer.Require(t, "coap-client-openssl")
	openssl := peer.Require(t, "openssl")
	dir := t.TempDir()
	c, _ := pskCloud(t, cloud.Options{}, "est-secret-00001")
	ctx := ctxT(t)
	peer.Run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
	peer.Run(t, dir, openssl, "req", "-new", "-key", "k.pem", "-subj", "/O=acme/CN=dev1", "-outform", "DER", "-out", "csr.der")
	base := "coaps://" + c.Addrs().CoAPS + "/.well-known/est/"
	psk := []string{"-B", "10", "-u", "dev1@acme", "-k", "est-secret-00001"}

	args := append([]string{"-m", "post", "-b", "64", "-t", "286", "-A", "281", "-f", "csr.der", "-o", "cert.p7"}, psk...)
	peer.Run(t, dir, client, append(args, base+"sen")...)
	out := peer.Run(t, dir, openssl, "pkcs7", "-inform", "DER", "-in", "cert.p7", "-print_certs", "-noout")
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
	peer.Run(t, dir, client, append(args, base+"crts")...)
	out = peer.Run(t, dir, openssl, "x509", "-inform", "DER", "-in", "root.der", "-noout", "-subject")
	if !strings.Contains(out, c.CA().Root().Subject.CommonName) {
		t.Fatalf("crts with Accept 287: %s", out)
	}

	// A CSR for another device is forbidden, and says why.
	peer.Run(t, dir, openssl, "req", "-new", "-key", "k.pem", "-subj", "/O=acme/CN=dev2", "-outform", "DER", "-out", "other.der")
	args = append([]string{"-m", "post", "-t", "286", "-f", "other.der"}, psk...)
	out = peer.Run(t, dir, client, append(args, base+"sen")...)
	if !strings.Contains(out, "4.03") && !strings.Contains(out, "not the authenticated device") {
		t.Fatalf("enroll for another device: %q", out)
	}
}
