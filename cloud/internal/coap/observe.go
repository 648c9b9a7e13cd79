package coap

// Observe (RFC 7641) for every resource of the endpoint.
//
// A resource becomes observable by calling s.observable(prefix, render)
// in Listen. From then on, for every path under prefix (segment-wise:
// ".d" covers ".d" and ".d/a/b", not ".dx"):
//
//   - a GET with Observe: 0 that the resource's handler answers 2.05
//     registers the observer, keyed by (session, token) as RFC 7641
//     section 4.1 says; it remembers the path and the Accept option, and
//     the answer carries an Observe option;
//   - s.Notify(project, device, path), called by whatever changed the
//     device's data (the device itself, another session of it, an
//     operator in this process, or Cloud.watch for a change made by
//     another process), re-renders the representation of every observer
//     of that device whose path is path, lies under it or above it, and
//     sends it on the observer's session with the same token, the content
//     format the observer asked for and a larger Observe value (24-bit,
//     section 4.4);
//   - a GET with Observe: 1, a Reset to a notification, a confirmable
//     notification never acknowledged, a notification that is not 2.xx,
//     or the end of the session deregisters the observer.
//
// render may be nil: the observer's representation is then what the
// resource's handler answers to a plain GET of the path with the
// observer's Accept option, so any resource whose GET answers the current
// state is observable with s.observable(prefix, nil).
//
// Notifications are confirmable by default (Options.NonConfirmableNotify
// makes them non-confirmable); at most one confirmable notification per
// observer is outstanding, and a change made while one is in flight is
// sent, freshly rendered, when it is acknowledged or instead of its
// retransmission (section 4.5.2). A notification larger than one block
// carries its first block with Block2 and Size2; the client fetches the
// others with GETs of the path (RFC 7959 section 2.6), served from the
// session's block-wise cache.

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// observeQuery is what a render function is asked to render: the
// representation of Path (no leading slash, e.g. ".d/desired/x") that
// Peer's observer sees, in the format Accept names when HasAccept.
type observeQuery struct {
	Peer      Peer
	Path      string
	Accept    message.MediaType
	HasAccept bool
}

// renderFunc renders an observer's current representation. A response
// that is not 2.05 ends the observation.
type renderFunc func(ctx context.Context, q observeQuery) response

// Retransmission of confirmable notifications (RFC 7252 section 4.8).
const (
	notifyAckTimeout    = 2 * time.Second
	notifyMaxRetransmit = 4
	// renderTimeout bounds one rendering of a notification.
	renderTimeout = 5 * time.Second
)

type devKey struct{ project, device string }

type observableResource struct {
	prefix string
	render renderFunc
}

// observers is the endpoint's list of observers.
type observers struct {
	s         *Server
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	resources []observableResource // set in Listen, read-only afterwards
	renders   chan struct{}        // bounds the renderings in progress

	mu       sync.Mutex
	byDevice map[devKey]map[*observer]struct{}

	// marked are the seqs of change events whose observers this process
	// notified already (MarkNotified).
	markMu sync.Mutex
	marked map[int64]struct{}
}

// maxMarked bounds the marks kept for a watch that does not read them; a
// mark lost costs one repeated notification.
const maxMarked = 1 << 16

// MarkNotified records that the observers concerned by the change event
// seq, recorded by this process, were notified already: NotifyEvent,
// called for it by the cloud's watch of the event log, does nothing.
func (s *Server) MarkNotified(seq int64) {
	o := s.observe
	o.markMu.Lock()
	defer o.markMu.Unlock()
	if o.marked == nil || len(o.marked) >= maxMarked {
		o.marked = map[int64]struct{}{}
	}
	o.marked[seq] = struct{}{}
}

// NotifyEvent is Notify for a change event read from the event log: the
// change of another process (the CLI on the same directory), or one this
// process already notified (MarkNotified), which it skips. It reports
// whether it notified.
func (s *Server) NotifyEvent(seq int64, project, device, path string) bool {
	o := s.observe
	o.markMu.Lock()
	_, done := o.marked[seq]
	delete(o.marked, seq)
	o.markMu.Unlock()
	if done {
		return false
	}
	s.Notify(project, device, path)
	return true
}

// ForgetNotified drops the marks of events up to seq, which the watch
// has read.
func (s *Server) ForgetNotified(upTo int64) {
	o := s.observe
	o.markMu.Lock()
	defer o.markMu.Unlock()
	for k := range o.marked {
		if k <= upTo {
			delete(o.marked, k)
		}
	}
}

func newObservers(s *Server) *observers {
	ctx, cancel := context.WithCancel(context.Background())
	return &observers{s: s, ctx: ctx, cancel: cancel, byDevice: map[devKey]map[*observer]struct{}{},
		renders: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
}

// observable makes every path under prefix observable; see the comment
// at the top of this file. Call it from Listen only.
func (s *Server) observable(prefix string, render renderFunc) {
	s.observe.resources = append(s.observe.resources, observableResource{prefix: strings.Trim(prefix, "/"), render: render})
}

// Notify sends a fresh notification to every observer of the device
// (every device of the project when device is "") whose path is path,
// lies under path or above it (path has no leading slash, e.g. ".d/x";
// "" matches every path). It returns at once with the number of
// observers notified; rendering and sending happen on their own.
func (s *Server) Notify(project, device, path string) int {
	return s.observe.notify(project, device, strings.Trim(path, "/"))
}

// Observers reports how many observers are registered.
func (s *Server) Observers() int {
	o := s.observe
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.byDevice {
		n += len(m)
	}
	return n
}

// pathUnder reports whether path is prefix or lies under it, segment-wise.
func pathUnder(path, prefix string) bool {
	if prefix == "" || path == prefix {
		return true
	}
	return strings.HasPrefix(path, prefix) && path[len(prefix)] == '/'
}

func (o *observers) resourceFor(path string) (observableResource, bool) {
	for _, r := range o.resources {
		if pathUnder(path, r.prefix) {
			return r, true
		}
	}
	return observableResource{}, false
}

func (o *observers) notify(project, device, path string) int {
	var kick []*observer
	o.mu.Lock()
	add := func(m map[*observer]struct{}) {
		for ob := range m {
			if pathUnder(ob.path, path) || pathUnder(path, ob.path) {
				kick = append(kick, ob)
			}
		}
	}
	if device != "" {
		add(o.byDevice[devKey{project, device}])
	} else {
		for k, m := range o.byDevice {
			if k.project == project {
				add(m)
			}
		}
	}
	o.mu.Unlock()
	for _, ob := range kick {
		ob.kick()
	}
	return len(kick)
}

// request runs after the handler of a GET with an Observe option: it
// registers (Observe: 0, answer 2.05, path observable) or deregisters
// (Observe: 1) the observer, and sets the answer's Observe option.
func (o *observers) request(cc *udpClient.Conn, sess *session, r *pool.Message, resp *response) {
	if r.Code() != codes.GET {
		return
	}
	v, err := r.Observe()
	if err != nil {
		return
	}
	token := string(r.Token())
	switch v {
	case 0:
		raw, _ := r.Path()
		path := strings.Trim(raw, "/")
		res, ok := o.resourceFor(path)
		if !ok || resp.code != codes.Content || token == "" {
			// Not observable: a plain answer (RFC 7641 section 4.1).
			o.remove(sess, token)
			return
		}
		ob := &observer{
			o: o, cc: cc, sess: sess, key: devKey{sess.peer.Project, sess.peer.Device},
			token: token, path: path, blockKey: "GET " + raw + " ", render: res.render, mid: -1,
		}
		if accept, err := r.Accept(); err == nil {
			ob.accept, ob.hasAccept = accept, true
		}
		ob.seq = 1 + rand.Uint32N(1<<16) // any start; only the order matters
		if !o.add(ob) {
			return
		}
		resp.observe, resp.hasObserve = ob.seq, true
	case 1:
		o.remove(sess, token)
	}
}

// add registers ob, replacing an observer of the same session and token
// (RFC 7641 section 4.1). It reports false when the session has ended.
func (o *observers) add(ob *observer) bool {
	sess := ob.sess
	sess.obsMu.Lock()
	if sess.obsClosed {
		sess.obsMu.Unlock()
		return false
	}
	old := sess.observers[ob.token]
	if sess.observers == nil {
		sess.observers = map[string]*observer{}
	}
	sess.observers[ob.token] = ob
	// Listed under sess.obsMu, so that sessionClosed, which sets
	// obsClosed under it, finds and ends it.
	o.mu.Lock()
	m := o.byDevice[ob.key]
	if m == nil {
		m = map[*observer]struct{}{}
		o.byDevice[ob.key] = m
	}
	m[ob] = struct{}{}
	o.mu.Unlock()
	sess.obsMu.Unlock()
	if old != nil {
		old.end()
	}
	return true
}

// remove deregisters the session's observer with this token, if any.
func (o *observers) remove(sess *session, token string) {
	sess.obsMu.Lock()
	ob := sess.observers[token]
	sess.obsMu.Unlock()
	if ob != nil {
		ob.end()
	}
}

// sessionClosed deregisters every observer of the session.
func (o *observers) sessionClosed(sess *session) {
	sess.obsMu.Lock()
	sess.obsClosed = true
	var all []*observer
	for _, ob := range sess.observers {
		all = append(all, ob)
	}
	sess.obsMu.Unlock()
	for _, ob := range all {
		ob.end()
	}
}

// answered handles an empty ACK or Reset from the client; it reports
// whether it answered a notification.
func (o *observers) answered(sess *session, mid int32, reset bool) bool {
	sess.obsMu.Lock()
	ob := sess.byMID[mid]
	sess.obsMu.Unlock()
	if ob == nil {
		return false
	}
	if reset {
		// The client does not know the token (any more): RFC 7641
		// section 3.6.
		ob.end()
		return true
	}
	ob.acked(mid)
	return true
}

// close ends every observer and waits for the notifications in flight.
func (o *observers) close() {
	o.cancel()
	o.mu.Lock()
	var all []*observer
	for _, m := range o.byDevice {
		for ob := range m {
			all = append(all, ob)
		}
	}
	o.mu.Unlock()
	for _, ob := range all {
		ob.end()
	}
	o.wg.Wait()
}

// observer is one registration: a session, a token, a path, an Accept.
type observer struct {
	o         *observers
	cc        *udpClient.Conn
	sess      *session
	key       devKey
	token     string
	path      string // no leading slash
	blockKey  string // transferKey of a GET of the path without Request-Tag
	accept    message.MediaType
	hasAccept bool
	render    renderFunc

	mu       sync.Mutex
	seq      uint32 // Observe value of the last message sent
	dirty    bool   // a change not yet rendered
	running  bool   // a goroutine renders and sends
	awaiting bool   // a confirmable notification is not yet acknowledged
	tries    int    // retransmissions of the outstanding notification
	mid      int32  // message ID of the last notification, -1 before one
	last     response
	timer    *time.Timer
	gone     bool
}

// kick asks for a notification with the current representation.
func (ob *observer) kick() {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.gone {
		return
	}
	ob.dirty = true
	ob.startLocked()
}

// startLocked starts the sender unless one runs or a confirmable
// notification is outstanding (its acknowledgement or retransmission
// sends the change).
func (ob *observer) startLocked() {
	if ob.running || ob.awaiting || !ob.dirty || ob.gone {
		return
	}
	ob.running = true
	ob.o.wg.Add(1)
	go ob.run()
}

func (ob *observer) run() {
	defer ob.o.wg.Done()
	for {
		ob.mu.Lock()
		if ob.gone || !ob.dirty || ob.awaiting {
			ob.running = false
			ob.mu.Unlock()
			return
		}
		ob.dirty = false
		ob.mu.Unlock()
		resp := ob.renderNow()
		ob.mu.Lock()
		if ob.gone {
			ob.running = false
			ob.mu.Unlock()
			return
		}
		ob.tries = 0
		ended := ob.sendLocked(resp)
		ob.mu.Unlock()
		if ended {
			ob.end()
			return
		}
	}
}

func (ob *observer) renderNow() response {
	ctx, cancel := context.WithTimeout(ob.o.ctx, renderTimeout)
	defer cancel()
	// A change that concerns thousands of observers renders them a few at
	// a time: thousands of registry reads at once only queue for its
	// connections.
	select {
	case ob.o.renders <- struct{}{}:
		defer func() { <-ob.o.renders }()
	case <-ctx.Done():
		return response{code: codes.ServiceUnavailable}
	}
	q := observeQuery{Peer: ob.sess.peer, Path: ob.path, Accept: ob.accept, HasAccept: ob.hasAccept}
	var resp response
	if ob.render != nil {
		resp = ob.render(ctx, q)
	} else {
		resp = ob.o.s.renderGET(ctx, ob.cc, q)
	}
	if resp.code == 0 {
		resp = response{code: codes.InternalServerError}
	}
	return resp
}

// sendLocked sends resp as the next notification; it reports whether
// the observation ends with it (a notification that is not 2.05).
func (ob *observer) sendLocked(resp response) (ended bool) {
	ob.last = resp
	ob.seq = (ob.seq + 1) & 0xFFFFFF
	ob.forgetMIDLocked()
	ob.mid = ob.cc.GetMessageID()
	con := !ob.o.s.opts.NonConfirmableNotify
	ended = resp.code != codes.Content
	if con && !ended {
		ob.awaiting = true
		ob.sess.obsMu.Lock()
		if ob.sess.byMID == nil {
			ob.sess.byMID = map[int32]*observer{}
		}
		ob.sess.byMID[ob.mid] = ob
		ob.sess.obsMu.Unlock()
		ob.armLocked()
	} else if !ended {
		// A Reset to a non-confirmable notification ends it too.
		ob.sess.obsMu.Lock()
		if ob.sess.byMID == nil {
			ob.sess.byMID = map[int32]*observer{}
		}
		ob.sess.byMID[ob.mid] = ob
		ob.sess.obsMu.Unlock()
	}
	ob.writeLocked(con)
	return ended
}

func (ob *observer) armLocked() {
	d := notifyAckTimeout << ob.tries
	d += time.Duration(rand.Int64N(int64(d / 2))) // ACK_RANDOM_FACTOR 1.5
	if ob.timer == nil {
		ob.timer = time.AfterFunc(d, ob.timeout)
	} else {
		ob.timer.Reset(d)
	}
}

// timeout retransmits the outstanding confirmable notification, freshly
// rendered if the state changed since, or ends the observation after
// notifyMaxRetransmit retransmissions (RFC 7641 section 4.5).
func (ob *observer) timeout() {
	ob.mu.Lock()
	if ob.gone || !ob.awaiting {
		ob.mu.Unlock()
		return
	}
	if ob.tries >= notifyMaxRetransmit {
		ob.mu.Unlock()
		ob.o.s.log.Debug("observer dropped: notification not acknowledged", "project", ob.key.project, "device", ob.key.device, "path", ob.path)
		ob.end()
		return
	}
	ob.tries++
	if !ob.dirty {
		ob.armLocked()
		ob.writeLocked(true) // same message ID: a retransmission
		ob.mu.Unlock()
		return
	}
	ob.dirty = false
	ob.mu.Unlock()
	resp := ob.renderNow()
	ob.mu.Lock()
	if ob.gone {
		ob.mu.Unlock()
		return
	}
	tries := ob.tries
	ended := ob.sendLocked(resp)
	ob.tries = tries
	if !ended {
		ob.armLocked()
	}
	ob.mu.Unlock()
	if ended {
		ob.end()
	}
}

func (ob *observer) acked(mid int32) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if mid != ob.mid || !ob.awaiting {
		return
	}
	ob.awaiting = false
	if ob.timer != nil {
		ob.timer.Stop()
	}
	ob.startLocked()
}

func (ob *observer) forgetMIDLocked() {
	if ob.mid < 0 {
		return
	}
	ob.sess.obsMu.Lock()
	if ob.sess.byMID[ob.mid] == ob {
		delete(ob.sess.byMID, ob.mid)
	}
	ob.sess.obsMu.Unlock()
}

// writeLocked writes ob.last as message ob.mid.
func (ob *observer) writeLocked(con bool) {
	cc := ob.cc
	msg := cc.AcquireMessage(ob.o.ctx)
	defer cc.ReleaseMessage(msg)
	resp := ob.last
	body := resp.body
	var block2 *uint32
	if int64(len(body)) > maxBlockSZX.Size() {
		t := &ob.sess.blocks
		t.mu.Lock()
		if t.downloads == nil {
			t.downloads = map[string]*download{}
		}
		t.downloads[ob.blockKey] = &download{resp: resp, expires: time.Now().Add(transferTimeout)}
		t.mu.Unlock()
		v, _ := blockwise.EncodeBlockOption(maxBlockSZX, 0, true)
		block2 = &v
		body = body[:maxBlockSZX.Size()]
	}
	msg.SetCode(resp.code)
	msg.SetToken(message.Token(ob.token))
	msg.SetMessageID(ob.mid)
	if con {
		msg.SetType(message.Confirmable)
	} else {
		msg.SetType(message.NonConfirmable)
	}
	if resp.code == codes.Content {
		msg.SetObserve(ob.seq)
	}
	if resp.hasCF {
		msg.SetContentFormat(resp.cf)
	}
	if block2 != nil {
		msg.SetOptionUint32(message.Block2, *block2)
		msg.SetOptionUint32(message.Size2, uint32(len(resp.body)))
	}
	if len(body) > 0 {
		msg.SetBody(bytes.NewReader(body))
	}
	if err := cc.Session().WriteMessage(msg); err != nil {
		ob.o.s.log.Debug("write notification", "err", err)
	}
}

// end deregisters the observer. It is idempotent.
func (ob *observer) end() {
	ob.mu.Lock()
	if ob.gone {
		ob.mu.Unlock()
		return
	}
	ob.gone = true
	if ob.timer != nil {
		ob.timer.Stop()
	}
	ob.forgetMIDLocked()
	ob.mu.Unlock()
	ob.sess.obsMu.Lock()
	if ob.sess.observers[ob.token] == ob {
		delete(ob.sess.observers, ob.token)
	}
	ob.sess.obsMu.Unlock()
	o := ob.o
	o.mu.Lock()
	if m := o.byDevice[ob.key]; m != nil {
		delete(m, ob)
		if len(m) == 0 {
			delete(o.byDevice, ob.key)
		}
	}
	o.mu.Unlock()
}

// renderGET renders q by running the resource's handler on a GET of the
// path with q's Accept option.
func (s *Server) renderGET(ctx context.Context, cc *udpClient.Conn, q observeQuery) response {
	req := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(req)
	req.SetCode(codes.GET)
	if err := req.SetPath("/" + q.Path); err != nil {
		return response{code: codes.InternalServerError}
	}
	if q.HasAccept {
		req.SetAccept(q.Accept)
	}
	var resp response
	s.handle(&resp, req, q.Peer)
	return resp
}
