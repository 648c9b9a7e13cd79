package mqtt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// announce runs the first part of just-in-time registration, for a
// connection whose certificate is unknown or still PENDING_ACTIVATION
// under a JITP/JITR CA: register the certificate PENDING_ACTIVATION (JITP:
// unattached; JITR: attached to the thing named by its CN), publish the
// registration event, and record that the connection is refused. It
// reports whether the certificate is registered.
func (s *Server) announce(ctx context.Context, hs *handshake) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	p := hs.peer()
	hs.mu.Lock()
	ca, known, leaf := hs.ca, hs.known, hs.chain[0]
	hs.mu.Unlock()
	kind := registry.EventProvisionJITP
	if ca.Mode == registry.CAModeJITR {
		kind = registry.EventProvisionJITR
	}
	ev := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: kind}
	fail := func(reason string, err error) bool {
		ev.Outcome, ev.Reason = registry.OutcomeFail, reason
		s.record(ev)
		s.log.Error("just-in-time registration", "project", p.Project, "thing", p.Device, "credential", short(p.Credential), "reason", reason, "err", err)
		s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeFail, Reason: reason})
		return false
	}
	var cred registry.Credential
	if known {
		var err error
		if cred, err = s.reg.Credential(ctx, p.CredentialID); err != nil {
			return fail("registry unavailable", err)
		}
	} else {
		device := ""
		if ca.Mode == registry.CAModeJITR {
			if _, _, err := s.reg.EnsureDevice(ctx, p.Project, p.Device, true); err != nil {
				return fail("thing "+p.Device+" could not be created", err)
			}
			device = p.Device
		}
		var err error
		cred, err = s.reg.AddCertificate(ctx, p.Project, device, leaf.Raw, registry.StatePendingActivation)
		if err != nil {
			return fail("certificate could not be registered", err)
		}
		if len(p.Chain) > 1 {
			_ = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(p.Chain[1].Raw))
		}
		hs.mu.Lock()
		hs.credID, hs.known = cred.ID, true
		hs.mu.Unlock()
		ev.Outcome, ev.Reason = registry.OutcomeOK, "certificate registered PENDING_ACTIVATION (CA "+short(ca.ID)+")"
		if device != "" {
			ev.Reason += ", attached to thing " + device
		}
		s.record(ev)
	}
	now := s.now()
	regTime := cred.Created
	if regTime.IsZero() {
		regTime = now
	}
	payload, err := json.Marshal(registeredEvent{
		CertificateID:                    p.Credential,
		CACertificateID:                  ca.ID,
		Timestamp:                        now.Unix(),
		CertificateStatus:                string(registry.StatePendingActivation),
		AWSAccountID:                     p.Project,
		CertificateRegistrationTimestamp: regTime.Unix(),
	})
	if err == nil {
		err = s.broker.Publish(registeredTopic(ca.ID), payload, false, 1)
	}
	if err != nil {
		s.log.Error("publish registration event", "err", err)
	} else {
		s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventMQTTRegistered, Outcome: registry.OutcomeOK, Reason: string(payload)})
	}
	s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeFail,
		Reason: pendingActivation})
	s.log.Info("certificate registered on connect, closed without CONNACK", "project", p.Project, "thing", p.Device,
		"credential", short(p.Credential), "ca", short(ca.ID), "mode", string(ca.Mode))
	return true
}

// applyTemplate is the second part of JITP, after the connection is
// closed: the thing named by the certificate's CN is created, the
// certificate attached and activated (INACTIVE when the CA registration's
// template says so), so that the device's retry connects.
func (s *Server) applyTemplate(ctx context.Context, hs *handshake) {
	p := hs.peer()
	hs.mu.Lock()
	ca := hs.ca
	hs.mu.Unlock()
	if ca.Mode != registry.CAModeJITP || p.CredentialID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	ev := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventProvisionJITP}
	fail := func(reason string, err error) {
		ev.Outcome, ev.Reason = registry.OutcomeFail, reason
		s.record(ev)
		s.log.Error("JITP template", "project", p.Project, "thing", p.Device, "reason", reason, "err", err)
	}
	state := registry.StateActive
	if ca.TemplateName != "" {
		t, err := s.reg.Template(ctx, ca.TemplateName)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			fail("template "+ca.TemplateName+" not found", err)
			return
		case err != nil:
			fail("registry unavailable", err)
			return
		case t.Project != p.Project:
			fail("template "+ca.TemplateName+" belongs to another project", nil)
			return
		case !t.Activate:
			state = registry.StateInactive
		}
	}
	_, created, err := s.reg.EnsureDevice(ctx, p.Project, p.Device, true)
	if err != nil {
		fail("thing "+p.Device+" could not be created", err)
		return
	}
	if err := s.reg.AttachCertificate(ctx, p.Credential, p.Project, p.Device); err != nil {
		fail("certificate could not be attached to thing "+p.Device, err)
		return
	}
	if err := s.reg.SetCredentialState(ctx, p.CredentialID, state); err != nil {
		fail("certificate could not be activated", err)
		return
	}
	what := "exists"
	if created {
		what = "created"
	}
	ev.Outcome, ev.Reason = registry.OutcomeOK, "template applied, thing "+p.Device+" "+what+", certificate "+string(state)
	s.record(ev)
	s.log.Info("JITP template applied", "project", p.Project, "thing", p.Device, "credential", short(p.Credential), "state", string(state))
}

// closeWrite ends a connection's sending side the way AWS IoT ends a
// first connect under JITP/JITR: TLS close_notify, then FIN; no CONNACK.
func closeWrite(tc *tls.Conn, c net.Conn) {
	_ = tc.SetWriteDeadline(time.Now().Add(drainTimeout))
	_ = tc.CloseWrite()
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
}

// drain reads and discards what the client still sends (its CONNECT)
// until it closes, so that closing does not turn into a reset, then
// closes.
func drain(c net.Conn, limit time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, _ = io.Copy(io.Discard, c)
	_ = c.Close()
}
