package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// RPCStatus is the status code a device answers a remote procedure call
// with, as Golioth's firmware SDK numbers them (enum golioth_rpc_status in
// include/golioth/rpc.h, the gRPC codes).
type RPCStatus int

// RPC status codes.
const (
	RPCOK                 RPCStatus = 0
	RPCCanceled           RPCStatus = 1
	RPCUnknown            RPCStatus = 2
	RPCInvalidArgument    RPCStatus = 3
	RPCDeadlineExceeded   RPCStatus = 4
	RPCNotFound           RPCStatus = 5
	RPCAlreadyExists      RPCStatus = 6
	RPCPermissionDenied   RPCStatus = 7
	RPCResourceExhausted  RPCStatus = 8
	RPCFailedPrecondition RPCStatus = 9
	RPCAborted            RPCStatus = 10
	RPCOutOfRange         RPCStatus = 11
	RPCUnimplemented      RPCStatus = 12
	RPCInternal           RPCStatus = 13
	RPCUnavailable        RPCStatus = 14
	RPCDataLoss           RPCStatus = 15
	RPCUnauthenticated    RPCStatus = 16
)

var rpcStatusNames = [...]string{
	"OK", "CANCELED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// Valid reports whether s is one of the codes above.
func (s RPCStatus) Valid() bool { return s >= 0 && int(s) < len(rpcStatusNames) }

// String is the code's name ("OK", "INVALID_ARGUMENT"), or its number
// when it has none.
func (s RPCStatus) String() string {
	if s.Valid() {
		return rpcStatusNames[s]
	}
	return "RPCStatus(" + strconv.Itoa(int(s)) + ")"
}

// Limits of RPC calls.
const (
	MaxRPCMethod = 64      // bytes of a method name
	MaxRPCCallID = 64      // bytes of a call id
	MaxRPCParams = 4 << 10 // bytes of the params, as JSON
	MaxRPCDetail = 8 << 10 // bytes of a status detail, as JSON
)

// RPCCall is a remote procedure call an operator made on a device, and
// the device's answer once it came (or the timeout).
type RPCCall struct {
	ID        int64 // row id, increasing
	CallID    string
	Project   string
	Device    string
	Method    string
	Params    json.RawMessage // a JSON array
	Done      bool            // answered or timed out
	Status    RPCStatus       // when Done
	Detail    json.RawMessage // when Done: a JSON value, or nil
	Created   time.Time
	Completed time.Time // zero while pending
}

const rpcColumns = `id, call_id, project, device, method, params, status_code, detail, created, completed`

func scanRPCCall(s rowScanner) (RPCCall, error) {
	var (
		c      RPCCall
		params string
		status sql.NullInt64
		detail sql.NullString
	)
	err := s.Scan(&c.ID, &c.CallID, &c.Project, &c.Device, &c.Method, &params, &status, &detail, timeScan{&c.Created}, timeScan{&c.Completed})
	c.Params = json.RawMessage(params)
	if status.Valid {
		c.Done, c.Status = true, RPCStatus(status.Int64)
	}
	if detail.Valid {
		c.Detail = json.RawMessage(detail.String)
	}
	return c, err
}

// rpcReason is the reason of the rpc.call and rpc.status events: it names
// the call's row id first, so a cloud in another process (or a waiting
// caller) can tell which call an event is about (RPCCallOf).
func rpcReason(id int64, format string, args ...any) string {
	return "call " + strconv.FormatInt(id, 10) + ": " + fmt.Sprintf(format, args...)
}

// RPCCallOf returns the row id of the call an rpc.call or rpc.status
// event is about.
func RPCCallOf(e Event) (int64, bool) {
	if e.Kind != EventRPCCall && e.Kind != EventRPCStatus {
		return 0, false
	}
	rest, ok := strings.CutPrefix(e.Reason, "call ")
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(n, 10, 64)
	return id, err == nil && id > 0
}

func validPrintable(what, s string, limit int) error {
	if s == "" || len(s) > limit || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s must be 1..%d bytes of UTF-8", ErrInvalid, what, limit)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s has a control character", ErrInvalid, what)
		}
	}
	return nil
}

// CreateRPCCall stores a pending call of method with params (a JSON
// array) on the device and records the rpc.call event (reason ends with
// origin when given) in the same transaction. It returns the call and
// the event's sequence number.
func (r *Registry) CreateRPCCall(ctx context.Context, project, device, callID, method string, params json.RawMessage, origin string) (RPCCall, int64, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return RPCCall{}, 0, fmt.Errorf("create rpc call: %w", err)
	}
	if err := validPrintable("call id", callID, MaxRPCCallID); err != nil {
		return RPCCall{}, 0, fmt.Errorf("create rpc call: %w", err)
	}
	if err := validPrintable("method", method, MaxRPCMethod); err != nil {
		return RPCCall{}, 0, fmt.Errorf("create rpc call: %w", err)
	}
	if len(params) == 0 {
		params = json.RawMessage("[]")
	}
	var arr []json.RawMessage
	if len(params) > MaxRPCParams || json.Unmarshal(params, &arr) != nil || arr == nil {
		return RPCCall{}, 0, fmt.Errorf("create rpc call: %w: params must be a JSON array of at most %d bytes", ErrInvalid, MaxRPCParams)
	}
	c := RPCCall{CallID: callID, Project: project, Device: device, Method: method, Params: params}
	var seq int64
	err := r.write(ctx, func(tx *sql.Tx) error {
		if err := deviceExists(ctx, tx, project, device); err != nil {
			return err
		}
		dup, err := exists(ctx, tx, `SELECT 1 FROM rpc_calls WHERE project = ? AND device = ? AND call_id = ?`, project, device, callID)
		if err != nil {
			return err
		}
		if dup {
			return fmt.Errorf("call id %q: %w", callID, ErrExists)
		}
		c.Created = r.now()
		res, err := tx.ExecContext(ctx, `INSERT INTO rpc_calls (call_id, project, device, method, params, created) VALUES (?, ?, ?, ?, ?, ?)`,
			callID, project, device, method, string(params), dbTime(c.Created))
		if err != nil {
			return err
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		reason := rpcReason(c.ID, "%s (id %s)", method, callID)
		if origin != "" {
			reason += " " + origin
		}
		seq, err = r.recordTx(ctx, tx, Event{Project: project, Device: device, Kind: EventRPCCall, Reason: reason})
		return err
	})
	if err != nil {
		return RPCCall{}, 0, fmt.Errorf("create rpc call %s/%s %s: %w", project, device, method, err)
	}
	r.broadcast()
	c.Created = time.UnixMicro(c.Created.UnixMicro()).UTC()
	return c, seq, nil
}

// ErrRPCDone is returned by CompleteRPCCall for a call already answered
// or timed out.
var ErrRPCDone = fmt.Errorf("registry: rpc call already completed: %w", ErrInvalid)

// CompleteRPCCall stores the answer to the pending call callID of the
// device (status and detail, a JSON value or nil) and records the
// rpc.status event in the same transaction: outcome ok for a device's
// answer, fail with reason "timeout" when timedOut. It returns
// ErrNotFound for an unknown call and ErrRPCDone for one already
// completed; then nothing is written.
func (r *Registry) CompleteRPCCall(ctx context.Context, project, device, callID string, status RPCStatus, detail json.RawMessage, timedOut bool) (RPCCall, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return RPCCall{}, fmt.Errorf("complete rpc call: %w", err)
	}
	if !status.Valid() {
		return RPCCall{}, fmt.Errorf("complete rpc call: %w: status code %d", ErrInvalid, int(status))
	}
	if len(detail) > MaxRPCDetail || (len(detail) > 0 && !json.Valid(detail)) {
		return RPCCall{}, fmt.Errorf("complete rpc call: %w: detail must be JSON of at most %d bytes", ErrInvalid, MaxRPCDetail)
	}
	var c RPCCall
	err := r.write(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = scanRPCCall(tx.QueryRowContext(ctx, `SELECT `+rpcColumns+` FROM rpc_calls WHERE project = ? AND device = ? AND call_id = ?`, project, device, callID))
		if err != nil {
			return fmt.Errorf("call id %q: %w", callID, notFound(err))
		}
		if c.Done {
			return fmt.Errorf("call id %q: %w", callID, ErrRPCDone)
		}
		c.Done, c.Status, c.Detail, c.Completed = true, status, detail, r.now()
		var d any
		if len(detail) > 0 {
			d = string(detail)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE rpc_calls SET status_code = ?, detail = ?, completed = ? WHERE id = ? AND completed IS NULL`,
			int(status), d, dbTime(c.Completed), c.ID); err != nil {
			return err
		}
		e := Event{Project: project, Device: device, Kind: EventRPCStatus, Reason: rpcReason(c.ID, "%s %s", c.Method, status)}
		if timedOut {
			e.Outcome, e.Reason = OutcomeFail, rpcReason(c.ID, "%s timeout", c.Method)
		}
		_, err = r.recordTx(ctx, tx, e)
		return err
	})
	if err != nil {
		return RPCCall{}, fmt.Errorf("complete rpc call %s/%s: %w", project, device, err)
	}
	r.broadcast()
	c.Completed = time.UnixMicro(c.Completed.UnixMicro()).UTC()
	return c, nil
}

// RPCCall returns the call with row id id.
func (r *Registry) RPCCall(ctx context.Context, id int64) (RPCCall, error) {
	if err := r.check(); err != nil {
		return RPCCall{}, err
	}
	c, err := scanRPCCall(r.rd.QueryRowContext(ctx, `SELECT `+rpcColumns+` FROM rpc_calls WHERE id = ?`, id))
	if err != nil {
		return RPCCall{}, fmt.Errorf("rpc call %d: %w", id, notFound(err))
	}
	return c, nil
}

// PendingRPCCalls returns the device's calls not yet answered nor timed
// out, oldest first.
func (r *Registry) PendingRPCCalls(ctx context.Context, project, device string) ([]RPCCall, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, fmt.Errorf("pending rpc calls: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	out, err := queryAll(ctx, r.rd, scanRPCCall, `SELECT `+rpcColumns+` FROM rpc_calls
		WHERE project = ? AND device = ? AND completed IS NULL ORDER BY id`, project, device)
	if err != nil {
		return nil, fmt.Errorf("pending rpc calls of %s/%s: %w", project, device, err)
	}
	return out, nil
}

// recordTx appends e to the event log inside tx and returns its sequence
// number; the caller broadcasts after the commit.
func (r *Registry) recordTx(ctx context.Context, tx *sql.Tx, e Event) (int64, error) {
	e, err := r.prepareEvent(e)
	if err != nil {
		return 0, err
	}
	res, err := tx.StmtContext(ctx, r.stRecord).ExecContext(ctx, dbTime(e.Time), e.Project, e.Device, e.Credential, e.Kind, e.Outcome, e.Reason)
	if err != nil {
		return 0, fmt.Errorf("record event %s: %w", e.Kind, err)
	}
	return res.LastInsertId()
}
