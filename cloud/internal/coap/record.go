package coap

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
)

// Every CoAP request a device makes is recorded: an event of kind
// coap.request whose Reason reads "POST .d/counter cf=50 12B -> 2.04"
// (Outcome fail for 4.xx and 5.xx) and a Debug log line "coap request"
// with the same fields, so a scenario can await either. The event goes
// through the registry's batch writer without holding up the answer: a
// request costs a goroutine that waits for the batch's commit, at most
// maxRecording of them at once (past that the handler waits, so the log
// never loses a request).
//
// /hello and the keepalive (a DELETE without a path) get the log line but
// no event unless Options.RecordHello is set: they are a device's most
// frequent requests and an event costs each of them about half its CPU
// (`credloop bench coap`: 90 µs per request without, 133-171 µs with).

// maxRecording bounds the request events waiting for their commit.
const maxRecording = 4096

// serveRecorded is go-coap's handler: serve, then record the request.
func (s *Server) serveRecorded(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) {
	if r.Code() == codes.Empty {
		s.serve(w, r)
		return
	}
	method := r.Code()
	path, _ := r.Path()
	cf := -1
	if v, err := r.ContentFormat(); err == nil {
		cf = int(v)
	}
	var size int64
	if r.Body() != nil {
		size, _ = r.BodySize()
	}
	s.serve(w, r)
	var code codes.Code
	if m := w.Message(); m.IsModified() {
		code = m.Code()
	}
	sess, ok := w.Conn().NetConn().(*session)
	if !ok {
		return
	}
	s.recordRequest(sess.peer, method, strings.TrimPrefix(path, "/"), cf, size, code)
}

// codeString writes a CoAP code as RFC 7252 does: "2.05".
func codeString(c codes.Code) string {
	return fmt.Sprintf("%d.%02d", uint8(c)>>5, uint8(c)&0x1f)
}

func (s *Server) recordRequest(p Peer, method codes.Code, path string, cf int, size int64, code codes.Code) {
	path = endpoint.Printable(path)
	outcome := registry.OutcomeOK
	if code >= codes.BadRequest {
		outcome = registry.OutcomeFail
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("coap request", "project", p.Project, "device", p.Device, "method", method.String(), "path", path,
			"cf", cf, "size", size, "code", codeString(code), "outcome", outcome)
	}
	if !s.opts.RecordHello && (path == "hello" || path == "" && method == codes.DELETE) {
		return
	}
	var b strings.Builder
	b.Grow(48 + len(path))
	b.WriteString(method.String())
	b.WriteByte(' ')
	b.WriteString(path)
	if cf >= 0 {
		fmt.Fprintf(&b, " cf=%d", cf)
	}
	fmt.Fprintf(&b, " %dB -> %s", size, codeString(code))
	e := registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventCoAPRequest,
		Outcome: outcome, Reason: b.String()}
	s.recordMu.Lock()
	if s.recClosed {
		s.recordMu.Unlock()
		return
	}
	s.recordWG.Add(1)
	s.recordMu.Unlock()
	s.recording <- struct{}{}
	go func() {
		defer s.recordWG.Done()
		defer func() { <-s.recording }()
		s.record(e)
	}()
}
