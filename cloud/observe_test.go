package cloud_test

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/peer"
	"github.com/credloop/credloop/sim"
)

// observeClient is a go-coap client over a fresh DTLS session of cred.
func observeClient(t *testing.T, c *cloud.Cloud, cred sim.Credential) *udpClient.Conn {
	t.Helper()
	conn, err := sim.DialDTLS(ctxT(t), sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	cc := coapdtls.Client(conn)
	t.Cleanup(func() { cc.Close() })
	return cc
}

type notification struct {
	code codes.Code
	cf   message.MediaType
	seq  uint32
	body string
}

// observe registers an observation of path and returns its notifications
// (the first is the registration's answer).
func observe(t *testing.T, cc *udpClient.Conn, path string, opts ...message.Option) (<-chan notification, func()) {
	t.Helper()
	ch := make(chan notification, 64)
	obs, err := cc.Observe(ctxT(t), path, func(m *pool.Message) {
		n := notification{code: m.Code()}
		n.cf, _ = m.ContentFormat()
		n.seq, _ = m.Observe()
		if b, err := m.ReadBody(); err == nil {
			n.body = string(b)
		}
		select {
		case ch <- n:
		default:
		}
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ch, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := obs.Cancel(ctx); err != nil {
			t.Errorf("cancel observation: %v", err)
		}
	}
}

func next(t *testing.T, ch <-chan notification) notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10 s")
		return notification{}
	}
}

// waitObservers waits until the cloud has n observers.
func waitObservers(t *testing.T, c *cloud.Cloud, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for cloud.CoAPObservers(c) != n {
		if time.Now().After(deadline) {
			t.Fatalf("observers = %d, want %d", cloud.CoAPObservers(c), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func post(t *testing.T, cc *udpClient.Conn, path, body string) {
	t.Helper()
	resp, err := cc.Post(ctxT(t), path, message.AppJSON, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Changed {
		t.Fatalf("POST %s = %v", path, resp.Code())
	}
}

// A GET with Observe: 0 registers an observer; a change made by another
// session of the device, and one announced with Notify, reach it with the
// same token and larger Observe values, while the observing session makes
// other requests; cancelling deregisters it.
func TestObserveNotifies(t *testing.T) {
	for _, non := range []bool{false, true} {
		t.Run("non="+strconv.FormatBool(non), func(t *testing.T) {
			c, cred := pskCloud(t, cloud.Options{NonConfirmableNotify: non}, "observe-secret")
			a := observeClient(t, c, cred)
			b := observeClient(t, c, cred)
			post(t, b, "/.d/x", `1`)

			ch, cancel := observe(t, a, "/.d/x")
			first := next(t, ch)
			if first.code != codes.Content || first.body != "1" || first.cf != message.AppJSON {
				t.Fatalf("registration answer = %+v", first)
			}
			waitObservers(t, c, 1)
			last := first.seq
			for i := 2; i <= 4; i++ {
				post(t, b, "/.d/x", strconv.Itoa(i))
				n := next(t, ch)
				if n.body != strconv.Itoa(i) || n.seq <= last {
					t.Fatalf("notification %d = %+v (previous Observe %d)", i, n, last)
				}
				last = n.seq
				// The observing session keeps making requests.
				resp, err := a.Get(ctxT(t), "/hello")
				if err != nil || resp.Code() != codes.Content {
					t.Fatalf("hello while observing: %v %v", resp, err)
				}
			}
			// A change above the observed path notifies it too.
			post(t, b, "/.d", `{"x":7,"y":1}`)
			if n := next(t, ch); n.body != "7" {
				t.Fatalf("after a change of .d: %+v", n)
			}
			if got := cloud.CoAPNotify(c, "acme", "dev1", ".d/x/deeper"); got != 1 {
				t.Fatalf("Notify below the observed path reached %d observers", got)
			}
			if n := next(t, ch); n.body != "7" {
				t.Fatalf("after Notify: %+v", n)
			}
			if got := cloud.CoAPNotify(c, "acme", "dev1", ".d/y"); got != 0 {
				t.Fatalf("Notify of a sibling path reached %d observers", got)
			}
			cancel()
			waitObservers(t, c, 0)
		})
	}
}

// The observer follows the content format it asked for with Accept.
func TestObserveKeepsAccept(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "observe-secret")
	a := observeClient(t, c, cred)
	post(t, a, "/.d/x", `"hi"`)
	ch, _ := observe(t, a, "/.d/x", message.Option{ID: message.Accept, Value: []byte{byte(message.AppJSON)}})
	if n := next(t, ch); n.cf != message.AppJSON {
		t.Fatalf("registration answer = %+v", n)
	}
}

// The end of the session deregisters its observers.
func TestObserveEndsWithSession(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "observe-secret")
	a := observeClient(t, c, cred)
	post(t, a, "/.d/x", `1`)
	observe(t, a, "/.d/x")
	waitObservers(t, c, 1)
	if err := c.DisableDevice(ctxT(t), "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	waitObservers(t, c, 0)
}

// A GET with Observe of a resource that cannot be observed is answered
// plainly, without an Observe option.
func TestObserveUnobservable(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "observe-secret")
	a := observeClient(t, c, cred)
	ch, _ := observe(t, a, "/hello")
	if n := next(t, ch); n.code != codes.Content || n.seq != 0 {
		t.Fatalf("observe /hello = %+v", n)
	}
	if got := cloud.CoAPObservers(c); got != 0 {
		t.Fatalf("observers = %d", got)
	}
}

// A large notification carries its first block; the client fetches the
// rest (RFC 7959 section 2.6).
func TestObserveBlockwise(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "observe-secret")
	a := observeClient(t, c, cred)
	post(t, a, "/.d/big", `"small"`)
	ch, _ := observe(t, a, "/.d/big")
	next(t, ch)
	big := `"` + strings.Repeat("z", 3000) + `"`
	b := observeClient(t, c, cred)
	post(t, b, "/.d/big", big)
	if n := next(t, ch); n.body != big {
		t.Fatalf("large notification: %d bytes, want %d", len(n.body), len(big))
	}
}

// libcoap's client observes a path for a few seconds (-s) and sees the
// registration answer and a change made meanwhile.
func TestLibcoapObserve(t *testing.T) {
	client := peer.Require(t, "coap-client-openssl")
	c, cred := pskCloud(t, cloud.Options{}, "libcoap-secret-1")
	b := observeClient(t, c, cred)
	post(t, b, "/.d/x", `"before"`)
	url := "coaps://" + c.Addrs().CoAPS + "/.d/x"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make(chan string, 1)
	go func() {
		b, err := exec.CommandContext(ctx, client, "-m", "get", "-s", "3", "-B", "6", "-u", "dev1@acme", "-k", "libcoap-secret-1", url).CombinedOutput()
		if err != nil {
			b = append(b, "\nexit: "+err.Error()...)
		}
		out <- string(b)
	}()
	for cloud.CoAPObservers(c) != 1 {
		select {
		case <-ctx.Done():
			t.Fatal("libcoap's observation never registered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	post(t, b, "/.d/x", `"after"`)
	var got string
	select {
	case got = <-out:
	case <-ctx.Done():
		t.Fatal("coap-client did not end")
	}
	if !strings.Contains(got, `"before"`) || !strings.Contains(got, `"after"`) {
		t.Fatalf("coap-client output = %q", got)
	}
	// At the end of -s libcoap deregisters and closes its session.
	waitObservers(t, c, 0)
}

// rawMessage encodes a CoAP message.
func rawMessage(t *testing.T, typ message.Type, code codes.Code, mid int32, token []byte, path string, observe int) []byte {
	t.Helper()
	m := pool.NewMessage(context.Background())
	m.SetType(typ)
	m.SetCode(code)
	m.SetMessageID(mid)
	m.SetToken(token)
	if path != "" {
		if err := m.SetPath(path); err != nil {
			t.Fatal(err)
		}
	}
	if observe >= 0 {
		m.SetObserve(uint32(observe))
	}
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawDecode(t *testing.T, b []byte) *pool.Message {
	t.Helper()
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, b); err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	return m
}

// A Reset to a notification deregisters the observer (RFC 7641 section
// 3.6), as libcoap does for a notification it does not know; an ACK
// lets the next notification go.
func TestObserveResetDeregisters(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{}, "observe-secret")
	b := observeClient(t, c, cred)
	post(t, b, "/.d/x", `1`)
	conn := rawDTLS(t, c.Addrs().CoAPS, cred)
	token := []byte{9, 8, 7, 6}
	ans := rawDecode(t, exchange(t, conn, rawMessage(t, message.Confirmable, codes.GET, 0x1000, token, "/.d/x", 0)))
	if ans.Code() != codes.Content || !bytes.Equal(ans.Token(), token) {
		t.Fatalf("registration answer = %v", ans)
	}
	if _, err := ans.Observe(); err != nil {
		t.Fatal("registration answer has no Observe option")
	}
	waitObservers(t, c, 1)
	read := func() *pool.Message {
		t.Helper()
		buf := make([]byte, 2048)
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return rawDecode(t, buf[:n])
	}
	post(t, b, "/.d/x", `2`)
	n := read()
	if n.Type() != message.Confirmable || !bytes.Equal(n.Token(), token) {
		t.Fatalf("notification = %v", n)
	}
	if body, _ := n.ReadBody(); string(body) != "2" {
		t.Fatalf("notification body = %q", body)
	}
	// Unacknowledged, it is retransmitted with the same message ID.
	if again := read(); again.MessageID() != n.MessageID() || again.Type() != message.Confirmable {
		t.Fatalf("retransmission = %v, want message ID %d", again, n.MessageID())
	}
	if _, err := conn.Write(rawMessage(t, message.Acknowledgement, codes.Empty, n.MessageID(), nil, "", -1)); err != nil {
		t.Fatal(err)
	}
	post(t, b, "/.d/x", `3`)
	n = read()
	if body, _ := n.ReadBody(); string(body) != "3" {
		t.Fatalf("notification after the ACK = %q", body)
	}
	if _, err := conn.Write(rawMessage(t, message.Reset, codes.Empty, n.MessageID(), nil, "", -1)); err != nil {
		t.Fatal(err)
	}
	waitObservers(t, c, 0)
}
