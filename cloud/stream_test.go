package cloud_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

// sdkConn speaks CoAP as Golioth's firmware SDK does over libcoap
// (coap_client_libcoap.c): CON requests with an 8-byte token, Uri-Path
// options from "prefix" + "path" with empty segments dropped, and for a
// block-wise upload the same token on every Block1 block. go-coap's own
// block-wise layer is off, so the messages are exactly these.
type sdkConn struct {
	t     *testing.T
	cc    *udpClient.Conn
	token uint64
}

func dialSDK(t *testing.T, c *cloud.Cloud, cred sim.Credential) *sdkConn {
	t.Helper()
	conn, err := sim.DialDTLS(ctxT(t), sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	cc := coapdtls.Client(conn, options.WithBlockwise(false, blockwise.SZX1024, time.Minute), options.WithCloseSocket())
	t.Cleanup(func() { cc.Close() })
	return &sdkConn{t: t, cc: cc, token: 0x1122334455660000}
}

func (s *sdkConn) nextToken() []byte {
	s.token++
	return binary.LittleEndian.AppendUint64(nil, s.token)
}

// request sends one message and returns the response's code, payload
// and the message (released at the end of the test).
func (s *sdkConn) request(code codes.Code, token []byte, path string, opts func(m *pool.Message), body []byte) (codes.Code, []byte, *pool.Message) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := s.cc.AcquireMessage(ctx)
	defer s.cc.ReleaseMessage(req)
	req.SetCode(code)
	req.SetType(message.Confirmable)
	req.SetToken(token)
	if err := req.SetPath(path); err != nil {
		s.t.Fatal(err)
	}
	if opts != nil {
		opts(req)
	}
	if body != nil {
		req.SetBody(bytes.NewReader(body))
	}
	resp, err := s.cc.Do(req)
	if err != nil {
		s.t.Fatalf("%v %s: %v", code, path, err)
	}
	s.t.Cleanup(func() { s.cc.ReleaseMessage(resp) })
	payload, _ := resp.ReadBody()
	return resp.Code(), payload, resp
}

// post is golioth_coap_post: Content-Format and the payload.
func (s *sdkConn) post(path string, cf message.MediaType, body []byte) (codes.Code, string) {
	code, payload, _ := s.request(codes.POST, s.nextToken(), path, func(m *pool.Message) { m.SetContentFormat(cf) }, body)
	return code, string(payload)
}

// postBlocks is golioth_blockwise_post: Block1 blocks of size bytes,
// one token for the whole transfer; it returns the code of every block.
func (s *sdkConn) postBlocks(path string, cf message.MediaType, body []byte, size int) []codes.Code {
	token := s.nextToken()
	szx := blockwise.SZX1024
	for z := blockwise.SZX16; z <= blockwise.SZX1024; z++ {
		if z.Size() == int64(size) {
			szx = z
		}
	}
	var got []codes.Code
	for num := 0; num*size < len(body); num++ {
		part := body[num*size : min((num+1)*size, len(body))]
		more := (num+1)*size < len(body)
		v, err := blockwise.EncodeBlockOption(szx, int64(num), more)
		if err != nil {
			s.t.Fatal(err)
		}
		code, _, resp := s.request(codes.POST, token, path, func(m *pool.Message) {
			m.SetContentFormat(cf)
			m.SetOptionUint32(message.Block1, v)
		}, part)
		got = append(got, code)
		if code.String()[0] != '2' && code != codes.Continue {
			break // the SDK gives up on an error
		}
		if echo, err := resp.GetOptionUint32(message.Block1); err != nil || echo != v {
			s.t.Errorf("block %d: Block1 echoed %#x (%v), want %#x", num, echo, err, v)
		}
	}
	return got
}

// golioth_basics posts {"my_stream_int":15} to "/": Uri-Path ".s" only.
func TestStreamFromSDK(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "stream-secret-1")
	ctx := ctxT(t)
	dev := dialSDK(t, c, cred)

	if code, diag := dev.post(".s", message.AppJSON, []byte(`{"my_stream_int":15}`)); code != codes.Changed {
		t.Fatalf("POST .s = %v %q", code, diag)
	}
	cborRec := []byte{0xbf, 0x64, 't', 'e', 'm', 'p', 0xf9, 0x4d, 0x00, 0xff} // {"temp": 20.0}
	if code, diag := dev.post(".s/data/sensor", message.AppCBOR, cborRec); code != codes.Changed {
		t.Fatalf("POST .s/data/sensor = %v %q", code, diag)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: registry.EventStreamRecord, Device: "dev1"})
	if ev.Credential != "dev1@acme" || !strings.Contains(ev.Reason, `path ""`) {
		t.Fatalf("event %+v", ev)
	}

	// 3 KiB of JSON in 1,024-byte blocks, as the stream HIL test's
	// block upload: 2.31 Continue, 2.31, then 2.04 and the record whole.
	var big bytes.Buffer
	big.WriteString(`{`)
	for i := 0; big.Len() < 3*1024-40; i++ {
		fmt.Fprintf(&big, `"%d":"value number %d",`, i, i)
	}
	big.WriteString(`"end":true}`)
	codesGot := dev.postBlocks(".s/data/block_upload", message.AppJSON, big.Bytes(), 1024)
	if len(codesGot) != 3 || codesGot[0] != codes.Continue || codesGot[1] != codes.Continue || codesGot[2] != codes.Changed {
		t.Fatalf("block codes = %v", codesGot)
	}

	a := c.Admin()
	recs, err := a.StreamRecords(ctx, "acme", "dev1", cloud.StreamQuery{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("records = %+v, %v", recs, err)
	}
	if recs[0].Path != "" || recs[0].ContentFormat != 50 || string(recs[0].Data) != `{"my_stream_int":15}` {
		t.Errorf("record 0 = %+v", recs[0])
	}
	if recs[1].Path != "data/sensor" || recs[1].ContentFormat != 60 || !bytes.Equal(recs[1].Data, cborRec) {
		t.Errorf("record 1 = %+v", recs[1])
	}
	if recs[2].Path != "data/block_upload" || !bytes.Equal(recs[2].Data, big.Bytes()) {
		t.Errorf("block upload stored %d bytes, want %d", len(recs[2].Data), big.Len())
	}
	if got, _ := a.StreamRecords(ctx, "acme", "dev1", cloud.StreamQuery{Path: "/data/block_upload/", Limit: 5}); len(got) != 1 {
		t.Errorf("by path: %d records", len(got))
	}
	if _, err := a.StreamRecords(ctx, "acme", "ghost", cloud.StreamQuery{}); !errors.Is(err, cloud.ErrNoDevice) {
		t.Errorf("unknown device: %v", err)
	}

	// Bad input: nothing stored, the answer says why.
	bad := []struct {
		name string
		path string
		cf   message.MediaType
		body []byte
		want codes.Code
	}{
		{"malformed JSON", ".s/x", message.AppJSON, []byte(`{"a":`), codes.BadRequest},
		{"malformed CBOR", ".s/x", message.AppCBOR, []byte{0xbf, 0x61}, codes.BadRequest},
		{"empty", ".s/x", message.AppJSON, []byte{}, codes.BadRequest},
		{"octet stream", ".s/x", message.AppOctets, []byte{1}, codes.UnsupportedMediaType},
		{"unknown path", ".x/y", message.AppJSON, []byte(`1`), codes.NotFound},
	}
	for _, b := range bad {
		if code, diag := dev.post(b.path, b.cf, b.body); code != b.want || (code == codes.BadRequest && diag == "") {
			t.Errorf("%s: %v %q, want %v with a reason", b.name, code, diag, b.want)
		}
	}
	// A block upload cut short or too large stores nothing.
	huge := bytes.Repeat([]byte(" "), 70*1024)
	huge[0] = '1'
	codesGot = dev.postBlocks(".s/huge", message.AppJSON, huge, 1024)
	if last := codesGot[len(codesGot)-1]; last != codes.RequestEntityTooLarge {
		t.Errorf("70 KiB upload: last code %v", last)
	}
	// The first 2 KiB of the JSON document, in blocks: each block is
	// taken, the whole is refused.
	if got := dev.postBlocks(".s/half", message.AppJSON, big.Bytes()[:2048], 1024); got[len(got)-1] != codes.BadRequest {
		t.Errorf("truncated JSON in blocks: %v", got)
	}
	if recs, _ := a.StreamRecords(ctx, "acme", "dev1", cloud.StreamQuery{}); len(recs) != 3 {
		t.Errorf("%d records after bad input, want 3", len(recs))
	}
	if evs, _ := c.Registry.Events(ctx, registry.Filter{Kind: registry.EventStreamRecord}); len(evs) != 3 {
		t.Errorf("%d stream events, want 3", len(evs))
	}
}

// sdkLog is the CBOR golioth_log_internal (log.c) sends: a map of
// indefinite length (zcbor, not canonical) with level, module and msg.
func sdkLog(level, module, msg string) []byte {
	text := func(s string) []byte {
		switch {
		case len(s) < 24:
			return append([]byte{0x60 | byte(len(s))}, s...)
		case len(s) < 256:
			return append([]byte{0x78, byte(len(s))}, s...)
		}
		return append(binary.BigEndian.AppendUint16([]byte{0x79}, uint16(len(s))), s...)
	}
	b := []byte{0xbf}
	for _, s := range []string{"level", level, "module", module, "msg", msg} {
		b = append(b, text(s)...)
	}
	return append(b, 0xff)
}

func TestLogsFromSDK(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "logs-secret-1")
	ctx := ctxT(t)
	a := c.Admin()
	dev := dialSDK(t, c, cred)

	follow, stop := context.WithCancel(ctx)
	defer stop()
	followed := make(chan registry.LogEntry, 16)
	done := make(chan error, 1)
	go func() {
		done <- a.FollowLogs(follow, "acme", "dev1", time.Time{}, 0, func(e registry.LogEntry) error {
			followed <- e
			return nil
		})
	}()

	if code, diag := dev.post(".s/logs", message.AppCBOR, sdkLog("info", "golioth_basics", "Hello, Golioth!")); code != codes.Changed {
		t.Fatalf("POST .s/logs = %v %q", code, diag)
	}
	// CONFIG_GOLIOTH_LOG_LEGACY posts to "logs".
	if code, diag := dev.post("logs", message.AppCBOR, sdkLog("warn", "golioth_coap_client_libcoap", "4.04 (req type: 3, path: .d/counter), len 0")); code != codes.Changed {
		t.Fatalf("POST logs = %v %q", code, diag)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: registry.EventDeviceLog, Device: "dev1"})
	if ev.Reason != "info golioth_basics: Hello, Golioth!" {
		t.Fatalf("event reason %q", ev.Reason)
	}
	logs, err := a.Logs(ctx, "acme", "dev1", time.Time{}, 0)
	if err != nil || len(logs) != 2 || logs[0].Level != "info" || logs[1].Level != "warn" || logs[1].Module != "golioth_coap_client_libcoap" {
		t.Fatalf("logs = %+v, %v", logs, err)
	}
	for i := range 2 {
		select {
		case e := <-followed:
			if e.ID != logs[i].ID {
				t.Fatalf("followed %d: %+v, want %+v", i, e, logs[i])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("FollowLogs did not deliver message %d", i)
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("FollowLogs ended with %v", err)
	}

	for name, body := range map[string][]byte{
		"malformed": {0xbf, 0x65, 'l', 'e'},
		"no msg":    {0xa0},
		"bad level": sdkLog("fatal", "m", "x"),
	} {
		if code, diag := dev.post(".s/logs", message.AppCBOR, body); code != codes.BadRequest || diag == "" {
			t.Errorf("%s: %v %q", name, code, diag)
		}
	}
	// Larger than any log the SDK can send (its buffer is 1,024 bytes),
	// so it comes in blocks.
	got := dev.postBlocks(".s/logs", message.AppCBOR, sdkLog("info", "m", strings.Repeat("x", 9000)), 1024)
	if got[len(got)-1] != codes.RequestEntityTooLarge {
		t.Errorf("oversize log: %v", got)
	}
	if logs, _ := a.Logs(ctx, "acme", "dev1", time.Time{}, 0); len(logs) != 2 {
		t.Errorf("%d logs after bad input", len(logs))
	}
}

// Many log messages, as golioth_basics sends them, each answered 2.04.
func TestLogsBurst(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "logs-secret-2")
	dev := dialSDK(t, c, cred)
	for i := range 200 {
		if code, diag := dev.post(".s/logs", message.AppCBOR, sdkLog("debug", "app", fmt.Sprintf("tick %d", i))); code != codes.Changed {
			t.Fatalf("log %d: %v %q", i, code, diag)
		}
	}
	logs, err := c.Admin().Logs(ctxT(t), "acme", "dev1", time.Time{}, 10)
	if err != nil || len(logs) != 10 || logs[9].Msg != "tick 199" {
		t.Fatalf("newest 10 = %+v, %v", logs, err)
	}
}
