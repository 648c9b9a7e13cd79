package cloud

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Errors of the admin. Each wraps registry.ErrNotFound or
// registry.ErrInvalid where that is what it is, so either test works.
var (
	// ErrNoDir: OpenAdmin was given a directory that does not exist and
	// AdminOptions.Create was not set.
	ErrNoDir = errors.New("cloud: no credloop directory")
	// ErrNoIntermediate: the root of the CA issues device certificates
	// itself, so there is no intermediate to name.
	ErrNoIntermediate = errors.New("cloud: CA has no intermediate")
	// ErrNoProject, ErrNoDevice, ErrNoPSK and ErrNoCertificate: what the
	// operation names is not in the registry.
	ErrNoProject     = fmt.Errorf("cloud: no such project: %w", registry.ErrNotFound)
	ErrNoDevice      = fmt.Errorf("cloud: no such device: %w", registry.ErrNotFound)
	ErrNoPSK         = fmt.Errorf("cloud: no such PSK: %w", registry.ErrNotFound)
	ErrNoCertificate = fmt.Errorf("cloud: no such certificate: %w", registry.ErrNotFound)
	ErrNoRoot        = fmt.Errorf("cloud: no such trusted root: %w", registry.ErrNotFound)
	// ErrAmbiguous: a fingerprint prefix matches more than one record.
	ErrAmbiguous = fmt.Errorf("cloud: ambiguous prefix: %w", registry.ErrInvalid)
	// ErrFinal: a REVOKED certificate cannot change state again.
	ErrFinal = errors.New("cloud: certificate is REVOKED, which is final")
	// ErrNotCA: a certificate given as a CA is a device certificate.
	ErrNotCA = fmt.Errorf("cloud: not a CA certificate: %w", registry.ErrInvalid)
	// ErrNotIssued: a certificate to revoke was not issued by the CA
	// named.
	ErrNotIssued = fmt.Errorf("cloud: not issued by that CA: %w", registry.ErrInvalid)
	// ErrBadCSR: a certificate signing request was refused.
	ErrBadCSR = errors.New("cloud: CSR refused")
	// ErrTemplateProject: a CA registration names a provisioning
	// template of another project.
	ErrTemplateProject = fmt.Errorf("cloud: template of another project: %w", registry.ErrInvalid)
)

// AdminOptions configures OpenAdmin.
type AdminOptions struct {
	// Dir is the credloop data directory: DIR/ca/<name>/ holds the CAs,
	// DIR/registry.db the registry. Required.
	Dir string
	// Create makes Dir (and its registry) when missing; without it a
	// missing Dir is ErrNoDir.
	Create bool
	// Origin, when set, ends the reason of every event the admin records
	// ("by credloop CLI"), so the log tells who made a change.
	Origin string
	// Now is the clock of issued certificates, revocations and events;
	// default time.Now.
	Now func() time.Time
	// Rand is the source of keys, serials and PSKs; default crypto/rand.
	Rand io.Reader
	// Logger receives the admin's logs (never a secret); default none.
	Logger *slog.Logger
}

// Admin is the operator side of a cloud: every operation an operator (the
// credloop CLI, a scenario, a Go test) performs on projects, devices,
// credentials and CAs is a method here that does the whole job, the
// registry writes and the events they are recorded with.
//
// An Admin from OpenAdmin works on a data directory without endpoints,
// alongside a `credloop cloud` serving the same directory in another
// process: that process enforces revocations and disables through the
// event log. An Admin from (*Cloud).Admin also drops the live sessions of
// its cloud at once.
//
// The changes that end live sessions (disable, deactivate, PSK and
// certificate revocation, CA deactivation) and activation commit in one
// transaction with their event, so a cloud in another process can never
// miss one. Operations made of several registry writes (adding a device
// with its PSKs, issuing and registering a certificate) record their
// events after the change: an event that cannot be recorded then leaves
// the change made, and is reported by Warnings. An Admin is safe for
// concurrent use.
type Admin struct {
	reg    *registry.Registry
	dir    string
	ca     *fakeca.Authority // the running cloud's default CA; nil: load from dir
	cloud  *Cloud            // nil when opened on a directory
	origin string
	now    func() time.Time
	rand   io.Reader
	log    *slog.Logger

	wmu      sync.Mutex
	warnings []error

	ownReg    bool
	closeOnce sync.Once
	closeErr  error
}

// OpenAdmin opens the admin of the data directory o.Dir. Close it when
// done.
func OpenAdmin(o AdminOptions) (*Admin, error) {
	if strings.TrimSpace(o.Dir) == "" {
		return nil, fmt.Errorf("cloud: open admin: %w: empty directory", registry.ErrInvalid)
	}
	if o.Create {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cloud: open admin: %w", err)
		}
	} else if fi, err := os.Stat(o.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNoDir, o.Dir)
	}
	a := newAdmin(o.Now, o.Rand, o.Logger)
	a.dir, a.origin, a.ownReg = o.Dir, o.Origin, true
	var err error
	a.reg, err = registry.Open(RegistryPath(o.Dir), registry.Options{Now: a.now, Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("cloud: open admin: %w", err)
	}
	return a, nil
}

func newAdmin(now func() time.Time, rnd io.Reader, log *slog.Logger) *Admin {
	if now == nil {
		now = time.Now
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admin{now: now, rand: rnd, log: log}
}

// Admin returns the admin of the running cloud: its registry, its CA, the
// other CAs of its directory; revocations, disables and deactivations
// made through it drop the live sessions they end at once. Closing it
// closes nothing of the cloud.
func (c *Cloud) Admin() *Admin {
	a := newAdmin(c.opts.Now, c.opts.Rand, c.opts.Logger)
	a.reg, a.dir, a.ca, a.cloud = c.Registry, c.opts.Dir, c.ca.a, c
	return a
}

// Registry is the admin's registry, for reads (events, credentials) that
// no method here covers.
func (a *Admin) Registry() *registry.Registry { return a.reg }

// Dir is the data directory, "" for an in-memory cloud.
func (a *Admin) Dir() string { return a.dir }

// Close closes what OpenAdmin opened. It is idempotent.
func (a *Admin) Close() error {
	a.closeOnce.Do(func() {
		if a.ownReg {
			a.closeErr = a.reg.Close()
		}
	})
	return a.closeErr
}

// reason appends the admin's origin to an event reason.
func (a *Admin) reason(format string, args ...any) string {
	s := fmt.Sprintf(format, args...)
	switch {
	case a.origin == "":
		return s
	case s == "":
		return a.origin
	}
	return s + " " + a.origin
}

// record appends an event about a change made. The change is done
// whatever happens here, so a failure is logged, not returned.
func (a *Admin) record(ctx context.Context, e registry.Event) {
	if _, err := a.reg.Record(ctx, e); err != nil {
		a.log.Warn("could not record event", "kind", e.Kind, "err", err)
		a.warn(fmt.Errorf("could not record event %s: %w", e.Kind, err))
	}
}

// Warnings returns, and forgets, the problems that did not fail an
// operation (an event that could not be recorded after its change was
// made).
func (a *Admin) Warnings() []error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	w := a.warnings
	a.warnings = nil
	return w
}

func (a *Admin) warn(err error) {
	a.wmu.Lock()
	a.warnings = append(a.warnings, err)
	a.wmu.Unlock()
}

// enforce drops the live sessions of a running cloud that the registry no
// longer allows. Another process's cloud does it through the event log.
func (a *Admin) enforce(ctx context.Context, why string) {
	if a.cloud != nil {
		a.cloud.revalidate(ctx, why)
	}
}

// needProject returns ErrNoProject when project is not in the registry.
func (a *Admin) needProject(ctx context.Context, project string) error {
	_, err := a.reg.Project(ctx, project)
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNoProject, project)
	}
	return err
}

// needDevice returns the device, or ErrNoProject / ErrNoDevice.
func (a *Admin) needDevice(ctx context.Context, project, device string) (registry.Device, error) {
	if err := a.needProject(ctx, project); err != nil {
		return registry.Device{}, err
	}
	d, err := a.reg.Device(ctx, project, device)
	if errors.Is(err, registry.ErrNotFound) {
		return d, fmt.Errorf("%w: %s/%s", ErrNoDevice, project, device)
	}
	return d, err
}

// short returns the first n characters of a fingerprint.
func short(fp string, n int) string {
	if len(fp) > n {
		return fp[:n]
	}
	return fp
}

// hexPrefix normalizes a fingerprint or certificateId given by a person:
// lower case, no colons or spaces.
func hexPrefix(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}
