package cloud_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

// These tests play the device the way Golioth's firmware SDK 0.22.0 does
// (src/rpc.c, src/ota.c, src/coap_blockwise.c): Observe with Accept 60,
// CBOR bodies encoded as zcbor does (indefinite-length maps), block-wise
// downloads asked for block by block with the same token.

// sdkClient is a go-coap client without go-coap's block-wise layer, so
// the test asks for every block itself, as the SDK does.
func sdkClient(t *testing.T, c *cloud.Cloud, cred sim.Credential) *udpClient.Conn {
	t.Helper()
	conn, err := sim.DialDTLS(ctxT(t), sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	cc := coapdtls.Client(conn, options.WithBlockwise(false, blockwise.SZX1024, time.Minute))
	t.Cleanup(func() { cc.Close() })
	return cc
}

var acceptCBOR = message.Option{ID: message.Accept, Value: []byte{byte(message.AppCBOR)}}

// indefMap encodes a map as zcbor does in non-canonical mode: 0xbf, the
// entries in order, 0xff.
func indefMap(t *testing.T, kv ...any) []byte {
	t.Helper()
	b := []byte{0xbf}
	for _, v := range kv {
		if raw, ok := v.([]byte); ok {
			b = append(b, raw...)
			continue
		}
		e, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, e...)
	}
	return append(b, 0xff)
}

// rpcCall is a call notification as on_rpc decodes it.
type rpcCall struct {
	ID     string `cbor:"id"`
	Method string `cbor:"method"`
	Params []any  `cbor:"params"`
}

// nextCall returns the next call notified, skipping the "OK" that on_rpc
// ignores too.
func nextCall(t *testing.T, ch <-chan notification) rpcCall {
	t.Helper()
	n := next(t, ch)
	for n.body == "\x62OK" {
		n = next(t, ch)
	}
	if n.code != codes.Content || n.cf != message.AppCBOR {
		t.Fatalf("notification %v cf %v", n.code, n.cf)
	}
	var c rpcCall
	if err := cbor.Unmarshal([]byte(n.body), &c); err != nil {
		t.Fatalf("notification %x is not a call: %v", n.body, err)
	}
	return c
}

func postCBOR(t *testing.T, cc *udpClient.Conn, path string, body []byte) codes.Code {
	t.Helper()
	resp, err := cc.Post(ctxT(t), path, message.AppCBOR, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Code()
}

type callResult struct {
	res cloud.RPCResult
	err error
}

func callAsync(a *cloud.Admin, method string, params any, timeout time.Duration) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		res, err := a.CallRPC(context.Background(), "acme", "dev1", method, params, timeout)
		ch <- callResult{res, err}
	}()
	return ch
}

func result(t *testing.T, ch <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("CallRPC did not return")
		return callResult{}
	}
}

func TestGoliothRPC(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "rpc-secret-0001")
	cc := sdkClient(t, c, cred)
	ch, _ := observe(t, cc, "/.rpc", acceptCBOR)
	first := next(t, ch)
	// on_rpc ignores exactly this first answer: "RPC observation established".
	if first.code != codes.Content || first.body != "\x62OK" || first.cf != message.AppCBOR {
		t.Fatalf("first answer %v %q cf %v", first.code, first.body, first.cf)
	}
	waitObservers(t, c, 1)
	a := c.Admin()

	t.Run("answered", func(t *testing.T) {
		done := callAsync(a, "basic_return_type", []any{"int"}, 10*time.Second)
		call := nextCall(t, ch)
		if call.Method != "basic_return_type" || len(call.Params) != 1 || call.Params[0] != "int" || call.ID == "" {
			t.Fatalf("call %+v", call)
		}
		st := indefMap(t, "id", call.ID, "detail", indefMap(t, "value", 42), "statusCode", 0)
		if code := postCBOR(t, cc, "/.rpc/status", st); code != codes.Changed {
			t.Fatalf("status answered %v", code)
		}
		r := result(t, done)
		if r.err != nil || r.res.Status != registry.RPCOK || string(r.res.Detail) != `{"value":42}` || r.res.CallID != call.ID {
			t.Fatalf("result %+v, %v", r.res, r.err)
		}
		// The same answer again: the call is complete.
		if code := postCBOR(t, cc, "/.rpc/status", st); code != codes.BadRequest {
			t.Fatalf("second answer: %v", code)
		}
	})

	t.Run("not registered", func(t *testing.T) {
		done := callAsync(a, "not_registered", nil, 10*time.Second)
		call := nextCall(t, ch)
		if len(call.Params) != 0 {
			t.Fatalf("params %v", call.Params)
		}
		if code := postCBOR(t, cc, "/.rpc/status", indefMap(t, "id", call.ID, "statusCode", 5)); code != codes.Changed {
			t.Fatalf("status answered %v", code)
		}
		r := result(t, done)
		if r.err != nil || r.res.Status != registry.RPCNotFound || r.res.Detail != nil {
			t.Fatalf("result %+v, %v", r.res, r.err)
		}
	})

	t.Run("two calls at once", func(t *testing.T) {
		d1 := callAsync(a, "no_response", json.RawMessage(`[1,2,3]`), 10*time.Second)
		d2 := callAsync(a, "no_response", []any{"foo"}, 10*time.Second)
		seen := map[string]bool{}
		for range 2 {
			call := nextCall(t, ch)
			if seen[call.ID] {
				t.Fatalf("call %s delivered twice", call.ID)
			}
			seen[call.ID] = true
			if code := postCBOR(t, cc, "/.rpc/status", indefMap(t, "id", call.ID, "detail", []byte{0xbf, 0xff}, "statusCode", 0)); code != codes.Changed {
				t.Fatalf("status answered %v", code)
			}
		}
		for _, d := range []<-chan callResult{d1, d2} {
			if r := result(t, d); r.err != nil || r.res.Status != registry.RPCOK || string(r.res.Detail) != `{}` {
				t.Fatalf("result %+v, %v", r.res, r.err)
			}
		}
	})

	t.Run("malformed answer times out", func(t *testing.T) {
		done := callAsync(a, "malformed_response", nil, 500*time.Millisecond)
		call := nextCall(t, ch)
		// on_malformed_response leaves the detail map open.
		bad := append(indefMap(t, "id", call.ID)[:len(indefMap(t, "id", call.ID))-1], []byte("\x66detail\xbf\x63foo\xbf\x63bar\x6astatusCode\x00\xff")...)
		if code := postCBOR(t, cc, "/.rpc/status", bad); code != codes.BadRequest {
			t.Fatalf("malformed status answered %v", code)
		}
		r := result(t, done)
		if !errors.Is(r.err, cloud.ErrRPCTimeout) || !r.res.TimedOut || r.res.Status != registry.RPCDeadlineExceeded {
			t.Fatalf("result %+v, %v", r.res, r.err)
		}
		evs, err := c.Registry.Events(ctxT(t), registry.Filter{Kind: registry.EventRPCStatus, Outcome: registry.OutcomeFail})
		if err != nil || len(evs) != 1 {
			t.Fatalf("timeout events %+v, %v", evs, err)
		}
		// A late answer is refused.
		if code := postCBOR(t, cc, "/.rpc/status", indefMap(t, "id", call.ID, "statusCode", 0)); code != codes.BadRequest {
			t.Fatalf("late answer: %v", code)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			path string
			body []byte
			want codes.Code
		}{
			{"unknown call", "/.rpc/status", indefMap(t, "id", "nope", "statusCode", 0), codes.NotFound},
			{"not CBOR", "/.rpc/status", []byte("{}"), codes.BadRequest},
			{"status out of range", "/.rpc/status", indefMap(t, "id", "x", "statusCode", 99), codes.BadRequest},
			{"oversize", "/.rpc/status", bytes.Repeat([]byte{0}, 20<<10), codes.RequestEntityTooLarge},
			{"unknown path", "/.rpc/other", indefMap(t, "id", "x"), codes.NotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code := postCBOR(t, sdkClientBlock(t, c, cred), tc.path, tc.body); code != tc.want {
					t.Fatalf("answered %v, want %v", code, tc.want)
				}
			})
		}
		if code := postCBOR(t, cc, "/.rpc", nil); code != codes.MethodNotAllowed {
			t.Fatalf("POST .rpc: %v", code)
		}
		resp, err := cc.Get(ctxT(t), "/.rpc", message.Option{ID: message.Accept, Value: []byte{byte(message.AppJSON)}})
		if err != nil || resp.Code() != codes.NotAcceptable {
			t.Fatalf("GET .rpc accepting JSON: %v, %v", resp, err)
		}
	})
}

// sdkClientBlock is a client with go-coap's block-wise uploads, for
// bodies larger than a block.
func sdkClientBlock(t *testing.T, c *cloud.Cloud, cred sim.Credential) *udpClient.Conn {
	t.Helper()
	conn, err := sim.DialDTLS(ctxT(t), sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	cc := coapdtls.Client(conn, options.WithBlockwise(true, blockwise.SZX1024, time.Minute))
	t.Cleanup(func() { cc.Close() })
	return cc
}

// A call made through an Admin of the data directory, as the CLI does in
// its own process, reaches the device through the running cloud's watch
// of the event log, and the answer reaches the caller the same way.
func TestGoliothRPCFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	c, cred := pskCloud(t, cloud.Options{Dir: dir}, "rpc-secret-0002")
	cc := sdkClient(t, c, cred)
	ch, _ := observe(t, cc, "/.rpc", acceptCBOR)
	next(t, ch)
	waitObservers(t, c, 1)

	other, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: "by test"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	done := callAsync(other, "object_return_type", nil, 10*time.Second)
	call := nextCall(t, ch)
	detail := indefMap(t, "foo", indefMap(t, "bar", indefMap(t, "baz", 357)))
	if code := postCBOR(t, cc, "/.rpc/status", indefMap(t, "id", call.ID, "detail", detail, "statusCode", 0)); code != codes.Changed {
		t.Fatalf("status answered %v", code)
	}
	r := result(t, done)
	if r.err != nil || string(r.res.Detail) != `{"foo":{"bar":{"baz":357}}}` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
	evs, err := c.Registry.Events(ctxT(t), registry.Filter{Kind: registry.EventRPCCall})
	if err != nil || len(evs) != 1 || !bytes.Contains([]byte(evs[0].Reason), []byte("by test")) {
		t.Fatalf("rpc.call events %+v, %v", evs, err)
	}
}

// manifest is the desired manifest as ota.c decodes it.
type manifest struct {
	Sequence   int64  `cbor:"1,keyasint"`
	Hash       string `cbor:"2,keyasint"`
	Components []struct {
		Package string `cbor:"1,keyasint"`
		Version string `cbor:"2,keyasint"`
		Hash    string `cbor:"3,keyasint"`
		Size    int64  `cbor:"4,keyasint"`
		URI     string `cbor:"5,keyasint"`
	} `cbor:"3,keyasint"`
}

func decodeManifest(t *testing.T, b []byte) manifest {
	t.Helper()
	var m manifest
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest %x: %v", b, err)
	}
	return m
}

// download fetches uri block by block from block first on, as
// golioth_blockwise_get does: the same token, Block2 with the block size
// it wants, Accept 42, until a block without the more flag.
func download(t *testing.T, cc *udpClient.Conn, uri string, szx blockwise.SZX, first int64) ([]byte, int) {
	t.Helper()
	token, err := message.GetToken()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	blocks := 0
	for num := first; ; num++ {
		req, err := cc.NewGetRequest(ctxT(t), uri)
		if err != nil {
			t.Fatal(err)
		}
		req.SetToken(token)
		req.SetAccept(message.AppOctets)
		v, _ := blockwise.EncodeBlockOption(szx, num, false)
		req.SetOptionUint32(message.Block2, v)
		resp, err := cc.Do(req)
		cc.ReleaseMessage(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.Content {
			t.Fatalf("block %d: %v", num, resp.Code())
		}
		got, err := resp.GetOptionUint32(message.Block2)
		if err != nil {
			t.Fatalf("block %d has no Block2", num)
		}
		gszx, gnum, more, _ := blockwise.DecodeBlockOption(got)
		if gszx != szx || gnum != num {
			t.Fatalf("asked for block %d of %d bytes, got block %d of %d", num, szx.Size(), gnum, gszx.Size())
		}
		body, _ := resp.ReadBody()
		out = append(out, body...)
		blocks++
		if !more {
			return out, blocks
		}
		if int64(len(body)) != szx.Size() {
			t.Fatalf("block %d is %d bytes", num, len(body))
		}
	}
}

func TestGoliothOTA(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "ota-secret-00001")
	ctx := ctxT(t)
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev2"); err != nil {
		t.Fatal(err)
	}
	cc := sdkClient(t, c, cred)
	ch, _ := observe(t, cc, "/.u/desired", acceptCBOR)
	first := next(t, ch)
	// No release: the empty map, a manifest without components.
	if first.code != codes.Content || first.body != "\xa0" || first.cf != message.AppCBOR {
		t.Fatalf("first manifest %v %x cf %v", first.code, first.body, first.cf)
	}
	waitObservers(t, c, 1)

	fw := make([]byte, 3000)
	rand.Read(fw)
	a := c.Admin()
	rel, err := a.ReleaseOTA(ctx, "acme", "", "main", "1.2.3", fw)
	if err != nil {
		t.Fatal(err)
	}
	n := next(t, ch)
	m := decodeManifest(t, []byte(n.body))
	if m.Sequence != rel.Sequence || len(m.Components) != 1 {
		t.Fatalf("manifest %+v", m)
	}
	comp := m.Components[0]
	sum := sha256.Sum256(fw)
	if comp.Package != "main" || comp.Version != "1.2.3" || comp.Size != 3000 || comp.Hash != hex.EncodeToString(sum[:]) || comp.URI != "/.u/c/main@1.2.3" {
		t.Fatalf("component %+v", comp)
	}
	// A plain GET gives the same manifest.
	resp, err := cc.Get(ctx, "/.u/desired", acceptCBOR)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := resp.ReadBody(); !bytes.Equal(body, []byte(n.body)) {
		t.Fatalf("GET manifest %x, notification %x", body, n.body)
	}

	for _, tc := range []struct {
		szx    blockwise.SZX
		first  int64
		blocks int
	}{
		{blockwise.SZX1024, 0, 3},
		{blockwise.SZX256, 0, 12},
		{blockwise.SZX1024, 2, 1}, // a resumed download, as test_resume in Golioth's OTA HIL test
	} {
		got, blocks := download(t, cc, comp.URI, tc.szx, tc.first)
		want := fw[tc.first*tc.szx.Size():]
		if !bytes.Equal(got, want) || blocks != tc.blocks {
			t.Fatalf("%d-byte blocks from %d: %d bytes in %d blocks, want %d in %d", tc.szx.Size(), tc.first, len(got), blocks, len(want), tc.blocks)
		}
		if tc.first == 0 {
			if s := sha256.Sum256(got); hex.EncodeToString(s[:]) != comp.Hash {
				t.Fatal("downloaded component does not match the manifest's hash")
			}
		}
	}
	// A resumed download in a new session.
	if got, _ := download(t, sdkClient(t, c, cred), comp.URI, blockwise.SZX1024, 1); !bytes.Equal(got, fw[1024:]) {
		t.Fatal("resumed download in a new session differs")
	}

	// Reports as golioth_ota_report_state sends them.
	for i := range 4 {
		body := indefMap(t, "s", i%4, "r", i, "pkg", "main", "v", "2.3.4", "t", "5.6.7")
		if code := postCBOR(t, cc, "/.u/c/main", body); code != codes.Changed {
			t.Fatalf("report %d: %v", i, code)
		}
	}
	st, err := a.OTAStatus(ctx, "acme", "dev1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Reports) != 4 || st.Reports[0].State != 3 || st.Reports[0].Target != "5.6.7" || st.Sequence != rel.Sequence || len(st.Desired) != 1 {
		t.Fatalf("status %+v", st)
	}
	if evs, _ := c.Registry.Events(ctx, registry.Filter{Kind: registry.EventOTAReport, Device: "dev1"}); len(evs) != 4 {
		t.Fatalf("%d ota.report events, want 4", len(evs))
	}

	// A release for another device does not reach this one's manifest; a
	// release for this one does, with a second component.
	if _, err := a.ReleaseOTA(ctx, "acme", "dev2", "main", "9.0.0", []byte("other")); err != nil {
		t.Fatal(err)
	}
	own, err := a.ReleaseOTA(ctx, "acme", "dev1", "walrus", "0.4.2", []byte("walrus"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		m = decodeManifest(t, []byte(next(t, ch).body))
		if m.Sequence == own.Sequence {
			break
		}
		if m.Sequence > own.Sequence {
			t.Fatalf("manifest %+v", m)
		}
	}
	if len(m.Components) != 2 || m.Components[0].Version != "1.2.3" || m.Components[1].URI != "/.u/c/walrus@0.4.2" {
		t.Fatalf("manifest %+v", m)
	}

	for _, tc := range []struct {
		name   string
		method codes.Code
		path   string
		body   []byte
		want   codes.Code
	}{
		{"another device's component", codes.GET, "/.u/c/main@9.0.0", nil, codes.NotFound},
		{"no version", codes.GET, "/.u/c/main", nil, codes.NotFound},
		{"unknown resource", codes.GET, "/.u/other", nil, codes.NotFound},
		{"report: pkg not the path's", codes.POST, "/.u/c/main", indefMap(t, "s", 0, "r", 0, "pkg", "walrus"), codes.BadRequest},
		{"report: malformed", codes.POST, "/.u/c/main", []byte{0xbf, 0x61, 's'}, codes.BadRequest},
		{"report: oversize", codes.POST, "/.u/c/main", bytes.Repeat([]byte{0}, 2<<10), codes.RequestEntityTooLarge},
		{"report to a version", codes.POST, "/.u/c/main@1.2.3", indefMap(t, "s", 0, "r", 0, "pkg", "main"), codes.MethodNotAllowed},
		{"POST desired", codes.POST, "/.u/desired", nil, codes.MethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := sdkClientBlock(t, c, cred)
			var code codes.Code
			if tc.method == codes.GET {
				resp, err := bc.Get(ctx, tc.path)
				if err != nil {
					t.Fatal(err)
				}
				code = resp.Code()
			} else {
				code = postCBOR(t, bc, tc.path, tc.body)
			}
			if code != tc.want {
				t.Fatalf("answered %v, want %v", code, tc.want)
			}
		})
	}
	if reps, _ := c.Registry.OTAReports(ctx, "acme", "dev1", 0); len(reps) != 4 {
		t.Fatalf("a refused report was stored: %d reports", len(reps))
	}
}

// A call made before the device observes .rpc (it is reconnecting, or
// the operator was quicker than its first GET) and still pending is
// delivered right after the observation's "OK".
func TestGoliothRPCPendingBeforeObserve(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "rpc-secret-0003")
	a := c.Admin()
	done := callAsync(a, "no_response", nil, 10*time.Second)
	if _, err := c.Registry.WaitEvent(ctxT(t), registry.Filter{Kind: registry.EventRPCCall}); err != nil {
		t.Fatal(err)
	}
	cc := sdkClient(t, c, cred)
	ch, _ := observe(t, cc, "/.rpc", acceptCBOR)
	// The call is sent as the observation is registered: it may overtake
	// the "OK" (UDP keeps no order); on_rpc takes both in either order.
	call := nextCall(t, ch)
	if code := postCBOR(t, cc, "/.rpc/status", indefMap(t, "id", call.ID, "detail", []byte{0xbf, 0xff}, "statusCode", 0)); code != codes.Changed {
		t.Fatalf("status answered %v", code)
	}
	if r := result(t, done); r.err != nil || r.res.Status != registry.RPCOK {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
}

// A device that reconnected while its old session lingers gets the call
// on its new session too: each session observing .rpc gets each call
// once; the first answer completes it.
func TestGoliothRPCTwoSessions(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "rpc-secret-0004")
	stale, fresh := sdkClient(t, c, cred), sdkClient(t, c, cred)
	chStale, _ := observe(t, stale, "/.rpc", acceptCBOR)
	chFresh, _ := observe(t, fresh, "/.rpc", acceptCBOR)
	waitObservers(t, c, 2)
	done := callAsync(c.Admin(), "basic_return_type", []any{"string"}, 10*time.Second)
	a, b := nextCall(t, chStale), nextCall(t, chFresh)
	if a.ID != b.ID {
		t.Fatalf("sessions got calls %s and %s", a.ID, b.ID)
	}
	if code := postCBOR(t, fresh, "/.rpc/status", indefMap(t, "id", b.ID, "detail", indefMap(t, "value", "foo"), "statusCode", 0)); code != codes.Changed {
		t.Fatalf("status answered %v", code)
	}
	if r := result(t, done); r.err != nil || string(r.res.Detail) != `{"value":"foo"}` {
		t.Fatalf("result %+v, %v", r.res, r.err)
	}
	if code := postCBOR(t, stale, "/.rpc/status", indefMap(t, "id", a.ID, "statusCode", 0)); code != codes.BadRequest {
		t.Fatalf("second answer: %v", code)
	}
}
