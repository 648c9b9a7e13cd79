package mqtt

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Rotation modes (the ESP32 rotation example).
const (
	// RotateKey: variant (a), the cloud makes the key and the certificate
	// and sends both.
	RotateKey = "key"
	// RotateCSR: variant (b), the cloud asks for a CSR; the key never
	// leaves the device.
	RotateCSR = "csr"
)

// RotateOptions says how to rotate a device's certificate.
type RotateOptions struct {
	// Mode is RotateKey or RotateCSR.
	Mode string
	// Broken makes the new certificate one no registered CA vouches for
	// (signed by a throwaway CA), so the device cannot connect with it
	// and must fall back to its old credentials. With RotateCSR it
	// applies to the device's next CSR.
	Broken bool
}

// Rotate asks a device to rotate its certificate, on
// devices/<device>/certs/rotate (QoS 1). It first waits, until ctx ends
// (ErrNotConnected), for a connection of the device subscribed to that
// topic. With RotateKey the new certificate (O=project, CN=device) is
// registered ACTIVE before it is sent; with RotateCSR the device's answer
// on devices/<device>/certs/csr is signed when it arrives. The old
// certificate stays ACTIVE either way.
func (s *Server) Rotate(ctx context.Context, project, device string, o RotateOptions) error {
	if o.Mode != RotateKey && o.Mode != RotateCSR {
		return fmt.Errorf("mqtt: rotate %s/%s: mode %q, want %q or %q", project, device, o.Mode, RotateKey, RotateCSR)
	}
	if _, err := s.reg.Device(ctx, project, device); err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	topic := rotationTopic(device, "rotate")
	if err := s.waitSubscribed(ctx, project, device, topic); err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	if o.Mode == RotateCSR {
		s.mu.Lock()
		if o.Broken {
			s.brokenCSR[project+"/"+device] = true
		} else {
			delete(s.brokenCSR, project+"/"+device)
		}
		s.mu.Unlock()
		if err := s.broker.Publish(topic, []byte(`{"action":"csr"}`), false, 1); err != nil {
			return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
		}
		reason := "mode csr: asked the device for a CSR"
		if o.Broken {
			reason += " (broken: it will be signed by a CA nobody registered)"
		}
		s.record(registry.Event{Project: project, Device: device, Kind: registry.EventRotationRequest, Outcome: registry.OutcomeOK, Reason: reason})
		s.log.Info("rotation requested", "project", project, "device", device, "mode", o.Mode, "broken", o.Broken)
		return nil
	}

	key, err := fakeca.GenerateKey(fakeca.ECDSAP256, s.opts.Rand)
	if err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	now := s.now()
	tmpl := fakeca.Template{CN: device, Org: project, Key: key, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(s.opts.CertValidity)}
	var cert *x509.Certificate
	var chainPEM string
	if o.Broken {
		ca, err := s.throwawayCA()
		if err != nil {
			return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
		}
		if cert, _, err = ca.IssueWith(tmpl); err != nil {
			return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
		}
		chainPEM = string(fakeca.EncodeCertPEM(cert))
	} else {
		if cert, _, err = s.opts.Authority.Issuing.IssueWith(tmpl); err != nil {
			return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
		}
		cred, err := s.reg.AddCertificate(ctx, project, device, cert.Raw, registry.StateActive)
		if err != nil {
			return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
		}
		_ = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(s.opts.Authority.Issuing.Cert.Raw))
		chainPEM = s.chainPEM(cert)
	}
	keyPEM, err := fakeca.EncodeKeyPEM(key)
	if err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	payload, err := json.Marshal(rotateKey{NewCertificate: chainPEM, NewPrivateKey: string(keyPEM)})
	if err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	if err := s.broker.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("mqtt: rotate %s/%s: %w", project, device, err)
	}
	fp := fakeca.Fingerprint(cert.Raw)
	reason := "mode key: certificate " + fp + " and its private key sent"
	if o.Broken {
		reason += " (broken: signed by a CA nobody registered)"
	}
	s.record(registry.Event{Project: project, Device: device, Credential: fp, Kind: registry.EventRotationRequest, Outcome: registry.OutcomeOK, Reason: reason})
	s.record(registry.Event{Project: project, Device: device, Credential: fp, Kind: registry.EventKeyOverTheWire, Outcome: registry.OutcomeOK,
		Reason: "rotation (key): private key of certificate " + fp + " sent on " + topic})
	s.log.Info("rotation requested", "project", project, "device", device, "mode", o.Mode, "broken", o.Broken, "credential", short(fp))
	return nil
}

// throwawayCA is a root nobody registered.
func (s *Server) throwawayCA() (*fakeca.CA, error) {
	return fakeca.NewRoot("credloop throwaway CA", fakeca.ECDSAP256, 0, fakeca.Options{Now: s.opts.Now, Rand: s.opts.Rand})
}

// waitSubscribed waits until a connection of the device has a
// subscription matching topic.
func (s *Server) waitSubscribed(ctx context.Context, project, device, topic string) error {
	for {
		ch := s.changes()
		if s.subscribed(project, device, topic) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: no session subscribed to %s: %w", ErrNotConnected, topic, ctx.Err())
		case <-s.l.ctx.Done():
			return ErrClosed
		}
	}
}

func (s *Server) subscribed(project, device, topic string) bool {
	s.l.mu.Lock()
	var sessions []*session
	for sess := range s.l.sessions {
		sessions = append(sessions, sess)
	}
	s.l.mu.Unlock()
	for _, sess := range sessions {
		sess.mu.Lock()
		p, cl := sess.peer, sess.client
		sess.mu.Unlock()
		if cl == nil || cl.Closed() || p.Role != RoleDevice || p.Project != project || p.Device != device {
			continue
		}
		for filter := range cl.State.Subscriptions.GetAll() {
			if match(filter, topic) {
				return true
			}
		}
	}
	return false
}

// rotationCSR signs the CSR a device published on devices/<id>/certs/csr
// (asked by Rotate, or unprompted to renew before expiry) and answers the
// device's connection on .../csr/accepted or .../csr/rejected.
func (s *Server) rotationCSR(sess *session, cl *mochi.Client, r request, payload []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.HandshakeTimeout)
	defer cancel()
	p := sess.getPeer()
	ev := registry.Event{Project: p.Project, Device: p.Device, Kind: registry.EventRotationCSR}
	acc, rej := s.signRotationCSR(ctx, p, payload)
	var answer any
	topic := r.accepted()
	if rej != nil {
		answer, topic = rej.message(), r.rejected()
		ev.Outcome, ev.Reason = registry.OutcomeFail, rej.Error()
	} else {
		answer = acc
		ev.Outcome, ev.Credential = registry.OutcomeOK, acc.CertificateID
		ev.Reason = "certificate " + acc.CertificateID + " issued for the device's CSR (the key stayed on the device)"
	}
	s.record(ev)
	s.log.Info("rotation CSR", "project", p.Project, "device", p.Device, "outcome", ev.Outcome, "reason", ev.Reason)
	s.respond(cl, formatJSON, topic, answer)
}

func (s *Server) signRotationCSR(ctx context.Context, p Peer, payload []byte) (csrAccepted, *reject) {
	csr, rej := intakeCSR(formatJSON, payload)
	if rej != nil {
		return csrAccepted{}, rej
	}
	if err := fakeca.CheckCSR(csr, fakeca.Policy{Organization: p.Project}); err != nil {
		return csrAccepted{}, &reject{400, codeInvalidCSR, endpoint.Printable(err.Error())}
	}
	if csr.Subject.CommonName != p.Device {
		return csrAccepted{}, &reject{400, codeInvalidCSR, fmt.Sprintf("CSR subject CN %q is not the device id %q", endpoint.Printable(csr.Subject.CommonName), p.Device)}
	}
	key := p.Project + "/" + p.Device
	s.mu.Lock()
	broken := s.brokenCSR[key]
	delete(s.brokenCSR, key)
	s.mu.Unlock()
	signer := s.opts.Authority.Issuing
	if broken {
		ca, err := s.throwawayCA()
		if err != nil {
			return csrAccepted{}, internalFailure
		}
		signer = ca
	}
	cert, err := signer.SignParsedCSR(csr, fakeca.Policy{Organization: p.Project, Validity: s.opts.CertValidity, NotBefore: s.now().Add(-time.Minute)})
	if err != nil {
		if errors.Is(err, fakeca.ErrBadCSR) || errors.Is(err, fakeca.ErrPolicy) {
			return csrAccepted{}, &reject{400, codeInvalidCSR, endpoint.Printable(err.Error())}
		}
		return csrAccepted{}, internalFailure
	}
	fp := fakeca.Fingerprint(cert.Raw)
	if broken {
		return csrAccepted{CertificateID: fp, CertificatePEM: string(fakeca.EncodeCertPEM(cert))}, nil
	}
	cred, err := s.reg.AddCertificate(ctx, p.Project, p.Device, cert.Raw, registry.StateActive)
	if err != nil {
		s.log.Error("register rotated certificate", "err", err)
		return csrAccepted{}, internalFailure
	}
	_ = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(s.opts.Authority.Issuing.Cert.Raw))
	return csrAccepted{CertificateID: fp, CertificatePEM: s.chainPEM(cert)}, nil
}
