package cloud_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/sim"
)

func accept(cf message.MediaType) message.Option {
	return message.Option{ID: message.Accept, Value: []byte{byte(cf)}}
}

func get(t *testing.T, cc *udpClient.Conn, path string, opts ...message.Option) *pool.Message {
	t.Helper()
	resp, err := cc.Get(ctxT(t), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func bodyOf(t *testing.T, m *pool.Message) string {
	t.Helper()
	b, err := m.ReadBody()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func send(t *testing.T, cc *udpClient.Conn, method codes.Code, path string, cf message.MediaType, body []byte) *pool.Message {
	t.Helper()
	var resp *pool.Message
	var err error
	switch method {
	case codes.POST:
		resp, err = cc.Post(ctxT(t), path, cf, bytes.NewReader(body))
	case codes.PUT:
		resp, err = cc.Put(ctxT(t), path, cf, bytes.NewReader(body))
	case codes.DELETE:
		resp, err = cc.Delete(ctxT(t), path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// LightDB State as Golioth's firmware SDK uses it: JSON and CBOR both
// ways, subtrees of one document, null for nothing, DELETE of a subtree.
func TestLightDBState(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "lightdb-secret")
	cc := observeClient(t, c, cred)

	if r := get(t, cc, "/.d"); r.Code() != codes.Content || bodyOf(t, r) != "null" {
		t.Fatalf("GET .d of a fresh device = %v %q", r.Code(), bodyOf(t, r))
	}
	if r := send(t, cc, codes.POST, "/.d/counter", message.AppJSON, []byte("27")); r.Code() != codes.Changed {
		t.Fatalf("POST JSON = %v", r.Code())
	}
	doc := map[string]any{"b": true, "f": -234.25, "i": int64(-12), "n": nil, "s": "15", "a": []any{int64(1), "x"}, "o": map[string]any{"c": "26"}}
	cb, err := cbor.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if r := send(t, cc, codes.POST, "/.d/desired", message.AppCBOR, cb); r.Code() != codes.Changed {
		t.Fatalf("POST CBOR = %v %q", r.Code(), bodyOf(t, r))
	}
	if r := send(t, cc, codes.PUT, "/.d/put", message.AppJSON, []byte(`"p"`)); r.Code() != codes.Changed {
		t.Fatalf("PUT = %v", r.Code())
	}
	want := `{"a":[1,"x"],"b":true,"f":-234.25,"i":-12,"n":null,"o":{"c":"26"},"s":"15"}`
	if r := get(t, cc, "/.d/desired", accept(message.AppJSON)); bodyOf(t, r) != want {
		t.Fatalf("GET desired as JSON = %q, want %q", bodyOf(t, r), want)
	}
	r := get(t, cc, "/.d/desired", accept(message.AppCBOR))
	if cf, _ := r.ContentFormat(); cf != message.AppCBOR {
		t.Fatalf("GET with Accept CBOR answered content-format %v", cf)
	}
	var back map[string]any
	if err := cbor.Unmarshal([]byte(bodyOf(t, r)), &back); err != nil {
		t.Fatal(err)
	}
	if back["f"] != -234.25 || back["s"] != "15" || back["b"] != true {
		t.Fatalf("GET desired as CBOR = %v", back)
	}
	if r := get(t, cc, "/.d/counter", accept(message.AppCBOR)); !bytes.Equal([]byte(bodyOf(t, r)), []byte{0x18, 27}) {
		t.Fatalf("counter as CBOR = % x", bodyOf(t, r))
	}
	if r := get(t, cc, "/.d"); !strings.Contains(bodyOf(t, r), `"counter":27`) || !strings.Contains(bodyOf(t, r), `"put":"p"`) {
		t.Fatalf("GET .d = %q", bodyOf(t, r))
	}
	if r := send(t, cc, codes.DELETE, "/.d/desired/o", 0, nil); r.Code() != codes.Deleted {
		t.Fatalf("DELETE = %v", r.Code())
	}
	if r := get(t, cc, "/.d/desired/o/c"); r.Code() != codes.Content || bodyOf(t, r) != "null" {
		t.Fatalf("GET of a deleted path = %v %q", r.Code(), bodyOf(t, r))
	}
	// The operator sees what the device wrote.
	v, err := c.Admin().LightDBGet(ctxT(t), "acme", "dev1", "counter")
	if err != nil || string(v) != "27" {
		t.Fatalf("LightDBGet = %s, %v", v, err)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: registry.EventLightDBDelete, Device: "dev1"})
	if ev.Reason != `delete "desired/o" by device` {
		t.Fatalf("lightdb.delete reason = %q", ev.Reason)
	}
}

// Bad input is refused with a reason and stores nothing.
func TestLightDBBadInput(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "lightdb-secret")
	cc := observeClient(t, c, cred)
	send(t, cc, codes.POST, "/.d/x", message.AppJSON, []byte(`1`))
	for _, tc := range []struct {
		name   string
		method codes.Code
		path   string
		cf     message.MediaType
		body   []byte
		code   codes.Code
		reason string
	}{
		{"malformed JSON", codes.POST, "/.d/x", message.AppJSON, []byte(`{"a":`), codes.BadRequest, "malformed JSON"},
		{"malformed CBOR", codes.POST, "/.d/x", message.AppCBOR, []byte{0xa1, 0x61}, codes.BadRequest, "malformed CBOR"},
		{"CBOR int key", codes.POST, "/.d/x", message.AppCBOR, []byte{0xa1, 0x01, 0x02}, codes.BadRequest, "CBOR"},
		{"CBOR bytes", codes.POST, "/.d/x", message.AppCBOR, []byte{0x42, 1, 2}, codes.BadRequest, "byte string"},
		{"CBOR trailing", codes.POST, "/.d/x", message.AppCBOR, []byte{0x01, 0x02}, codes.BadRequest, "malformed CBOR"},
		{"root not object", codes.POST, "/.d", message.AppJSON, []byte(`3`), codes.BadRequest, "object"},
		{"text", codes.POST, "/.d/x", message.TextPlain, []byte(`3`), codes.UnsupportedMediaType, "JSON (50) or CBOR (60)"},
		{"oversize", codes.POST, "/.d/x", message.AppJSON, []byte(`"` + strings.Repeat("a", registry.MaxStateValue) + `"`), codes.RequestEntityTooLarge, "larger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, cc, tc.method, tc.path, tc.cf, tc.body)
			if r.Code() != tc.code || !strings.Contains(bodyOf(t, r), tc.reason) {
				t.Fatalf("answer = %v %q, want %v with %q", r.Code(), bodyOf(t, r), tc.code, tc.reason)
			}
			if r := get(t, cc, "/.d"); bodyOf(t, r) != `{"x":1}` {
				t.Fatalf("state after a refused write = %q", bodyOf(t, r))
			}
		})
	}
	if r := get(t, cc, "/.d/x", accept(message.TextPlain)); r.Code() != codes.NotAcceptable {
		t.Fatalf("GET with Accept text/plain = %v", r.Code())
	}
}

// An observer of .d/desired/x, registered before the path exists (null),
// is notified of operator changes, in JSON or CBOR as it asked.
func TestLightDBObserveOperator(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "lightdb-secret")
	a := observeClient(t, c, cred)
	jsonCh, _ := observe(t, a, "/.d/desired/x")
	cborCh, _ := observe(t, a, "/.d/desired/x", accept(message.AppCBOR))
	if n := next(t, jsonCh); n.code != codes.Content || n.body != "null" {
		t.Fatalf("registration answer = %+v", n)
	}
	if n := next(t, cborCh); n.body != "\xf6" || n.cf != message.AppCBOR {
		t.Fatalf("CBOR registration answer = %+v", n)
	}
	admin := c.Admin()
	start := time.Now()
	if err := admin.LightDBSet(ctxT(t), "acme", "dev1", "desired/x", json.RawMessage(`42`)); err != nil {
		t.Fatal(err)
	}
	if n := next(t, jsonCh); n.body != "42" || n.cf != message.AppJSON {
		t.Fatalf("notification = %+v", n)
	}
	t.Logf("notified %s after the operator's change", time.Since(start))
	if n := next(t, cborCh); n.body != "\x18\x2a" || n.cf != message.AppCBOR {
		t.Fatalf("CBOR notification = %+v", n)
	}
	if err := admin.LightDBSet(ctxT(t), "acme", "dev1", "desired", json.RawMessage(`{"x":"y"}`)); err != nil {
		t.Fatal(err)
	}
	if n := next(t, jsonCh); n.body != `"y"` {
		t.Fatalf("notification after setting the parent = %+v", n)
	}
	next(t, cborCh)
	if err := admin.LightDBDelete(ctxT(t), "acme", "dev1", "desired"); err != nil {
		t.Fatal(err)
	}
	if n := next(t, jsonCh); n.body != "null" {
		t.Fatalf("notification after delete = %+v", n)
	}
	select {
	case n := <-jsonCh:
		t.Fatalf("a change notified twice (the watch must skip the cloud's own events): %+v", n)
	case <-time.After(200 * time.Millisecond):
	}
	if err := admin.LightDBSet(ctxT(t), "acme", "dev1", "", json.RawMessage(`3`)); !errors.Is(err, cloud.ErrLightDBValue) {
		t.Fatalf("setting the whole document to a number: %v", err)
	}
	if err := admin.LightDBSet(ctxT(t), "acme", "nodev", "x", json.RawMessage(`3`)); !errors.Is(err, cloud.ErrNoDevice) {
		t.Fatalf("unknown device: %v", err)
	}
}

// A change made by the CLI's admin in another process reaches the
// observers of a running cloud through its watch of the event log.
func TestLightDBObserveFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	c := newCloud(t, cloud.Options{Dir: dir})
	ctx := ctxT(t)
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	key := []byte("watch-secret-001")
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", key); err != nil {
		t.Fatal(err)
	}
	a := observeClient(t, c, simCred("dev1@acme", key))
	ch, _ := observe(t, a, "/.d/desired/x")
	next(t, ch)

	other, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: "by test"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	start := time.Now()
	if err := other.LightDBSet(ctx, "acme", "dev1", "desired/x", json.RawMessage(`"on"`)); err != nil {
		t.Fatal(err)
	}
	if n := next(t, ch); n.body != `"on"` {
		t.Fatalf("notification = %+v", n)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("notified after %s, want within 1 s", took)
	} else {
		t.Logf("notified %s after the other process's change", took)
	}
	ev := waitEvent(t, c, registry.Filter{Kind: registry.EventLightDBSet})
	if ev.Reason != `set "desired/x" by test` {
		t.Fatalf("reason = %q", ev.Reason)
	}
}

func simCred(id string, key []byte) sim.Credential { return sim.Credential{PSKIdentity: id, PSK: key} }

// lockedBuffer is a log sink safe for the cloud's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Every request is recorded: an event and a Debug log line.
func TestCoAPRequestRecorded(t *testing.T) {
	var logs lockedBuffer
	c, cred := pskCloud(t, cloud.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, "lightdb-secret")
	cc := observeClient(t, c, cred)
	get(t, cc, "/hello")
	send(t, cc, codes.POST, "/.d/counter", message.AppJSON, []byte(`"twelve byte"`))
	send(t, cc, codes.POST, "/.d/counter", message.AppJSON, []byte(`{`))
	want := map[string]string{
		`POST .d/counter cf=50 13B -> 2.04`: registry.OutcomeOK,
		`POST .d/counter cf=50 1B -> 4.00`:  registry.OutcomeFail,
	}
	ctx := ctxT(t)
	var after int64
	for len(want) > 0 {
		ev, err := c.Registry.WaitEvent(ctx, registry.Filter{Kind: registry.EventCoAPRequest, Device: "dev1", AfterSeq: after})
		if err != nil {
			t.Fatalf("waiting for %v: %v", want, err)
		}
		after = ev.Seq
		if o, ok := want[ev.Reason]; ok {
			if ev.Outcome != o || ev.Project != "acme" || ev.Credential != "dev1@acme" {
				t.Fatalf("event = %+v", ev)
			}
			delete(want, ev.Reason)
		}
	}
	if l := logs.String(); !strings.Contains(l, `msg="coap request" endpoint=coaps project=acme device=dev1 method=POST path=.d/counter cf=50 size=13 code=2.04 outcome=ok`) ||
		!strings.Contains(l, `method=GET path=hello cf=-1 size=0 code=2.05`) {
		t.Fatalf("no log line for the requests in:\n%s", l)
	}
	// /hello is logged, not recorded, unless Options.RecordHello.
	evs, err := c.Registry.Events(ctx, registry.Filter{Kind: registry.EventCoAPRequest})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if strings.Contains(e.Reason, "hello") {
			t.Fatalf("hello recorded: %+v", e)
		}
	}
	c2, cred2 := pskCloud(t, cloud.Options{RecordHello: true}, "lightdb-secret")
	get(t, observeClient(t, c2, cred2), "/hello")
	if ev := waitEvent(t, c2, registry.Filter{Kind: registry.EventCoAPRequest}); !strings.HasPrefix(ev.Reason, "GET hello 0B -> 2.05") {
		t.Fatalf("with RecordHello: %+v", ev)
	}
}
