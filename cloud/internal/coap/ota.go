package coap

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
)

// Golioth's OTA service, as Golioth's firmware SDK uses it (src/ota.c):
// the device GETs or observes .u/desired (Accept 60) for its manifest,
// downloads a component block-wise (Block2, the block size it asks for)
// at the URI the manifest gives, .u/c/<package>@<version>, and reports
// its state with a POST of {"s", "r", "pkg", "v", "t"} to
// .u/c/<package>.

// maxOTAReportBody bounds a report (the SDK encodes it in 64 bytes).
const maxOTAReportBody = 1 << 10

func (s *Server) ota(w *response, r *pool.Message, p Peer, sub string) {
	switch {
	case sub == "desired":
		if r.Code() != codes.GET {
			s.reply(w, codes.MethodNotAllowed, "GET (observe) only")
			return
		}
		if !acceptsCBOR(r) {
			s.reply(w, codes.NotAcceptable, "the manifest is CBOR (accept 60)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		body, err := s.manifest(ctx, p.Project, p.Device)
		if err != nil {
			s.reply(w, codes.InternalServerError, "registry unavailable")
			return
		}
		s.replyBody(w, codes.Content, message.AppCBOR, body)
	case strings.HasPrefix(sub, "c/") && len(sub) > 2:
		name := sub[2:]
		switch r.Code() {
		case codes.GET:
			s.otaComponent(w, r, p, name)
		case codes.POST, codes.PUT:
			s.otaReport(w, r, p, name)
		default:
			s.reply(w, codes.MethodNotAllowed, "GET a component, POST a report")
		}
	default:
		s.reply(w, codes.NotFound, "no such resource: .u/"+endpoint.Printable(sub))
	}
}

// NotifyOTA sends the desired manifest again to the observers of
// .u/desired of the device (every device of the project when device is
// ""), after a release. It returns the number of observers kicked.
func (s *Server) NotifyOTA(project, device string) int {
	return s.Notify(project, device, ".u/desired")
}

// manifest is the device's desired manifest, CBOR.
func (s *Server) manifest(ctx context.Context, project, device string) ([]byte, error) {
	rels, err := s.reg.OTAManifest(ctx, project, device)
	if err != nil {
		return nil, err
	}
	return encodeManifest(rels)
}

func (s *Server) otaComponent(w *response, r *pool.Message, p Peer, name string) {
	pkg, version, ok := strings.Cut(name, "@")
	if !ok || pkg == "" || version == "" {
		s.reply(w, codes.NotFound, "a component is .u/c/<package>@<version>")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	o, err := s.reg.OTAComponent(ctx, p.Project, p.Device, pkg, version)
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrInvalid):
		s.reply(w, codes.NotFound, "no component "+endpoint.Printable(name)+" released to this device")
		return
	case err != nil:
		s.reply(w, codes.InternalServerError, "registry unavailable")
		return
	}
	s.replyBody(w, codes.Content, message.AppOctets, o.Data)
}

func (s *Server) otaReport(w *response, r *pool.Message, p Peer, pkg string) {
	if strings.Contains(pkg, "@") || strings.Contains(pkg, "/") {
		s.reply(w, codes.MethodNotAllowed, "reports go to .u/c/<package>")
		return
	}
	body, ok := s.cborBody(w, r, "an OTA report", maxOTAReportBody)
	if !ok {
		return
	}
	rep, err := decodeOTAReport(body)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return
	}
	if rep.Package != pkg {
		s.reply(w, codes.BadRequest, "pkg "+endpoint.Printable(rep.Package)+" is not the package of the path, "+endpoint.Printable(pkg))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, err = s.reg.AddOTAReport(ctx, registry.OTAReport{
		Project: p.Project, Device: p.Device, Package: rep.Package, State: rep.State, Reason: rep.Reason,
		Version: rep.Version, Target: rep.Target,
	}, p.Credential)
	switch {
	case err == nil:
		s.reply(w, codes.Changed, "")
	case errors.Is(err, registry.ErrInvalid):
		s.reply(w, codes.BadRequest, "report refused")
	default:
		s.reply(w, codes.InternalServerError, "registry unavailable")
	}
}
