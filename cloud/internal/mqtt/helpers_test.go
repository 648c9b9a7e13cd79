package mqtt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// wait bounds everything a test waits for.
const wait = 10 * time.Second

// clock is a virtual clock shared by the cloud, its registry and the CAs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a cloud (registry, authority, MQTT endpoint) with project "acme".
type env struct {
	t     *testing.T
	ctx   context.Context
	clock *clock
	reg   *registry.Registry
	auth  *fakeca.Authority
	srv   *Server
	roots *x509.CertPool // the cloud's root, for clients
}

func newEnv(t *testing.T, tweak ...func(*Options)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	clk := &clock{t: time.Now()}
	reg, err := registry.Open(":memory:", registry.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	auth, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Registry:  reg,
		Authority: auth,
		Now:       clk.Now,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range tweak {
		f(&opts)
	}
	srv, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(auth.Root.Cert)
	return &env{t: t, ctx: ctx, clock: clk, reg: reg, auth: auth, srv: srv, roots: roots}
}

// newCA makes a device CA (a root) on the env's clock and registers it with
// acme in the given mode ("" registers nothing).
func (e *env) newCA(name string, mode registry.CAMode, template string) *fakeca.CA {
	e.t.Helper()
	ca, err := fakeca.NewRoot(name, fakeca.ECDSAP256, 0, fakeca.Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	if mode != "" {
		if _, err := e.reg.RegisterCA(e.ctx, "acme", ca.Cert.Raw, mode, template); err != nil {
			e.t.Fatal(err)
		}
	}
	return ca
}

// identity is a client certificate with its key and the chain sent after it.
type identity struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate
}

func (e *env) issue(ca *fakeca.CA, cn, org string) identity {
	e.t.Helper()
	cert, key, err := ca.Issue(cn, org, fakeca.ECDSAP256, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return identity{cert: cert, key: key}
}

// device registers a thing with an ACTIVE certificate from ca.
func (e *env) device(ca *fakeca.CA, name string) identity {
	e.t.Helper()
	id := e.issue(ca, name, "acme")
	if _, err := e.reg.CreateDevice(e.ctx, "acme", name); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.reg.AddCertificate(e.ctx, "acme", name, id.cert.Raw, registry.StateActive); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// client is a paho client (MQTT 3.1.1) with what it received.
type client struct {
	paho.Client
	lost chan error
	msgs chan paho.Message
}

func (e *env) clientOptions(id identity, clientID string) (*paho.ClientOptions, *client) {
	chain := [][]byte{id.cert.Raw}
	for _, c := range id.chain {
		chain = append(chain, c.Raw)
	}
	c := &client{lost: make(chan error, 1), msgs: make(chan paho.Message, 64)}
	o := paho.NewClientOptions().
		AddBroker("tls://" + e.srv.Addr().String()).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(wait).
		SetWriteTimeout(wait).
		SetKeepAlive(30 * time.Second).
		SetTLSConfig(&tls.Config{
			RootCAs:      e.roots,
			Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: id.key}},
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m })
	return o, c
}

// connect connects and returns the client, or the error (with the CONNACK
// return code when there was one).
func (e *env) connect(id identity, clientID string) (*client, error) {
	e.t.Helper()
	o, c := e.clientOptions(id, clientID)
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		e.t.Fatalf("connect %s: no answer within %s", clientID, wait)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (e *env) mustConnect(id identity, clientID string) *client {
	e.t.Helper()
	c, err := e.connect(id, clientID)
	if err != nil {
		e.t.Fatalf("connect %s: %v", clientID, err)
	}
	return c
}

// subscribe subscribes (QoS 1) and returns the granted QoS of each filter.
func (c *client) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	res := tok.(*paho.SubscribeToken).Result()
	out := make([]byte, len(filters))
	for i, f := range filters {
		out[i] = res[f]
	}
	return out
}

func (c *client) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message the client received.
func (c *client) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case err := <-c.lost:
		t.Fatalf("connection lost while waiting for a message: %v", err)
	case <-time.After(wait):
		t.Fatalf("no message within %s", wait)
	}
	return nil
}

// mark is the sequence number of the last event so far.
func (e *env) mark() int64 {
	e.t.Helper()
	seq, err := e.reg.LastSeq(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return seq
}

// event waits for an event after seq.
func (e *env) event(after int64, f registry.Filter) registry.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, wait)
	defer cancel()
	f.AfterSeq = after
	ev, err := e.reg.WaitEvent(ctx, f)
	if err != nil {
		e.t.Fatalf("wait for event %+v: %v", f, err)
	}
	return ev
}

// csr makes a P-256 key and a PEM CSR for it.
func csr(t testing.TB, subject pkix.Name) (crypto.Signer, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// parseChain parses PEM certificates, leaf first.
func parseChain(t *testing.T, p string) []*x509.Certificate {
	t.Helper()
	certs, err := fakeca.ParseCertPEMOrDER([]byte(p))
	if err != nil || len(certs) == 0 {
		t.Fatalf("certificate PEM: %v", err)
	}
	return certs
}
