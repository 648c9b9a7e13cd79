package sim_test

import (
	"context"
	"crypto"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// testCtx bounds a whole test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newMQTTDevice makes a device of project with the factory credential;
// cleanup stops it and checks its goroutines ended.
func newMQTTDevice(t *testing.T, b *testBroker, id string, factory devicemodel.Credential, mod func(*sim.MQTTDeviceOptions)) (*sim.MQTTDevice, *syncBuffer) {
	t.Helper()
	console := &syncBuffer{}
	model := devicemodel.New(devicemodel.Config{ID: id, Project: project, Factory: factory}, nil)
	o := sim.MQTTDeviceOptions{
		Addr: b.addr, RootCAs: b.roots, Console: console,
		RetryDelay: time.Millisecond, ResponseTimeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	d := simmodel.NewMQTTDevice(model, o)
	t.Cleanup(func() {
		d.Stop()
		noDeviceGoroutines(t)
		if t.Failed() || testing.Verbose() {
			t.Logf("console of %s:\n%s", id, console)
		}
	})
	return d, console
}

func startOnline(t *testing.T, ctx context.Context, d *sim.MQTTDevice) {
	t.Helper()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !d.Online() {
		t.Fatal("not online after Start")
	}
}

func wantLines(t *testing.T, console string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(console, l) {
			t.Errorf("console lacks %q", l)
		}
	}
}

// A certificate the cloud registers just in time: the first connection is
// closed before CONNACK, the retry gets online; a certificate that stays
// pending uses up the retries.
func TestMQTTJITPRetry(t *testing.T) {
	tests := []struct {
		name         string
		closeFirst   int
		retries      int
		wantErr      error
		wantAttempts int
	}{
		{"JITP: first connection closed, retry accepted", 1, 0, nil, 2},
		{"JITR pending: every connection closed", 100, 2, sim.ErrOffline, 3},
		{"no retries configured", 1, -1, sim.ErrOffline, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newTestBroker(t, brokerOptions{CloseFirst: tt.closeFirst})
			factory := deviceCredential(t, b.device.Issuing, "dev-jitp", project)
			d, console := newMQTTDevice(t, b, "dev-jitp", factory, func(o *sim.MQTTDeviceOptions) { o.JITPRetries = tt.retries })
			err := d.Start(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Start = %v, want %v", err, tt.wantErr)
			}
			certID := fakeca.Fingerprint(factory.CertChainDER[0])
			if got := b.attemptsFor(certID); got != tt.wantAttempts {
				t.Errorf("broker saw %d connections, want %d", got, tt.wantAttempts)
			}
			wantLines(t, console.String(), "connection closed before CONNACK")
			st := d.State()
			if tt.wantErr == nil {
				if !st.Online || st.Connects != 1 || st.Model.Slot != sim.SlotFactory {
					t.Errorf("state = %+v", st)
				}
				if acc := b.acceptedIDs(); len(acc) != 1 || acc[0] != certID {
					t.Errorf("accepted %v", acc)
				}
				return
			}
			if st.Online || st.Err == nil {
				t.Errorf("state = online %t err %v", st.Online, st.Err)
			}
		})
	}
}

// Rotation variant (a): the cloud pushes a certificate and key; the device
// stores them, reboots and confirms them. With a certificate nobody trusts,
// three failed boots send it back to its factory certificate.
func TestMQTTKeyRotation(t *testing.T) {
	const id = "dev-rot"
	tests := []struct {
		name   string
		issuer func(t *testing.T, b *testBroker) *fakeca.CA
		check  func(t *testing.T, b *testBroker, st sim.MQTTState, rotated, factory devicemodel.Credential, console string)
	}{
		{
			name:   "good certificate is confirmed",
			issuer: func(_ *testing.T, b *testBroker) *fakeca.CA { return b.device.Issuing },
			check: func(t *testing.T, b *testBroker, st sim.MQTTState, rotated, _ devicemodel.Credential, console string) {
				if st.Model.Slot != sim.SlotRotated || !st.Model.RotatedConfirmed || st.Model.Fingerprint != rotated.Fingerprint() {
					t.Errorf("model = %s", st.Model)
				}
				acc := b.acceptedIDs()
				if len(acc) != 2 || acc[1] != fakeca.Fingerprint(rotated.CertChainDER[0]) {
					t.Errorf("broker accepted %v, want the rotated certificate second", acc)
				}
				wantLines(t, console,
					"Certificate rotation command received.",
					"stored in NVS. Rebooting in 5 seconds...",
					"Found rotated certificates in NVS. Attempting to use them.",
					"rotation confirmed, boot counter reset")
			},
		},
		{
			name: "certificate from an unknown CA falls back after 3 boots",
			issuer: func(t *testing.T, _ *testBroker) *fakeca.CA {
				rogue, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return rogue.Issuing
			},
			check: func(t *testing.T, b *testBroker, st sim.MQTTState, _, factory devicemodel.Credential, console string) {
				m := st.Model
				if m.Slot != sim.SlotFactory || !m.FellBack || m.HasRotated || m.BootCount != 0 || m.Fingerprint != factory.Fingerprint() {
					t.Errorf("model = %s", m)
				}
				wantLines(t, console,
					"unconfirmed: boot 1 of 3", "unconfirmed: boot 2 of 3", "unconfirmed: boot 3 of 3",
					"rotated certificate failed 3 boots, falling back to factory credentials",
					"Using factory certificates.")
				if n := strings.Count(console, "connection failed:"); n != 3 {
					t.Errorf("%d failed connections, want 3", n)
				}
				// A refusal normally arrives as a TLS alert; when the
				// broker's close turns into a TCP reset it looks like a
				// JITP close and is retried, which changes nothing above.
				if n := strings.Count(console, "closed before CONNACK"); n != 0 {
					t.Logf("note: %d refusals looked like a close before CONNACK", n)
				}
				acc := b.acceptedIDs()
				if len(acc) != 2 || acc[1] != fakeca.Fingerprint(factory.CertChainDER[0]) {
					t.Errorf("broker accepted %v, want the factory certificate twice", acc)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newTestBroker(t, brokerOptions{})
			factory := deviceCredential(t, b.device.Issuing, id, project)
			d, console := newMQTTDevice(t, b, id, factory, nil)
			startOnline(t, ctx, d)
			done := d.Done()
			payload, rotated := rotationPayload(t, tt.issuer(t, b), id)
			b.publish("devices/"+id+"/certs/rotate", payload)
			st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Handled == 1 })
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			default:
				t.Error("Done of the first connection not closed by the reboot")
			}
			if !st.Online || st.Connects != 2 || st.Err != nil {
				t.Fatalf("state = online %t connects %d err %v", st.Online, st.Connects, st.Err)
			}
			tt.check(t, b, st, rotated, factory, console.String())
		})
	}
}

// Malformed rotation payloads are logged and ignored: nothing is stored and
// the device stays online on the same connection.
func TestMQTTMalformedRotationIgnored(t *testing.T) {
	const id = "dev-bad"
	ctx := testCtx(t)
	b := newTestBroker(t, brokerOptions{})
	factory := deviceCredential(t, b.device.Issuing, id, project)
	d, console := newMQTTDevice(t, b, id, factory, nil)
	startOnline(t, ctx, d)
	done := d.Done()
	good, _ := rotationPayload(t, b.device.Issuing, id)
	_, other := rotationPayload(t, b.device.Issuing, id)
	var fields map[string]string
	if err := jsonUnmarshal(good, &fields); err != nil {
		t.Fatal(err)
	}
	mismatched := mustJSON(t, map[string]string{
		"new_certificate": fields["new_certificate"],
		"new_private_key": pemKey(other),
	})
	rawNewlines := []byte(`{"new_certificate": "` + fields["new_certificate"] + `", "new_private_key": "` + fields["new_private_key"] + `"}`)
	tests := []struct {
		name     string
		payload  []byte
		wantLine string
		wantErr  error
	}{
		{"bad JSON", []byte(`{"new_certificate": `), "Failed to parse rotation JSON", devicemodel.ErrBadJSON},
		{"PEM with raw newlines", rawNewlines, "Failed to parse rotation JSON", devicemodel.ErrBadJSON},
		{"missing key", mustJSON(t, map[string]string{"new_certificate": fields["new_certificate"]}), "Invalid JSON format for rotation.", devicemodel.ErrMissingField},
		{"key does not match the certificate", mismatched, "Invalid certificate or key in rotation", devicemodel.ErrKeyMismatch},
		{"unknown action", []byte(`{"action":"reboot"}`), "Invalid JSON format for rotation.", devicemodel.ErrMissingField},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.publish("devices/"+id+"/certs/rotate", tt.payload)
			st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Handled == i+1 })
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(st.Err, tt.wantErr) || !errors.Is(st.Err, devicemodel.ErrBadRotation) {
				t.Errorf("Err = %v, want %v", st.Err, tt.wantErr)
			}
			if !st.Online || st.Connects != 1 || st.Model.HasRotated || st.Model.Slot != sim.SlotFactory {
				t.Errorf("state = online %t connects %d model %s", st.Online, st.Connects, st.Model)
			}
			wantLines(t, console.String(), tt.wantLine)
			select {
			case <-done:
				t.Fatal("the connection ended")
			default:
			}
		})
	}
	if strings.Contains(console.String(), "PRIVATE KEY") {
		t.Error("the console shows a private key")
	}
}

// Rotation variant (b): the cloud asks for a CSR, signs it and the device
// reboots into the certificate; a rejected CSR leaves it online as it was.
func TestMQTTCSRRotation(t *testing.T) {
	const id = "dev-csr"
	t.Run("accepted", func(t *testing.T) {
		ctx := testCtx(t)
		b := newTestBroker(t, brokerOptions{})
		factory := deviceCredential(t, b.device.Issuing, id, project)
		d, console := newMQTTDevice(t, b, id, factory, nil)
		startOnline(t, ctx, d)
		b.publish("devices/"+id+"/certs/rotate", []byte(`{"action":"csr"}`))
		st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Connects == 2 && s.Online && s.Model.RotatedConfirmed })
		if err != nil {
			t.Fatal(err)
		}
		csrs := b.receivedCSRs()
		if len(csrs) != 1 || csrs[0].Subject.CommonName != id || len(csrs[0].Subject.Organization) != 1 || csrs[0].Subject.Organization[0] != project {
			t.Fatalf("CSRs = %v", csrs)
		}
		leaf, err := simmodel.Of(d).Current().Leaf()
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csrs[0].PublicKey) {
			t.Error("the certificate in use is not for the CSR's key")
		}
		if acc := b.acceptedIDs(); len(acc) != 2 || acc[1] != fakeca.Fingerprint(leaf.Raw) {
			t.Errorf("broker accepted %v", acc)
		}
		if st.Model.CSRPending || st.Model.Slot != sim.SlotRotated {
			t.Errorf("model = %s", st.Model)
		}
		wantLines(t, console.String(), "the cloud asks for a CSR", "CSR accepted: certificateId", "rotation confirmed")
	})
	t.Run("rejected", func(t *testing.T) {
		ctx := testCtx(t)
		b := newTestBroker(t, brokerOptions{})
		b.setRejectCSR("InvalidCSR")
		factory := deviceCredential(t, b.device.Issuing, id, project)
		d, console := newMQTTDevice(t, b, id, factory, nil)
		startOnline(t, ctx, d)
		b.publish("devices/"+id+"/certs/rotate", []byte(`{"action":"csr"}`))
		st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Handled == 2 })
		if err != nil {
			t.Fatal(err)
		}
		var rej *sim.RejectedError
		if !errors.As(st.Err, &rej) || rej.StatusCode != 400 || rej.ErrorCode != "InvalidCSR" {
			t.Fatalf("Err = %v, want a rejection", st.Err)
		}
		if !st.Online || st.Connects != 1 || st.Model.HasRotated {
			t.Errorf("state = online %t connects %d model %s", st.Online, st.Connects, st.Model)
		}
		wantLines(t, console.String(), "CSR rejected by the cloud")
	})
}

// Fleet provisioning by claim in both formats, with a key made on the
// device (CSR) or by the cloud; the next Start uses the new certificate.
func TestMQTTProvisionByClaim(t *testing.T) {
	tests := []struct {
		format     string
		createKeys bool
	}{
		{"json", false},
		{"cbor", false},
		{"json", true},
		{"cbor", true},
	}
	for _, tt := range tests {
		name := tt.format + "/create-from-csr"
		if tt.createKeys {
			name = tt.format + "/create"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newTestBroker(t, brokerOptions{})
			id := "dev-" + tt.format
			claim := deviceCredential(t, b.claim.Issuing, "bootstrap", project)
			d, console := newMQTTDevice(t, b, id, claim, nil)
			thing, err := d.ProvisionByClaim(ctx, sim.ClaimOptions{
				Template: "tmpl", Format: tt.format, Parameters: map[string]string{"SerialNumber": id}, CreateKeys: tt.createKeys,
			})
			if err != nil {
				t.Fatalf("ProvisionByClaim: %v", err)
			}
			if thing != id {
				t.Fatalf("thing = %q, want %q", thing, id)
			}
			st := d.State()
			if st.Online || !st.Model.HasRotated || st.Model.RotatedConfirmed || st.Model.CSRPending {
				t.Fatalf("after provisioning: online %t model %s", st.Online, st.Model)
			}
			startOnline(t, ctx, d)
			st = d.State()
			cur := simmodel.Of(d).Current()
			if st.Model.Slot != sim.SlotRotated || !st.Model.RotatedConfirmed || cur.Equal(claim) {
				t.Fatalf("after Start: model %s", st.Model)
			}
			acc := b.acceptedIDs()
			want := []string{fakeca.Fingerprint(claim.CertChainDER[0]), fakeca.Fingerprint(cur.CertChainDER[0])}
			if len(acc) != 2 || acc[0] != want[0] || acc[1] != want[1] {
				t.Errorf("broker accepted %v, want claim then provisioned %v", acc, want)
			}
			if n := b.tokenCount(); n != 0 {
				t.Errorf("%d ownership tokens left unused", n)
			}
			out := console.String()
			wantLines(t, out, "RegisterThing accepted", "Found rotated certificates in NVS")
			if tt.createKeys {
				wantLines(t, out, "the cloud sent the private key")
			}
			if strings.Contains(out, "PRIVATE KEY") {
				t.Error("the console shows a private key")
			}
		})
	}
}

// A rejected request returns *RejectedError and changes nothing.
func TestMQTTProvisionRejected(t *testing.T) {
	tests := []struct {
		name       string
		opts       sim.ClaimOptions
		wantStatus int
		wantCode   string
	}{
		{"unknown template", sim.ClaimOptions{Template: "nope", Parameters: map[string]string{"SerialNumber": "x"}}, 404, "ResourceNotFound"},
		{"missing parameter (cbor)", sim.ClaimOptions{Template: "tmpl", Format: "cbor"}, 400, "InvalidParameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newTestBroker(t, brokerOptions{})
			claim := deviceCredential(t, b.claim.Issuing, "bootstrap", project)
			d, _ := newMQTTDevice(t, b, "dev-rej", claim, nil)
			_, err := d.ProvisionByClaim(ctx, tt.opts)
			var rej *sim.RejectedError
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want *RejectedError", err)
			}
			if rej.StatusCode != tt.wantStatus || rej.ErrorCode != tt.wantCode || rej.ErrorMessage == "" {
				t.Errorf("rejection = %+v", rej)
			}
			if st := d.State(); st.Online || st.Model.HasRotated {
				t.Errorf("state after rejection: online %t model %s", st.Online, st.Model)
			}
		})
	}
	t.Run("ACL refuses another template's topics", func(t *testing.T) {
		ctx := testCtx(t)
		b := newTestBroker(t, brokerOptions{})
		b.setDenyPrefix("$aws/provisioning-templates/other/")
		d, _ := newMQTTDevice(t, b, "dev-acl", deviceCredential(t, b.claim.Issuing, "bootstrap", project), nil)
		_, err := d.ProvisionByClaim(ctx, sim.ClaimOptions{Template: "other", Parameters: map[string]string{"SerialNumber": "dev-acl"}})
		if !errors.Is(err, sim.ErrSubscribeRefused) {
			t.Fatalf("err = %v, want ErrSubscribeRefused", err)
		}
		if st := d.State(); st.Model.HasRotated {
			t.Errorf("stored a certificate: %s", st.Model)
		}
	})
	t.Run("replayed token", func(t *testing.T) {
		ctx := testCtx(t)
		b := newTestBroker(t, brokerOptions{})
		d, console := newMQTTDevice(t, b, "dev-replay", deviceCredential(t, b.claim.Issuing, "bootstrap", project), nil)
		called := 0
		thing, err := d.ProvisionByClaim(ctx, sim.ClaimOptions{
			Template: "tmpl", Parameters: map[string]string{"SerialNumber": "dev-replay"}, ReplayToken: true,
			BeforeRegister: func(context.Context) error { called++; return nil },
		})
		var rej *sim.RejectedError
		if !errors.As(err, &rej) || rej.StatusCode != 403 || rej.ErrorCode != "InvalidCertificateOwnershipToken" {
			t.Fatalf("err = %v, want the replay's rejection", err)
		}
		if thing != "dev-replay" || called != 1 {
			t.Errorf("thing %q, BeforeRegister called %d times", thing, called)
		}
		if st := d.State(); !st.Model.HasRotated {
			t.Errorf("the certificate of the first RegisterThing was not stored: %s", st.Model)
		}
		wantLines(t, console.String(), "replay refused")
	})
	t.Run("BeforeRegister fails", func(t *testing.T) {
		ctx := testCtx(t)
		b := newTestBroker(t, brokerOptions{})
		d, _ := newMQTTDevice(t, b, "dev-before", deviceCredential(t, b.claim.Issuing, "bootstrap", project), nil)
		boom := errors.New("boom")
		_, err := d.ProvisionByClaim(ctx, sim.ClaimOptions{
			Template: "tmpl", Parameters: map[string]string{"SerialNumber": "dev-before"},
			BeforeRegister: func(context.Context) error { return boom },
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if st := d.State(); st.Model.HasRotated {
			t.Errorf("stored a certificate: %s", st.Model)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		b := newTestBroker(t, brokerOptions{})
		d, _ := newMQTTDevice(t, b, "dev-opt", deviceCredential(t, b.claim.Issuing, "bootstrap", project), nil)
		for _, o := range []sim.ClaimOptions{{}, {Template: "t", Format: "xml"}, {Template: strings.Repeat("t", 37)}, {Template: "a/b"}} {
			if _, err := d.ProvisionByClaim(testCtx(t), o); err == nil {
				t.Errorf("%+v accepted", o)
			}
		}
	})
}

// With the clock inside the renewal window, CheckRenewal sends a CSR and the
// device moves to the renewed certificate.
func TestMQTTCheckRenewal(t *testing.T) {
	const id = "dev-renew"
	ctx := testCtx(t)
	clock := &virtualClock{t: time.Now()}
	b := newTestBroker(t, brokerOptions{Now: clock.Now})
	factory := deviceCredential(t, b.device.Issuing, id, project)
	d, console := newMQTTDevice(t, b, id, factory, func(o *sim.MQTTDeviceOptions) { o.Now = clock.Now })
	startOnline(t, ctx, d)
	if err := d.CheckRenewal(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(b.receivedCSRs()); n != 0 {
		t.Fatalf("%d CSRs outside the renewal window", n)
	}
	old := d.State().Model.NotAfter
	clock.Advance(old.Sub(clock.Now()) - devicemodel.DefaultRenewBefore + time.Hour)
	if err := d.CheckRenewal(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := d.Wait(ctx, func(s sim.MQTTState) bool { return s.Connects == 2 && s.Online && s.Model.RotatedConfirmed })
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.receivedCSRs()); n != 1 {
		t.Errorf("%d CSRs, want 1", n)
	}
	if !st.Model.NotAfter.After(old) {
		t.Errorf("renewed certificate expires %s, the old one %s", st.Model.NotAfter, old)
	}
	if simmodel.Of(d).NeedsRenewal(clock.Now()) {
		t.Error("still needs renewal")
	}
	wantLines(t, console.String(), "renewing", "publishing its CSR")
}

// Done fires when the cloud drops the connection; the device can start
// again afterwards.
func TestMQTTDoneWhenDropped(t *testing.T) {
	const id = "dev-drop"
	ctx := testCtx(t)
	b := newTestBroker(t, brokerOptions{})
	d, console := newMQTTDevice(t, b, id, deviceCredential(t, b.device.Issuing, id, project), nil)
	select {
	case <-d.Done():
	default:
		t.Fatal("Done of a device that never connected is not closed")
	}
	startOnline(t, ctx, d)
	done := d.Done()
	if !b.drop(id) {
		t.Fatal("broker does not know the client")
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Done did not fire")
	}
	if d.Online() {
		t.Error("online after the drop")
	}
	if err := d.Publish(ctx, "devices/"+id+"/x", []byte("x")); !errors.Is(err, sim.ErrNotConnected) {
		t.Errorf("Publish offline = %v", err)
	}
	wantLines(t, console.String(), "connection lost")
	startOnline(t, ctx, d)
	if err := d.Publish(ctx, "devices/"+id+"/state", []byte(`{"ok":true}`)); err != nil {
		t.Error(err)
	}
	if !strings.Contains(d.Status(), "online=true connects=2") {
		t.Errorf("Status = %s", d.Status())
	}
}

// Stop during a background reboot cancels it and waits for it.
func TestMQTTStopDuringReboot(t *testing.T) {
	const id = "dev-stop"
	ctx := testCtx(t)
	b := newTestBroker(t, brokerOptions{})
	d, _ := newMQTTDevice(t, b, id, deviceCredential(t, b.device.Issuing, id, project), nil)
	startOnline(t, ctx, d)
	rogue, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := rotationPayload(t, rogue.Issuing, id)
	done := d.Done()
	b.publish("devices/"+id+"/certs/rotate", payload)
	select {
	case <-done: // the reboot began
	case <-ctx.Done():
		t.Fatal("no reboot")
	}
	stopped := make(chan struct{})
	go func() {
		d.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop hangs")
	}
	noDeviceGoroutines(t)
	if d.Online() {
		t.Error("online after Stop")
	}
	// Powered again, the device goes on counting boots with the rotated
	// certificate and still falls back.
	err = d.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.State(); st.Model.Slot != sim.SlotFactory {
		t.Errorf("model = %s", st.Model)
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemKey(c devicemodel.Credential) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: c.KeyDER}))
}
