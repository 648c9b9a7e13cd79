package coap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
)

// LightDB Stream, as Golioth's firmware SDK uses it (stream.c,
// golioth_stream_set and golioth_stream_set_blockwise_sync): a POST to
// ".s/<path>" with a JSON (50) or CBOR (60) payload, in one message or in
// Block1 blocks of up to 1,024 bytes with the same token; serve
// reassembles the blocks, so a record is stored only once whole. Every
// record is kept with the time it arrived, its path and content format,
// and a stream.record event.

// errPayload is a payload that is not what its content format says.
var errPayload = errors.New("coap: malformed payload")

// checkStreamPayload checks that data is one well-formed value of its
// content format.
func checkStreamPayload(cf message.MediaType, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", errPayload)
	}
	switch cf {
	case message.AppJSON:
		if !json.Valid(data) {
			return fmt.Errorf("%w: not JSON", errPayload)
		}
	case message.AppCBOR:
		// Well-formed, valid (text strings are UTF-8) and one item only.
		var v any
		if err := cbor.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("%w: not one valid CBOR item: %v", errPayload, err)
		}
	default:
		return fmt.Errorf("%w: content-format %d", errPayload, cf)
	}
	return nil
}

// contentFormat returns the request's content format when it is JSON or
// CBOR.
func contentFormat(r *pool.Message) (message.MediaType, bool) {
	cf, err := r.ContentFormat()
	if err != nil || (cf != message.AppJSON && cf != message.AppCBOR) {
		return 0, false
	}
	return cf, true
}

func (s *Server) stream(w *response, r *pool.Message, p Peer, path string) {
	if r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	path, err := registry.CleanStreamPath(path)
	if err != nil {
		s.reply(w, codes.BadRequest, "bad stream path")
		return
	}
	cf, ok := contentFormat(r)
	if !ok {
		s.reply(w, codes.UnsupportedMediaType, "stream records are JSON (content-format 50) or CBOR (60)")
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		s.reply(w, codes.BadRequest, "unreadable body")
		return
	}
	if len(body) > registry.MaxStreamRecord {
		s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("a stream record is at most %d bytes", registry.MaxStreamRecord))
		return
	}
	if err := checkStreamPayload(cf, body); err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, err = s.reg.AddStreamRecord(ctx, registry.StreamRecord{Project: p.Project, Device: p.Device, Path: path, ContentFormat: int(cf), Data: body},
		registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventStreamRecord,
			Reason: fmt.Sprintf("path %q, %d bytes of %s", endpoint.Printable(path), len(body), cf)})
	if err != nil {
		s.log.Warn("stream record not stored", "project", p.Project, "device", p.Device, "err", err)
		s.replyStoreFailure(w, err)
		return
	}
	s.reply(w, codes.Changed, "")
}

// replyStoreFailure answers a write the registry refused.
func (s *Server) replyStoreFailure(w *response, err error) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		s.reply(w, codes.NotFound, "no such device")
	case errors.Is(err, registry.ErrInvalid):
		s.reply(w, codes.BadRequest, "refused by the registry")
	default:
		s.reply(w, codes.InternalServerError, "registry unavailable")
	}
}
