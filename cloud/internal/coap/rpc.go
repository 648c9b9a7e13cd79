package coap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
)

// Golioth's remote procedure calls, as Golioth's firmware SDK uses them
// (src/rpc.c): golioth_rpc_register observes .rpc (GET, Observe 0,
// Accept 60); the first answer is the CBOR text "OK"; every call is a
// notification {"id", "method", "params"}; the device answers each with a
// POST of {"id", "detail", "statusCode"} to .rpc/status.

// rpcotaState is what the RPC and OTA services remember between
// notifications.
type rpcotaState struct {
	rpcMu   sync.Mutex
	rpcSent map[int64]time.Time // calls notified, by row id

	otaMu       sync.Mutex
	otaNotified map[string]int64 // per project, the release sequence notified last
}

// maxRPCStatusBody bounds an answer on .rpc/status (the SDK's is at most
// CONFIG_GOLIOTH_RPC_MAX_RESPONSE_LEN, 256 bytes by default).
const maxRPCStatusBody = 16 << 10

func (s *Server) rpc(w *response, r *pool.Message, p Peer, sub string) {
	switch sub {
	case "":
		if r.Code() != codes.GET {
			s.reply(w, codes.MethodNotAllowed, "GET (observe) only")
			return
		}
		s.replyBody(w, codes.Content, message.AppCBOR, rpcObserveOK)
	case "status":
		s.rpcStatus(w, r, p)
	default:
		s.reply(w, codes.NotFound, "no such resource: .rpc/"+endpoint.Printable(sub))
	}
}

func (s *Server) rpcStatus(w *response, r *pool.Message, p Peer) {
	if r.Code() != codes.POST && r.Code() != codes.PUT {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	if cf, err := r.ContentFormat(); err == nil && cf != message.AppCBOR {
		s.reply(w, codes.UnsupportedMediaType, "an RPC status is CBOR (content-format 60)")
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		s.reply(w, codes.BadRequest, "unreadable body")
		return
	}
	if len(body) > maxRPCStatusBody {
		s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("an RPC status is at most %d bytes", maxRPCStatusBody))
		return
	}
	st, err := decodeRPCStatus(body)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, err = s.reg.CompleteRPCCall(ctx, p.Project, p.Device, st.CallID, st.Status, st.Detail, false)
	switch {
	case err == nil:
		s.reply(w, codes.Changed, "")
	case errors.Is(err, registry.ErrRPCDone):
		s.reply(w, codes.BadRequest, "call "+endpoint.Printable(st.CallID)+" is already completed (answered or timed out)")
	case errors.Is(err, registry.ErrNotFound):
		s.reply(w, codes.NotFound, "no call "+endpoint.Printable(st.CallID)+" for this device")
	case errors.Is(err, registry.ErrInvalid):
		s.reply(w, codes.BadRequest, "status refused")
	default:
		s.reply(w, codes.InternalServerError, "registry unavailable")
	}
}

// rpcNotification returns the payload of the notification of call id,
// and whether it is still to be sent (pending and not sent before).
func (s *Server) rpcNotification(ctx context.Context, id int64) (registry.RPCCall, []byte, bool) {
	c, err := s.reg.RPCCall(ctx, id)
	if err != nil {
		s.log.Debug("rpc call", "id", id, "err", err)
		return registry.RPCCall{}, nil, false
	}
	if c.Done {
		return registry.RPCCall{}, nil, false
	}
	s.rpcota.rpcMu.Lock()
	defer s.rpcota.rpcMu.Unlock()
	if _, sent := s.rpcota.rpcSent[id]; sent {
		return registry.RPCCall{}, nil, false
	}
	payload, err := encodeRPCCall(c.CallID, c.Method, c.Params)
	if err != nil {
		s.log.Warn("rpc call not encodable", "id", id, "err", err)
		return registry.RPCCall{}, nil, false
	}
	if s.rpcota.rpcSent == nil {
		s.rpcota.rpcSent = map[int64]time.Time{}
	}
	now := time.Now()
	if len(s.rpcota.rpcSent) >= 256 {
		for k, t := range s.rpcota.rpcSent {
			if now.Sub(t) > 10*time.Minute {
				delete(s.rpcota.rpcSent, k)
			}
		}
	}
	s.rpcota.rpcSent[id] = now
	return c, payload, true
}
