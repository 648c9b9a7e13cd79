// Package cloudtest runs a credloop cloud inside a Go test, as
// net/http/httptest runs an HTTP server: in memory, on 127.0.0.1 random
// ports, closed when the test ends.
//
//	c := cloudtest.New(t)
//	psk := c.AddPSKDevice("acme", "dev-1")
//	dev, err := sim.NewDevice(sim.DeviceOptions{
//		Identity: sim.Identity{PSKIdentity: psk.Identity, PSK: psk.Key},
//		Addr:     c.Addrs().CoAPS,
//	})
//
// Its helpers fail the test (t.Fatal) on error, so call them from the
// test's goroutine.
package cloudtest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
)

// DefaultWait bounds WaitEvent when its context has no deadline.
const DefaultWait = 10 * time.Second

// PSKSize is the length in bytes of the keys AddPSKDevice makes.
const PSKSize = 16

// Options configures New. The zero value runs every endpoint, in memory,
// with a fresh CA.
type Options struct {
	// CA is the cloud's certificate authority: it signs the server
	// certificates and the certificates IssueDevice returns. Default: a
	// fresh root and intermediate (cloud.NewCA).
	CA *cloud.CA
	// Now is the cloud's clock (certificate validity, expiry, event
	// times); default time.Now.
	Now func() time.Time
	// Rand is the source of the cloud's keys and serial numbers and of
	// the keys AddPSKDevice makes; default crypto/rand.
	Rand io.Reader
	// Logger receives the cloud's logs; default: discarded. Pass
	// slog.New(slog.NewTextHandler(t.Output(), nil)) to see them with the
	// test's output.
	Logger *slog.Logger
}

// Cloud is a cloud started by New. The embedded *cloud.Cloud offers the
// rest: Registry, Addrs, CA, Rotate, Publish, Revoke, DisableDevice.
type Cloud struct {
	*cloud.Cloud

	t    testing.TB
	rand io.Reader
}

// PSK is a device's pre-shared key credential, as the device presents it.
type PSK struct {
	// Identity is the PSK identity, "<device>@<project>".
	Identity string
	// Key is the secret key.
	Key []byte
}

// New starts a cloud on 127.0.0.1 random ports (DTLS/CoAP, MQTT over TLS
// and HTTPS), in memory, and closes it when the test ends (t.Cleanup). It
// takes at most one Options.
func New(t testing.TB, opts ...Options) *Cloud {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("cloudtest.New: %d Options, want at most one", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	c, err := cloud.New(cloud.Options{
		CoAPAddr:  "127.0.0.1:0",
		MQTTAddr:  "127.0.0.1:0",
		HTTPSAddr: "127.0.0.1:0",
		CA:        o.CA,
		Now:       o.Now,
		Rand:      o.Rand,
		Logger:    o.Logger,
	})
	if err != nil {
		t.Fatalf("cloudtest: start cloud: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cloudtest: close cloud: %v", err)
		}
	})
	return &Cloud{Cloud: c, t: t, rand: o.Rand}
}

// ctx bounds a registry call of a helper.
func (c *Cloud) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), DefaultWait)
}

// AddProject creates project, unless it exists.
func (c *Cloud) AddProject(project string) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.addProject(ctx, project); err != nil {
		c.t.Fatalf("cloudtest: %v", err)
	}
}

func (c *Cloud) addProject(ctx context.Context, project string) error {
	if _, err := c.Registry.CreateProject(ctx, project); err != nil && !errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("add project %s: %w", project, err)
	}
	return nil
}

// addDevice creates project and device, unless they exist.
func (c *Cloud) addDevice(ctx context.Context, project, device string) error {
	if err := c.addProject(ctx, project); err != nil {
		return err
	}
	if _, _, err := c.Registry.EnsureDevice(ctx, project, device, false); err != nil {
		return fmt.Errorf("add device %s/%s: %w", project, device, err)
	}
	return nil
}

// AddPSKDevice creates device in project (and either, unless it exists)
// and gives it a new random PSK of PSKSize bytes under the identity
// "<device>@<project>", which it returns.
func (c *Cloud) AddPSKDevice(project, device string) PSK {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.addDevice(ctx, project, device); err != nil {
		c.t.Fatalf("cloudtest: %v", err)
	}
	key := make([]byte, PSKSize)
	if _, err := io.ReadFull(c.rand, key); err != nil {
		c.t.Fatalf("cloudtest: PSK for %s/%s: %v", project, device, err)
	}
	id := device + "@" + project
	if _, err := c.Registry.AddPSK(ctx, project, device, id, key); err != nil {
		c.t.Fatalf("cloudtest: PSK for %s/%s: %v", project, device, err)
	}
	return PSK{Identity: id, Key: key}
}

// IssueDevice creates device in project (and either, unless it exists),
// issues it a certificate from the cloud's CA (O=project, CN=device) and
// registers the certificate, active: the device can connect with it over
// DTLS and MQTT at once.
func (c *Cloud) IssueDevice(project, device string) cloud.DeviceCert {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.addDevice(ctx, project, device); err != nil {
		c.t.Fatalf("cloudtest: %v", err)
	}
	dc, err := c.CA().IssueDevice(project, device)
	if err != nil {
		c.t.Fatalf("cloudtest: issue %s/%s: %v", project, device, err)
	}
	if _, err := c.Registry.AddCertificate(ctx, project, device, dc.TLS.Leaf.Raw, registry.StateActive); err != nil {
		c.t.Fatalf("cloudtest: register certificate of %s/%s: %v", project, device, err)
	}
	return dc
}

// RootPool is a pool holding the cloud CA's root: it verifies the
// certificates IssueDevice returns.
func (c *Cloud) RootPool() *x509.CertPool { return c.CA().RootPool() }

// ServerPool is the pool a device dials the cloud with: it verifies the
// server certificates of every endpoint, whose names are localhost,
// 127.0.0.1 and ::1.
func (c *Cloud) ServerPool() *x509.CertPool { return c.CA().RootPool() }

// RootPEM is the cloud CA's root certificate, PEM-encoded: the trust
// anchor to provision into a device under test.
func (c *Cloud) RootPEM() []byte { return c.CA().RootPEM() }

// LastSeq is the sequence number of the latest event: pass it as
// registry.Filter.AfterSeq to wait only for events that come after now.
func (c *Cloud) LastSeq() int64 {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	seq, err := c.Registry.LastSeq(ctx)
	if err != nil {
		c.t.Fatalf("cloudtest: %v", err)
	}
	return seq
}

// WaitEvent returns the first event that matches f (after f.AfterSeq;
// events already recorded count), waiting for it until ctx's deadline or,
// when ctx has none, for DefaultWait. It fails the test when none comes.
func (c *Cloud) WaitEvent(ctx context.Context, f registry.Filter) registry.Event {
	c.t.Helper()
	ev, err := c.waitEvent(ctx, f)
	if err != nil {
		c.t.Fatalf("cloudtest: %v", err)
	}
	return ev
}

func (c *Cloud) waitEvent(ctx context.Context, f registry.Filter) (registry.Event, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	ev, err := c.Registry.WaitEvent(ctx, f)
	if err != nil {
		return ev, fmt.Errorf("wait for event (project %q device %q kind %q outcome %q after %d): %w",
			f.Project, f.Device, f.Kind, f.Outcome, f.AfterSeq, err)
	}
	return ev, nil
}
