package mqtt

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
)

// runFail runs a program that must fail and returns its output.
func runFail(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	}
	return string(out)
}

// mosquitto's clients against the endpoint, with a device certificate
// made by openssl exactly as in Golioth's certificate guide, under a CA registered for JITP:
// the first connect is closed (no CONNACK), the retry publishes and
// subscribes; once the certificate is revoked it is refused.
func TestMosquittoJITP(t *testing.T) {
	pub := peer.Require(t, "mosquitto_pub")
	sub := peer.Require(t, "mosquitto_sub")
	openssl := peer.Require(t, "openssl")
	dir := t.TempDir()
	peer.Run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key.pem")
	peer.Run(t, dir, openssl, "req", "-x509", "-new", "-nodes", "-key", "root.key.pem", "-sha256", "-subj", "/C=BR/CN=Root acme", "-days", "1024", "-out", "root.crt.pem")
	peer.Run(t, dir, openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "dev.key.pem")
	peer.Run(t, dir, openssl, "req", "-new", "-key", "dev.key.pem", "-subj", "/C=BR/O=acme/CN=hw-77", "-out", "dev.csr.pem")
	peer.Run(t, dir, openssl, "x509", "-req", "-in", "dev.csr.pem", "-CA", "root.crt.pem", "-CAkey", "root.key.pem", "-CAcreateserial",
		"-out", "dev.crt.pem", "-days", "500", "-sha256")

	e := newEnv(t)
	read := func(name string) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		certs, err := fakeca.ParseCertPEMOrDER(b)
		if err != nil {
			t.Fatal(err)
		}
		return certs[0]
	}
	root, dev := read("root.crt.pem"), read("dev.crt.pem")
	if _, err := e.reg.RegisterCA(e.ctx, "acme", root.Raw, registry.CAModeJITP, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cloud-root.pem"), fakeca.EncodeCertPEM(e.auth.Root.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.srv.Addr().String())
	conn := []string{"-h", host, "-p", port, "--cafile", "cloud-root.pem", "--cert", "dev.crt.pem", "--key", "dev.key.pem", "-q", "1"}
	publish := append(append([]string{}, conn...), "-i", "hw-77", "-t", "devices/hw-77/hello", "-m", "hi from mosquitto")

	seq := e.mark()
	out := runFail(t, dir, pub, publish...)
	t.Logf("first connect: %s", strings.TrimSpace(out))
	if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Reason != "certificate PENDING_ACTIVATION" {
		t.Fatalf("event = %+v", ev)
	}
	e.event(seq, registry.Filter{Kind: registry.EventMQTTRegistered, Device: "hw-77"})

	// The retry: mosquitto_sub waits for one message, mosquitto_pub sends it.
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	var subOut bytes.Buffer
	cmd := exec.CommandContext(ctx, sub, append(append([]string{}, conn...), "-i", "hw-77-sub", "-t", "devices/hw-77/#", "-C", "1", "-W", "20")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &subOut, &subOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.waitSubscribed(ctx, "acme", "hw-77", "devices/hw-77/hello"); err != nil {
		t.Fatalf("mosquitto_sub never subscribed: %v\n%s", err, subOut.String())
	}
	peer.Run(t, dir, pub, publish...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
	}
	if got := strings.TrimSpace(subOut.String()); got != "hi from mosquitto" {
		t.Fatalf("mosquitto_sub printed %q", got)
	}

	// MQTT 5: a publish outside the ACL gets PUBACK "not authorized".
	out = peer.Run(t, dir, pub, append(append([]string{}, conn...), "-V", "mqttv5", "-i", "hw-77", "-t", "devices/hw-78/x", "-m", "x")...)
	if !strings.Contains(out, "Not authorized") {
		t.Fatalf("v5 publish outside the ACL: %s", out)
	}

	if _, err := e.reg.Revoke(e.ctx, fakeca.Fingerprint(root.Raw), serialHex(dev), 1); err != nil {
		t.Fatal(err)
	}
	seq = e.mark()
	runFail(t, dir, pub, publish...)
	if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Outcome != registry.OutcomeFail || ev.Reason != "certificate revoked" {
		t.Fatalf("event = %+v", ev)
	}
}
