package coap

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// rpcotaState is what the RPC service remembers between notifications.
type rpcotaState struct {
	mu     sync.Mutex
	sent   map[delivery]time.Time // calls delivered, per session
	kicked map[int64]time.Time    // calls whose observers were notified
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
		if !acceptsCBOR(r) {
			s.reply(w, codes.NotAcceptable, "RPC calls are CBOR (accept 60)")
			return
		}
		s.replyBody(w, codes.Content, message.AppCBOR, rpcObserveOK)
	case "status":
		s.rpcStatus(w, r, p)
	default:
		s.reply(w, codes.NotFound, "no such resource: .rpc/"+endpoint.Printable(sub))
	}
}

// acceptsCBOR reports whether r has no Accept option or accepts CBOR.
func acceptsCBOR(r *pool.Message) bool {
	cf, err := r.Accept()
	return err != nil || cf == message.AppCBOR
}

func (s *Server) rpcStatus(w *response, r *pool.Message, p Peer) {
	if r.Code() != codes.POST && r.Code() != codes.PUT {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	body, ok := s.cborBody(w, r, "an RPC status", maxRPCStatusBody)
	if !ok {
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

// NotifyRPC delivers the pending call with row id id to the device's
// observers of .rpc, unless it was delivered before or is completed. It
// returns the number of observers kicked (0: nobody observes, or nothing
// to send).
func (s *Server) NotifyRPC(ctx context.Context, id int64) int {
	c, err := s.reg.RPCCall(ctx, id)
	if err != nil {
		s.log.Debug("rpc call", "id", id, "err", err)
		return 0
	}
	if c.Done || !s.rpcKick(id) {
		return 0
	}
	return s.Notify(c.Project, c.Device, ".rpc")
}

// rpcKick reports whether call id was neither notified nor delivered
// before, and remembers it was: a call made by this process's Admin is
// notified at once and seen again by the watch of the event log.
func (s *Server) rpcKick(id int64) bool {
	s.rpcota.mu.Lock()
	defer s.rpcota.mu.Unlock()
	if _, ok := s.rpcota.kicked[id]; ok {
		return false
	}
	if s.rpcota.kicked == nil {
		s.rpcota.kicked = map[int64]time.Time{}
	}
	prune(s.rpcota.kicked, time.Now())
	s.rpcota.kicked[id] = time.Now()
	return true
}

// prune forgets, once m is large, the calls older than any RPC timeout
// worth waiting for.
func prune[K comparable](m map[K]time.Time, now time.Time) {
	if len(m) < 256 {
		return
	}
	for k, t := range m {
		if now.Sub(t) > 10*time.Minute {
			delete(m, k)
		}
	}
}

// observed runs when a GET registered an observer of path: calls made
// while the device was not observing .rpc (it was reconnecting, or the
// operator was quicker than its first GET) and still pending are
// delivered now. The call may overtake the registration's "OK" (UDP
// keeps no order); the SDK's on_rpc takes both in either order.
func (s *Server) observed(ctx context.Context, p Peer, path string) {
	if strings.Trim(path, "/") != ".rpc" {
		return
	}
	pending, err := s.reg.PendingRPCCalls(ctx, p.Project, p.Device)
	if err != nil {
		return
	}
	for _, c := range pending {
		if !s.rpcDelivered(c.ID, p) {
			s.Notify(p.Project, p.Device, ".rpc")
			return
		}
	}
}

// delivery is a call delivered to one session (its peer's address): a
// device that reconnected gets a call its stale session was sent, and
// each session gets each call once.
type delivery struct {
	id   int64
	addr string
}

func deliveryTo(id int64, p Peer) delivery {
	d := delivery{id: id}
	if p.Addr != nil {
		d.addr = p.Addr.String()
	}
	return d
}

func (s *Server) rpcDelivered(id int64, p Peer) bool {
	s.rpcota.mu.Lock()
	defer s.rpcota.mu.Unlock()
	_, ok := s.rpcota.sent[deliveryTo(id, p)]
	return ok
}

// renderRPC renders an observer's next notification of .rpc: the oldest
// pending call of its device not yet delivered to its session (a device
// that reconnected while its stale session lingers gets every call on
// the new one), marked delivered. When
// more wait, the observer is kicked again, so each goes in a notification
// of its own once the previous one is acknowledged. With nothing to
// deliver it is the "OK" of the observation's start, which the SDK
// ignores.
func (s *Server) renderRPC(ctx context.Context, q observeQuery) response {
	if q.Path != ".rpc" {
		return response{code: codes.NotFound}
	}
	pending, err := s.reg.PendingRPCCalls(ctx, q.Peer.Project, q.Peer.Device)
	if err != nil {
		s.log.Warn("pending rpc calls", "project", q.Peer.Project, "device", q.Peer.Device, "err", err)
		return response{code: codes.Content, cf: message.AppCBOR, hasCF: true, body: rpcObserveOK}
	}
	now := time.Now()
	s.rpcota.mu.Lock()
	if s.rpcota.sent == nil {
		s.rpcota.sent = map[delivery]time.Time{}
	}
	prune(s.rpcota.sent, now)
	var (
		body []byte
		more bool
	)
	for _, c := range pending {
		if _, sent := s.rpcota.sent[deliveryTo(c.ID, q.Peer)]; sent {
			continue
		}
		if body != nil {
			more = true
			break
		}
		b, err := encodeRPCCall(c.CallID, c.Method, c.Params)
		if err != nil {
			s.log.Warn("rpc call not encodable", "id", c.ID, "err", err)
			continue
		}
		s.rpcota.sent[deliveryTo(c.ID, q.Peer)] = now
		body = b
		s.log.Debug("rpc call delivered", "project", c.Project, "device", c.Device, "id", c.ID, "method", c.Method)
	}
	s.rpcota.mu.Unlock()
	if body == nil {
		body = rpcObserveOK
	}
	if more {
		s.Notify(q.Peer.Project, q.Peer.Device, ".rpc")
	}
	return response{code: codes.Content, cf: message.AppCBOR, hasCF: true, body: body}
}

// cborBody reads a device's CBOR payload of at most max bytes, answering
// 4.15, 4.00 or 4.13 (and false) when it is not one; what names it in the
// diagnostic ("an RPC status").
func (s *Server) cborBody(w *response, r *pool.Message, what string, max int) ([]byte, bool) {
	if cf, err := r.ContentFormat(); err == nil && cf != message.AppCBOR {
		s.reply(w, codes.UnsupportedMediaType, what+" is CBOR (content-format 60)")
		return nil, false
	}
	body, err := r.ReadBody()
	if err != nil {
		s.reply(w, codes.BadRequest, "unreadable body")
		return nil, false
	}
	if len(body) > max {
		s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("%s is at most %d bytes", what, max))
		return nil, false
	}
	return body, true
}
