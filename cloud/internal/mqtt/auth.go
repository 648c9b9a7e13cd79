package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// decision is what the registry says a verified connection is.
type decision int

const (
	decideRefuse   decision = iota
	decideConnect           // hand it to the broker
	decideRegister          // JITP/JITR: register (or announce again), close without CONNACK
)

// handshake carries what the verification of one connection learned, so
// that the outcome (or the precise reason of a failure) is recorded once,
// against the right thing.
type handshake struct {
	srv    *Server
	remote net.Addr

	mu         sync.Mutex
	project    string
	device     string
	credential string
	credID     int64
	refusal    *endpoint.Refusal // set when verification rejected the peer
	chain      []*x509.Certificate
	ca         registry.CARegistration // the registered CA the chain verified to; zero for the cloud's own
	known      bool                    // the registry holds the leaf
	role       string
	decision   decision
	unlock     func() // the auto-registration stripe, while held
}

func (s *Server) tlsConfig(hs *handshake) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.serverCert},
		MinVersion:   tls.VersionTLS12,
		// The chain is verified by hs.verify against the registry, with
		// the cloud's clock; hs.verify also refuses a client that sent
		// no certificate, so that the refusal is its own.
		ClientAuth:            tls.RequestClientCert,
		VerifyPeerCertificate: hs.verify,
		// A resumed session would skip the verification.
		SessionTicketsDisabled: true,
	}
}

// caCert parses a registered CA's certificate once: its ID is the
// fingerprint of its DER, so the parse of an ID never changes.
func (s *Server) caCert(ca registry.CARegistration) (*x509.Certificate, error) {
	if c, ok := s.caCerts.Load(ca.ID); ok {
		return c.(*x509.Certificate), nil
	}
	c, err := x509.ParseCertificate(ca.DER)
	if err != nil {
		return nil, err
	}
	if fakeca.Fingerprint(c.Raw) == ca.ID {
		s.caCerts.Store(ca.ID, c)
	}
	return c, nil
}

// reject records why verification refused the peer and returns it as the
// verification's error.
func (hs *handshake) reject(r *endpoint.Refusal) error {
	hs.mu.Lock()
	hs.refusal = r
	hs.decision = decideRefuse
	hs.mu.Unlock()
	return r
}

// unavailable is the refusal of a connection the registry could not
// answer.
func unavailable(err error) *endpoint.Refusal {
	return endpoint.Refuse(endpoint.RefusedUnavailable, "registry unavailable", err)
}

func (hs *handshake) getDecision() decision {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.decision
}

// release lets other connections of the same certificate proceed.
func (hs *handshake) release() {
	hs.mu.Lock()
	u := hs.unlock
	hs.unlock = nil
	hs.mu.Unlock()
	if u != nil {
		u()
	}
}

// fail records a failed handshake with the best reason known.
func (hs *handshake) fail(err error) {
	hs.mu.Lock()
	ref := hs.refusal
	ev := registry.Event{Project: hs.project, Device: hs.device, Credential: hs.credential, Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeFail}
	hs.mu.Unlock()
	if ref == nil {
		ref = endpoint.Refuse(endpoint.RefusedHandshake, "handshake failed: "+endpoint.Printable(err.Error()), err)
	}
	ev.Reason = ref.Text
	if f := hs.srv.testRefused.Load(); f != nil {
		(*f)(ref)
	}
	hs.srv.record(ev)
	hs.srv.log.Info("connection refused", "remote", hs.remote.String(), "project", ev.Project, "device", ev.Device,
		"credential", short(ev.Credential), "reason", ref.Text, "mqtt_code", ref.MQTTCode)
}

func (hs *handshake) peer() Peer {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return Peer{Project: hs.project, Device: hs.device, Role: hs.role, Credential: hs.credential, CredentialID: hs.credID,
		CA: hs.ca.ID, Chain: hs.chain}
}

func (hs *handshake) scope() scope {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.role == RoleClaim {
		return claimScope(hs.ca.TemplateName)
	}
	return deviceScope(hs.device)
}

// verify decides a connection during the TLS handshake. The chain must
// verify, with the cloud's clock, to an active registered CA, or, for a
// certificate the registry holds, to the cloud's own root; nothing in it
// may be revoked. Then the registry state of the leaf decides: a claim
// certificate, an ACTIVE certificate of an enabled thing, or an unknown
// (or still PENDING_ACTIVATION) certificate under a JITP/JITR CA pass;
// everything else fails the handshake with the reason recorded.
func (hs *handshake) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	certs, err := fakeca.ParseChain(raw)
	switch {
	case errors.Is(err, fakeca.ErrNoCert):
		return hs.reject(endpoint.Refuse(endpoint.RefusedNoCertificate, "no client certificate", err))
	case err != nil:
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "client certificate malformed", err))
	}
	leaf := certs[0]
	fp := fakeca.Fingerprint(leaf.Raw)
	// Only a connection that auto-registers keeps the certificate's
	// stripe past the verification.
	defer func() {
		hs.mu.Lock()
		keep := hs.decision == decideRegister
		hs.mu.Unlock()
		if !keep {
			hs.release()
		}
	}()
	hs.mu.Lock()
	hs.credential = fp
	hs.device = endpoint.Printable(leaf.Subject.CommonName)
	hs.mu.Unlock()

	srv := hs.srv
	ctx, cancel := context.WithTimeout(context.Background(), srv.opts.HandshakeTimeout)
	defer cancel()
	reg := srv.reg
	known, err := reg.CertificateByFingerprint(ctx, fp)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return hs.reject(unavailable(err))
	}
	isKnown := err == nil
	if !isKnown || known.State == registry.StatePendingActivation {
		// The certificate may be auto-registered by this connection:
		// serialize with any other connection of it, then look again.
		unlock, err := srv.jit.lock(ctx, fp)
		if err != nil {
			return hs.reject(endpoint.Refuse(endpoint.RefusedUnavailable, "timed out waiting for another connection of this certificate", err))
		}
		hs.mu.Lock()
		hs.unlock = unlock
		hs.mu.Unlock()
		known, err = reg.CertificateByFingerprint(ctx, fp)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return hs.reject(unavailable(err))
		}
		isKnown = err == nil
	}
	if isKnown {
		hs.mu.Lock()
		hs.project, hs.credID, hs.known = known.Project, known.ID, true
		if known.Device != "" {
			hs.device = known.Device
		}
		hs.mu.Unlock()
	}

	cas, err := reg.CARegistrations(ctx, "")
	if err != nil {
		return hs.reject(unavailable(err))
	}
	active := map[string]registry.CARegistration{}
	var roots, inactive, pool []*x509.Certificate
	pool = append(pool, certs[1:]...)
	if iss := srv.opts.Authority.Issuing; iss != srv.opts.Authority.Root {
		pool = append(pool, iss.Cert)
	}
	for _, ca := range cas {
		c, err := srv.caCert(ca)
		if err != nil {
			continue
		}
		if ca.Active {
			// A trust anchor: chains end here. (Listing it among the
			// intermediates as well would make chain building check the
			// leaf's signature against it twice.)
			active[ca.ID] = ca
			roots = append(roots, c)
		} else {
			pool = append(pool, c) // chain-building candidates: devices often send only the leaf
			inactive = append(inactive, c)
		}
	}
	if isKnown {
		// Certificates the cloud itself issued and registered (fleet
		// provisioning, rotation, run-time CSR) chain to its own root.
		roots = append(roots, srv.opts.Authority.Root.Root())
	}
	now := srv.now()
	chain, err := srv.verifier.Verify(append([]*x509.Certificate{leaf}, pool...), roots, now)
	if err != nil {
		return hs.reject(hs.chainRefusal(err, leaf, pool, inactive, isKnown))
	}
	switch i, err := reg.RevokedInChain(ctx, chain); {
	case err != nil:
		return hs.reject(unavailable(err))
	case i == 0:
		return hs.reject(endpoint.Refuse(endpoint.RefusedRevoked, "certificate revoked", nil))
	case i > 0:
		return hs.reject(endpoint.Refuse(endpoint.RefusedRevoked, "issuing CA certificate revoked: "+endpoint.Printable(chain[i].Subject.CommonName), nil))
	}
	// The registered CA nearest the leaf anchors the chain.
	var anchor registry.CARegistration
	for _, c := range chain[1:] {
		if ca, ok := active[fakeca.Fingerprint(c.Raw)]; ok {
			anchor = ca
			break
		}
	}
	hs.mu.Lock()
	hs.chain, hs.ca = chain, anchor
	if !isKnown {
		hs.project = anchor.Project
	}
	hs.mu.Unlock()

	switch {
	case anchor.Mode == registry.CAModeClaim:
		hs.mu.Lock()
		hs.role, hs.project, hs.device, hs.credID, hs.decision = RoleClaim, anchor.Project, "", 0, decideConnect
		hs.mu.Unlock()
		return nil
	case isKnown:
		return hs.decideKnown(ctx, known, anchor)
	}
	// Unknown certificate.
	switch anchor.Mode {
	case registry.CAModeJITP, registry.CAModeJITR:
	default:
		return hs.reject(endpoint.Refuse(endpoint.RefusedNotRegistered, "certificate not registered (its CA does not allow auto-registration)", nil))
	}
	cn := leaf.Subject.CommonName
	if err := registry.ValidID(cn); err != nil {
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "certificate CN is not a valid thing name", err))
	}
	hs.mu.Lock()
	hs.project, hs.device = anchor.Project, cn
	hs.mu.Unlock()
	if d, err := reg.Device(ctx, anchor.Project, cn); err == nil && d.Disabled {
		return hs.reject(endpoint.Refuse(endpoint.RefusedDisabled, "device disabled", nil))
	} else if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return hs.reject(unavailable(err))
	}
	hs.mu.Lock()
	hs.role, hs.decision = RoleDevice, decideRegister
	hs.mu.Unlock()
	return nil
}

// decideKnown decides for a certificate the registry holds.
func (hs *handshake) decideKnown(ctx context.Context, known registry.Credential, anchor registry.CARegistration) error {
	switch known.State {
	case registry.StateActive:
	case registry.StateRevoked:
		return hs.reject(endpoint.Refuse(endpoint.RefusedRevoked, "certificate revoked", nil))
	case registry.StatePendingActivation:
		if (anchor.Mode == registry.CAModeJITP || anchor.Mode == registry.CAModeJITR) && anchor.Project == known.Project {
			// AWS announces the registration again and closes.
			if known.Device == "" {
				cn := hs.chain[0].Subject.CommonName
				if err := registry.ValidID(cn); err != nil {
					return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "certificate CN is not a valid thing name", err))
				}
				hs.mu.Lock()
				hs.device = cn
				hs.mu.Unlock()
			}
			hs.mu.Lock()
			hs.role, hs.decision = RoleDevice, decideRegister
			hs.mu.Unlock()
			return nil
		}
		return hs.reject(endpoint.Refuse(endpoint.RefusedPendingActivation, pendingActivation, nil))
	default:
		return hs.reject(endpoint.Refuse(endpoint.StateKind(known.State), "certificate "+string(known.State), nil))
	}
	if known.Device == "" {
		return hs.reject(endpoint.Refuse(endpoint.RefusedUnknownDevice, "certificate not attached to a thing", nil))
	}
	d, err := hs.srv.reg.Device(ctx, known.Project, known.Device)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return hs.reject(endpoint.Refuse(endpoint.RefusedUnknownDevice, "thing "+known.Device+" not found", err))
	case err != nil:
		return hs.reject(unavailable(err))
	case d.Disabled:
		return hs.reject(endpoint.Refuse(endpoint.RefusedDisabled, "device disabled", nil))
	}
	hs.mu.Lock()
	hs.role, hs.decision = RoleDevice, decideConnect
	hs.mu.Unlock()
	return nil
}

// pendingActivation is the reason of a refused connection whose
// certificate is PENDING_ACTIVATION.
const pendingActivation = "certificate PENDING_ACTIVATION"

// chainRefusal explains a chain that did not verify.
func (hs *handshake) chainRefusal(err error, leaf *x509.Certificate, pool, inactive []*x509.Certificate, known bool) *endpoint.Refusal {
	refuse := func(k endpoint.RefusalKind, text string) *endpoint.Refusal { return endpoint.Refuse(k, text, err) }
	switch {
	case errors.Is(err, fakeca.ErrExpired):
		if errors.Is(err, fakeca.ErrIssuerNotValid) {
			return refuse(endpoint.RefusedExpired, "issuing CA certificate expired")
		}
		return refuse(endpoint.RefusedExpired, "certificate expired")
	case errors.Is(err, fakeca.ErrNotYetValid):
		return refuse(endpoint.RefusedNotYetValid, "certificate not yet valid")
	case errors.Is(err, fakeca.ErrUnknownAuthority):
		t := hs.srv.now()
		if len(inactive) > 0 {
			if _, e := fakeca.VerifyClient(append([]*x509.Certificate{leaf}, pool...), inactive, t); e == nil {
				return refuse(endpoint.RefusedUntrusted, "signed by a CA whose registration is INACTIVE")
			}
		}
		if !known {
			if _, e := fakeca.VerifyClient(append([]*x509.Certificate{leaf}, pool...), []*x509.Certificate{hs.srv.opts.Authority.Root.Root()}, t); e == nil {
				return refuse(endpoint.RefusedNotRegistered, "certificate not registered")
			}
		}
		return refuse(endpoint.RefusedUntrusted, "signed by an unregistered CA")
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
		return refuse(endpoint.RefusedBadCertificate, "certificate not valid for client authentication")
	}
	return refuse(endpoint.RefusedBadCertificate, "certificate rejected: "+endpoint.Printable(err.Error()))
}

// revalidate reports why an established peer may no longer be connected
// (thing disabled, certificate no longer ACTIVE, a certificate of its
// chain revoked, its CA deactivated), or "" when it may.
func (s *Server) revalidate(ctx context.Context, p Peer) string {
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	if r := endpoint.Recheck(ctx, s.reg, p.Project, p.Device, p.CredentialID, p.Chain, certificateState); r != nil {
		return r.Text
	}
	if p.CA != "" {
		if ca, err := s.reg.CARegistrationByID(ctx, p.CA); err == nil && !ca.Active {
			return "issuing CA registration INACTIVE (deactivated or revoked)"
		} else if errors.Is(err, registry.ErrNotFound) {
			return "CA no longer registered"
		}
	}
	return ""
}

// certificateState names a certificate refused for its state.
func certificateState(st registry.CredState) string {
	if st == registry.StateRevoked {
		return "certificate revoked"
	}
	return "certificate " + string(st)
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// short is a fingerprint's first 8 hex digits, for logs.
func short(fp string) string {
	if len(fp) > 8 {
		return fp[:8]
	}
	return fp
}
