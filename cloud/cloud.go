// Package cloud is credloop's stand-in for an IoT cloud: a fake CA, a
// registry and the device endpoints, importable in tests like httptest.
//
//	c, err := cloud.New(cloud.Options{})   // in-memory, random ports
//	defer c.Close()
//	addr := c.Addrs().CoAPS
//
// Operators (the credloop CLI, scenarios, tests) change the registry
// through an Admin: c.Admin() for a running cloud, OpenAdmin for a data
// directory a cloud in another process may be serving.
package cloud

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud/internal/coap"
	"github.com/credloop/credloop/cloud/internal/httpapi"
	"github.com/credloop/credloop/cloud/internal/mqtt"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Layout of a credloop directory.
const (
	RegistryFile = "registry.db"
	CADirName    = "ca"
	DefaultCA    = "default"
)

// RegistryPath is the SQLite registry inside dir.
func RegistryPath(dir string) string { return filepath.Join(dir, RegistryFile) }

// CADir is where the CA called name keeps its files inside dir.
func CADir(dir, name string) string {
	if name == "" {
		name = DefaultCA
	}
	return filepath.Join(dir, CADirName, name)
}

// Options configures a Cloud. The zero value runs everything in memory on
// random loopback ports.
type Options struct {
	// Dir keeps the CA and the registry; they survive a restart. Empty
	// means in memory (a fresh CA each time).
	Dir string
	// CoAPAddr is the DTLS/CoAP listen address; default "127.0.0.1:0".
	// Each address may be "-" to leave that endpoint off.
	CoAPAddr string
	// DTLSPSKStack chooses the DTLS implementation that serves PSK
	// clients: DTLSPSKCredloop (the default: credloop's own DTLS 1.2 PSK
	// server, which halves the server's CPU and memory per session) or
	// DTLSPSKPion (pion serves everything). Any other value fails New.
	DTLSPSKStack DTLSPSKStack
	// MQTTAddr is the MQTT-over-TLS listen address; default "127.0.0.1:0".
	MQTTAddr string
	// HTTPSAddr is the HTTPS listen address (run-time CSR provisioning,
	// CRLs, CA certificates); default "127.0.0.1:0".
	HTTPSAddr string
	// Hosts are extra names/addresses for the server certificate's SANs.
	Hosts []string
	// NonConfirmableNotify sends CoAP Observe notifications as NON
	// messages; by default they are CON, retransmitted until acknowledged.
	// Golioth's firmware SDK takes both.
	NonConfirmableNotify bool
	// RecordHello records a device's /hello and keepalive requests as
	// coap.request events like its other CoAP requests; off by default,
	// as they are the most frequent (they are logged at Debug either way).
	RecordHello bool
	// IdleTimeout closes idle DTLS sessions (default 120 s).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds a DTLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// Registry, when set, is used instead of the one in Dir. The Cloud
	// does not close a Registry it was given.
	Registry *registry.Registry
	// CA, when set, is used instead of the one in Dir: it signs the
	// server certificates and the certificates the Cloud issues
	// (provisioning, rotation), and every project trusts its root.
	CA *CA
	// KeyType of a CA created on first start; default ECDSAP256.
	KeyType KeyType
	// Now is the Cloud's clock: certificate validity, token and
	// enrollment expiry, event times. Default time.Now.
	Now func() time.Time
	// Rand is the source of keys, serial numbers, PSKs and tokens.
	// Default crypto/rand.
	Rand io.Reader
	// Logger receives the Cloud's logs; default: discarded. Secrets never
	// reach it, fingerprints do.
	Logger *slog.Logger
}

// Addrs are the bound addresses of the endpoints.
type Addrs struct {
	CoAPS string `json:"coaps,omitempty"`
	MQTTS string `json:"mqtts,omitempty"`
	HTTPS string `json:"https,omitempty"`
}

// Cloud is a running cloud stand-in.
type Cloud struct {
	// Registry holds the projects, devices, credentials and the event log.
	Registry *registry.Registry

	ca *CA

	opts      Options
	ownReg    bool
	coap      *coap.Server
	mqtt      *mqtt.Server
	https     *httpapi.Server
	stopWatch context.CancelFunc
	watching  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New opens (or creates) the CA and registry and starts the endpoints.
func New(opts Options) (*Cloud, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pskStack, err := opts.DTLSPSKStack.pskStack()
	if err != nil {
		return nil, err
	}
	c := &Cloud{opts: opts, Registry: opts.Registry, ca: opts.CA}
	if c.ca == nil {
		c.ca, err = OpenCA(opts.Dir, DefaultCA, true, CAOptions{KeyType: opts.KeyType, Now: opts.Now, Rand: opts.Rand}, opts.Logger)
		if err != nil {
			return nil, err
		}
	}
	if c.Registry == nil {
		path := ":memory:"
		if opts.Dir != "" {
			if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
				return nil, fmt.Errorf("cloud: %w", err)
			}
			path = RegistryPath(opts.Dir)
		}
		c.Registry, err = registry.Open(path, registry.Options{Now: opts.Now, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
		c.ownReg = true
	}
	if opts.CoAPAddr != "-" {
		c.coap, err = coap.Listen(coap.Options{
			Addr:                 opts.CoAPAddr,
			Registry:             c.Registry,
			Authority:            c.ca.a,
			Hosts:                opts.Hosts,
			IdleTimeout:          opts.IdleTimeout,
			HandshakeTimeout:     opts.HandshakeTimeout,
			PSKStack:             pskStack,
			NonConfirmableNotify: opts.NonConfirmableNotify,
			RecordHello:          opts.RecordHello,
			Now:                  opts.Now,
			Rand:                 opts.Rand,
			Logger:               opts.Logger,
		})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if opts.MQTTAddr != "-" {
		c.mqtt, err = mqtt.Listen(mqtt.Options{
			Addr:             opts.MQTTAddr,
			Registry:         c.Registry,
			Authority:        c.ca.a,
			Hosts:            opts.Hosts,
			HandshakeTimeout: opts.HandshakeTimeout,
			Now:              opts.Now,
			Rand:             opts.Rand,
			Logger:           opts.Logger,
		})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if opts.HTTPSAddr != "-" {
		others, err := otherCAs(opts.Dir, fakeca.Options{Now: opts.Now, Rand: opts.Rand})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.https, err = httpapi.Listen(httpapi.Options{
			Addr:      opts.HTTPSAddr,
			Registry:  c.Registry,
			Authority: c.ca.a,
			CAs:       others,
			Hosts:     opts.Hosts,
			Now:       opts.Now,
			Rand:      opts.Rand,
			Logger:    opts.Logger,
		})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stopWatch = cancel
	c.watching.Add(1)
	go c.watch(ctx)
	return c, nil
}

// watch follows the event log and re-validates live sessions after a
// revocation or a disable, wherever it was made. The registry notices
// writes from other processes within about 100 ms. It reads the log in
// batches, at most once per watchGap, so that a busy log (thousands of
// authentications a second) costs one cheap query per batch, not one per
// event.
func (c *Cloud) watch(ctx context.Context) {
	defer c.watching.Done()
	after, err := c.Registry.LastSeq(ctx)
	if err != nil {
		c.opts.Logger.Error("revocation watch", "err", err)
	}
	kinds := registry.EnforcedKinds()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
		}
		last, err := c.Registry.WaitSeq(ctx, after)
		if err == nil {
			// RPC calls and OTA releases, wherever made, reach the
			// devices' observers (rpcota.go).
			c.deliver(ctx, after, last)
			var evs []registry.Event
			evs, err = c.Registry.Events(ctx, registry.Filter{AfterSeq: after, UpToSeq: last, Kinds: kinds, Limit: 1})
			if err == nil && c.coap != nil {
				err = c.notifyEvents(ctx, after, last)
			}
			if err == nil {
				if len(evs) > 0 {
					c.revalidate(ctx, string(evs[0].Kind))
				}
				after = last
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return
			}
			c.opts.Logger.Error("revocation watch", "err", err)
			gap.Reset(time.Second)
			continue
		}
		gap.Reset(watchGap)
	}
}

// notifyPaths are the kinds of change events after which the CoAP
// endpoint notifies observers, with the observed path each one changes.
var notifyPaths = map[registry.EventKind]func(registry.Event) string{
	registry.EventLightDBSet:    lightDBEventPath,
	registry.EventLightDBDelete: lightDBEventPath,
	// A setting changed for one device, or for the whole project (device
	// ""): its observers of .c get their settings again.
	registry.EventSettingsSet: func(registry.Event) string { return ".c" },
}

// notifyEvents notifies the CoAP observers concerned by the change events
// after..last: those of another process (the CLI on the same directory);
// this process's own were notified when made. Each (device, path) is
// notified once per batch.
func (c *Cloud) notifyEvents(ctx context.Context, after, last int64) error {
	kinds := make([]registry.EventKind, 0, len(notifyPaths))
	for k := range notifyPaths {
		kinds = append(kinds, k)
	}
	evs, err := c.Registry.Events(ctx, registry.Filter{AfterSeq: after, UpToSeq: last, Kinds: kinds})
	if err != nil {
		return err
	}
	type target struct{ project, device, path string }
	seen := map[target]bool{}
	for _, e := range evs {
		t := target{e.Project, e.Device, notifyPaths[e.Kind](e)}
		if !seen[t] && c.coap.NotifyEvent(e.Seq, t.project, t.device, t.path) {
			seen[t] = true
		}
	}
	c.coap.ForgetNotified(last)
	return nil
}

// lightDBEventPath is the observed path a LightDB State event changes.
func lightDBEventPath(e registry.Event) string {
	p, ok := coap.LightDBPath(e.Reason)
	if !ok {
		return ".d" // the whole document: every LightDB observer of the device
	}
	return coap.LightDBResource(p)
}

// watchGap is the least time between two reads of the event log by the
// revocation watch: the most it adds to enforcing a revocation made
// elsewhere (Revoke and DisableDevice enforce at once).
const watchGap = 20 * time.Millisecond

// revalidate drops every live session, on every endpoint, that the
// registry no longer allows.
func (c *Cloud) revalidate(ctx context.Context, why string) {
	if c.coap != nil {
		if n := c.coap.Revalidate(ctx); n > 0 {
			c.opts.Logger.Info("dropped sessions", "after", why, "coaps", n)
		}
	}
	if c.mqtt != nil {
		if n := c.mqtt.Revalidate(ctx); n > 0 {
			c.opts.Logger.Info("dropped sessions", "after", why, "mqtts", n)
		}
	}
}

// CA is the Cloud's certificate authority.
func (c *Cloud) CA() *CA { return c.ca }

// Addrs reports the bound addresses.
func (c *Cloud) Addrs() Addrs {
	var a Addrs
	if c.coap != nil {
		a.CoAPS = c.coap.Addr().String()
	}
	if c.mqtt != nil {
		a.MQTTS = c.mqtt.Addr().String()
	}
	if c.https != nil {
		a.HTTPS = c.https.Addr().String()
	}
	return a
}

// otherCAs loads the CAs of dir other than the default one, whose CRLs and
// chains the HTTPS endpoint serves too.
func otherCAs(dir string, fo fakeca.Options) (map[string]*fakeca.Authority, error) {
	out := map[string]*fakeca.Authority{}
	if dir == "" {
		return out, nil
	}
	entries, err := os.ReadDir(filepath.Join(dir, CADirName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return nil, fmt.Errorf("cloud: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == DefaultCA {
			continue
		}
		a, err := fakeca.Load(CADir(dir, e.Name()), fo)
		if err != nil {
			return nil, fmt.Errorf("cloud: CA %s: %w", e.Name(), err)
		}
		out[e.Name()] = a
	}
	return out, nil
}

// Revoke marks the certificate with serial (issued by the CA certificate
// whose fingerprint is issuerFP) revoked, and drops live sessions that used
// it or any certificate it issued. It is Admin().RevokeSerial: the same
// registry changes and events as `credloop ca revoke`.
func (c *Cloud) Revoke(ctx context.Context, issuerFP, serial string, reason int) error {
	_, err := c.Admin().RevokeSerial(ctx, issuerFP, serial, reason)
	return err
}

// DisableDevice disables a device and drops its live sessions. It is
// Admin().DisableDevice: the same as `credloop device disable`.
func (c *Cloud) DisableDevice(ctx context.Context, project, device string) error {
	_, err := c.Admin().DisableDevice(ctx, project, device)
	return err
}

// Close stops the endpoints and closes what New opened. It is idempotent.
func (c *Cloud) Close() error {
	c.closeOnce.Do(func() {
		if c.stopWatch != nil {
			c.stopWatch()
			c.watching.Wait()
		}
		var errs []error
		if c.coap != nil {
			errs = append(errs, c.coap.Close())
		}
		if c.mqtt != nil {
			errs = append(errs, c.mqtt.Close())
		}
		if c.https != nil {
			errs = append(errs, c.https.Close())
		}
		if c.ownReg && c.Registry != nil {
			errs = append(errs, c.Registry.Close())
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
