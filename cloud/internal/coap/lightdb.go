package coap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/registry"
)

// LightDB State at .d/<path>, as Golioth's firmware SDK uses it
// (src/lightdb_state.c): golioth_lightdb_set_* POST a JSON value (the
// generic golioth_lightdb_set may send CBOR, content-format 60);
// golioth_lightdb_get GETs with Accept 50 or 60; golioth_lightdb_delete
// DELETEs; golioth_lightdb_observe GETs with Observe: 0 and Accept. Each
// device has one JSON document (registry.PutState/GetState/DeleteState);
// a path addresses a subtree of it and .d alone is the whole document. A
// path that holds nothing reads as null, as Golioth answers it (the SDK's
// samples print "null" for a deleted counter). PUT is taken like POST.

// StatePath is the LightDB State path of a CoAP path under .d: "" for .d
// itself, "a/b" for .d/a//b/.
func statePath(path string) string {
	var segs []string
	for s := range strings.SplitSeq(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return strings.Join(segs, "/")
}

// lightDBResource is the observed path of LightDB State path p.
func lightDBResource(p string) string {
	if p == "" {
		return ".d"
	}
	return ".d/" + p
}

// acceptOf returns the content format the client accepts: JSON unless
// it names another.
func acceptOf(r *pool.Message) (message.MediaType, bool) {
	cf, err := r.Accept()
	if err != nil {
		return message.AppJSON, true
	}
	return cf, cf == message.AppJSON || cf == message.AppCBOR
}

func (s *Server) lightdb(w *response, r *pool.Message, p Peer, raw string) {
	path := statePath(raw)
	if len(path) > registry.MaxStatePath {
		s.reply(w, codes.BadRequest, fmt.Sprintf("path longer than %d bytes", registry.MaxStatePath))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	switch r.Code() {
	case codes.GET:
		cf, ok := acceptOf(r)
		if !ok {
			s.reply(w, codes.NotAcceptable, "LightDB State is JSON (50) or CBOR (60)")
			return
		}
		v, err := s.reg.GetState(ctx, p.Project, p.Device, path)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			v = []byte("null")
		case errors.Is(err, registry.ErrInvalid):
			s.reply(w, codes.BadRequest, "bad path")
			return
		case err != nil:
			s.reply(w, codes.InternalServerError, "registry unavailable")
			return
		}
		if cf == message.AppCBOR {
			if v, err = jsonToCBOR(v); err != nil {
				s.reply(w, codes.InternalServerError, "stored state has no CBOR form")
				return
			}
		}
		s.replyBody(w, codes.Content, cf, v)
	case codes.POST, codes.PUT:
		cf := message.AppJSON
		if c, err := r.ContentFormat(); err == nil {
			cf = c
		}
		if cf != message.AppJSON && cf != message.AppCBOR {
			s.reply(w, codes.UnsupportedMediaType, "LightDB State takes JSON (50) or CBOR (60)")
			return
		}
		body, err := r.ReadBody()
		if err != nil {
			s.reply(w, codes.BadRequest, "unreadable body")
			return
		}
		if len(body) > registry.MaxStateValue {
			s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("value larger than %d bytes", registry.MaxStateValue))
			return
		}
		if cf == message.AppCBOR {
			if body, err = cborToJSON(body); err != nil {
				s.reply(w, codes.BadRequest, strings.TrimPrefix(err.Error(), errConvert.Error()+": "))
				return
			}
		}
		if err := s.reg.PutState(ctx, p.Project, p.Device, path, body); err != nil {
			switch {
			case errors.Is(err, registry.ErrStateTooLarge):
				s.reply(w, codes.RequestEntityTooLarge, "state larger than its limit")
			case errors.Is(err, registry.ErrInvalid) && path == "":
				s.reply(w, codes.BadRequest, "malformed JSON, or .d set to something else than an object")
			case errors.Is(err, registry.ErrInvalid):
				s.reply(w, codes.BadRequest, "malformed JSON")
			case errors.Is(err, registry.ErrNotFound):
				s.reply(w, codes.NotFound, "no such device")
			default:
				s.reply(w, codes.InternalServerError, "registry unavailable")
			}
			return
		}
		s.lightDBChanged(p, registry.EventLightDBSet, path)
		s.reply(w, codes.Changed, "")
	case codes.DELETE:
		if err := s.reg.DeleteState(ctx, p.Project, p.Device, path); err != nil {
			if errors.Is(err, registry.ErrInvalid) {
				s.reply(w, codes.BadRequest, "bad path")
				return
			}
			s.reply(w, codes.InternalServerError, "registry unavailable")
			return
		}
		s.lightDBChanged(p, registry.EventLightDBDelete, path)
		s.reply(w, codes.Deleted, "")
	default:
		s.reply(w, codes.MethodNotAllowed, "GET, POST, PUT or DELETE")
	}
}

// lightDBChanged notifies the observers of the device's path and records
// the change; the event is marked as notified here, so that the cloud's
// watch of the event log does not notify it again.
func (s *Server) lightDBChanged(p Peer, kind registry.EventKind, path string) {
	verb := "set"
	if kind == registry.EventLightDBDelete {
		verb = "delete"
	}
	s.Notify(p.Project, p.Device, lightDBResource(path))
	e := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: kind, Outcome: registry.OutcomeOK,
		Reason: LightDBReason(verb, path) + " by device"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stored, err := s.reg.Record(ctx, e)
	if err != nil {
		s.log.Error("record event", "kind", kind, "err", err)
		return
	}
	s.MarkNotified(stored.Seq)
}

// LightDBReason is the Reason of a LightDB State event: the verb ("set",
// "delete") and the quoted path ("" is the whole document); who made the
// change may follow ("by device").
func LightDBReason(verb, path string) string { return verb + " " + strconv.Quote(path) }

// LightDBPath is the LightDB State path a LightDBReason names, and whether
// it names one.
func LightDBPath(reason string) (string, bool) {
	i := strings.IndexByte(reason, '"')
	if i < 0 {
		return "", false
	}
	q, err := strconv.QuotedPrefix(reason[i:])
	if err != nil {
		return "", false
	}
	p, err := strconv.Unquote(q)
	return p, err == nil
}

// LightDBResource is the observed CoAP path of LightDB State path p.
func LightDBResource(p string) string { return lightDBResource(p) }
