package endpoint

import (
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/internal/fakeca"
)

// Every kind of refusal: the alert of a certificate handshake, the alert
// of a PSK handshake, the MQTT reason code and the sentinel it wraps.
func TestRefusalKinds(t *testing.T) {
	for _, tt := range []struct {
		kind     RefusalKind
		alert    dtlspsk.AlertDescription
		pskAlert dtlspsk.AlertDescription
		code     byte
		sentinel error
	}{
		{RefusedHandshake, dtlspsk.AlertHandshakeFailure, dtlspsk.AlertHandshakeFailure, MQTTUnspecifiedError, ErrHandshake},
		{RefusedUnknownIdentity, dtlspsk.AlertUnknownPSKIdentity, dtlspsk.AlertUnknownPSKIdentity, MQTTBadUserOrPassword, registry.ErrUnknownDevice},
		{RefusedKeyMismatch, dtlspsk.AlertBadRecordMAC, dtlspsk.AlertBadRecordMAC, MQTTBadUserOrPassword, dtlspsk.ErrKeyMismatch},
		{RefusedNoCertificate, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTBadUserOrPassword, fakeca.ErrNoCert},
		{RefusedBadCertificate, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTBadUserOrPassword, ErrBadCertificate},
		{RefusedUnknownProject, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrUnknownDevice},
		{RefusedUnknownDevice, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrUnknownDevice},
		{RefusedWrongDevice, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrUnknownDevice},
		{RefusedNotRegistered, dtlspsk.AlertBadCertificate, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrNotRegistered},
		{RefusedUntrusted, dtlspsk.AlertUnknownCA, dtlspsk.AlertAccessDenied, MQTTBadUserOrPassword, fakeca.ErrUnknownAuthority},
		{RefusedExpired, dtlspsk.AlertCertificateExpired, dtlspsk.AlertAccessDenied, MQTTBadUserOrPassword, fakeca.ErrExpired},
		{RefusedNotYetValid, dtlspsk.AlertCertificateExpired, dtlspsk.AlertAccessDenied, MQTTBadUserOrPassword, fakeca.ErrNotYetValid},
		{RefusedRevoked, dtlspsk.AlertCertificateRevoked, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrRevoked},
		{RefusedPendingActivation, dtlspsk.AlertAccessDenied, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrPendingActivation},
		{RefusedNotActive, dtlspsk.AlertAccessDenied, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrNotActive},
		{RefusedDisabled, dtlspsk.AlertAccessDenied, dtlspsk.AlertAccessDenied, MQTTNotAuthorized, registry.ErrDisabled},
		{RefusedUnavailable, dtlspsk.AlertInternalError, dtlspsk.AlertInternalError, MQTTServerUnavailable, ErrUnavailable},
	} {
		t.Run(fmt.Sprint(tt.kind), func(t *testing.T) {
			cause := errors.New("cause")
			r := Refuse(tt.kind, "why", cause)
			if r.Kind != tt.kind || r.Alert != tt.alert || r.MQTTCode != tt.code || r.Error() != "why" {
				t.Errorf("Refuse = %+v, want alert %s, code %#x", r, tt.alert, tt.code)
			}
			if !errors.Is(r, tt.sentinel) || !errors.Is(r, cause) {
				t.Errorf("Refuse(%d) does not wrap %v and its cause", tt.kind, tt.sentinel)
			}
			if p := RefusePSK(tt.kind, "why", nil); p.Alert != tt.pskAlert || p.MQTTCode != tt.code || !errors.Is(p, tt.sentinel) {
				t.Errorf("RefusePSK = %+v, want alert %s", p, tt.pskAlert)
			}
			wrapped := fmt.Errorf("callback: %w", r)
			if AsRefusal(wrapped) != r {
				t.Error("AsRefusal does not find the refusal through a wrap")
			}
		})
	}
	if got := len(refusalKinds); got != int(numRefusalKinds) {
		t.Fatalf("%d kinds in the table", got)
	}
	if AsRefusal(errors.New("plain")) != nil {
		t.Error("AsRefusal of a plain error")
	}
	if r := Refuse(numRefusalKinds+3, "x", nil); r.Kind != RefusedHandshake || !errors.Is(r, ErrHandshake) {
		t.Errorf("an unknown kind: %+v", r)
	}
}

func TestStateKind(t *testing.T) {
	for st, want := range map[registry.CredState]RefusalKind{
		registry.StateRevoked:           RefusedRevoked,
		registry.StatePendingActivation: RefusedPendingActivation,
		registry.StateInactive:          RefusedNotActive,
	} {
		if got := StateKind(st); got != want {
			t.Errorf("StateKind(%s) = %d, want %d", st, got, want)
		}
	}
	if registry.StateActive.Err() != nil {
		t.Error("ACTIVE refused")
	}
}

// Recheck refuses a session whose device was disabled, whose credential
// left ACTIVE, or whose chain has a revoked certificate, in that order.
func TestRecheck(t *testing.T) {
	ctx := t.Context()
	reg, err := registry.Open(":memory:", registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := a.Issuing.Issue("d1", "acme", fakeca.ECDSAP256, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf, a.Issuing.Cert, a.Root.Cert}
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, "acme", "d1"); err != nil {
		t.Fatal(err)
	}
	cred, err := reg.AddCertificate(ctx, "acme", "d1", leaf.Raw, registry.StateActive)
	if err != nil {
		t.Fatal(err)
	}
	named := func(st registry.CredState) string { return "credential " + string(st) }
	check := func(kind RefusalKind, text string, sentinel error) {
		t.Helper()
		r := Recheck(ctx, reg, "acme", "d1", cred.ID, chain, named)
		switch {
		case text == "" && r != nil:
			t.Fatalf("refused: %+v", r)
		case text == "":
		case r == nil || r.Kind != kind || r.Text != text || !errors.Is(r, sentinel):
			t.Fatalf("refusal %+v, want kind %d %q wrapping %v", r, kind, text, sentinel)
		}
	}
	check(0, "", nil)
	if _, err := reg.Revoke(ctx, fakeca.Fingerprint(a.Issuing.Cert.Raw), fmt.Sprintf("%x", leaf.SerialNumber), 1); err != nil {
		t.Fatal(err)
	}
	check(RefusedRevoked, "certificate revoked", registry.ErrRevoked)
	if err := reg.SetCredentialState(ctx, cred.ID, registry.StateInactive); err != nil {
		t.Fatal(err)
	}
	check(RefusedNotActive, "credential INACTIVE", registry.ErrNotActive)
	if err := reg.SetDeviceDisabled(ctx, "acme", "d1", true); err != nil {
		t.Fatal(err)
	}
	check(RefusedDisabled, "device disabled", registry.ErrDisabled)
}
