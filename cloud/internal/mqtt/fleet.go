package mqtt

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Fleet-provisioning error codes (AWS).
const (
	codeInvalidPayload    = "InvalidPayload"
	codeInvalidCSR        = "InvalidCSR"
	codeInvalidParameters = "InvalidParameters"
	codeInvalidToken      = "InvalidCertificateOwnershipToken"
	codeAccessDenied      = "AccessDenied"
	codeNotFound          = "ResourceNotFound"
	codeInternal          = "InternalFailure"
)

// reject is a request's failure as the device sees it.
type reject struct {
	status int
	code   string
	msg    string
}

func (r *reject) Error() string { return fmt.Sprintf("%d %s: %s", r.status, r.code, r.msg) }

func (r *reject) message() rejected {
	return rejected{StatusCode: r.status, ErrorCode: r.code, ErrorMessage: r.msg}
}

func badPayload(err error) *reject {
	return &reject{400, codeInvalidPayload, err.Error()}
}

var internalFailure = &reject{500, codeInternal, "internal failure"}

// fleet answers a fleet-provisioning request of a claim connection, on
// that connection only.
func (s *Server) fleet(sess *session, cl *mochi.Client, r request, payload []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.HandshakeTimeout)
	defer cancel()
	p := sess.getPeer()
	var (
		answer any
		rej    *reject
		ev     registry.Event
	)
	switch r.op {
	case opCreateFromCSR:
		answer, ev, rej = s.createFromCSR(ctx, p, r.format, payload)
		ev.Kind = registry.EventFleetCreateCSR
	case opCreate:
		answer, ev, rej = s.createKeys(ctx, p, r.format, payload)
		ev.Kind = registry.EventFleetCreate
	case opProvision:
		answer, ev, rej = s.registerThing(ctx, sess, r, payload)
		ev.Kind = registry.EventFleetProvision
	default:
		return
	}
	ev.Project = p.Project
	topic := r.accepted()
	if rej != nil {
		answer, topic = rej.message(), r.rejected()
		ev.Outcome, ev.Reason = registry.OutcomeFail, rej.Error()
	} else {
		ev.Outcome = registry.OutcomeOK
	}
	s.record(ev)
	s.log.Info("fleet provisioning", "op", ev.Kind, "project", p.Project, "client", endpoint.Printable(cl.ID), "outcome", ev.Outcome, "reason", ev.Reason)
	s.respond(cl, r.format, topic, answer)
}

// respond encodes an answer and delivers it to one client.
func (s *Server) respond(cl *mochi.Client, format, topic string, answer any) {
	body, err := encode(format, answer)
	if err != nil {
		s.log.Error("encode answer", "topic", topic, "err", err)
		return
	}
	if err := s.deliver(cl, topic, body); err != nil {
		s.log.Debug("answer not delivered", "client", endpoint.Printable(cl.ID), "topic", topic, "err", err)
	}
}

// intakeCSR decodes a CreateCertificateFromCsr request and checks its CSR
// (PEM, self-signature, key type, one printable CN).
func intakeCSR(format string, payload []byte) (*x509.CertificateRequest, *reject) {
	pemCSR, err := decodeCreateFromCSR(format, payload)
	if err != nil {
		return nil, badPayload(err)
	}
	csr, err := fakeca.ParseCSR([]byte(pemCSR))
	if err != nil {
		return nil, &reject{400, codeInvalidCSR, endpoint.Printable(err.Error())}
	}
	if err := fakeca.CheckCSR(csr, fakeca.Policy{}); err != nil {
		return nil, &reject{400, codeInvalidCSR, endpoint.Printable(err.Error())}
	}
	return csr, nil
}

// createFromCSR: CreateCertificateFromCsr. The certificate is registered
// PENDING_ACTIVATION, unattached, with an ownership token.
func (s *Server) createFromCSR(ctx context.Context, p Peer, format string, payload []byte) (any, registry.Event, *reject) {
	csr, rej := intakeCSR(format, payload)
	if rej != nil {
		return nil, registry.Event{}, rej
	}
	now := s.now()
	cert, err := s.opts.Authority.Issuing.SignParsedCSR(csr, fakeca.Policy{Validity: s.opts.CertValidity, NotBefore: now.Add(-time.Minute)})
	if err != nil {
		if errors.Is(err, fakeca.ErrBadCSR) || errors.Is(err, fakeca.ErrPolicy) {
			return nil, registry.Event{}, &reject{400, codeInvalidCSR, endpoint.Printable(err.Error())}
		}
		s.log.Error("sign CSR", "err", err)
		return nil, registry.Event{}, internalFailure
	}
	acc, rej := s.issuePending(ctx, p, cert)
	if rej != nil {
		return nil, registry.Event{Credential: acc.CertificateID}, rej
	}
	return acc, registry.Event{Credential: acc.CertificateID, Reason: "certificate " + acc.CertificateID + " issued for the device's CSR, PENDING_ACTIVATION"}, nil
}

// createKeys: CreateKeysAndCertificate. The cloud makes the key pair; the
// private key crosses the network (recorded as key.over-the-wire).
func (s *Server) createKeys(ctx context.Context, p Peer, format string, payload []byte) (any, registry.Event, *reject) {
	if err := decodeCreate(format, payload); err != nil {
		return nil, registry.Event{}, badPayload(err)
	}
	key, err := fakeca.GenerateKey(fakeca.ECDSAP256, s.opts.Rand)
	if err != nil {
		s.log.Error("generate key", "err", err)
		return nil, registry.Event{}, internalFailure
	}
	now := s.now()
	cert, _, err := s.opts.Authority.Issuing.IssueWith(fakeca.Template{CN: "AWS IoT Certificate", Key: key,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(s.opts.CertValidity)})
	if err != nil {
		s.log.Error("issue certificate", "err", err)
		return nil, registry.Event{}, internalFailure
	}
	keyPEM, err := fakeca.EncodeKeyPEM(key)
	if err != nil {
		return nil, registry.Event{}, internalFailure
	}
	acc, rej := s.issuePending(ctx, p, cert)
	if rej != nil {
		return nil, registry.Event{Credential: acc.CertificateID}, rej
	}
	acc.PrivateKey = string(keyPEM)
	s.record(registry.Event{Project: p.Project, Credential: acc.CertificateID, Kind: registry.EventKeyOverTheWire, Outcome: registry.OutcomeOK,
		Reason: "CreateKeysAndCertificate: private key of certificate " + acc.CertificateID + " sent to the requesting client"})
	return acc, registry.Event{Credential: acc.CertificateID, Reason: "certificate " + acc.CertificateID + " and its key issued, PENDING_ACTIVATION"}, nil
}

// issuePending registers a new certificate PENDING_ACTIVATION, unattached,
// in the claim's project, and makes its ownership token.
func (s *Server) issuePending(ctx context.Context, p Peer, cert *x509.Certificate) (createAccepted, *reject) {
	fp := fakeca.Fingerprint(cert.Raw)
	acc := createAccepted{CertificateID: fp}
	now := s.now()
	if _, err := s.reg.PurgeExpiredTokens(ctx, now); err != nil {
		s.log.Warn("purge expired tokens", "err", err)
	}
	cred, err := s.reg.AddCertificate(ctx, p.Project, "", cert.Raw, registry.StatePendingActivation)
	if err != nil {
		s.log.Error("register certificate", "err", err)
		return acc, internalFailure
	}
	_ = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(s.opts.Authority.Issuing.Cert.Raw))
	tok, err := s.reg.CreateOwnershipToken(ctx, fp, now.Add(s.opts.TokenLifetime))
	if err != nil {
		s.log.Error("ownership token", "err", err)
		return acc, internalFailure
	}
	acc.CertificatePEM = s.chainPEM(cert)
	acc.CertificateOwnershipToken = tok
	return acc, nil
}

// chainPEM is the certificate followed by the cloud's intermediate (when
// it has one), PEM.
func (s *Server) chainPEM(cert *x509.Certificate) string {
	out := fakeca.EncodeCertPEM(cert)
	if a := s.opts.Authority; a.Issuing != a.Root {
		out = append(out, fakeca.EncodeCertPEM(a.Issuing.Cert)...)
	}
	return string(out)
}

// registerThing: RegisterThing with the template of the topic, which must
// be the claim CA registration's.
func (s *Server) registerThing(ctx context.Context, sess *session, r request, payload []byte) (any, registry.Event, *reject) {
	p := sess.getPeer()
	req, err := decodeRegisterThing(r.format, payload)
	if err != nil {
		return nil, registry.Event{}, badPayload(err)
	}
	t, err := s.reg.Template(ctx, r.template)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, registry.Event{}, &reject{404, codeNotFound, "provisioning template " + r.template + " not found"}
	case err != nil:
		return nil, registry.Event{}, internalFailure
	case t.Name != sess.scope.template || t.Project != p.Project:
		return nil, registry.Event{}, &reject{403, codeAccessDenied, "the claim certificate may not use template " + r.template}
	}
	thing, err := t.ThingName(req.Parameters)
	if err != nil {
		return nil, registry.Event{}, &reject{400, codeInvalidParameters, endpoint.Printable(err.Error())}
	}
	ev := registry.Event{Device: thing}
	tokFP := fakeca.ShortFingerprint([]byte(req.Token))
	fp, err := s.reg.ConsumeOwnershipToken(ctx, req.Token, s.now())
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, ev, &reject{403, codeInvalidToken, "certificate ownership token " + tokFP + " is unknown"}
	case errors.Is(err, registry.ErrTokenUsed):
		return nil, ev, &reject{403, codeInvalidToken, "certificate ownership token " + tokFP + " was already used"}
	case errors.Is(err, registry.ErrTokenExpired):
		return nil, ev, &reject{403, codeInvalidToken, "certificate ownership token " + tokFP + " expired"}
	case err != nil:
		return nil, ev, internalFailure
	}
	ev.Credential = fp
	cred, err := s.reg.CertificateByFingerprint(ctx, fp)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, ev, &reject{403, codeInvalidToken, "the certificate of ownership token " + tokFP + " no longer exists"}
	case err != nil:
		return nil, ev, internalFailure
	case cred.Project != p.Project:
		return nil, ev, &reject{403, codeAccessDenied, "the certificate of ownership token " + tokFP + " belongs to another account"}
	}
	if _, _, err := s.reg.EnsureDevice(ctx, p.Project, thing, true); err != nil {
		s.log.Error("create thing", "thing", thing, "err", err)
		return nil, ev, internalFailure
	}
	if err := s.reg.AttachCertificate(ctx, fp, p.Project, thing); err != nil {
		s.log.Error("attach certificate", "thing", thing, "err", err)
		return nil, ev, internalFailure
	}
	state := registry.StateActive
	if !t.Activate {
		state = registry.StateInactive
	}
	if err := s.reg.SetCredentialState(ctx, cred.ID, state); err != nil {
		s.log.Error("activate certificate", "thing", thing, "err", err)
		return nil, ev, internalFailure
	}
	ev.Reason = "thing " + thing + " registered with template " + t.Name + ", certificate " + fp + " " + string(state)
	return registerAccepted{DeviceConfiguration: map[string]string{}, ThingName: thing}, ev, nil
}
