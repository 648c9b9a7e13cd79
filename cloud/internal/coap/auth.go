package coap

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/internal/fakeca"
)

// Peer is the authenticated identity behind a DTLS session.
type Peer struct {
	Project, Device string
	// Method is "psk" or "cert".
	Method string
	// Credential names the credential used: the PSK identity, or the
	// certificate's SHA-256 fingerprint. Never a secret.
	Credential   string
	CredentialID int64
	// Chain is the verified client chain, leaf first (certificate method).
	Chain []*x509.Certificate
	Addr  net.Addr
}

// handshakeState carries what the callbacks of one handshake learned, so
// that the outcome (success or the precise reason of a failure) is recorded
// once, against the right device.
type handshakeState struct {
	srv    *Server
	remote net.Addr

	mu         sync.Mutex
	method     string // "psk" or "cert" once known
	project    string
	device     string
	credential string
	credID     int64
	refusal    *endpoint.Refusal // set by a callback that rejected the peer
	chain      []*x509.Certificate
	newDevice  bool      // certificate of a device the registry does not know yet
	newCert    bool      // certificate not yet registered
	lastSeen   time.Time // the device's LastSeen when the registry was read

	decryptOnce   sync.Once
	decryptFailed chan struct{}
}

func (hs *handshakeState) decryptFailure() {
	hs.decryptOnce.Do(func() { close(hs.decryptFailed) })
}

// reject records why a callback refused the peer and returns it as the
// callback's error.
func (hs *handshakeState) reject(r *endpoint.Refusal) error {
	hs.mu.Lock()
	hs.refusal = r
	hs.mu.Unlock()
	return r
}

func (hs *handshakeState) getRefusal() *endpoint.Refusal {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.refusal
}

// fail records the failed handshake as an event with the best reason known.
func (hs *handshakeState) fail(err error) {
	hs.mu.Lock()
	method, ref := hs.method, hs.refusal
	ev := registry.Event{Project: hs.project, Device: hs.device, Credential: hs.credential, Outcome: "fail"}
	hs.mu.Unlock()
	select {
	case <-hs.decryptFailed:
		if ref == nil && method == "psk" {
			ref = endpoint.RefusePSK(endpoint.RefusedKeyMismatch, "psk mismatch: the client's Finished did not decrypt with the registered key", err)
		}
	default:
	}
	if ref == nil {
		ref = endpoint.Refuse(endpoint.RefusedHandshake, "handshake failed: "+err.Error(), err)
	}
	reason := ref.Text
	switch method {
	case "psk":
		ev.Kind = registry.EventAuthPSK
	case "cert":
		ev.Kind = registry.EventAuthCert
	default:
		// Failed before either method was chosen (no common suite, garbage,
		// timeout): nothing identifies a device.
		ev.Kind = registry.EventAuthHandshake
	}
	ev.Reason = reason
	hs.srv.record(ev)
	args := []any{"remote", hs.remote.String(), "kind", ev.Kind,
		"project", ev.Project, "device", ev.Device, "credential", ev.Credential, "reason", reason}
	if ref.Kind != endpoint.RefusedHandshake {
		args = append(args, "alert", ref.Alert.String())
	}
	hs.srv.log.Info("handshake failed", args...)
}

// Cipher suites offered: Golioth's PSK and certificate sets.
var (
	pskSuites = []dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CCM,
		dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	}
	certSuites = []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
	}
)

// pionSuites are the suites pion offers: PSK first, then certificates.
var pionSuites = append(append([]dtls.CipherSuiteID{}, pskSuites...), certSuites...)

// dtlsOptions configure pion for one handshake: its callbacks are bound
// to hs, so that a failure is attributed to the identity that caused it.
func (s *Server) dtlsOptions(hs *handshakeState) []dtls.ServerOption {
	return []dtls.ServerOption{
		dtls.WithCertificates(s.serverCert),
		dtls.WithCipherSuites(pionSuites...),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithClientAuth(dtls.RequireAnyClientCert),
		dtls.WithPSK(hs.psk),
		dtls.WithVerifyPeerCertificate(hs.verifyCert),
		dtls.WithInsecureSkipVerify(false),
		dtls.WithLoggerFactory(pionLogger{hs: hs}),
		dtls.WithMTU(1200),
	}
}

// ownPSKSuites are the PSK suites credloop's own DTLS server implements.
var ownPSKSuites = []uint16{dtlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256, dtlspsk.TLS_PSK_WITH_AES_128_CCM, dtlspsk.TLS_PSK_WITH_AES_128_CCM_8}

// pskOnly reports whether the suite this endpoint would choose for ch
// (pion's rule: the client's first offer the endpoint accepts) is a PSK
// suite of credloop's own server, so that which implementation serves a
// client never changes what is negotiated.
func (s *Server) pskOnly(ch *dtlspsk.ClientHello) bool {
	if ch.Version != 0xfefd {
		return false
	}
	for _, o := range ch.CipherSuites {
		if slices.Contains(ownPSKSuites, o) {
			return true
		}
		if slices.Contains(pskSuites, dtls.CipherSuiteID(o)) || slices.Contains(certSuites, dtls.CipherSuiteID(o)) {
			return false
		}
	}
	return false
}

// ownPSK reports whether credloop's own PSK server serves the handshake
// that first starts: the stack is PSKStackCredloop and the suite chosen
// would be one of its own.
func (s *Server) ownPSK(first []byte) bool {
	if s.opts.PSKStack != PSKStackCredloop {
		return false
	}
	ch, err := dtlspsk.ParseClientHello(first)
	return err == nil && s.pskOnly(ch)
}

// pskServerConfig is the configuration of one handshake on credloop's own
// PSK server; its callback refuses with the refusal's alert.
func (s *Server) pskServerConfig(hs *handshakeState) *dtlspsk.ServerConfig {
	return &dtlspsk.ServerConfig{
		CipherSuites: ownPSKSuites,
		MTU:          1200,
		Rand:         s.opts.Rand,
		PSK: func(identity []byte) ([]byte, error) {
			key, err := hs.psk(identity)
			if err == nil {
				return key, nil
			}
			desc := dtlspsk.AlertInternalError
			if r := endpoint.AsRefusal(err); r != nil {
				desc = r.Alert
			}
			return nil, fmt.Errorf("%w: %w", err, &dtlspsk.AlertError{Level: dtlspsk.AlertFatal, Description: desc})
		},
	}
}

// psk looks the identity up in the registry. The identity is
// "<device-id>@<project-id>" (Golioth); a device may hold two PSKs, each
// with its own identity, so that a new key can be tried while the old one
// still works.
func (hs *handshakeState) psk(identity []byte) ([]byte, error) {
	id := string(identity)
	hs.mu.Lock()
	hs.method = "psk"
	hs.credential = endpoint.Printable(id)
	hs.mu.Unlock()
	dev, proj, err := registry.ParsePSKIdentity(id)
	if err != nil {
		return nil, hs.reject(endpoint.RefusePSK(endpoint.RefusedUnknownIdentity, "psk identity malformed: want <device-id>@<project-id>", err))
	}
	hs.mu.Lock()
	hs.project, hs.device = proj, dev
	hs.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), hs.srv.opts.HandshakeTimeout)
	defer cancel()
	cred, device, err := hs.srv.reg.PSKByIdentity(ctx, id)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, hs.reject(endpoint.RefusePSK(endpoint.RefusedUnknownIdentity, "psk identity unknown", err))
	case err != nil:
		hs.srv.log.Error("psk lookup", "err", err)
		return nil, hs.reject(endpoint.RefusePSK(endpoint.RefusedUnavailable, "registry unavailable", err))
	}
	hs.mu.Lock()
	hs.project, hs.device, hs.credID, hs.lastSeen = device.Project, device.ID, cred.ID, device.LastSeen
	hs.mu.Unlock()
	if device.Disabled {
		return nil, hs.reject(endpoint.RefusePSK(endpoint.RefusedDisabled, "device disabled", nil))
	}
	if cred.State != registry.StateActive {
		return nil, hs.reject(endpoint.RefusePSK(endpoint.StateKind(cred.State), "psk credential "+string(cred.State), nil))
	}
	return cred.PSK, nil
}

// verifyCert checks the client chain: subject O names a project, CN the
// device; the chain verifies with the cloud's clock against the roots the
// project trusts (or, for a certificate the registry already holds, against
// the cloud's own CA that issued it); nothing in the chain is revoked; the
// credential and the device are usable.
func (hs *handshakeState) verifyCert(raw [][]byte, _ [][]*x509.Certificate) error {
	hs.mu.Lock()
	hs.method = "cert"
	hs.mu.Unlock()
	certs, err := fakeca.ParseChain(raw)
	switch {
	case errors.Is(err, fakeca.ErrNoCert):
		return hs.reject(endpoint.Refuse(endpoint.RefusedNoCertificate, "no client certificate", err))
	case err != nil:
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "client certificate malformed", err))
	}
	leaf := certs[0]
	fp := fakeca.Fingerprint(leaf.Raw)
	hs.mu.Lock()
	hs.credential = fp
	hs.mu.Unlock()
	if len(leaf.Subject.Organization) != 1 || leaf.Subject.CommonName == "" {
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "certificate subject must have one O (project) and a CN (device)", nil))
	}
	project, device := leaf.Subject.Organization[0], leaf.Subject.CommonName
	hs.mu.Lock()
	hs.project, hs.device = endpoint.Printable(project), endpoint.Printable(device)
	hs.mu.Unlock()
	if err := registry.ValidID(project); err != nil {
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "certificate O is not a valid project id", err))
	}
	if err := registry.ValidID(device); err != nil {
		return hs.reject(endpoint.Refuse(endpoint.RefusedBadCertificate, "certificate CN is not a valid device id", err))
	}

	ctx, cancel := context.WithTimeout(context.Background(), hs.srv.opts.HandshakeTimeout)
	defer cancel()
	reg := hs.srv.reg
	if _, err := reg.Project(ctx, project); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return hs.reject(endpoint.Refuse(endpoint.RefusedUnknownProject, "unknown project "+project, err))
		}
		return hs.reject(unavailable(err))
	}
	known, err := reg.CertificateByFingerprint(ctx, fp)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		hs.mu.Lock()
		hs.newCert = true
		hs.mu.Unlock()
	case err != nil:
		return hs.reject(unavailable(err))
	default:
		if known.Project != project || known.Device != device {
			return hs.reject(endpoint.Refuse(endpoint.RefusedWrongDevice, "certificate registered to another device", nil))
		}
		hs.mu.Lock()
		hs.credID = known.ID
		hs.mu.Unlock()
		if known.State != registry.StateActive {
			return hs.reject(endpoint.Refuse(endpoint.StateKind(known.State), "certificate "+string(known.State), nil))
		}
	}

	trusted, err := reg.TrustedRoots(ctx, project)
	if err != nil {
		return hs.reject(unavailable(err))
	}
	roots := make([]*x509.Certificate, 0, len(trusted)+1)
	for _, tr := range trusted {
		c, err := x509.ParseCertificate(tr.DER)
		if err == nil {
			roots = append(roots, c)
		}
	}
	if !hs.newCert {
		// Certificates the cloud itself issued (EST, v1/csr) are registered
		// when issued; they chain to the cloud's own root.
		roots = append(roots, hs.srv.opts.Authority.Root.Root())
	}
	if len(roots) == 0 {
		return hs.reject(endpoint.Refuse(endpoint.RefusedUntrusted, "project "+project+" trusts no root", nil))
	}
	// Devices often send only their leaf; the cloud's own intermediates
	// help build the chain (they are not trust anchors: the chain must
	// still end at a root the project trusts).
	pool := certs
	if iss := hs.srv.opts.Authority.Issuing; iss != hs.srv.opts.Authority.Root {
		pool = append(append([]*x509.Certificate{}, certs...), iss.Cert)
	}
	chain, err := hs.srv.verifier.Verify(pool, roots, hs.srv.now())
	if err != nil {
		return hs.reject(endpoint.Refuse(verifyKind(err), "certificate rejected: "+verifyReason(err, hs.srv.now()), err))
	}
	// Revocation: every certificate of the chain below the root.
	switch i, err := reg.RevokedInChain(ctx, chain); {
	case err != nil:
		return hs.reject(unavailable(err))
	case i == 0:
		return hs.reject(endpoint.Refuse(endpoint.RefusedRevoked, "certificate revoked", nil))
	case i > 0:
		return hs.reject(endpoint.Refuse(endpoint.RefusedRevoked, "issuing CA certificate revoked: "+chain[i].Subject.CommonName, nil))
	}
	dev, err := reg.Device(ctx, project, device)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		hs.mu.Lock()
		hs.newDevice = true
		hs.mu.Unlock()
	case err != nil:
		return hs.reject(unavailable(err))
	case dev.Disabled:
		return hs.reject(endpoint.Refuse(endpoint.RefusedDisabled, "device disabled", nil))
	}
	hs.mu.Lock()
	hs.chain = chain
	hs.mu.Unlock()
	return nil
}

// admit runs after a successful handshake: it auto-provisions unknown
// devices and certificates, records the authentication, and returns the
// session's peer.
func (s *Server) admit(ctx context.Context, hs *handshakeState) (Peer, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	p := Peer{Project: hs.project, Device: hs.device, Method: hs.method, Credential: hs.credential, CredentialID: hs.credID, Chain: hs.chain}
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	kind := registry.EventAuthPSK
	if p.Method == "cert" {
		kind = registry.EventAuthCert
		if hs.newDevice {
			if _, _, err := s.reg.EnsureDevice(ctx, p.Project, p.Device, true); err != nil {
				s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventProvisionAuto, Outcome: "fail", Reason: err.Error()})
				return p, err
			}
		}
		if hs.newCert {
			cred, err := s.reg.AddCertificate(ctx, p.Project, p.Device, hs.chain[0].Raw, registry.StateActive)
			if err != nil && !errors.Is(err, registry.ErrExists) {
				s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventProvisionAuto, Outcome: "fail", Reason: err.Error()})
				return p, err
			}
			if err == nil {
				p.CredentialID = cred.ID
				if len(hs.chain) > 1 {
					_ = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(hs.chain[1].Raw))
				}
			} else if known, err := s.reg.CertificateByFingerprint(ctx, p.Credential); err == nil {
				p.CredentialID = known.ID
			}
			if hs.newDevice {
				s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventProvisionAuto, Outcome: "ok",
					Reason: "device created on first connect; chain verified to " + hs.chain[len(hs.chain)-1].Subject.CommonName})
			} else {
				s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventCredentialAdded, Outcome: "ok",
					Reason: "certificate signed by a trusted root added to existing device"})
			}
		}
	}
	// Last seen is kept to the second: a device seen less than a second
	// ago (known from the PSK lookup) is not written again.
	if now := s.now(); hs.lastSeen.IsZero() || now.Sub(hs.lastSeen) >= lastSeenResolution || now.Before(hs.lastSeen) {
		_ = s.reg.TouchDevice(ctx, p.Project, p.Device, now)
	}
	s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: kind, Outcome: "ok", Reason: "session established"})
	s.log.Info("session established", "project", p.Project, "device", p.Device, "method", p.Method, "credential", p.Credential)
	return p, nil
}

// lastSeenResolution is how precisely the endpoint keeps a device's last
// seen time.
const lastSeenResolution = time.Second

// unavailable is the refusal of a handshake the registry could not
// answer.
func unavailable(err error) *endpoint.Refusal {
	return endpoint.Refuse(endpoint.RefusedUnavailable, "registry unavailable", err)
}

// verifyKind classifies a chain that did not verify.
func verifyKind(err error) endpoint.RefusalKind {
	var inv x509.CertificateInvalidError
	switch {
	case errors.Is(err, fakeca.ErrExpired):
		return endpoint.RefusedExpired
	case errors.Is(err, fakeca.ErrNotYetValid):
		return endpoint.RefusedNotYetValid
	case errors.Is(err, fakeca.ErrUnknownAuthority):
		return endpoint.RefusedUntrusted
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return endpoint.RefusedExpired
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return endpoint.RefusedUntrusted
	}
	return endpoint.RefusedBadCertificate
}

// verifyReason says why a chain did not verify at now.
func verifyReason(err error, now time.Time) string {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			if inv.Cert != nil && now.Before(inv.Cert.NotBefore) {
				return "not yet valid"
			}
			return "expired"
		case x509.IncompatibleUsage:
			return "certificate not valid for client authentication"
		}
		return inv.Error()
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return "signed by an untrusted root"
	}
	return err.Error()
}

func serialHex(c *x509.Certificate) string {
	return fmt.Sprintf("%x", c.SerialNumber)
}

// revalidate reports why an established peer may no longer be connected,
// or "" when it may.
func (s *Server) revalidate(ctx context.Context, p Peer) string {
	ctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	if r := endpoint.Recheck(ctx, s.reg, p.Project, p.Device, p.CredentialID, p.Chain, credentialState); r != nil {
		return r.Text
	}
	return ""
}

// credentialState names a PSK or certificate credential refused for its
// state.
func credentialState(st registry.CredState) string { return "credential " + string(st) }
