package cloud

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

// ErrRPCTimeout: the device did not answer a remote procedure call in
// time (it was not observing .rpc, or did not post a status).
var ErrRPCTimeout = errors.New("cloud: rpc call timed out")

// DefaultRPCTimeout is how long CallRPC waits when given no timeout.
const DefaultRPCTimeout = 10 * time.Second

// RPCResult is the outcome of a remote procedure call.
type RPCResult struct {
	ID       int64  // the call's row id in the registry
	CallID   string // the id the device saw
	Method   string
	Status   registry.RPCStatus // RPCDeadlineExceeded when TimedOut
	Detail   json.RawMessage    // what the device answered, JSON; nil if nothing
	TimedOut bool
}

// CallRPC calls method on a device the way Golioth's console does: the
// call (params: nil, a []any, or JSON text of an array) is stored with an
// rpc.call event, notified to the device's observation of .rpc, and
// answered by the device's POST to .rpc/status, whose status code and
// detail it returns. The answer is awaited on the event log, so a cloud
// serving the same registry in another process delivers the call (its
// watch picks the rpc.call event up). If no answer comes within timeout
// (default DefaultRPCTimeout) the call is closed with status
// DEADLINE_EXCEEDED and a failed rpc.status event, and the error wraps
// ErrRPCTimeout.
func (a *Admin) CallRPC(ctx context.Context, project, device, method string, params any, timeout time.Duration) (RPCResult, error) {
	if timeout <= 0 {
		timeout = DefaultRPCTimeout
	}
	raw, err := rpcParams(params)
	if err != nil {
		return RPCResult{}, err
	}
	callID, err := newCallID(a.rand)
	if err != nil {
		return RPCResult{}, fmt.Errorf("cloud: rpc call: %w", err)
	}
	call, seq, err := a.reg.CreateRPCCall(ctx, project, device, callID, method, raw, a.origin)
	if errors.Is(err, registry.ErrNotFound) {
		return RPCResult{}, fmt.Errorf("%w: %s/%s", ErrNoDevice, project, device)
	}
	if err != nil {
		return RPCResult{}, fmt.Errorf("cloud: %w", err)
	}
	if a.cloud != nil {
		a.cloud.notifyRPC(ctx, call.ID)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ev, err := a.reg.WaitEvent(wctx, registry.Filter{Project: project, Device: device, Kind: registry.EventRPCStatus, AfterSeq: seq})
		if err != nil {
			break
		}
		seq = ev.Seq
		if id, ok := registry.RPCCallOf(ev); ok && id == call.ID {
			return a.rpcResult(ctx, call.ID)
		}
	}
	// No answer: close the call, even when ctx ended, so it does not stay
	// pending; a device answering at this very moment wins.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer ccancel()
	done, err := a.reg.CompleteRPCCall(cctx, project, device, callID, registry.RPCDeadlineExceeded, nil, true)
	if errors.Is(err, registry.ErrRPCDone) {
		return a.rpcResult(cctx, call.ID)
	}
	if err != nil {
		return RPCResult{}, fmt.Errorf("cloud: rpc call %s: %w", method, err)
	}
	res := resultOf(done)
	res.TimedOut = true
	if ctx.Err() != nil {
		return res, fmt.Errorf("cloud: rpc call %s on %s/%s: %w", method, project, device, ctx.Err())
	}
	return res, fmt.Errorf("%w after %s: %s on %s/%s", ErrRPCTimeout, timeout, method, project, device)
}

func (a *Admin) rpcResult(ctx context.Context, id int64) (RPCResult, error) {
	c, err := a.reg.RPCCall(ctx, id)
	if err != nil {
		return RPCResult{}, fmt.Errorf("cloud: %w", err)
	}
	return resultOf(c), nil
}

func resultOf(c registry.RPCCall) RPCResult {
	return RPCResult{ID: c.ID, CallID: c.CallID, Method: c.Method, Status: c.Status, Detail: c.Detail}
}

// rpcParams turns CallRPC's params into a JSON array.
func rpcParams(params any) (json.RawMessage, error) {
	var raw []byte
	switch p := params.(type) {
	case nil:
		return json.RawMessage("[]"), nil
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	case string:
		raw = []byte(p)
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("cloud: rpc params: %w: %v", registry.ErrInvalid, err)
		}
		raw = b
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil || arr == nil {
		return nil, fmt.Errorf("cloud: rpc params: %w: not a JSON array", registry.ErrInvalid)
	}
	return json.RawMessage(raw), nil
}

// newCallID makes a call id: 16 hex digits.
func newCallID(rnd io.Reader) (string, error) {
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
