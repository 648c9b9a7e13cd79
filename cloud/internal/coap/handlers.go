package coap

import (
	"encoding/json"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/internal/endpoint"
)

// response is what a resource handler answers; serve turns it into one
// CoAP message, or into Block2 blocks when it is too large for one.
type response struct {
	code  codes.Code
	cf    message.MediaType
	body  []byte
	hasCF bool
	// observe is the Observe option of an answer that registered an
	// observer (observe.go).
	observe    uint32
	hasObserve bool
}

// Resources served, in /.well-known/core link format.
const wellKnownCore = `</hello>;rt="credloop.hello";ct=50,` +
	`</.d>;rt="golioth.lightdb.state";ct=50;obs,` +
	`</.s>;rt="golioth.lightdb.stream";ct="50 60",` +
	`</.s/logs>;rt="golioth.logs";ct=60,` +
	`</.c>;rt="golioth.settings";ct=60;obs,` +
	`</v1/csr>;rt="golioth.pki.csr";ct=42,` +
	`</.well-known/est/crts>;rt="ace.est.crts";ct="281 287",` +
	`</.well-known/est/sen>;rt="ace.est.sen";ct="281 287",` +
	`</.well-known/est/sren>;rt="ace.est.sren";ct="281 287",` +
	`</.rpc>;rt="golioth.rpc";ct=60;obs,` +
	`</.u/desired>;rt="golioth.ota.manifest";ct=60;obs`

func (s *Server) handle(w *response, r *pool.Message, p Peer) {
	path, err := r.Path()
	if err != nil || path == "" || path == "/" {
		// The libcoap-based Golioth SDKs keep the session alive with a CON
		// DELETE that has no Uri-Path; any response satisfies them.
		if r.Code() == codes.DELETE {
			s.reply(w, codes.Deleted, "")
			return
		}
		s.reply(w, codes.NotFound, "no such resource")
		return
	}
	path = strings.TrimPrefix(path, "/")
	switch {
	case path == ".well-known/core":
		s.wellKnown(w, r)
	case path == "hello":
		s.hello(w, r, p)
	case path == ".d" || strings.HasPrefix(path, ".d/"):
		s.lightdb(w, r, p, strings.TrimPrefix(strings.TrimPrefix(path, ".d"), "/"))
	case path == ".s/logs" || path == "logs":
		s.logs(w, r, p)
	case path == ".s" || strings.HasPrefix(path, ".s/"):
		s.stream(w, r, p, strings.TrimPrefix(path, ".s"))
	case path == ".c" || strings.HasPrefix(path, ".c/"):
		s.settings(w, r, p, strings.TrimPrefix(path, ".c"))
	case path == "v1/csr":
		s.pkiCSR(w, r, p)
	case path == ".rpc" || strings.HasPrefix(path, ".rpc/"):
		s.rpc(w, r, p, strings.TrimPrefix(strings.TrimPrefix(path, ".rpc"), "/"))
	case strings.HasPrefix(path, ".u/"):
		s.ota(w, r, p, strings.TrimPrefix(path, ".u/"))
	case strings.HasPrefix(path, ".well-known/est/"):
		s.est(w, r, p, strings.TrimPrefix(path, ".well-known/est/"))
	default:
		s.reply(w, codes.NotFound, "no such resource: "+endpoint.Printable(path))
	}
}

// reply sets a response with an optional diagnostic payload (RFC 7252
// section 5.5.2).
func (s *Server) reply(w *response, code codes.Code, diag string) {
	w.code, w.body = code, nil
	if diag != "" {
		w.cf, w.hasCF, w.body = message.TextPlain, true, []byte(diag)
	}
}

func (s *Server) replyBody(w *response, code codes.Code, cf message.MediaType, body []byte) {
	w.code, w.cf, w.hasCF, w.body = code, cf, true, body
}

func (s *Server) wellKnown(w *response, r *pool.Message) {
	if r.Code() != codes.GET {
		s.reply(w, codes.MethodNotAllowed, "GET only")
		return
	}
	links := strings.Split(wellKnownCore, ",")
	if qs, err := r.Queries(); err == nil {
		for _, q := range qs {
			rt, ok := strings.CutPrefix(q, "rt=")
			if !ok {
				continue
			}
			prefix, wildcard := strings.CutSuffix(rt, "*")
			var kept []string
			for _, l := range links {
				_, v, _ := strings.Cut(l, `rt="`)
				v, _, _ = strings.Cut(v, `"`)
				if v == rt || (wildcard && strings.HasPrefix(v, prefix)) {
					kept = append(kept, l)
				}
			}
			links = kept
		}
	}
	if len(links) == 0 {
		s.reply(w, codes.NotFound, "no resource matches")
		return
	}
	s.replyBody(w, codes.Content, message.AppLinkFormat, []byte(strings.Join(links, ",")))
}

// hello answers with the identity the session authenticated as, so a test
// can prove that the credential is bound to the right device.
func (s *Server) hello(w *response, r *pool.Message, p Peer) {
	if r.Code() != codes.GET && r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, "GET or POST")
		return
	}
	body, _ := json.Marshal(map[string]string{
		"device": p.Device, "project": p.Project, "method": p.Method, "credential": p.Credential,
	})
	s.replyBody(w, codes.Content, message.AppJSON, body)
}
