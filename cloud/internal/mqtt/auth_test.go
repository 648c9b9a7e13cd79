package mqtt

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// An ACTIVE certificate connects (CONNACK 0) and the connection is
// recorded as an auth.mqtt ok event, whether it chains to a registered CA
// or is one the cloud issued itself.
func TestActiveCertificateConnects(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	cloudIssued := func() identity {
		cert, key, err := e.auth.Issuing.Issue("dev-cloud", "acme", fakeca.ECDSAP256, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateDevice(e.ctx, "acme", "dev-cloud"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.AddCertificate(e.ctx, "acme", "dev-cloud", cert.Raw, registry.StateActive); err != nil {
			t.Fatal(err)
		}
		return identity{cert: cert, key: key}
	}
	for _, tc := range []struct {
		name   string
		id     func() identity
		device string
	}{
		{"registered CA, leaf only", func() identity { return e.device(ca, "dev1") }, "dev1"},
		{"registered CA, leaf and CA", func() identity {
			id := e.device(ca, "dev2")
			id.chain = []*x509.Certificate{ca.Cert}
			return id
		}, "dev2"},
		{"issued by the cloud", cloudIssued, "dev-cloud"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id()
			seq := e.mark()
			c := e.mustConnect(id, "client-"+tc.device)
			ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT, Device: tc.device})
			if ev.Outcome != registry.OutcomeOK || ev.Reason != "session established" || ev.Project != "acme" || ev.Credential != fakeca.Fingerprint(id.cert.Raw) {
				t.Fatalf("auth event = %+v", ev)
			}
			sessions := e.srv.Sessions() // one snapshot: its order is a map's
			i := slices.IndexFunc(sessions, func(p Peer) bool { return p.Device == tc.device })
			if i < 0 {
				t.Fatalf("no session of %s in %+v", tc.device, sessions)
			}
			if p := sessions[i]; p.Role != RoleDevice || p.ClientID != "client-"+tc.device || p.CredentialID == 0 {
				t.Fatalf("peer = %+v", p)
			}
			c.Disconnect(0)
		})
	}
}

// Certificates the registry does not admit are refused during the
// handshake (no CONNACK), with the precise reason in an auth.mqtt event.
func TestRefused(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	other := e.newCA("nobody's CA", "", "")
	off := e.newCA("switched-off CA", registry.CAModeJITP, "")
	if err := e.reg.SetCAActive(e.ctx, fakeca.Fingerprint(off.Cert.Raw), false); err != nil {
		t.Fatal(err)
	}
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
		name, device, reason string
		id                   func() identity
	}{
		{"unregistered CA", "u1", "signed by an unregistered CA", func() identity { return e.issue(other, "u1", "acme") }},
		{"inactive CA registration", "u2", "signed by a CA whose registration is INACTIVE", func() identity { return e.issue(off, "u2", "acme") }},
		{"unknown certificate, CA without auto-registration", "u3", "certificate not registered (its CA does not allow auto-registration)",
			func() identity { return e.issue(ca, "u3", "acme") }},
		{"INACTIVE", "d-inactive", "certificate INACTIVE", func() identity { return setState("d-inactive", registry.StateInactive) }},
		{"PENDING_ACTIVATION, CA without auto-registration", "d-pending", "certificate PENDING_ACTIVATION",
			func() identity { return setState("d-pending", registry.StatePendingActivation) }},
		{"revoked", "d-revoked", "certificate revoked", func() identity {
			id := e.device(ca, "d-revoked")
			if _, err := e.reg.Revoke(e.ctx, fakeca.Fingerprint(ca.Cert.Raw), serialHex(id.cert), 1); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{"device disabled", "d-disabled", "device disabled", func() identity {
			id := e.device(ca, "d-disabled")
			if err := e.reg.SetDeviceDisabled(e.ctx, "acme", "d-disabled", true); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{"expired", "d-expired", "certificate expired", func() identity {
			id := e.device(ca, "d-expired")
			e.clock.Advance(400 * 24 * time.Hour)
			t.Cleanup(func() { e.clock.Advance(-400 * 24 * time.Hour) })
			return id
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id()
			seq := e.mark()
			if c, err := e.connect(id, tc.device); err == nil {
				c.Disconnect(0)
				t.Fatal("connected")
			}
			ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT})
			if ev.Outcome != registry.OutcomeFail || ev.Reason != tc.reason || ev.Credential != fakeca.Fingerprint(id.cert.Raw) {
				t.Fatalf("event = %+v, want reason %q", ev, tc.reason)
			}
			if len(e.srv.Sessions()) != 0 {
				t.Fatalf("sessions = %+v", e.srv.Sessions())
			}
		})
	}
}

// JITP: the first connect of an unknown certificate under a JITP CA
// registers it PENDING_ACTIVATION, announces it on
// $aws/events/certificates/registered/<caId>, and is closed without
// CONNACK; the template is applied, so the retry connects.
func TestJITP(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme JITP CA", registry.CAModeJITP, "")
	caID := fakeca.Fingerprint(ca.Cert.Raw)
	announced := make(chan [2]string, 4)
	cancel, err := e.srv.Subscribe("$aws/events/certificates/registered/#", func(topic string, payload []byte) {
		announced <- [2]string{topic, string(payload)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	id := e.issue(ca, "hw-1", "")
	fp := fakeca.Fingerprint(id.cert.Raw)

	seq := e.mark()
	if c, err := e.connect(id, "hw-1"); err == nil {
		c.Disconnect(0)
		t.Fatal("first connect got a CONNACK")
	}
	var msg [2]string
	select {
	case msg = <-announced:
	case <-time.After(wait):
		t.Fatal("no registration message")
	}
	if msg[0] != "$aws/events/certificates/registered/"+caID {
		t.Fatalf("topic = %s", msg[0])
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(msg[1]), &got); err != nil {
		t.Fatal(err)
	}
	now := float64(e.clock.Now().Unix())
	want := map[string]any{"certificateId": fp, "caCertificateId": caID, "timestamp": now, "certificateStatus": "PENDING_ACTIVATION",
		"awsAccountId": "acme", "certificateRegistrationTimestamp": now}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("registration message = %s\nwant %v", msg[1], want)
	}
	if ev := e.event(seq, registry.Filter{Kind: registry.EventMQTTRegistered}); ev.Reason != msg[1] || ev.Credential != fp || ev.Device != "hw-1" {
		t.Fatalf("registered event = %+v", ev)
	}
	if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Outcome != registry.OutcomeFail || ev.Reason != "certificate PENDING_ACTIVATION" {
		t.Fatalf("auth event = %+v", ev)
	}
	if ev := e.event(seq, registry.Filter{Kind: registry.EventProvisionJITP}); !strings.HasPrefix(ev.Reason, "certificate registered PENDING_ACTIVATION") {
		t.Fatalf("first provision event = %+v", ev)
	}

	// The retry, at once: the template was applied before anyone could
	// look at the certificate again.
	seq = e.mark()
	c := e.mustConnect(id, "hw-1")
	defer c.Disconnect(0)
	if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Outcome != registry.OutcomeOK {
		t.Fatalf("retry event = %+v", ev)
	}
	evs, err := e.reg.Events(e.ctx, registry.Filter{Kind: registry.EventProvisionJITP, Outcome: registry.OutcomeOK})
	if err != nil || len(evs) != 2 || evs[1].Reason != "template applied, thing hw-1 created, certificate ACTIVE" {
		t.Fatalf("provision events = %+v, %v", evs, err)
	}
	d, err := e.reg.Device(e.ctx, "acme", "hw-1")
	if err != nil || !d.AutoProvisioned {
		t.Fatalf("thing = %+v, %v", d, err)
	}
	cred, err := e.reg.CertificateByFingerprint(e.ctx, fp)
	if err != nil || cred.State != registry.StateActive || cred.Device != "hw-1" || cred.IssuerFingerprint != caID {
		t.Fatalf("certificate = %+v, %v", cred, err)
	}
}

// JITP with a template that activates nothing leaves the certificate
// INACTIVE; with a template that does not exist, PENDING_ACTIVATION.
func TestJITPTemplate(t *testing.T) {
	e := newEnv(t)
	if _, err := e.reg.PutTemplate(e.ctx, registry.Template{Name: "quarantine", Project: "acme"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		template, reason string
		state            registry.CredState
	}{
		{"quarantine", "template applied, thing q-1 created, certificate INACTIVE", registry.StateInactive},
		{"missing", "template missing not found", registry.StatePendingActivation},
	} {
		t.Run(tc.template, func(t *testing.T) {
			ca := e.newCA("CA "+tc.template, registry.CAModeJITP, tc.template)
			id := e.issue(ca, "q-1", "")
			if tc.template == "missing" {
				id = e.issue(ca, "q-2", "")
			}
			seq := e.mark()
			if _, err := e.connect(id, "q"); err == nil {
				t.Fatal("first connect got a CONNACK")
			}
			ev := e.event(seq, registry.Filter{Kind: registry.EventProvisionJITP})
			for ev.Reason != tc.reason {
				if !strings.HasPrefix(ev.Reason, "certificate registered") {
					t.Fatalf("provision event = %+v, want %q", ev, tc.reason)
				}
				ev = e.event(ev.Seq, registry.Filter{Kind: registry.EventProvisionJITP})
			}
			cred, err := e.reg.CertificateByFingerprint(e.ctx, fakeca.Fingerprint(id.cert.Raw))
			if err != nil || cred.State != tc.state {
				t.Fatalf("certificate = %+v, %v", cred, err)
			}
			if _, err := e.connect(id, "q"); err == nil {
				t.Fatal("retry connected")
			}
		})
	}
}

// JITR: the certificate is registered PENDING_ACTIVATION and attached to
// the thing named by its CN; every connect until it is activated is
// announced again and closed; once ACTIVE it connects.
func TestJITR(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme JITR CA", registry.CAModeJITR, "")
	var announced atomic.Int32
	cancel, err := e.srv.Subscribe("$aws/events/certificates/registered/+", func(string, []byte) { announced.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	id := e.issue(ca, "jr-1", "acme")
	id.chain = []*x509.Certificate{ca.Cert} // AWS JITR devices send certificate + CA
	fp := fakeca.Fingerprint(id.cert.Raw)
	for i := range 2 {
		seq := e.mark()
		if c, err := e.connect(id, "jr-1"); err == nil {
			c.Disconnect(0)
			t.Fatalf("connect %d got a CONNACK", i+1)
		}
		if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Reason != "certificate PENDING_ACTIVATION" {
			t.Fatalf("auth event = %+v", ev)
		}
		e.event(seq, registry.Filter{Kind: registry.EventMQTTRegistered, Device: "jr-1"})
	}
	if n := announced.Load(); n != 2 {
		t.Fatalf("%d registration messages, want 2", n)
	}
	evs, err := e.reg.Events(e.ctx, registry.Filter{Kind: registry.EventProvisionJITR})
	if err != nil || len(evs) != 1 || evs[0].Reason != "certificate registered PENDING_ACTIVATION (CA "+fakeca.Fingerprint(ca.Cert.Raw)[:8]+"), attached to thing jr-1" {
		t.Fatalf("provision events = %+v, %v", evs, err)
	}
	cred, err := e.reg.CertificateByFingerprint(e.ctx, fp)
	if err != nil || cred.State != registry.StatePendingActivation || cred.Device != "jr-1" {
		t.Fatalf("certificate = %+v, %v", cred, err)
	}
	if err := e.reg.SetCredentialState(e.ctx, cred.ID, registry.StateActive); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(id, "jr-1")
}

// Drop closes a live session: the client learns it at once (measured
// from Drop to paho's connection-lost callback, bounded at 1 s as a
// correctness bound), and a session.closed event says why.
func TestDrop(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	c1 := e.mustConnect(e.device(ca, "dev1"), "dev1")
	c2 := e.mustConnect(e.device(ca, "dev2"), "dev2")
	seq := e.mark()
	start := time.Now()
	if n := e.srv.Drop(func(p Peer) bool { return p.Device == "dev1" }, "certificate revoked"); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	select {
	case <-c1.lost:
		d := time.Since(start)
		if d >= time.Second {
			t.Fatalf("connection lost %s after Drop", d)
		}
		t.Logf("client saw the connection lost %s after Drop", d)
	case <-time.After(wait):
		t.Fatal("the client never noticed")
	}
	if ev := e.event(seq, registry.Filter{Kind: registry.EventSessionClosed}); ev.Device != "dev1" || ev.Reason != "certificate revoked" {
		t.Fatalf("event = %+v", ev)
	}
	if s := e.srv.Sessions(); len(s) != 1 || s[0].Device != "dev2" {
		t.Fatalf("sessions = %+v", s)
	}
	c2.publish(t, "devices/dev2/still-here", []byte("yes"))
}

// A revocation that lands after a connection's checks but before its
// session is visible finds nothing to Drop; the re-check after the
// session became visible refuses it.
func TestRevocationRacingHandshake(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	id := e.device(ca, "dev1")
	var dropped atomic.Int32
	hook := func() {
		if _, err := e.reg.Revoke(e.ctx, fakeca.Fingerprint(ca.Cert.Raw), serialHex(id.cert), 1); err != nil {
			t.Error(err)
		}
		dropped.Add(int32(e.srv.Drop(func(p Peer) bool { return p.Device == "dev1" }, "certificate revoked")))
	}
	e.srv.testAfterVerify.Store(&hook)
	seq := e.mark()
	if c, err := e.connect(id, "dev1"); err == nil {
		c.Disconnect(0)
		t.Fatal("connected with a revoked certificate")
	}
	if n := dropped.Load(); n != 0 {
		t.Fatalf("Drop found %d sessions; the race was not reproduced", n)
	}
	if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Outcome != registry.OutcomeFail || ev.Reason != "certificate revoked" {
		t.Fatalf("event = %+v", ev)
	}
	if len(e.srv.Sessions()) != 0 {
		t.Fatalf("sessions = %+v", e.srv.Sessions())
	}
}
