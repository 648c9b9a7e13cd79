package sim_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/crl"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writePEMFile(t *testing.T, name, typ string, ders ...[]byte) string {
	t.Helper()
	var b strings.Builder
	for _, der := range ders {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// startMosquitto runs mosquitto with a TLS listener that requires a client
// certificate chaining to ca's root. It returns the address once mosquitto
// says it is running.
func startMosquitto(t *testing.T, ca *fakeca.Authority, extra ...string) string {
	t.Helper()
	bin := peer.Require(t, "mosquitto")
	dir := t.TempDir()
	server, err := ca.Issuing.ServerCert([]string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	port := freeTCPPort(t)
	conf := fmt.Sprintf(`listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
persistence false
user root
log_dest stderr
log_type all
%s`, port, writePEMFile(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Root.Cert.Raw),
		writePEMFile(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", server.Certificate...),
		writePEMFile(t, filepath.Join(dir, "server.key"), "PRIVATE KEY", key), strings.Join(extra, ""))
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	ready, eof := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), " running") {
				close(ready)
				signalled = true
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-eof
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("mosquitto log:\n%s", log.String())
			mu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-eof:
		t.Fatal("mosquitto exited")
	case <-time.After(10 * time.Second):
		t.Fatal("mosquitto did not say it is running")
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// The simulated MQTT device against a real broker (mosquitto, OpenSSL):
// it connects with its certificate chain, takes a rotation published by
// mosquitto_pub, confirms the new certificate, and falls back after a
// rotation to a certificate mosquitto refuses.
func TestMQTTDeviceAgainstMosquitto(t *testing.T) {
	pub := peer.Require(t, "mosquitto_pub")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := startMosquitto(t, ca)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root.Cert)
	const id = "dev-mosq"
	console := &syncBuffer{}
	factory := deviceCredential(t, ca.Issuing, id, project)
	d := simmodel.NewMQTTDevice(devicemodel.New(devicemodel.Config{ID: id, Project: project, Factory: factory}, nil), sim.MQTTDeviceOptions{
		Addr: addr, RootCAs: roots, Console: console, RetryDelay: time.Millisecond,
	})
	t.Cleanup(func() {
		d.Stop()
		noDeviceGoroutines(t)
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", console)
		}
	})
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// mosquitto_pub authenticates with a certificate of its own.
	dir := t.TempDir()
	admin := deviceCredential(t, ca.Issuing, "admin", project)
	adminCert := writePEMFile(t, filepath.Join(dir, "admin.pem"), "CERTIFICATE", admin.CertChainDER...)
	adminKey := writePEMFile(t, filepath.Join(dir, "admin.key"), "PRIVATE KEY", admin.KeyDER)
	caFile := writePEMFile(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Root.Cert.Raw)
	push := func(payload []byte) {
		t.Helper()
		msg := filepath.Join(dir, "msg.json")
		if err := os.WriteFile(msg, payload, 0o600); err != nil {
			t.Fatal(err)
		}
		peer.Run(t, dir, pub, "-h", "127.0.0.1", "-p", addr[strings.LastIndex(addr, ":")+1:], "-V", "mqttv311", "-q", "1",
			"--cafile", caFile, "--cert", adminCert, "--key", adminKey, "-i", "admin",
			"-t", "devices/"+id+"/certs/rotate", "-f", msg)
	}

	good, rotated := rotationPayload(t, ca.Issuing, id)
	push(good)
	st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Connects == 2 && s.Online && s.Model.RotatedConfirmed })
	if err != nil {
		t.Fatal(err)
	}
	if st.Model.Fingerprint != rotated.Fingerprint() {
		t.Fatalf("model = %s, want the rotated certificate %s", st.Model, rotated.Fingerprint())
	}

	rogue, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := rotationPayload(t, rogue.Issuing, id)
	push(bad)
	st, err = d.Wait(ctx, func(s sim.MQTTState) bool { return s.Connects == 3 && s.Online })
	if err != nil {
		t.Fatal(err)
	}
	if st.Model.Slot != sim.SlotFactory || !st.Model.FellBack || st.Model.HasRotated {
		t.Fatalf("model = %s, want a fallback to factory", st.Model)
	}
	wantLines(t, console.String(), "rotated certificate failed 3 boots, falling back to factory credentials")
	if n := strings.Count(console.String(), "closed before CONNACK"); n != 0 {
		t.Logf("note: %d refusals by mosquitto looked like a close before CONNACK", n)
	}
}

// Mosquitto configured with the fake CA and the CRL credloop writes for it
// (require_certificate, crlfile): a revoked device is refused by Mosquitto
// itself, through our CRL, while a device that is not revoked connects.
func TestMosquittoRefusesRevokedThroughCRL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(":memory:", registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	good := deviceCredential(t, ca.Issuing, "dev-good", project)
	bad := deviceCredential(t, ca.Issuing, "dev-revoked", project)
	leaf, err := x509.ParseCertificate(bad.CertChainDER[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Revoke(ctx, fakeca.Fingerprint(ca.Issuing.Cert.Raw), fmt.Sprintf("%x", leaf.SerialNumber), 1); err != nil {
		t.Fatal(err)
	}
	crlDER, err := crl.Build(ctx, reg, ca.Issuing, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crlFile := writePEMFile(t, filepath.Join(dir, "crl.pem"), "X509 CRL", crlDER)
	addr := startMosquitto(t, ca, "crlfile "+crlFile+"\n")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root.Cert)

	start := func(id string, cred devicemodel.Credential) error {
		console := &syncBuffer{}
		d := simmodel.NewMQTTDevice(devicemodel.New(devicemodel.Config{ID: id, Project: project, Factory: cred}, nil), sim.MQTTDeviceOptions{
			Addr: addr, RootCAs: roots, Console: console, RetryDelay: time.Millisecond, JITPRetries: -1, MaxAttempts: 1,
		})
		defer func() {
			d.Stop()
			if t.Failed() {
				t.Logf("%s console:\n%s", id, console)
			}
		}()
		return d.Start(ctx)
	}
	if err := start("dev-good", good); err != nil {
		t.Fatalf("device that is not revoked: %v", err)
	}
	if err := start("dev-revoked", bad); err == nil {
		t.Fatal("mosquitto accepted a device our CRL revokes")
	}
}
