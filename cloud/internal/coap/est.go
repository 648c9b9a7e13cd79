package coap

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/est"
	"github.com/credloop/credloop/internal/fakeca"
)

// EST-coaps content formats (RFC 9148 section 4.4).
const (
	CFPKCS7CertsOnly = message.MediaType(est.CFPKCS7CertsOnly)
	CFPKCS10         = message.MediaType(est.CFPKCS10)
	CFPKIXCert       = message.MediaType(est.CFPKIXCert)
)

// est serves /.well-known/est[/<label>]/<short>. The optional label is
// accepted and ignored: there is one CA.
func (s *Server) est(w *response, r *pool.Message, p Peer, rest string) {
	short := rest
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		short = rest[i+1:]
	}
	switch short {
	case "crts":
		s.estCACerts(w, r)
	case "sen":
		s.estEnroll(w, r, p, false)
	case "sren":
		s.estEnroll(w, r, p, true)
	default:
		s.reply(w, codes.NotFound, "EST function not supported: "+endpoint.Printable(short))
	}
}

// accept returns the content format the client asked for among the two an
// EST server may answer with; 281 when it did not ask.
func accept(r *pool.Message) (message.MediaType, bool) {
	a, err := r.Accept()
	if err != nil {
		return CFPKCS7CertsOnly, true
	}
	if a == CFPKCS7CertsOnly || a == CFPKIXCert {
		return a, true
	}
	return 0, false
}

func (s *Server) estCACerts(w *response, r *pool.Message) {
	if r.Code() != codes.GET {
		s.reply(w, codes.MethodNotAllowed, "GET only")
		return
	}
	cf, ok := accept(r)
	if !ok {
		s.reply(w, codes.NotAcceptable, "crts answers 281 or 287")
		return
	}
	a := s.opts.Authority
	if cf == CFPKIXCert {
		// A single certificate: the trust anchor.
		s.replyBody(w, codes.Content, CFPKIXCert, a.Root.Root().Raw)
		return
	}
	certs := [][]byte{a.Issuing.Cert.Raw}
	for _, c := range a.Issuing.Chain {
		certs = append(certs, c.Raw)
	}
	body, err := est.CertsOnly(certs)
	if err != nil {
		s.reply(w, codes.InternalServerError, "cannot encode CA certificates")
		return
	}
	s.replyBody(w, codes.Content, CFPKCS7CertsOnly, body)
}

// estEnroll handles simpleenroll (sen) and simplereenroll (sren). The CSR
// must name the authenticated device (CN) and its project (O). Re-enrollment
// requires the session to be authenticated with the device's current
// certificate.
func (s *Server) estEnroll(w *response, r *pool.Message, p Peer, reenroll bool) {
	kind := registry.EventESTEnroll
	if reenroll {
		kind = registry.EventESTReenroll
	}
	ev := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: kind}
	fail := func(code codes.Code, reason string) {
		ev.Outcome, ev.Reason = "fail", reason
		s.record(ev)
		s.reply(w, code, reason)
	}
	if r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	if cf, err := r.ContentFormat(); err != nil || cf != CFPKCS10 {
		fail(codes.UnsupportedMediaType, "request must be application/pkcs10 (content-format 286)")
		return
	}
	out, ok := accept(r)
	if !ok {
		fail(codes.NotAcceptable, "enrollment answers 281 or 287")
		return
	}
	if reenroll && p.Method != "cert" {
		fail(codes.Unauthorized, "re-enrollment requires the device's current certificate")
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		fail(codes.BadRequest, "unreadable body")
		return
	}
	cert, err := s.issue(r.Context(), p, body)
	if err != nil {
		code := codes.BadRequest
		if errors.Is(err, errForbidden) {
			code = codes.Forbidden
		} else if !errors.Is(err, fakeca.ErrBadCSR) && !errors.Is(err, fakeca.ErrPolicy) {
			code = codes.InternalServerError
		}
		fail(code, err.Error())
		return
	}
	ev.Outcome = "ok"
	ev.Reason = "issued " + fakeca.Fingerprint(cert.Raw) + " serial " + serialHex(cert)
	if reenroll {
		ev.Reason += ", replacing " + p.Credential
	}
	s.record(ev)
	if out == CFPKIXCert {
		s.replyBody(w, codes.Changed, CFPKIXCert, cert.Raw)
		return
	}
	pkcs7, err := est.CertsOnly([][]byte{cert.Raw})
	if err != nil {
		s.reply(w, codes.InternalServerError, "cannot encode certificate")
		return
	}
	s.replyBody(w, codes.Changed, CFPKCS7CertsOnly, pkcs7)
}

// pkiCSR is Golioth's v1/csr: a DER CSR in, a DER certificate out.
func (s *Server) pkiCSR(w *response, r *pool.Message, p Peer) {
	ev := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventPKICSR}
	if r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	body, err := r.ReadBody()
	if err == nil {
		var cert *x509.Certificate
		cert, err = s.issue(r.Context(), p, body)
		if err == nil {
			ev.Outcome, ev.Reason = "ok", "issued "+fakeca.Fingerprint(cert.Raw)
			s.record(ev)
			s.replyBody(w, codes.Changed, message.AppOctets, cert.Raw)
			return
		}
	}
	ev.Outcome, ev.Reason = "fail", err.Error()
	s.record(ev)
	code := codes.BadRequest
	if errors.Is(err, errForbidden) {
		code = codes.Forbidden
	}
	s.reply(w, code, err.Error())
}

var errForbidden = errors.New("forbidden")

// issue checks a CSR against the authenticated peer, signs it, and
// registers the certificate as an ACTIVE credential of the device.
func (s *Server) issue(ctx context.Context, p Peer, csrDER []byte) (*x509.Certificate, error) {
	csr, err := fakeca.ParseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	if csr.Subject.CommonName != p.Device {
		return nil, fmt.Errorf("%w: CSR CN %q is not the authenticated device %q", errForbidden, endpoint.Printable(csr.Subject.CommonName), p.Device)
	}
	cert, err := s.opts.Authority.Issuing.SignParsedCSR(csr, fakeca.Policy{Organization: p.Project, Validity: s.opts.CertValidity, NotBefore: s.now().Add(-time.Minute)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cred, err := s.reg.AddCertificate(ctx, p.Project, p.Device, cert.Raw, registry.StateActive)
	if err != nil {
		return nil, fmt.Errorf("register issued certificate: %w", err)
	}
	if err := s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(s.opts.Authority.Issuing.Cert.Raw)); err != nil {
		return nil, fmt.Errorf("register issued certificate: %w", err)
	}
	return cert, nil
}
