package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credloop/credloop/internal/devicemodel"
)

// MQTT device errors.
var (
	// ErrClosedBeforeConnack is what a device sees when the cloud accepts
	// the TLS handshake and then closes the connection without a CONNACK:
	// AWS does so on the first connection of a certificate it registers
	// just in time (JITP/JITR). The device retries (JITPRetries).
	ErrClosedBeforeConnack = errors.New("sim: connection closed before CONNACK")
	// ErrNotConnected is returned by operations that need a live MQTT
	// connection when the device has none.
	ErrNotConnected = errors.New("sim: device is not connected")
	// ErrSubscribeRefused is returned when the cloud refused a
	// subscription (SUBACK 0x80), e.g. a topic its ACL does not allow.
	ErrSubscribeRefused = errors.New("sim: subscription refused by the cloud")
)

// MQTT defaults.
const (
	DefaultMQTTConnectTimeout  = 5 * time.Second
	DefaultJITPRetries         = 3
	DefaultMQTTRetryDelay      = 100 * time.Millisecond
	DefaultMQTTResponseTimeout = 10 * time.Second
	// MaxMQTTPayload bounds the answers the device decodes (the cloud's
	// limit too).
	MaxMQTTPayload = 64 << 10
)

// disconnectQuiesce is how long a DISCONNECT may take, in milliseconds.
const disconnectQuiesce = 250

// MQTTDeviceOptions configures a simulated MQTT device. Zero values mean
// defaults.
type MQTTDeviceOptions struct {
	// Identity is who the device is and its factory credential, which
	// must be a certificate (device or claim); see NewMQTTDevice.
	Identity Identity
	// Addr is the cloud's mqtts address, host:port.
	Addr string
	// RootCAs verifies the server certificate; nil means not verified.
	RootCAs *x509.CertPool
	// ServerName is sent as SNI and checked against the server certificate
	// (default: the host of Addr).
	ServerName string
	// ClientID is the MQTT client identifier (default: the device id).
	ClientID string
	// Console receives the device's log lines, one per line, as firmware
	// would print them. Nil discards them. Writes are serialised.
	Console io.Writer
	// Now is the device's clock (RTC): console timestamps and the renewal
	// window. It must be safe for concurrent use. TLS uses the real clock,
	// as the CoAP device does.
	Now func() time.Time
	// Rand is the source of the keys the device generates. It is read
	// under a lock, so a deterministic reader may be passed.
	Rand io.Reader
	// ConnectTimeout bounds one connection attempt: TCP, TLS and CONNACK
	// (default 5 s).
	ConnectTimeout time.Duration
	// JITPRetries is how many times a connection closed before CONNACK is
	// retried with the same credential before it counts as a failure
	// (default 3; negative: never).
	JITPRetries int
	// RetryDelay is the pause before the first such retry, doubled for
	// each further one (default 100 ms).
	RetryDelay time.Duration
	// MaxAttempts bounds connection attempts in one Start, across the
	// reboots the model asks for (default 10). JITP retries do not count.
	MaxAttempts int
	// ResponseTimeout bounds each wait for the cloud: SUBACK, PUBACK, a
	// fleet-provisioning answer (default 10 s).
	ResponseTimeout time.Duration
}

// MQTTState is a snapshot of an MQTT device for assertions. It holds no
// secrets.
type MQTTState struct {
	// Online is whether a connection is up and subscribed.
	Online bool
	// Connects counts the connections that got online (CONNACK accepted,
	// subscriptions made) since the device was made; fleet-provisioning
	// connections do not count.
	Connects int
	// Handled counts the messages on the device's topics whose handling
	// has finished (including any reboot they caused).
	Handled int
	// Err is the last failure of background work (an ignored rotation, a
	// rejected CSR, a reboot that could not get online); a successful
	// connection clears it.
	Err error
	// Model is the snapshot of the device's credential logic.
	Model ModelState
}

// MQTTDevice is a simulated device that speaks MQTT 3.1.1 over TLS with a
// client certificate (AWS IoT style): JITP/JITR first-connect retries,
// certificate rotation on devices/<id>/certs/rotate (a new certificate and
// key, or a CSR round trip), renewal before expiry and fleet provisioning
// by claim. Every credential decision comes from the model, as for Device.
// Methods are safe for concurrent use.
type MQTTDevice struct {
	opts  MQTTDeviceOptions
	model *devicemodel.Device
	rand  io.Reader
	off   chan struct{} // closed; returned by Done when there is no connection

	// op serialises what changes the connection: Start, Reboot,
	// PowerCycle, ProvisionByClaim, the disconnect of Stop and background
	// reboots.
	op sync.Mutex

	mu       sync.Mutex // guards the fields below; never held across I/O
	sess     *mqttSession
	life     *mqttLife
	changed  chan struct{} // closed and replaced on every change
	connects int
	handled  int
	lastErr  error

	conMu sync.Mutex // serialises console writes
}

// mqttLife scopes background work: Stop cancels it and waits for it.
type mqttLife struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newMQTTLife() *mqttLife {
	ctx, cancel := context.WithCancel(context.Background())
	return &mqttLife{ctx: ctx, cancel: cancel}
}

// mqttSession is one MQTT connection.
type mqttSession struct {
	client paho.Client
	life   *mqttLife
	done   chan struct{}
	once   sync.Once
	ready  bool // subscribed; guarded by MQTTDevice.mu
	// csrAnswered is set when the cloud answered a CSR on this
	// connection: the CSR got there even if its PUBACK was lost to the
	// reboot the answer caused.
	csrAnswered atomic.Bool
}

// finish runs before (if any) and closes done, once; it reports whether
// this call did. Whoever sees done closed also sees what before did.
func (s *mqttSession) finish(before func()) bool {
	first := false
	s.once.Do(func() {
		if before != nil {
			before()
		}
		close(s.done)
		first = true
	})
	return first
}

// online reports whether s is subscribed and up; d.mu must be held.
func (s *mqttSession) online() bool { return s != nil && s.ready && s.alive() }

func (s *mqttSession) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// close sends DISCONNECT and reports whether the connection was still up.
func (s *mqttSession) close() bool {
	if s.client != nil {
		s.client.Disconnect(disconnectQuiesce)
	}
	return s.finish(nil)
}

// newMQTTDevice returns a powered-off device running model; Start boots
// it.
func newMQTTDevice(model *devicemodel.Device, o MQTTDeviceOptions) *MQTTDevice {
	if model == nil {
		// Start then fails with a clear error instead of a nil dereference.
		model = devicemodel.New(devicemodel.Config{}, nil)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultMQTTConnectTimeout
	}
	switch {
	case o.JITPRetries == 0:
		o.JITPRetries = DefaultJITPRetries
	case o.JITPRetries < 0:
		o.JITPRetries = 0
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultMQTTRetryDelay
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = DefaultMQTTResponseTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.ServerName == "" {
		if host, _, err := net.SplitHostPort(o.Addr); err == nil {
			o.ServerName = host
		}
	}
	off := make(chan struct{})
	close(off)
	return &MQTTDevice{
		opts:    o,
		model:   model,
		rand:    &lockedReader{r: o.Rand},
		off:     off,
		life:    newMQTTLife(),
		changed: make(chan struct{}),
	}
}

// lockedReader serialises reads, so one deterministic reader can serve
// the device's goroutines.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// ID is the device id (the AWS thing name) from the model's configuration.
func (d *MQTTDevice) ID() string { return d.model.Config().ID }

func (d *MQTTDevice) clientID() string {
	if d.opts.ClientID != "" {
		return d.opts.ClientID
	}
	return d.ID()
}

// Topics of the device (the ESP32 rotation example).
func rotateTopic(id string) string { return "devices/" + id + "/certs/rotate" }
func csrTopic(id string) string    { return "devices/" + id + "/certs/csr" }

func (d *MQTTDevice) logf(format string, args ...any) {
	if d.opts.Console == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	d.conMu.Lock()
	defer d.conMu.Unlock()
	fmt.Fprintf(d.opts.Console, "%s [%s] %s\n", d.opts.Now().UTC().Format("15:04:05.000"), d.ID(), line)
}

func (d *MQTTDevice) logLines(lines []string) {
	for _, l := range lines {
		d.logf("%s", l)
	}
}

// notifyLocked wakes every Wait. d.mu must be held.
func (d *MQTTDevice) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *MQTTDevice) update(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn()
	d.notifyLocked()
}

func (d *MQTTDevice) setErr(err error) { d.update(func() { d.lastErr = err }) }

func (d *MQTTDevice) currentLife() *mqttLife {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.life
}

// session returns the live connection.
func (d *MQTTDevice) session() (*mqttSession, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.sess.online() {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, d.model.Config().ID)
	}
	return d.sess, nil
}

// spawn runs fn in a goroutine of s's life, unless s is no longer the
// device's connection or its life has ended.
func (d *MQTTDevice) spawn(s *mqttSession, fn func(ctx context.Context)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != s || s.life.ctx.Err() != nil {
		return false
	}
	s.life.wg.Add(1)
	go func() {
		defer s.life.wg.Done()
		fn(s.life.ctx)
	}()
	return true
}

// Start boots the device and connects, following the model's decisions
// exactly as Device.Start does: a connection closed before CONNACK is
// retried (JITPRetries) with the same credential; a rotated certificate
// that cannot connect reboots until the boot counter sends the device back
// to its factory certificate. Once connected it subscribes (QoS 1) to
// devices/<id>/certs/rotate and devices/<id>/certs/csr/+, then checks the
// renewal window (CheckRenewal). It returns nil once online.
func (d *MQTTDevice) Start(ctx context.Context) error {
	d.op.Lock()
	defer d.op.Unlock()
	return d.startLocked(ctx, d.currentLife())
}

func (d *MQTTDevice) startLocked(ctx context.Context, l *mqttLife) error {
	id := d.ID()
	if id == "" || strings.ContainsAny(id, "/+#") {
		return fmt.Errorf("sim: device id %q cannot be used in an MQTT topic", id)
	}
	d.closeLocked()
	return connectLoop[*mqttSession]{
		model:       d.model,
		id:          id,
		maxAttempts: d.opts.MaxAttempts,
		logf:        d.logf,
		target:      "mqtts://" + d.opts.Addr,
		dial: func(ctx context.Context, cred devicemodel.Credential) (*mqttSession, error) {
			s, err := d.connect(ctx, cred, l)
			if err == nil {
				d.logf("MQTT_EVENT_CONNECTED (CONNACK accepted)")
			}
			return s, err
		},
		discard: func(s *mqttSession) { s.close() },
		online: func(ctx context.Context, s *mqttSession, _ devicemodel.Credential) (bool, error) {
			if err := d.goOnline(ctx, s); err != nil {
				d.setErr(err)
				return false, err
			}
			return false, nil
		},
		offline: d.setErr,
	}.run(ctx)
}

// goOnline makes s the device's connection, subscribes to the device's
// topics and checks the renewal window.
func (d *MQTTDevice) goOnline(ctx context.Context, s *mqttSession) error {
	d.mu.Lock()
	d.sess = s // before subscribing: a message may follow the SUBACK at once
	d.mu.Unlock()
	id := d.ID()
	subs := map[string]byte{rotateTopic(id): 1, csrTopic(id) + "/+": 1}
	tok := s.client.SubscribeMultiple(subs, func(_ paho.Client, m paho.Message) { d.onMessage(s, m) })
	if err := d.waitToken(ctx, s, tok); err != nil {
		d.closeLocked()
		return fmt.Errorf("subscribe: %w", err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code == 0x80 {
				d.logf("subscription to %s refused by the cloud", topic)
			}
		}
	}
	d.logf("subscribed to %s and %s/+", rotateTopic(id), csrTopic(id))
	d.update(func() {
		s.ready = true
		d.connects++
		d.lastErr = nil
	})
	if err := d.checkRenewal(ctx, s); err != nil {
		d.logf("certificate renewal failed: %v", err)
		d.setErr(err)
	}
	return nil
}

// connect opens one MQTT connection with cred, retrying a connection
// closed before CONNACK up to JITPRetries times.
func (d *MQTTDevice) connect(ctx context.Context, cred devicemodel.Credential, l *mqttLife) (*mqttSession, error) {
	delay := d.opts.RetryDelay
	for try := 0; ; try++ {
		s, err := d.dial(ctx, cred, l)
		if err == nil || !errors.Is(err, ErrClosedBeforeConnack) || try >= d.opts.JITPRetries || ctx.Err() != nil {
			return s, err
		}
		d.logf("%v (the cloud may be registering this certificate); retry %d of %d in %s", err, try+1, d.opts.JITPRetries, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
}

// dial makes one connection attempt: TCP, TLS with the credential, CONNECT
// (MQTT 3.1.1, clean session) and CONNACK.
func (d *MQTTDevice) dial(ctx context.Context, cred devicemodel.Credential, l *mqttLife) (*mqttSession, error) {
	if cred.Kind != devicemodel.KindCert {
		return nil, fmt.Errorf("sim: MQTT needs a certificate credential, not %q", cred.Kind)
	}
	cert, err := cred.TLSCertificate()
	if err != nil {
		return nil, fmt.Errorf("sim: credential: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            d.opts.RootCAs,
		ServerName:         d.opts.ServerName,
		InsecureSkipVerify: d.opts.RootCAs == nil,
		// Firmware presents its certificate whatever CA names the server
		// lists, so the server decides.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
	var (
		cmu       sync.Mutex
		conn      net.Conn
		aborted   bool
		handshook bool
		hsErr     error
	)
	open := func(*url.URL, paho.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
		defer cancel()
		raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", d.opts.Addr)
		if err != nil {
			cmu.Lock()
			hsErr = fmt.Errorf("sim: %w", err)
			cmu.Unlock()
			return nil, err
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = raw.Close()
			cmu.Lock()
			hsErr = fmt.Errorf("sim: tls handshake: %w", err)
			cmu.Unlock()
			return nil, err
		}
		cmu.Lock()
		defer cmu.Unlock()
		if aborted {
			_ = tc.Close()
			return nil, context.Canceled
		}
		conn, handshook = tc, true
		return tc, nil
	}
	s := &mqttSession{life: l, done: make(chan struct{})}
	o := paho.NewClientOptions().
		AddBroker("tls://" + d.opts.Addr).
		SetClientID(d.clientID()).
		SetCleanSession(true).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(d.opts.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(d.opts.ResponseTimeout).
		SetCustomOpenConnectionFn(open).
		SetConnectionLostHandler(func(_ paho.Client, err error) { d.lost(s, err) })
	c := paho.NewClient(o)
	stop := context.AfterFunc(ctx, func() {
		cmu.Lock()
		defer cmu.Unlock()
		aborted = true
		if conn != nil {
			_ = conn.Close()
		}
	})
	tok := c.Connect()
	<-tok.Done()
	canceled := !stop()
	err = tok.Error()
	cmu.Lock()
	he, hs := hsErr, handshook
	cmu.Unlock()
	switch {
	case err == nil && canceled:
		c.Disconnect(0)
		return nil, ctx.Err()
	case err == nil:
		s.client = c
		return s, nil
	case he != nil:
		return nil, he
	case canceled:
		return nil, ctx.Err()
	case hs && closedBeforeConnack(err):
		return nil, fmt.Errorf("%w (%v)", ErrClosedBeforeConnack, cause(err))
	default:
		return nil, fmt.Errorf("sim: mqtt connect: %w", err)
	}
}

// closedBeforeConnack tells a peer that closed the connection (close_notify,
// EOF, reset) from a TLS alert or a CONNACK with a refusal code.
func closedBeforeConnack(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return false // a TLS alert: the certificate was refused
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// cause returns the innermost network error of a paho connect error.
func cause(err error) error {
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE, net.ErrClosed} {
		if errors.Is(err, target) {
			return target
		}
	}
	return err
}

// lost is paho's connection-lost callback.
func (d *MQTTDevice) lost(s *mqttSession, err error) {
	if s.finish(func() { d.logf("MQTT_EVENT_DISCONNECTED: connection lost: %v", err) }) {
		d.update(func() {})
	}
}

// closeLocked disconnects the device's connection, if any. d.op must be
// held.
func (d *MQTTDevice) closeLocked() {
	d.mu.Lock()
	s := d.sess
	d.sess = nil
	d.notifyLocked()
	d.mu.Unlock()
	if s != nil && s.close() {
		d.logf("disconnected")
	}
}

// waitToken waits for a paho token, the connection's end, ctx or
// ResponseTimeout, whichever comes first.
func (d *MQTTDevice) waitToken(ctx context.Context, s *mqttSession, tok paho.Token) error {
	t := time.NewTimer(d.opts.ResponseTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-s.done:
		// The token may have completed just before the connection ended.
		select {
		case <-tok.Done():
			return tok.Error()
		default:
		}
		return errors.New("sim: connection lost")
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("sim: no answer from the cloud within %s", d.opts.ResponseTimeout)
	}
}

func (d *MQTTDevice) publish(ctx context.Context, s *mqttSession, topic string, payload []byte) error {
	if err := d.waitToken(ctx, s, s.client.Publish(topic, 1, false, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Publish sends payload to topic (QoS 1) and waits for the PUBACK.
func (d *MQTTDevice) Publish(ctx context.Context, topic string, payload []byte) error {
	s, err := d.session()
	if err != nil {
		return err
	}
	return d.publish(ctx, s, topic, payload)
}

// onMessage is paho's callback for the device's topics. It never blocks:
// the work runs in a goroutine that Stop waits for.
func (d *MQTTDevice) onMessage(s *mqttSession, m paho.Message) {
	topic, payload := m.Topic(), bytes.Clone(m.Payload())
	d.spawn(s, func(ctx context.Context) {
		defer d.update(func() { d.handled++ })
		d.handle(ctx, s, topic, payload)
	})
}

func (d *MQTTDevice) handle(ctx context.Context, s *mqttSession, topic string, payload []byte) {
	id := d.ID()
	switch topic {
	case rotateTopic(id):
		if isCSRAction(payload) {
			d.logf("Certificate rotation command received: the cloud asks for a CSR.")
			if err := d.renew(ctx, s); err != nil {
				d.logf("CSR rotation failed: %v", err)
				d.setErr(err)
			}
			return
		}
		dec := d.model.HandleRotation(payload)
		d.logLines(dec.Log)
		switch {
		case dec.Reboot:
			d.rebootFrom(ctx, s)
		case dec.Err != nil:
			d.setErr(dec.Err)
		}
	case csrTopic(id) + "/accepted":
		s.csrAnswered.Store(true)
		d.completeCSR(ctx, s, payload)
	case csrTopic(id) + "/rejected":
		s.csrAnswered.Store(true)
		rej := parseRejected(formatJSON, payload, csrTopic(id))
		d.logf("CSR rejected by the cloud: %v", rej)
		d.setErr(rej)
	default:
		d.logf("ignoring a message on %s (%d bytes)", sanitizeText(topic), len(payload))
	}
}

// isCSRAction reports whether a rotation message is {"action":"csr"}.
func isCSRAction(payload []byte) bool {
	if len(payload) > MaxMQTTPayload {
		return false
	}
	var p struct {
		Action *string `json:"action"`
	}
	return json.Unmarshal(payload, &p) == nil && p.Action != nil && *p.Action == "csr"
}

// completeCSR installs the certificate of a csr/accepted answer and
// reboots into it.
func (d *MQTTDevice) completeCSR(ctx context.Context, s *mqttSession, payload []byte) {
	resp, err := parseCertResponse(formatJSON, payload, false, false)
	if err == nil {
		var chain [][]byte
		if chain, err = devicemodel.ParseCertChainPEM([]byte(resp.CertificatePem)); err == nil {
			d.logf("CSR accepted: certificateId %s", shortID(resp.CertificateID))
			if resp.CertificateID != "" && resp.CertificateID != certificateID(chain[0]) {
				d.logf("warning: certificateId %s is not the SHA-256 of the certificate (%s)", shortID(resp.CertificateID), shortID(certificateID(chain[0])))
			}
			err = d.model.CompleteCSR(bytes.Join(chain, nil))
			if err == nil {
				d.logf("New certificates (%s) stored in NVS. Rebooting in 5 seconds...", devicemodel.Fingerprint(chain[0]))
				d.rebootFrom(ctx, s)
				return
			}
		}
	}
	d.logf("Invalid certificate in CSR answer, ignored: %v", err)
	d.setErr(err)
}

// rebootFrom reboots the device (Reset, Start) on behalf of s, unless s is
// no longer the device's connection (someone else rebooted or stopped it).
func (d *MQTTDevice) rebootFrom(ctx context.Context, s *mqttSession) {
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	current := d.sess == s
	d.mu.Unlock()
	if !current || ctx.Err() != nil {
		return
	}
	d.logf("rebooting")
	d.closeLocked()
	d.model.Reset()
	if err := d.startLocked(ctx, s.life); err != nil {
		d.logf("after reboot: %v", err)
		d.setErr(err)
	}
}

// Renew publishes a CSR for a key generated on the device on
// devices/<id>/certs/csr (renewal before expiry, or the answer to
// {"action":"csr"}). The cloud answers on devices/<id>/certs/csr/accepted
// with the certificate, which the device stores and reboots into, or on
// .../rejected. The private key never leaves the device.
func (d *MQTTDevice) Renew(ctx context.Context) error {
	s, err := d.session()
	if err != nil {
		return err
	}
	return d.renew(ctx, s)
}

func (d *MQTTDevice) renew(ctx context.Context, s *mqttSession) error {
	cfg := d.model.Config()
	subject := pkix.Name{CommonName: cfg.ID}
	if cfg.Project != "" {
		subject.Organization = []string{cfg.Project}
	}
	der, err := d.model.PrepareCSR(d.rand, subject)
	if err != nil {
		return fmt.Errorf("sim %s: csr: %w", cfg.ID, err)
	}
	payload, err := json.Marshal(map[string]string{"certificateSigningRequest": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	if err != nil {
		return err
	}
	d.logf("Generated a new key on the device; publishing its CSR (CN=%s) on %s", cfg.ID, csrTopic(cfg.ID))
	s.csrAnswered.Store(false)
	if err := d.publish(ctx, s, csrTopic(cfg.ID), payload); err != nil && !s.csrAnswered.Load() {
		return err
	}
	return nil
}

// CheckRenewal renews (Renew) when the certificate in use expires within
// the model's renewal window of Now.
func (d *MQTTDevice) CheckRenewal(ctx context.Context) error {
	s, err := d.session()
	if err != nil {
		return err
	}
	return d.checkRenewal(ctx, s)
}

func (d *MQTTDevice) checkRenewal(ctx context.Context, s *mqttSession) error {
	now := d.opts.Now()
	if !d.model.NeedsRenewal(now) {
		return nil
	}
	st := d.model.State()
	d.logf("certificate %s expires %s (in %s): renewing", st.Fingerprint, st.NotAfter.UTC().Format(time.RFC3339), st.NotAfter.Sub(now).Round(time.Hour))
	return d.renew(ctx, s)
}

// Online reports whether the device has a live, subscribed connection.
func (d *MQTTDevice) Online() bool {
	_, err := d.session()
	return err == nil
}

// Done returns a channel closed when the current connection ends: the
// cloud dropped it, the network failed, or the device disconnected (Stop,
// a reboot). Without a connection it returns a closed channel; after a
// reconnection, call Done again.
func (d *MQTTDevice) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return d.off
	}
	return d.sess.done
}

// State returns a snapshot of the device.
func (d *MQTTDevice) State() MQTTState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stateLocked()
}

func (d *MQTTDevice) stateLocked() MQTTState {
	return MQTTState{
		Online:   d.sess.online(),
		Connects: d.connects,
		Handled:  d.handled,
		Err:      d.lastErr,
		Model:    modelState(d.model.State()),
	}
}

// Wait blocks until cond holds for the device's state, re-checking it after
// every change (connection up or down, message handled, background error),
// or until ctx ends. It returns the last state seen.
func (d *MQTTDevice) Wait(ctx context.Context, cond func(MQTTState) bool) (MQTTState, error) {
	for {
		d.mu.Lock()
		ch, st := d.changed, d.stateLocked()
		d.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("sim %s: waiting for the device: %w (state: online=%t connects=%d handled=%d err=%v)",
				st.Model.ID, ctx.Err(), st.Online, st.Connects, st.Handled, st.Err)
		case <-ch:
		}
	}
}

// Status is the device's model state on one line, plus whether it is online.
func (d *MQTTDevice) Status() string {
	st := d.State()
	return fmt.Sprintf("%s online=%v connects=%d %s", st.Model.ID, st.Online, st.Connects, st.Model.String())
}

// Stop cancels background work (a reboot after a rotation, a CSR) and
// waits for it, then disconnects; the device stays powered but offline.
// Start may be called again.
func (d *MQTTDevice) Stop() {
	d.mu.Lock()
	l := d.life
	d.life = newMQTTLife()
	l.cancel() // under d.mu: spawn adds to l.wg only before this
	d.mu.Unlock()
	l.wg.Wait()
	d.op.Lock()
	defer d.op.Unlock()
	d.closeLocked()
}

// Close is Stop; it satisfies io.Closer.
func (d *MQTTDevice) Close() error {
	d.Stop()
	return nil
}

// Reboot disconnects, resets the device (RTC kept) and starts it.
func (d *MQTTDevice) Reboot(ctx context.Context) error {
	d.op.Lock()
	defer d.op.Unlock()
	d.closeLocked()
	d.logf("rebooting")
	d.model.Reset()
	return d.startLocked(ctx, d.currentLife())
}

// PowerCycle disconnects, removes power (RTC lost, storage kept) and
// starts the device.
func (d *MQTTDevice) PowerCycle(ctx context.Context) error {
	d.op.Lock()
	defer d.op.Unlock()
	d.closeLocked()
	d.logf("power cycle")
	d.model.PowerCycle()
	return d.startLocked(ctx, d.currentLife())
}

// certificateID is the AWS certificateId: hex SHA-256 of the DER.
func certificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// shortID shortens a certificateId for the console.
func shortID(id string) string {
	id = sanitizeText(id)
	if len(id) > 8 {
		return id[:8]
	}
	if id == "" {
		return "(none)"
	}
	return id
}

// sanitizeText keeps text from the network on one printable, bounded line.
func sanitizeText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return s
}
