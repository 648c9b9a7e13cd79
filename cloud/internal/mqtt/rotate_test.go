package mqtt

import (
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Rotation over MQTT (the ESP32 rotation example): "key" sends a new certificate and key,
// "csr" asks for the device's CSR and answers it; the new certificate
// connects and the old one stays ACTIVE. Broken rotations produce a
// certificate that cannot connect.
func TestRotate(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	for _, tc := range []struct {
		mode   string
		broken bool
	}{
		{RotateKey, false},
		{RotateCSR, false},
		{RotateKey, true},
		{RotateCSR, true},
	} {
		name := tc.mode
		if tc.broken {
			name += "-broken"
		}
		t.Run(name, func(t *testing.T) {
			thing := "rot-" + name
			old := e.device(ca, thing)
			c := e.mustConnect(old, thing)
			c.subscribe(t, "devices/"+thing+"/certs/rotate", "devices/"+thing+"/certs/csr/+")
			seq := e.mark()
			if err := e.srv.Rotate(e.ctx, "acme", thing, RotateOptions{Mode: tc.mode, Broken: tc.broken}); err != nil {
				t.Fatal(err)
			}
			m := c.next(t)
			if m.Topic() != "devices/"+thing+"/certs/rotate" || m.Qos() != 1 {
				t.Fatalf("got %s qos %d", m.Topic(), m.Qos())
			}
			var next identity
			if tc.mode == RotateKey {
				var msg map[string]string
				if err := json.Unmarshal(m.Payload(), &msg); err != nil || len(msg) != 2 {
					t.Fatalf("rotate message: %v (%d keys)", err, len(msg))
				}
				chain := parseChain(t, msg["new_certificate"])
				key, err := fakeca.ParseKey([]byte(msg["new_private_key"]))
				if err != nil {
					t.Fatal(err)
				}
				next = identity{cert: chain[0], key: key, chain: chain[1:]}
				if ev := e.event(seq, registry.Filter{Kind: registry.EventKeyOverTheWire, Device: thing}); ev.Credential != fakeca.Fingerprint(chain[0].Raw) {
					t.Fatalf("key event = %+v", ev)
				}
			} else {
				if string(m.Payload()) != `{"action":"csr"}` {
					t.Fatalf("rotate message = %s", m.Payload())
				}
				key, pemCSR := csr(t, pkix.Name{Organization: []string{"acme"}, CommonName: thing})
				body, _ := json.Marshal(map[string]string{"certificateSigningRequest": string(pemCSR)})
				c.publish(t, "devices/"+thing+"/certs/csr", body)
				a := c.next(t)
				var acc map[string]string
				if a.Topic() != "devices/"+thing+"/certs/csr/accepted" || json.Unmarshal(a.Payload(), &acc) != nil || len(acc) != 2 {
					t.Fatalf("answer on %s: %s", a.Topic(), a.Payload())
				}
				chain := parseChain(t, acc["certificatePem"])
				if acc["certificateId"] != fakeca.Fingerprint(chain[0].Raw) {
					t.Fatalf("answer = %v", acc)
				}
				next = identity{cert: chain[0], key: key, chain: chain[1:]}
				if ev := e.event(seq, registry.Filter{Kind: registry.EventRotationCSR, Device: thing}); ev.Outcome != registry.OutcomeOK || ev.Credential != acc["certificateId"] {
					t.Fatalf("csr event = %+v", ev)
				}
			}
			if ev := e.event(seq, registry.Filter{Kind: registry.EventRotationRequest, Device: thing}); !strings.HasPrefix(ev.Reason, "mode "+tc.mode) {
				t.Fatalf("request event = %+v", ev)
			}
			if s := next.cert.Subject; s.CommonName != thing || len(s.Organization) != 1 || s.Organization[0] != "acme" {
				t.Fatalf("new certificate subject = %s", s)
			}
			seq = e.mark()
			nc, err := e.connect(next, thing+"-new")
			if tc.broken {
				if err == nil {
					nc.Disconnect(0)
					t.Fatal("the broken certificate connected")
				}
				if ev := e.event(seq, registry.Filter{Kind: registry.EventAuthMQTT}); ev.Reason != "signed by an unregistered CA" {
					t.Fatalf("event = %+v", ev)
				}
			} else if err != nil {
				t.Fatalf("the new certificate does not connect: %v", err)
			}
			// The factory certificate stays usable (fallback).
			cred, err := e.reg.CertificateByFingerprint(e.ctx, fakeca.Fingerprint(old.cert.Raw))
			if err != nil || cred.State != registry.StateActive {
				t.Fatalf("old certificate = %+v, %v", cred, err)
			}
		})
	}
}

// A CSR whose subject is not the device, or that is not a CSR, is
// rejected on .../csr/rejected and nothing is registered; a good one
// sent unprompted (renewal) is signed.
func TestRotationCSRRejected(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	c := e.mustConnect(e.device(ca, "dev1"), "dev1")
	c.subscribe(t, "devices/dev1/certs/csr/+")
	_, other := csr(t, pkix.Name{Organization: []string{"acme"}, CommonName: "dev2"})
	_, noOrg := csr(t, pkix.Name{CommonName: "dev1"})
	for _, tc := range []struct {
		name, payload, code, msg string
	}{
		{"another device", string(mustJSON(t, map[string]string{"certificateSigningRequest": string(other)})), "InvalidCSR", "not the device id"},
		{"no O", string(mustJSON(t, map[string]string{"certificateSigningRequest": string(noOrg)})), "InvalidCSR", "want exactly"},
		{"garbage", `{"certificateSigningRequest":"hello"}`, "InvalidCSR", ""},
		{"not JSON", `certificateSigningRequest`, "InvalidPayload", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.publish(t, "devices/dev1/certs/csr", []byte(tc.payload))
			m := c.next(t)
			var rej map[string]any
			if m.Topic() != "devices/dev1/certs/csr/rejected" || json.Unmarshal(m.Payload(), &rej) != nil {
				t.Fatalf("answer on %s: %s", m.Topic(), m.Payload())
			}
			if rej["statusCode"] != 400.0 || rej["errorCode"] != tc.code || !strings.Contains(rej["errorMessage"].(string), tc.msg) {
				t.Fatalf("rejected = %v", rej)
			}
		})
	}
	if creds, _ := e.reg.Credentials(e.ctx, "acme", ""); len(creds) != 1 {
		t.Fatalf("%d credentials", len(creds))
	}
	// An unprompted CSR (renewal before expiry) is answered like one asked for.
	_, renew := csr(t, pkix.Name{Organization: []string{"acme"}, CommonName: "dev1"})
	c.publish(t, "devices/dev1/certs/csr", mustJSON(t, map[string]string{"certificateSigningRequest": string(renew)}))
	if m := c.next(t); m.Topic() != "devices/dev1/certs/csr/accepted" {
		t.Fatalf("renewal answer on %s: %s", m.Topic(), m.Payload())
	}
	if creds, _ := e.reg.Credentials(e.ctx, "acme", "dev1"); len(creds) != 2 || creds[1].State != registry.StateActive {
		t.Fatalf("credentials after renewal = %v", creds)
	}
}

// Rotate waits for the device to be subscribed to its rotation topic, and
// gives up with ErrNotConnected when its context ends.
func TestRotateWaitsForTheDevice(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	id := e.device(ca, "dev1")
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	defer cancel()
	if err := e.srv.Rotate(ctx, "acme", "dev1", RotateOptions{Mode: RotateCSR}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("offline: %v", err)
	}
	if err := e.srv.Rotate(e.ctx, "acme", "nobody", RotateOptions{Mode: RotateCSR}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	if err := e.srv.Rotate(e.ctx, "acme", "dev1", RotateOptions{Mode: "psk"}); err == nil {
		t.Fatal("unknown mode accepted")
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Rotate(e.ctx, "acme", "dev1", RotateOptions{Mode: RotateCSR}) }()
	c := e.mustConnect(id, "dev1")
	c.subscribe(t, "devices/dev1/certs/rotate")
	if m := c.next(t); string(m.Payload()) != `{"action":"csr"}` {
		t.Fatalf("got %s", m.Payload())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
