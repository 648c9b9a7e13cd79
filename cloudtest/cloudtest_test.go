package cloudtest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/cloudtest"
	"github.com/credloop/credloop/sim"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startCoAP makes a DTLS device from id, starts it, checks the cloud
// knows who it is and returns the auth event the cloud recorded.
func startCoAP(t *testing.T, c *cloudtest.Cloud, id sim.Identity, kind registry.EventKind) registry.Event {
	t.Helper()
	ctx := ctxT(t)
	after := c.LastSeq()
	dev, err := sim.NewDevice(sim.DeviceOptions{Identity: id, Addr: c.Addrs().CoAPS, RootCAs: c.ServerPool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	if err := dev.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := dev.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Device != "dev-1" || h.Project != "acme" {
		t.Fatalf("hello = %+v", h)
	}
	return c.WaitEvent(ctx, registry.Filter{Project: "acme", Device: "dev-1", Kind: kind, AfterSeq: after})
}

func TestPSKDevice(t *testing.T) {
	c := cloudtest.New(t)
	psk := c.AddPSKDevice("acme", "dev-1")
	if psk.Identity != "dev-1@acme" || len(psk.Key) != cloudtest.PSKSize {
		t.Fatalf("psk identity %q, %d bytes", psk.Identity, len(psk.Key))
	}
	// ID and project come from the identity; or are given, and the
	// identity defaults to ID@Project.
	for _, id := range []sim.Identity{
		{PSKIdentity: psk.Identity, PSK: psk.Key},
		{ID: "dev-1", Project: "acme", PSK: psk.Key},
	} {
		ev := startCoAP(t, c, id, registry.EventAuthPSK)
		if ev.Outcome != registry.OutcomeOK || ev.Credential != psk.Identity {
			t.Errorf("event = %+v", ev)
		}
	}
	// A second device gets its own key.
	if other := c.AddPSKDevice("acme", "dev-2"); string(other.Key) == string(psk.Key) {
		t.Error("two devices got the same PSK")
	}
}

func TestCertificateDevice(t *testing.T) {
	c := cloudtest.New(t)
	dc := c.IssueDevice("acme", "dev-1")
	if _, err := dc.TLS.Leaf.Verify(x509.VerifyOptions{Roots: c.RootPool(), Intermediates: pool(t, dc.TLS.Certificate[1:]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify against RootPool: %v", err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "dev.pem"), filepath.Join(dir, "dev.key")
	if err := os.WriteFile(certFile, dc.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, dc.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var derChain []byte
	for _, der := range dc.TLS.Certificate {
		derChain = append(derChain, der...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(dc.TLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]sim.Identity{
		"pem":   {Cert: dc.CertPEM, Key: dc.KeyPEM},
		"der":   {ID: "dev-1", Project: "acme", Cert: derChain, Key: keyDER},
		"files": {CertFile: certFile, KeyFile: keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			ev := startCoAP(t, c, id, registry.EventAuthCert)
			if ev.Outcome != registry.OutcomeOK {
				t.Errorf("event = %+v", ev)
			}
		})
	}
}

func pool(t *testing.T, ders [][]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		p.AddCert(c)
	}
	return p
}

func TestMQTTDevice(t *testing.T) {
	c := cloudtest.New(t)
	dc := c.IssueDevice("acme", "dev-1")
	ctx := ctxT(t)
	dev, err := sim.NewMQTTDevice(sim.MQTTDeviceOptions{
		Identity: sim.Identity{Cert: dc.CertPEM, Key: dc.KeyPEM},
		Addr:     c.Addrs().MQTTS,
		RootCAs:  c.ServerPool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	if err := dev.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := dev.State()
	if !st.Online || st.Model.ID != "dev-1" || st.Model.Slot != sim.SlotFactory || st.Model.Kind != "cert" {
		t.Fatalf("state = online %t %s", st.Online, st.Model)
	}
	ev := c.WaitEvent(ctx, registry.Filter{Project: "acme", Device: "dev-1", Kind: registry.EventAuthMQTT})
	if ev.Outcome != registry.OutcomeOK {
		t.Fatalf("event = %+v", ev)
	}
}

// TestServerPool: every endpoint's certificate verifies against
// ServerPool under the names a test dials.
func TestServerPool(t *testing.T) {
	c := cloudtest.New(t)
	for _, addr := range []string{c.Addrs().MQTTS, c.Addrs().HTTPS} {
		for _, name := range []string{"localhost", "127.0.0.1"} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: c.ServerPool(), ServerName: name})
			if err != nil {
				t.Errorf("dial %s as %s: %v", addr, name, err)
				continue
			}
			conn.Close()
		}
	}
	if string(c.RootPEM()) != string(c.CA().RootPEM()) {
		t.Error("RootPEM is not the CA's")
	}
}

func TestOptions(t *testing.T) {
	ca, err := cloud.NewCA(cloud.CAOptions{Name: "team root"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := cloudtest.New(t, cloudtest.Options{CA: ca, Now: func() time.Time { return now }})
	if c.CA() != ca {
		t.Fatal("the cloud does not use the CA it was given")
	}
	dc := c.IssueDevice("acme", "dev-1")
	if dc.TLS.Leaf.Subject.CommonName != "dev-1" || dc.TLS.Leaf.Issuer.CommonName == "" {
		t.Fatalf("leaf %s issued by %s", dc.TLS.Leaf.Subject, dc.TLS.Leaf.Issuer)
	}
	c.AddProject("beta")
	c.AddProject("beta") // exists: no failure
	// The cloud's clock stamps its events.
	psk := c.AddPSKDevice("beta", "dev-9")
	ctx := ctxT(t)
	dev, err := sim.NewDevice(sim.DeviceOptions{Identity: sim.Identity{PSKIdentity: psk.Identity, PSK: psk.Key}, Addr: c.Addrs().CoAPS})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ev := c.WaitEvent(ctx, registry.Filter{Project: "beta", Kind: registry.EventAuthPSK})
	if !ev.Time.Equal(now) {
		t.Errorf("event time %s, want the cloud's clock %s", ev.Time, now)
	}
}

// TestCleanup: the cloud closes when the test that made it ends.
func TestCleanup(t *testing.T) {
	var addrs cloud.Addrs
	t.Run("inner", func(t *testing.T) {
		addrs = cloudtest.New(t).Addrs()
		conn, err := net.Dial("tcp", addrs.MQTTS)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	})
	for _, addr := range []string{addrs.MQTTS, addrs.HTTPS} {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still listening after the test ended", addr)
		}
	}
}
