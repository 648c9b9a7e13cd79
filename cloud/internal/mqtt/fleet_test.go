package mqtt

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// fleetEnv is an env with a provisioning template "fleet-tmpl" (things
// named "th-" + SerialNumber) and a claim CA registered for it.
type fleetEnv struct {
	*env
	claim identity
}

func newFleetEnv(t *testing.T, tweak ...func(*Options)) *fleetEnv {
	e := newEnv(t, tweak...)
	if _, err := e.reg.PutTemplate(e.ctx, registry.Template{Name: "fleet-tmpl", Project: "acme", ThingPrefix: "th-", Activate: true}); err != nil {
		t.Fatal(err)
	}
	claimCA := e.newCA("acme claim CA", registry.CAModeClaim, "fleet-tmpl")
	return &fleetEnv{env: e, claim: e.issue(claimCA, "bootstrap", "")}
}

// answer is a decoded response.
type answer struct {
	topic string
	body  map[string]any
}

func (a answer) accepted() bool { return strings.HasSuffix(a.topic, "/accepted") }

func (a answer) str(key string) string {
	s, _ := a.body[key].(string)
	return s
}

func (a answer) status() int {
	switch v := a.body["statusCode"].(type) {
	case float64:
		return int(v)
	case uint64:
		return int(v)
	case int64:
		return int(v)
	}
	return -1
}

// marshal encodes a request in a format.
func marshal(t *testing.T, format string, v any) []byte {
	t.Helper()
	var (
		b   []byte
		err error
	)
	if format == formatCBOR {
		b, err = cbor.Marshal(v)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ask publishes a request (the client subscribed to its answers) and
// returns the answer.
func ask(t *testing.T, c *client, format, topic string, payload []byte) answer {
	t.Helper()
	c.publish(t, topic, payload)
	m := c.next(t)
	a := answer{topic: m.Topic(), body: map[string]any{}}
	if !strings.HasPrefix(m.Topic(), topic+"/") {
		t.Fatalf("answer on %s to a request on %s", m.Topic(), topic)
	}
	var err error
	if format == formatCBOR {
		err = cbor.Unmarshal(m.Payload(), &a.body)
	} else {
		err = json.Unmarshal(m.Payload(), &a.body)
	}
	if err != nil {
		t.Fatalf("answer %q on %s: %v", m.Payload(), m.Topic(), err)
	}
	return a
}

// Fleet provisioning by claim, in JSON and CBOR, with a device key
// (create-from-csr) and a cloud key (create): the answers reach the
// requesting connection only; RegisterThing creates the thing and
// activates the certificate, which then connects; the ownership token is
// single-use.
func TestFleetProvisioning(t *testing.T) {
	e := newFleetEnv(t)
	for _, format := range []string{formatJSON, formatCBOR} {
		for _, keys := range []bool{false, true} {
			name := format + "/create-from-csr"
			if keys {
				name = format + "/create"
			}
			t.Run(name, func(t *testing.T) {
				serial := strings.ReplaceAll(name, "/", "-")
				a := e.mustConnect(e.claim, "claim-a-"+serial)
				b := e.mustConnect(e.claim, "claim-b-"+serial)
				op := "$aws/certificates/create-from-csr/" + format
				var (
					payload []byte
					devKey  crypto.Signer
				)
				if keys {
					op = "$aws/certificates/create/" + format
					if format == formatJSON {
						payload = []byte("{}")
					} // CBOR: a 0-byte payload, like the AWS demo
				} else {
					var pemCSR []byte
					devKey, pemCSR = csr(t, pkix.Name{CommonName: "unit-" + serial})
					payload = marshal(t, format, map[string]string{"certificateSigningRequest": string(pemCSR)})
				}
				a.subscribe(t, op+"/accepted", op+"/rejected")
				b.subscribe(t, op+"/accepted", op+"/rejected")

				seq := e.mark()
				acc := ask(t, a, format, op, payload)
				if !acc.accepted() {
					t.Fatalf("rejected: %v", acc.body)
				}
				chain := parseChain(t, acc.str("certificatePem"))
				fp := fakeca.Fingerprint(chain[0].Raw)
				tok := acc.str("certificateOwnershipToken")
				if acc.str("certificateId") != fp || tok == "" || len(tok) >= 512 {
					t.Fatalf("accepted = %v", acc.body)
				}
				if _, hasKey := acc.body["privateKey"]; hasKey != keys {
					t.Fatalf("privateKey present = %t", hasKey)
				}
				cred, err := e.reg.CertificateByFingerprint(e.ctx, fp)
				if err != nil || cred.State != registry.StatePendingActivation || cred.Device != "" || cred.Project != "acme" {
					t.Fatalf("registered certificate = %+v, %v", cred, err)
				}
				kind := registry.EventFleetCreateCSR
				if keys {
					kind = registry.EventFleetCreate
					devKey, err = fakeca.ParseKey([]byte(acc.str("privateKey")))
					if err != nil {
						t.Fatal(err)
					}
					if ev := e.event(seq, registry.Filter{Kind: registry.EventKeyOverTheWire}); !strings.Contains(ev.Reason, fp) {
						t.Fatalf("key event = %+v", ev)
					}
				}
				if ev := e.event(seq, registry.Filter{Kind: kind}); ev.Outcome != registry.OutcomeOK || ev.Credential != fp {
					t.Fatalf("event = %+v", ev)
				}
				// b shares the certificate and the topic: its first message
				// is the answer to its own (bad) request, not a's.
				if rej := ask(t, b, format, op, []byte{0xff}); rej.accepted() || rej.status() != 400 || rej.str("errorCode") != "InvalidPayload" {
					t.Fatalf("b got %s %v", rej.topic, rej.body)
				}

				prov := "$aws/provisioning-templates/fleet-tmpl/provision/" + format
				a.subscribe(t, prov+"/accepted", prov+"/rejected")
				req := marshal(t, format, map[string]any{"certificateOwnershipToken": tok, "parameters": map[string]string{"SerialNumber": serial}})
				reg := ask(t, a, format, prov, req)
				thing := "th-" + serial
				if !reg.accepted() || reg.str("thingName") != thing || fmt.Sprint(reg.body["deviceConfiguration"]) != "map[]" || len(reg.body) != 2 {
					t.Fatalf("RegisterThing answer = %s %v", reg.topic, reg.body)
				}
				cred, err = e.reg.CertificateByFingerprint(e.ctx, fp)
				if err != nil || cred.State != registry.StateActive || cred.Device != thing {
					t.Fatalf("certificate after RegisterThing = %+v, %v", cred, err)
				}
				if ev := e.event(seq, registry.Filter{Kind: registry.EventFleetProvision}); ev.Outcome != registry.OutcomeOK || ev.Device != thing {
					t.Fatalf("event = %+v", ev)
				}
				again := ask(t, a, format, prov, req)
				if again.accepted() || again.status() != 403 || again.str("errorCode") != "InvalidCertificateOwnershipToken" ||
					!strings.Contains(again.str("errorMessage"), "already used") || strings.Contains(again.str("errorMessage"), tok) {
					t.Fatalf("replay answer = %s %v", again.topic, again.body)
				}

				dev := e.mustConnect(identity{cert: chain[0], key: devKey, chain: chain[1:]}, thing)
				dev.subscribe(t, "devices/"+thing+"/#")
			})
		}
	}
}

// Bad requests get a precise rejection on the rejected topic; the
// registry is unchanged and the broker keeps serving.
func TestFleetRejections(t *testing.T) {
	e := newFleetEnv(t)
	otherCA := e.newCA("claim CA without template", registry.CAModeClaim, "missing")
	_, goodCSR := csr(t, pkix.Name{CommonName: "unit-1"})
	_, noCN := csr(t, pkix.Name{Organization: []string{"acme"}})
	before := func() (int, int) {
		creds, err := e.reg.Credentials(e.ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		devs, err := e.reg.Devices(e.ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return len(creds), len(devs)
	}
	nCreds, nDevs := before()
	fromCSR := "$aws/certificates/create-from-csr/"
	prov := "$aws/provisioning-templates/fleet-tmpl/provision/"
	for _, tc := range []struct {
		name, format, topic string
		payload             []byte
		status              int
		code, msg           string
		claim               *identity
	}{
		{"bad JSON", formatJSON, fromCSR + "json", []byte(`{"certificateSigningRequest":`), 400, "InvalidPayload", "not a JSON object", nil},
		{"JSON array", formatJSON, fromCSR + "json", []byte(`["x"]`), 400, "InvalidPayload", "not a JSON object", nil},
		{"CSR not a string", formatJSON, fromCSR + "json", []byte(`{"certificateSigningRequest":42}`), 400, "InvalidPayload", "not a string", nil},
		{"no CSR", formatJSON, fromCSR + "json", []byte(`{}`), 400, "InvalidPayload", "missing", nil},
		{"key spelled otherwise", formatJSON, fromCSR + "json", []byte(`{"CertificateSigningRequest":"x"}`), 400, "InvalidPayload", "missing", nil},
		{"bad CBOR", formatCBOR, fromCSR + "cbor", []byte{0xbf, 0x61}, 400, "InvalidPayload", "not a CBOR map", nil},
		{"CBOR duplicate key", formatCBOR, fromCSR + "cbor", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, 400, "InvalidPayload", "", nil},
		{"CBOR byte-string CSR", formatCBOR, fromCSR + "cbor", marshal(t, formatCBOR, map[string][]byte{"certificateSigningRequest": goodCSR}), 400, "InvalidPayload", "not a string", nil},
		{"garbage CSR", formatJSON, fromCSR + "json", []byte(`{"certificateSigningRequest":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}`), 400, "InvalidCSR", "", nil},
		{"CSR without CN", formatCBOR, fromCSR + "cbor", marshal(t, formatCBOR, map[string]string{"certificateSigningRequest": string(noCN)}), 400, "InvalidCSR", "no CN", nil},
		{"oversized", formatJSON, fromCSR + "json", append(append([]byte(`{"certificateSigningRequest":"`), bytes.Repeat([]byte("A"), MaxPayload)...), '"', '}'), 400, "InvalidPayload", "limit", nil},
		{"create with a non-map", formatJSON, "$aws/certificates/create/json", []byte(`"x"`), 400, "InvalidPayload", "", nil},
		{"unknown token", formatJSON, prov + "json", []byte(`{"certificateOwnershipToken":"nope","parameters":{"SerialNumber":"1"}}`), 403, "InvalidCertificateOwnershipToken", "unknown", nil},
		{"missing parameter", formatJSON, prov + "json", []byte(`{"certificateOwnershipToken":"nope","parameters":{}}`), 400, "InvalidParameters", "SerialNumber", nil},
		{"bad thing name", formatCBOR, prov + "cbor", marshal(t, formatCBOR, map[string]any{"certificateOwnershipToken": "nope", "parameters": map[string]string{"SerialNumber": "a b"}}), 400, "InvalidParameters", "", nil},
		{"parameter not a string", formatJSON, prov + "json", []byte(`{"certificateOwnershipToken":"nope","parameters":{"SerialNumber":7}}`), 400, "InvalidPayload", "parameters", nil},
		{"no token", formatJSON, prov + "json", []byte(`{"parameters":{"SerialNumber":"1"}}`), 400, "InvalidPayload", "certificateOwnershipToken", nil},
		{"unknown template", formatJSON, "$aws/provisioning-templates/missing/provision/json", []byte(`{"certificateOwnershipToken":"x","parameters":{"SerialNumber":"1"}}`), 404, "ResourceNotFound", "missing", ptr(e.issue(otherCA, "bootstrap-2", ""))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.claim
			if tc.claim != nil {
				id = *tc.claim
			}
			c := e.mustConnect(id, "claim")
			c.subscribe(t, tc.topic+"/accepted", tc.topic+"/rejected")
			a := ask(t, c, tc.format, tc.topic, tc.payload)
			if a.accepted() || a.status() != tc.status || a.str("errorCode") != tc.code || !strings.Contains(a.str("errorMessage"), tc.msg) || len(a.body) != 3 {
				t.Fatalf("answer = %s %v, want %d %s %q", a.topic, a.body, tc.status, tc.code, tc.msg)
			}
			c.Disconnect(0)
		})
	}
	if c, d := before(); c != nCreds || d != nDevs {
		t.Fatalf("registry changed: %d credentials (was %d), %d devices (was %d)", c, nCreds, d, nDevs)
	}
	// Still serving.
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	dev := e.mustConnect(e.device(ca, "dev1"), "dev1")
	dev.subscribe(t, "devices/dev1/#")
	dev.publish(t, "devices/dev1/x", []byte("hi"))
	if m := dev.next(t); string(m.Payload()) != "hi" {
		t.Fatalf("got %q", m.Payload())
	}
}

func ptr[T any](v T) *T { return &v }

// An ownership token expires after TokenLifetime of the cloud's clock;
// the certificate it was for, never registered, is then deleted.
func TestTokenExpired(t *testing.T) {
	e := newFleetEnv(t, func(o *Options) { o.TokenLifetime = 10 * time.Minute })
	c := e.mustConnect(e.claim, "claim")
	op := "$aws/certificates/create-from-csr/json"
	prov := "$aws/provisioning-templates/fleet-tmpl/provision/json"
	c.subscribe(t, op+"/accepted", op+"/rejected", prov+"/accepted", prov+"/rejected")
	_, pemCSR := csr(t, pkix.Name{CommonName: "unit-1"})
	req := marshal(t, formatJSON, map[string]string{"certificateSigningRequest": string(pemCSR)})
	acc := ask(t, c, formatJSON, op, req)
	if !acc.accepted() {
		t.Fatalf("rejected: %v", acc.body)
	}
	e.clock.Advance(10 * time.Minute)
	rej := ask(t, c, formatJSON, prov, marshal(t, formatJSON, map[string]any{
		"certificateOwnershipToken": acc.str("certificateOwnershipToken"), "parameters": map[string]string{"SerialNumber": "1"}}))
	if rej.accepted() || rej.status() != 403 || rej.str("errorCode") != "InvalidCertificateOwnershipToken" || !strings.Contains(rej.str("errorMessage"), "expired") {
		t.Fatalf("answer = %s %v", rej.topic, rej.body)
	}
	// The next create purges the expired token and its certificate.
	if next := ask(t, c, formatJSON, op, req); !next.accepted() {
		t.Fatalf("rejected: %v", next.body)
	}
	if _, err := e.reg.CertificateByFingerprint(e.ctx, acc.str("certificateId")); err == nil {
		t.Fatal("the never-registered certificate survived its token")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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

// Private keys and ownership tokens cross the network where the protocol
// says so, and appear nowhere else: not in logs (debug level, mochi's
// included), not in events.
func TestSecretsStayOutOfLogs(t *testing.T) {
	var logs syncBuffer
	e := newFleetEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := e.mustConnect(e.claim, "claim")
	op := "$aws/certificates/create/json"
	prov := "$aws/provisioning-templates/fleet-tmpl/provision/json"
	c.subscribe(t, op+"/accepted", op+"/rejected", prov+"/accepted", prov+"/rejected")
	acc := ask(t, c, formatJSON, op, nil)
	tok := acc.str("certificateOwnershipToken")
	if !acc.accepted() || tok == "" || !strings.Contains(acc.str("privateKey"), "PRIVATE KEY") {
		t.Fatalf("create answer = %s", acc.topic)
	}
	req := marshal(t, formatJSON, map[string]any{"certificateOwnershipToken": tok, "parameters": map[string]string{"SerialNumber": "s1"}})
	if reg := ask(t, c, formatJSON, prov, req); !reg.accepted() {
		t.Fatalf("RegisterThing answer = %v", reg.body)
	}
	if again := ask(t, c, formatJSON, prov, req); again.accepted() {
		t.Fatal("token reused")
	}
	// A forged answer outside the ACL is refused and logged: redacted.
	c.publish(t, op+"/accepted", []byte(`{"privateKey":"-----BEGIN EC PRIVATE KEY-----"}`))
	key, err := fakeca.ParseKey([]byte(acc.str("privateKey")))
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, acc.str("certificatePem"))
	dev := e.mustConnect(identity{cert: chain[0], key: key, chain: chain[1:]}, "th-s1")
	dev.subscribe(t, "devices/th-s1/certs/rotate")
	if err := e.srv.Rotate(e.ctx, "acme", "th-s1", RotateOptions{Mode: RotateKey}); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t); !strings.Contains(string(m.Payload()), "PRIVATE KEY") {
		t.Fatalf("rotation message = %s", m.Payload())
	}
	evs, err := e.reg.Events(e.ctx, registry.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	all := logs.String() + fmt.Sprint(evs)
	for _, secret := range []string{"PRIVATE KEY", tok} {
		if strings.Contains(all, secret) {
			t.Errorf("%q appears in logs or events", secret)
		}
	}
}
