package sim_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
)

// The project every test device belongs to.
const project = "acme"

// testBroker is a small MQTT/TLS broker implementing just enough of the
// cloud's MQTT contract for the device tests: client certificates from the
// device CA or the claim CA, a JITP-like first-connect close, CSR signing on
// devices/<id>/certs/csr and fleet provisioning (create-from-csr, create,
// provision) in JSON and CBOR. Answers are published through the broker;
// each test has one device, so nobody else sees them.
type testBroker struct {
	t      testing.TB
	srv    *mqtt.Server
	addr   string
	device *fakeca.Authority // issues device certificates, rotations, fleet certificates
	claim  *fakeca.Authority // issues claim (bootstrap) certificates
	roots  *x509.CertPool    // what devices trust for the server
	now    func() time.Time
	once   sync.Once

	mu         sync.Mutex
	closeFirst int               // connections of a certificate closed before CONNACK (JITP: 1)
	attempts   map[string]int    // CONNECTs per leaf certificateId
	accepted   []string          // certificateIds that got CONNACK, in order
	tokens     map[string]string // ownership token -> certificateId
	csrs       []*x509.CertificateRequest
	rejectCSR  string // when set, CSRs on devices/<id>/certs/csr are rejected with this errorCode
	template   string
	denyPrefix string // subscriptions to topics with this prefix are refused (ACL)
}

type brokerOptions struct {
	CloseFirst int              // see testBroker.closeFirst
	Now        func() time.Time // the cloud's clock (default time.Now)
}

func newTestBroker(t testing.TB, o brokerOptions) *testBroker {
	t.Helper()
	if o.Now == nil {
		o.Now = time.Now
	}
	copts := fakeca.Options{Now: o.Now}
	device, err := fakeca.Init(fakeca.ECDSAP256, copts)
	if err != nil {
		t.Fatal(err)
	}
	claimRoot, err := fakeca.NewRoot("claim root", fakeca.ECDSAP256, fakeca.DefaultRootValidity, copts)
	if err != nil {
		t.Fatal(err)
	}
	claimInter, err := claimRoot.NewIntermediate("claim intermediate", fakeca.ECDSAP256, fakeca.DefaultIntermediateValidity)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBroker{
		t: t, device: device, claim: &fakeca.Authority{Root: claimRoot, Issuing: claimInter}, now: o.Now,
		closeFirst: o.CloseFirst, attempts: map[string]int{}, tokens: map[string]string{}, template: "tmpl",
	}
	b.roots = x509.NewCertPool()
	b.roots.AddCert(device.Root.Cert)
	serverCert, err := device.Issuing.ServerCert([]string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{
		MinVersion:            tls.VersionTLS12,
		Certificates:          []tls.Certificate{serverCert},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: b.verify,
	}
	b.srv = mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := b.srv.AddHook(&brokerHook{b: b}, nil); err != nil {
		t.Fatal(err)
	}
	nl, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := &trackedListener{ln: nl, conns: map[net.Conn]bool{}}
	if err := b.srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Address()
	t.Cleanup(b.Close)
	return b
}

// trackedListener is a TLS listener for mochi that, unlike
// listeners.TCP, knows its connections: Close closes them all and waits
// for their goroutines before mochi waits for its clients. With
// listeners.TCP, a connection accepted while the server closes races
// (ClientsWg.Add after Wait; a shared err variable in Serve) and may hang.
type trackedListener struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]bool
}

func (l *trackedListener) Init(*slog.Logger) error { return nil }
func (l *trackedListener) ID() string              { return "mqtts" }
func (l *trackedListener) Address() string         { return l.ln.Addr().String() }
func (l *trackedListener) Protocol() string        { return "tcp" }

func (l *trackedListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = true
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			_ = establish(l.ID(), c)
			_ = c.Close()
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

func (l *trackedListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	closeClients(l.ID())
	l.wg.Wait()
}

// Close stops the broker; it may be called more than once.
func (b *testBroker) Close() { b.once.Do(func() { _ = b.srv.Close() }) }

// verify accepts chains to the device or the claim root, leaf only or not,
// with the cloud's clock.
func (b *testBroker) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("no client certificate")
	}
	certs, err := x509.ParseCertificates(bytes.Join(raw, nil))
	if err != nil {
		return err
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(b.device.Root.Cert)
	roots.AddCert(b.claim.Root.Cert)
	inters.AddCert(b.device.Issuing.Cert)
	inters.AddCert(b.claim.Issuing.Cert)
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: b.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// chainPEM is what the cloud sends: leaf + intermediate.
func (b *testBroker) chainPEM(leaf *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.device.Issuing.Cert.Raw}))
}

// deviceCredential issues a factory credential (leaf + intermediate).
func deviceCredential(t testing.TB, ca *fakeca.CA, cn, org string) devicemodel.Credential {
	t.Helper()
	cert, key, err := ca.Issue(cn, org, fakeca.ECDSAP256, 0)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return devicemodel.Credential{Kind: devicemodel.KindCert, CertChainDER: [][]byte{cert.Raw, ca.Cert.Raw}, KeyDER: kd}
}

// rotationPayload is the seed-002 message for a fresh key and a
// certificate from ca.
func rotationPayload(t testing.TB, ca *fakeca.CA, id string) ([]byte, devicemodel.Credential) {
	t.Helper()
	c := deviceCredential(t, ca, id, project)
	var chain bytes.Buffer
	for _, der := range c.CertChainDER {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	p, err := json.Marshal(map[string]string{
		"new_certificate": chain.String(),
		"new_private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: c.KeyDER})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// publish sends a message to subscribers (QoS 1).
func (b *testBroker) publish(topic string, payload []byte) {
	b.t.Helper()
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		b.t.Fatalf("publish %s: %v", topic, err)
	}
}

// drop closes the connection of a client, as a revocation would.
func (b *testBroker) drop(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return false
	}
	cl.Stop(errors.New("dropped by the test"))
	return true
}

func (b *testBroker) attemptsFor(certID string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts[certID]
}

func (b *testBroker) acceptedIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.accepted...)
}

func (b *testBroker) tokenCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.tokens)
}

func (b *testBroker) receivedCSRs() []*x509.CertificateRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*x509.CertificateRequest(nil), b.csrs...)
}

func (b *testBroker) setRejectCSR(code string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rejectCSR = code
}

// brokerHook implements the contract's parts on mochi's hooks.
type brokerHook struct {
	mqtt.HookBase
	b *testBroker
}

func (h *brokerHook) ID() string { return "credloop-test" }

func (h *brokerHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublished}, []byte{b})
}

func leafID(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return fakeca.Fingerprint(certs[0].Raw)
}

// OnConnect closes the first closeFirst connections of a certificate
// without CONNACK, as AWS does while it registers the certificate.
func (h *brokerHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	b := h.b
	id := leafID(cl)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[id]++
	if b.attempts[id] <= b.closeFirst {
		return fmt.Errorf("certificate %s PENDING_ACTIVATION", id[:8])
	}
	return nil
}

func (h *brokerHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.accepted = append(b.accepted, leafID(cl))
	return true
}

func (h *brokerHook) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return write || h.b.denyPrefix == "" || !strings.HasPrefix(topic, h.b.denyPrefix)
}

func (b *testBroker) setDenyPrefix(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.denyPrefix = p
}

// OnPublished answers the requests of the contract.
func (h *brokerHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	b, topic := h.b, pk.TopicName
	switch {
	case strings.HasPrefix(topic, "$aws/certificates/create-from-csr/"):
		b.createFromCSR(topic, strings.TrimPrefix(topic, "$aws/certificates/create-from-csr/"), pk.Payload)
	case strings.HasPrefix(topic, "$aws/certificates/create/"):
		b.create(topic, strings.TrimPrefix(topic, "$aws/certificates/create/"), pk.Payload)
	case strings.HasPrefix(topic, "$aws/provisioning-templates/"):
		parts := strings.Split(strings.TrimPrefix(topic, "$aws/provisioning-templates/"), "/")
		if len(parts) == 3 && parts[1] == "provision" {
			b.provision(topic, parts[0], parts[2], pk.Payload)
		}
	case strings.HasPrefix(topic, "devices/") && strings.HasSuffix(topic, "/certs/csr"):
		b.deviceCSR(topic, strings.TrimSuffix(strings.TrimPrefix(topic, "devices/"), "/certs/csr"), pk.Payload)
	}
}

func decodeAs(format string, data []byte, v any) error {
	if format == "cbor" {
		return cbor.Unmarshal(data, v)
	}
	return json.Unmarshal(data, v)
}

func (b *testBroker) answer(topic, format string, v any) {
	var (
		data []byte
		err  error
	)
	if format == "cbor" {
		data, err = cbor.Marshal(v)
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		b.t.Errorf("encode answer: %v", err)
		return
	}
	if err := b.srv.Publish(topic, data, false, 1); err != nil {
		b.t.Errorf("publish %s: %v", topic, err)
	}
}

func (b *testBroker) reject(request, format string, status int, code, msg string) {
	b.answer(request+"/rejected", format, map[string]any{"statusCode": status, "errorCode": code, "errorMessage": msg})
}

func (b *testBroker) newToken(certID string) string {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	tok := base64.RawURLEncoding.EncodeToString(buf)
	b.mu.Lock()
	b.tokens[tok] = certID
	b.mu.Unlock()
	return tok
}

func (b *testBroker) createFromCSR(topic, format string, payload []byte) {
	var req struct {
		CSR string `json:"certificateSigningRequest"`
	}
	if err := decodeAs(format, payload, &req); err != nil || req.CSR == "" {
		b.reject(topic, format, 400, "InvalidPayload", "certificateSigningRequest missing")
		return
	}
	csr, err := fakeca.ParseCSR([]byte(req.CSR))
	if err != nil {
		b.reject(topic, format, 400, "InvalidCSR", err.Error())
		return
	}
	cert, err := b.device.Issuing.SignCSR(csr, fakeca.Policy{})
	if err != nil {
		b.reject(topic, format, 400, "InvalidCSR", err.Error())
		return
	}
	id := fakeca.Fingerprint(cert.Raw)
	b.answer(topic+"/accepted", format, map[string]string{
		"certificateId": id, "certificatePem": b.chainPEM(cert), "certificateOwnershipToken": b.newToken(id),
	})
}

func (b *testBroker) create(topic, format string, payload []byte) {
	if format == "json" && len(payload) > 0 {
		var req map[string]any
		if err := json.Unmarshal(payload, &req); err != nil {
			b.reject(topic, format, 400, "InvalidPayload", "not a JSON object")
			return
		}
	}
	cert, key, err := b.device.Issuing.Issue("AWS IoT Certificate", "", fakeca.ECDSAP256, 0)
	if err != nil {
		b.reject(topic, format, 500, "InternalFailure", err.Error())
		return
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.reject(topic, format, 500, "InternalFailure", err.Error())
		return
	}
	id := fakeca.Fingerprint(cert.Raw)
	b.answer(topic+"/accepted", format, map[string]string{
		"certificateId": id, "certificatePem": b.chainPEM(cert), "certificateOwnershipToken": b.newToken(id),
		"privateKey": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})),
	})
}

func (b *testBroker) provision(topic, template, format string, payload []byte) {
	if template != b.template {
		b.reject(topic, format, 404, "ResourceNotFound", "no template "+template)
		return
	}
	var req struct {
		Token      string            `json:"certificateOwnershipToken"`
		Parameters map[string]string `json:"parameters"`
	}
	if err := decodeAs(format, payload, &req); err != nil {
		b.reject(topic, format, 400, "InvalidPayload", "cannot decode")
		return
	}
	b.mu.Lock()
	_, ok := b.tokens[req.Token]
	delete(b.tokens, req.Token)
	b.mu.Unlock()
	if !ok {
		b.reject(topic, format, 403, "InvalidCertificateOwnershipToken", "unknown token")
		return
	}
	name := req.Parameters["SerialNumber"]
	if name == "" {
		b.reject(topic, format, 400, "InvalidParameters", "SerialNumber is required")
		return
	}
	b.answer(topic+"/accepted", format, map[string]any{"deviceConfiguration": map[string]string{}, "thingName": name})
}

func (b *testBroker) deviceCSR(topic, device string, payload []byte) {
	var req struct {
		CSR string `json:"certificateSigningRequest"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		b.reject(topic, "json", 400, "InvalidPayload", "cannot decode")
		return
	}
	csr, err := fakeca.ParseCSR([]byte(req.CSR))
	if err != nil {
		b.reject(topic, "json", 400, "InvalidCSR", err.Error())
		return
	}
	b.mu.Lock()
	b.csrs = append(b.csrs, csr)
	code := b.rejectCSR
	b.mu.Unlock()
	if code != "" {
		b.reject(topic, "json", 400, code, "rejected by the test")
		return
	}
	if csr.Subject.CommonName != device {
		b.reject(topic, "json", 400, "InvalidCSR", "CN is not the device id")
		return
	}
	cert, err := b.device.Issuing.SignCSR(csr, fakeca.Policy{Organization: project})
	if err != nil {
		b.reject(topic, "json", 400, "InvalidCSR", err.Error())
		return
	}
	b.answer(topic+"/accepted", "json", map[string]string{"certificateId": fakeca.Fingerprint(cert.Raw), "certificatePem": b.chainPEM(cert)})
}

// syncBuffer is a console that tests may read while the device writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// virtualClock is a settable clock shared by a device and the cloud.
type virtualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *virtualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// noDeviceGoroutines fails when a goroutine of the MQTT device is still
// running once its device was stopped. Goroutines may take a moment to
// return after their last action, so it re-checks until a deadline.
func noDeviceGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var ours []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "credloop/sim.(*MQTTDevice)") {
				ours = append(ours, g)
			}
		}
		if len(ours) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d device goroutines still running after Stop:\n%s", len(ours), strings.Join(ours, "\n\n"))
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}
