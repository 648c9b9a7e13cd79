package mqtt

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Each check that refuses a connection yields a typed refusal: its kind,
// the MQTT 5 reason code it stands for, the sentinel it wraps and the
// reason recorded in the auth.mqtt event.
func TestRefusalOutcomes(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	other := e.newCA("nobody's CA", "", "")
	refusals := make(chan *endpoint.Refusal, 1)
	hook := func(r *endpoint.Refusal) { refusals <- r }
	e.srv.testRefused.Store(&hook)
	setState := func(name string, st registry.CredState) identity {
		id := e.device(ca, name)
		c, err := e.reg.CertificateByFingerprint(e.ctx, fakeca.Fingerprint(id.cert.Raw))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.reg.SetCredentialState(e.ctx, c.ID, st); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, tc := range []struct {
		name     string
		id       func() *identity // nil: no client certificate
		kind     endpoint.RefusalKind
		code     byte
		sentinel error
		reason   string
	}{
		{"no client certificate", func() *identity { return nil },
			endpoint.RefusedNoCertificate, endpoint.MQTTBadUserOrPassword, fakeca.ErrNoCert, "no client certificate"},
		{"unregistered CA", func() *identity { id := e.issue(other, "r1", "acme"); return &id },
			endpoint.RefusedUntrusted, endpoint.MQTTBadUserOrPassword, fakeca.ErrUnknownAuthority, "signed by an unregistered CA"},
		{"not registered", func() *identity { id := e.issue(ca, "r2", "acme"); return &id },
			endpoint.RefusedNotRegistered, endpoint.MQTTNotAuthorized, registry.ErrNotRegistered, "certificate not registered (its CA does not allow auto-registration)"},
		{"INACTIVE", func() *identity { id := setState("r3", registry.StateInactive); return &id },
			endpoint.RefusedNotActive, endpoint.MQTTNotAuthorized, registry.ErrNotActive, "certificate INACTIVE"},
		{"PENDING_ACTIVATION", func() *identity { id := setState("r4", registry.StatePendingActivation); return &id },
			endpoint.RefusedPendingActivation, endpoint.MQTTNotAuthorized, registry.ErrPendingActivation, "certificate PENDING_ACTIVATION"},
		{"revoked", func() *identity {
			id := e.device(ca, "r5")
			if _, err := e.reg.Revoke(e.ctx, fakeca.Fingerprint(ca.Cert.Raw), serialHex(id.cert), 1); err != nil {
				t.Fatal(err)
			}
			return &id
		}, endpoint.RefusedRevoked, endpoint.MQTTNotAuthorized, registry.ErrRevoked, "certificate revoked"},
		{"disabled", func() *identity {
			id := e.device(ca, "r6")
			if err := e.reg.SetDeviceDisabled(e.ctx, "acme", "r6", true); err != nil {
				t.Fatal(err)
			}
			return &id
		}, endpoint.RefusedDisabled, endpoint.MQTTNotAuthorized, registry.ErrDisabled, "device disabled"},
		{"expired", func() *identity {
			id := e.device(ca, "r7")
			e.clock.Advance(400 * 24 * time.Hour)
			t.Cleanup(func() { e.clock.Advance(-400 * 24 * time.Hour) })
			return &id
		}, endpoint.RefusedExpired, endpoint.MQTTBadUserOrPassword, fakeca.ErrExpired, "certificate expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id()
			seq := e.mark()
			cfg := &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"}
			if id != nil {
				cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{id.cert.Raw}, PrivateKey: id.key}}
			}
			c, err := tls.Dial("tcp", e.srv.Addr().String(), cfg)
			if err == nil {
				// TLS 1.3: the client learns of the refusal on its first read.
				_ = c.SetReadDeadline(time.Now().Add(wait))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatal("the handshake succeeded")
			}
			var r *endpoint.Refusal
			select {
			case r = <-refusals:
			case <-time.After(wait):
				t.Fatal("no refusal")
			}
			if r.Kind != tc.kind || r.MQTTCode != tc.code || !errors.Is(r, tc.sentinel) || r.Text != tc.reason {
				t.Errorf("refusal = %+v, want kind %d, code %#x, wrapping %v, text %q", r, tc.kind, tc.code, tc.sentinel, tc.reason)
			}
			if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Outcome != registry.OutcomeFail || ev.Reason != tc.reason {
				t.Errorf("event = %+v, want reason %q", ev, tc.reason)
			}
		})
	}
}
