package sim

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
)

// ErrOffline is returned when a device could not get online with any
// credential its model offered.
var ErrOffline = errors.New("sim: device could not connect")

// DeviceOptions configures a simulated device.
type DeviceOptions struct {
	// Identity is who the device is and its factory credential (see
	// NewDevice).
	Identity Identity
	// Addr is the cloud's coaps address.
	Addr string
	// RootCAs verifies the server in certificate mode (nil: not verified).
	RootCAs *x509.CertPool
	// HandshakeTimeout bounds each DTLS handshake (default 5 s).
	HandshakeTimeout time.Duration
	// MaxAttempts bounds connection attempts in one Start, across the
	// reboots the model asks for (default 10).
	MaxAttempts int
	// Console receives the device's log lines, one per line, as firmware
	// would print them. Nil discards them.
	Console io.Writer
	// Now is the device's clock (RTC): console timestamps and the
	// certificate renewal window; default time.Now.
	Now func() time.Time
	// Rand is the source of the keys the device generates (EST
	// enrollment); default crypto/rand.
	Rand io.Reader
}

// Device is a simulated device.
type Device struct {
	opts  DeviceOptions
	model *devicemodel.Device

	mu   sync.Mutex
	sess *Session
}

// newDevice returns a powered-off device running model; Start boots it.
func newDevice(model *devicemodel.Device, o DeviceOptions) *Device {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return &Device{opts: o, model: model}
}

// ID is the device id from the model's configuration.
func (d *Device) ID() string { return d.model.Config().ID }

func (d *Device) logf(format string, args ...any) {
	if d.opts.Console == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	fmt.Fprintf(d.opts.Console, "%s [%s] %s\n", d.opts.Now().UTC().Format("15:04:05.000"), d.ID(), line)
}

// Start boots the device and connects, following the model's decisions:
// a rejected backup PSK falls back to the main key, a rotated certificate
// that cannot connect reboots until the boot counter sends the device back
// to its factory credentials. It returns nil once online.
func (d *Device) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeLocked()
	return connectLoop[*Session]{
		model:       d.model,
		id:          d.ID(),
		maxAttempts: d.opts.MaxAttempts,
		logf:        d.logf,
		target:      d.opts.Addr,
		dial:        d.dial,
		discard:     func(s *Session) { _ = s.Close() },
		online: func(ctx context.Context, s *Session, cred devicemodel.Credential) (bool, error) {
			d.sess = s
			d.logf("online (%s)", s.CipherSuite())
			if renewed, err := d.renewLocked(ctx, cred); err != nil || !renewed {
				return false, nil // online either way; a failed renewal is retried at the next boot
			}
			// Renewed: reboot onto the new certificate.
			d.closeLocked()
			return true, nil
		},
	}.run(ctx)
}

func (d *Device) dial(ctx context.Context, c devicemodel.Credential) (*Session, error) {
	cred, err := fromModel(c)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, DialOptions{Addr: d.opts.Addr, Credential: cred, RootCAs: d.opts.RootCAs, HandshakeTimeout: d.opts.HandshakeTimeout})
}

// Session is the live session, or an error when the device is offline.
func (d *Device) Session() (*Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return nil, fmt.Errorf("sim %s: offline", d.ID())
	}
	select {
	case <-d.sess.Done():
		d.sess = nil
		return nil, fmt.Errorf("sim %s: session closed by the cloud", d.ID())
	default:
	}
	return d.sess, nil
}

// Online reports whether the device has a live session.
func (d *Device) Online() bool {
	_, err := d.Session()
	return err == nil
}

// Hello asks the cloud who this device is, and checks the answer matches
// the device's configured identity.
func (d *Device) Hello(ctx context.Context) (Hello, error) {
	s, err := d.Session()
	if err != nil {
		return Hello{}, err
	}
	h, err := s.Hello(ctx)
	if err != nil {
		return h, err
	}
	cfg := d.model.Config()
	if h.Device != cfg.ID || h.Project != cfg.Project {
		return h, fmt.Errorf("sim %s: cloud says this session is %s@%s", d.ID(), h.Device, h.Project)
	}
	d.logf("hello: authenticated as %s@%s (%s)", h.Device, h.Project, h.Method)
	return h, nil
}

// renewLocked re-enrolls over EST (sren) when the certificate in use is
// within its renewal window on the device's clock. It reports whether a
// new certificate was stored.
func (d *Device) renewLocked(ctx context.Context, cred devicemodel.Credential) (bool, error) {
	if cred.Kind != devicemodel.KindCert || !d.model.NeedsRenewal(d.opts.Now()) {
		return false, nil
	}
	st := d.model.State()
	d.logf("certificate %s expires %s, inside the renewal window: re-enrolling", st.Fingerprint, st.NotAfter.UTC().Format(time.RFC3339))
	if _, err := d.enroll(ctx, d.sess, true); err != nil {
		return false, err
	}
	return true, nil
}

// Enroll obtains a certificate over EST (sen, or sren when reenroll) for a
// key generated inside the model; the certificate is stored as the rotated
// credential, used (and confirmed) from the next boot on.
func (d *Device) Enroll(ctx context.Context, reenroll bool) (*x509.Certificate, error) {
	s, err := d.Session()
	if err != nil {
		return nil, err
	}
	return d.enroll(ctx, s, reenroll)
}

func (d *Device) enroll(ctx context.Context, s *Session, reenroll bool) (*x509.Certificate, error) {
	cfg := d.model.Config()
	csr, err := d.model.PrepareCSR(d.opts.Rand, pkix.Name{Organization: []string{cfg.Project}, CommonName: cfg.ID})
	if err != nil {
		return nil, fmt.Errorf("sim %s: csr: %w", d.ID(), err)
	}
	what := "enroll"
	if reenroll {
		what = "re-enroll"
	}
	d.logf("EST %s: CSR for %s@%s", what, cfg.ID, cfg.Project)
	cert, err := s.Enroll(ctx, csr, reenroll)
	if err != nil {
		d.logf("EST %s failed: %v", what, err)
		return nil, err
	}
	if err := d.model.CompleteCSR(cert.Raw); err != nil {
		return nil, fmt.Errorf("sim %s: store certificate: %w", d.ID(), err)
	}
	d.logf("EST %s: stored certificate serial %x, valid until %s", what, cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339))
	return cert, nil
}

// Reboot closes the session, resets the device (RTC kept) and starts it.
func (d *Device) Reboot(ctx context.Context) error {
	d.mu.Lock()
	d.closeLocked()
	d.model.Reset()
	d.mu.Unlock()
	return d.Start(ctx)
}

// PowerCycle closes the session, removes power (RTC lost, storage kept)
// and starts the device.
func (d *Device) PowerCycle(ctx context.Context) error {
	d.mu.Lock()
	d.closeLocked()
	d.model.PowerCycle()
	d.mu.Unlock()
	return d.Start(ctx)
}

// Stop closes the session; the device stays powered but offline.
func (d *Device) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeLocked()
}

func (d *Device) closeLocked() {
	if d.sess != nil {
		_ = d.sess.Close()
		d.sess = nil
		d.logf("disconnected")
	}
}

// Close is Stop; it satisfies io.Closer.
func (d *Device) Close() error {
	d.Stop()
	return nil
}

// describe renders the model state for humans.
func (d *Device) describe() string {
	st := d.model.State()
	var b strings.Builder
	fmt.Fprintf(&b, "%s online=%v %s", d.ID(), d.Online(), st.String())
	return b.String()
}

// Status is the device's model state on one line, plus whether it is online.
func (d *Device) Status() string { return d.describe() }

// Done is closed when the current session ends (closed by either side);
// for a device that is offline it is already closed.
func (d *Device) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return d.sess.Done()
}
