package httpapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// Content types.
const (
	ctPKCS10 = "application/pkcs10"
	ctPEM    = "application/x-pem-file"
	ctCRL    = "application/pkix-crl"
)

// errBadRequest marks a request the endpoint cannot parse.
var errBadRequest = errors.New("bad request")

// provisionError is a refusal with the HTTP status, the message for the
// client and the reason for the event.
type provisionError struct {
	code   int
	msg    string // to the client
	reason string // in the event
}

func (e *provisionError) Error() string { return e.msg }

func refuse(code int, reason, format string, args ...any) *provisionError {
	return &provisionError{code: code, msg: fmt.Sprintf(format, args...), reason: reason}
}

// readBody reads at most MaxBody bytes of r; a larger body is an error.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	if len(b) > MaxBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", errBadRequest, MaxBody)
	}
	return b, nil
}

// parseCSRBody parses a run-time provisioning request body: a PKCS#10 CSR,
// PEM or DER (whatever the Content-Type says; application/pkcs10 and
// application/x-pem-file are the documented ones), at most MaxBody
// bytes, with a valid self-signature and a subject CN (the device UDID)
// of printable characters. Errors wrap errBadRequest.
func parseCSRBody(body []byte) (*x509.CertificateRequest, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body, want a CSR (PEM or DER)", errBadRequest)
	}
	csr, err := fakeca.ParseCSR(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := fakeca.CheckCSR(csr, fakeca.Policy{}); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return csr, nil
}

// provisionCSR is POST /v1/provision/csr: run-time CSR provisioning (TI
// CC3220 style). The CSR's CN is the device UDID; it must be on the
// allowlist with the CSR's public key.
func (s *Server) provisionCSR(w http.ResponseWriter, r *http.Request) {
	ev := registry.Event{Kind: registry.EventProvisionCSR}
	body, err := readBody(http.MaxBytesReader(w, r.Body, MaxBody+1))
	var csr *x509.CertificateRequest
	if err == nil {
		csr, err = parseCSRBody(body)
	}
	if err != nil {
		ev.Outcome, ev.Reason = registry.OutcomeFail, err.Error()
		s.record(ev)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	udid := csr.Subject.CommonName
	ev.Credential = "pubkey:" + registry.Fingerprint(csr.RawSubjectPublicKeyInfo)[:8]
	if registry.ValidID(udid) == nil {
		ev.Device = udid
	}
	chain, cred, entry, perr := s.provision(r.Context(), csr, udid)
	if entry.Project != "" {
		ev.Project = entry.Project
	}
	if perr != nil {
		ev.Outcome, ev.Reason = registry.OutcomeFail, perr.reason
		s.record(ev)
		s.log.Info("provisioning refused", "udid", udid, "reason", perr.reason)
		writeError(w, perr.code, perr.msg)
		return
	}
	ev.Credential = cred.Fingerprint
	ev.Outcome, ev.Reason = registry.OutcomeOK, "certificate "+cred.Fingerprint+" issued, serial "+cred.Serial
	s.record(ev)
	s.log.Info("provisioned", "project", entry.Project, "udid", udid, "credential", cred)
	w.Header().Set("Content-Type", ctPEM)
	w.Header().Set("Content-Length", strconv.Itoa(len(chain)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(chain)
}

// provision checks the CSR against the allowlist, issues the certificate
// and registers it. It returns the leaf and intermediate PEM.
func (s *Server) provision(ctx context.Context, csr *x509.CertificateRequest, udid string) ([]byte, registry.Credential, registry.AllowEntry, *provisionError) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entry, err := s.reg.AllowEntry(ctx, udid)
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrInvalid):
		return nil, registry.Credential{}, registry.AllowEntry{}, refuse(http.StatusForbidden, "UDID not on the allowlist", "UDID %q is not on the allowlist", udid)
	case err != nil:
		s.log.Error("allowlist", "udid", udid, "err", err)
		return nil, registry.Credential{}, registry.AllowEntry{}, refuse(http.StatusInternalServerError, "registry error", "internal error")
	}
	if !samePublicKey(csr, entry.PublicKeyDER) {
		return nil, registry.Credential{}, entry, refuse(http.StatusForbidden, "public key does not match the allowlist",
			"public key does not match the allowlist (CSR key fp=%.8s, listed fp=%.8s)", registry.Fingerprint(csr.RawSubjectPublicKeyInfo), entry.PublicKeyFingerprint)
	}
	dev, _, err := s.reg.EnsureDevice(ctx, entry.Project, udid, true)
	if err != nil {
		s.log.Error("ensure device", "project", entry.Project, "udid", udid, "err", err)
		return nil, registry.Credential{}, entry, refuse(http.StatusInternalServerError, "registry error: "+err.Error(), "internal error")
	}
	if dev.Disabled {
		return nil, registry.Credential{}, entry, refuse(http.StatusForbidden, "device disabled", "device %s is disabled", udid)
	}
	cert, err := s.sign(csr, entry.Project, udid)
	if err != nil {
		s.log.Error("sign", "project", entry.Project, "udid", udid, "err", err)
		return nil, registry.Credential{}, entry, refuse(http.StatusInternalServerError, "sign: "+err.Error(), "internal error")
	}
	cred, err := s.reg.AddCertificate(ctx, entry.Project, udid, cert.Raw, registry.StateActive)
	if err == nil {
		err = s.reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(s.opts.Authority.Issuing.Cert.Raw))
	}
	if err == nil {
		err = s.reg.MarkProvisioned(ctx, udid)
	}
	if err != nil {
		s.log.Error("register certificate", "project", entry.Project, "udid", udid, "err", err)
		return nil, registry.Credential{}, entry, refuse(http.StatusInternalServerError, "registry error: "+err.Error(), "internal error")
	}
	out := fakeca.EncodeCertPEM(cert)
	for _, c := range issuingChain(s.opts.Authority) {
		out = append(out, fakeca.EncodeCertPEM(c)...)
	}
	return out, cred, entry, nil
}

// samePublicKey reports whether the CSR carries the listed public key
// (compared as keys, so equivalent encodings match).
func samePublicKey(csr *x509.CertificateRequest, listed []byte) bool {
	if bytes.Equal(csr.RawSubjectPublicKeyInfo, listed) {
		return true
	}
	pub, err := x509.ParsePKIXPublicKey(listed)
	if err != nil {
		return false
	}
	k, ok := pub.(interface{ Equal(any) bool })
	return ok && k.Equal(csr.PublicKey)
}

// sign issues the device certificate: subject CN=udid, O=project, the
// CSR's key, from the Authority's issuing CA.
func (s *Server) sign(csr *x509.CertificateRequest, project, udid string) (*x509.Certificate, error) {
	raw, err := asn1.Marshal(pkix.Name{CommonName: udid, Organization: []string{project}}.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &rdn); err != nil {
		return nil, err
	}
	// SignCSR issues with the request's subject; give it ours. The
	// self-signature covers the original request, so it still verifies.
	req := *csr
	req.RawSubject = raw
	req.Subject = pkix.Name{}
	req.Subject.FillFromRDNSequence(&rdn)
	return s.opts.Authority.Issuing.SignCSR(&req, fakeca.Policy{Organization: project, Validity: s.opts.CertValidity})
}

// issuingChain returns the issuing CA and the CAs above it, without the
// root: what a device sends after its leaf.
func issuingChain(a *fakeca.Authority) []*x509.Certificate {
	if a.Issuing == a.Root || len(a.Issuing.Chain) == 0 {
		return nil
	}
	return append([]*x509.Certificate{a.Issuing.Cert}, a.Issuing.Chain[:len(a.Issuing.Chain)-1]...)
}

// serveCRL is GET /crl/<name>.crl (DER) and /crl/<name>.pem, and the same
// for <name>-root: the CA's current CRL.
func (s *Server) serveCRL(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	ext := path.Ext(file)
	if ext != ".crl" && ext != ".pem" && ext != ".der" {
		writeError(w, http.StatusNotFound, "want /crl/<name>.crl or /crl/<name>.pem")
		return
	}
	_, ca, ok := s.lookupCA(strings.TrimSuffix(file, ext))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no CA %q", clip(strings.TrimSuffix(file, ext))))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	list, err := s.crls[ca].Get(ctx)
	if err != nil {
		s.log.Error("crl", "ca", ca.Cert.Subject.CommonName, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	body, ct := list.DER, ctCRL
	if ext == ".pem" {
		body, ct = fakeca.EncodeCRLPEM(list.DER), ctPEM
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Last-Modified", list.ThisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// serveCA is GET /ca/<name>.pem: the CA chain, issuing CA first, root
// last (or <name>-root.pem: the root alone).
func (s *Server) serveCA(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	name, ok := strings.CutSuffix(file, ".pem")
	if !ok {
		writeError(w, http.StatusNotFound, "want /ca/<name>.pem")
		return
	}
	a, ca, ok := s.lookupCA(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no CA %q", clip(name)))
		return
	}
	var body []byte
	if ca == a.Root {
		body = fakeca.EncodeCertPEM(a.Root.Cert)
	} else {
		for _, c := range append([]*x509.Certificate{ca.Cert}, ca.Chain...) {
			body = append(body, fakeca.EncodeCertPEM(c)...)
		}
	}
	w.Header().Set("Content-Type", ctPEM)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
