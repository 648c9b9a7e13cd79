package coap

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Block-wise transfers (RFC 7959) are handled here rather than by
// go-coap, whose implementation keys a transfer on the token. Clients may
// use a new token for every block (libcoap does, with a Request-Tag, RFC
// 9175), so a transfer is keyed on what stays the same: the session, the
// method and path, and the Request-Tag. A large response is computed once
// and its blocks served from a per-session cache, so asking for block 2 of
// an EST answer never signs a second certificate.

// OptionRequestTag is the Request-Tag option (RFC 9175).
const OptionRequestTag message.OptionID = 292

const (
	maxBlockSZX     = blockwise.SZX1024
	transferTimeout = 30 * time.Second
	maxTransfers    = 8 // per session, each way
)

type upload struct {
	buf     bytes.Buffer
	expires time.Time
}

type download struct {
	resp    response
	expires time.Time
}

// transfers is the block-wise state of one session.
type transfers struct {
	mu        sync.Mutex
	uploads   map[string]*upload
	downloads map[string]*download
}

func (t *transfers) expire(now time.Time) {
	for k, u := range t.uploads {
		if now.After(u.expires) {
			delete(t.uploads, k)
		}
	}
	for k, d := range t.downloads {
		if now.After(d.expires) {
			delete(t.downloads, k)
		}
	}
}

func transferKey(r *pool.Message, path string) string {
	tag, _ := r.GetOptionBytes(OptionRequestTag)
	return fmt.Sprintf("%s %s %x", r.Code(), path, tag)
}

// serve is go-coap's handler: it authenticates the session, reassembles
// Block1 uploads, runs the resource handler once per request, and splits a
// large answer into Block2 blocks.
func (s *Server) serve(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) {
	sess, ok := w.Conn().NetConn().(*session)
	if !ok {
		// Only authenticated sessions reach go-coap; be defensive anyway.
		s.write(w, response{code: codes.Unauthorized, cf: message.TextPlain, hasCF: true, body: []byte("no authenticated session")}, nil)
		return
	}
	path, _ := r.Path()
	key := transferKey(r, path)
	t := &sess.blocks
	now := time.Now()

	// A request for a later block of an answer already computed. A GET
	// may start at a later block (Golioth's SDK resumes an OTA download
	// where it stopped, in a new session too): it is answered afresh.
	var startBlock int64
	if v, err := r.GetOptionUint32(message.Block2); err == nil {
		szx, num, _, err := blockwise.DecodeBlockOption(v)
		if err != nil {
			s.write(w, response{code: codes.BadOption, cf: message.TextPlain, hasCF: true, body: []byte("malformed Block2 option")}, nil)
			return
		}
		if num > 0 {
			t.mu.Lock()
			t.expire(now)
			d := t.downloads[key]
			t.mu.Unlock()
			switch {
			case d != nil:
				s.writeBlock(w, d.resp, min(szx, maxBlockSZX), num)
				return
			case r.Code() != codes.GET:
				s.write(w, response{code: codes.RequestEntityIncomplete, cf: message.TextPlain, hasCF: true,
					body: []byte("no block-wise answer in progress for this resource")}, nil)
				return
			}
			startBlock = num
		}
	}

	var block1 *uint32
	if v, err := r.GetOptionUint32(message.Block1); err == nil {
		szx, num, more, err := blockwise.DecodeBlockOption(v)
		if err != nil || szx > maxBlockSZX {
			s.write(w, response{code: codes.BadOption, cf: message.TextPlain, hasCF: true, body: []byte("malformed Block1 option")}, nil)
			return
		}
		body, err := r.ReadBody()
		if err != nil {
			s.write(w, response{code: codes.BadRequest, cf: message.TextPlain, hasCF: true, body: []byte("unreadable block")}, nil)
			return
		}
		t.mu.Lock()
		t.expire(now)
		if t.uploads == nil {
			t.uploads = map[string]*upload{}
		}
		u := t.uploads[key]
		if num == 0 {
			if u == nil && len(t.uploads) >= maxTransfers {
				t.mu.Unlock()
				s.write(w, response{code: codes.ServiceUnavailable, cf: message.TextPlain, hasCF: true, body: []byte("too many block-wise transfers")}, nil)
				return
			}
			u = &upload{}
			t.uploads[key] = u
		}
		var fail *response
		switch {
		case u == nil || int64(u.buf.Len()) != num*szx.Size():
			delete(t.uploads, key)
			fail = &response{code: codes.RequestEntityIncomplete, cf: message.TextPlain, hasCF: true, body: []byte("block out of sequence")}
		case u.buf.Len()+len(body) > int(s.opts.MaxMessageSize):
			delete(t.uploads, key)
			fail = &response{code: codes.RequestEntityTooLarge, cf: message.TextPlain, hasCF: true, body: []byte(fmt.Sprintf("request larger than %d bytes", s.opts.MaxMessageSize))}
		case more && int64(len(body)) != szx.Size():
			delete(t.uploads, key)
			fail = &response{code: codes.BadRequest, cf: message.TextPlain, hasCF: true, body: []byte("block shorter than its size")}
		default:
			u.buf.Write(body)
			u.expires = now.Add(transferTimeout)
		}
		var full []byte
		if fail == nil && !more {
			full = u.buf.Bytes()
			delete(t.uploads, key)
		}
		t.mu.Unlock()
		if fail != nil {
			s.write(w, *fail, nil)
			return
		}
		echo, _ := blockwise.EncodeBlockOption(szx, num, more)
		if more {
			s.write(w, response{code: codes.Continue}, &echo)
			return
		}
		r.SetBody(bytes.NewReader(full))
		r.Remove(message.Block1)
		r.Remove(message.Size1)
		block1 = &echo
	}

	var resp response
	s.handle(&resp, r, sess.peer)
	if resp.code == 0 {
		resp = response{code: codes.InternalServerError}
	}
	s.observe.request(w.Conn(), sess, r, &resp)
	if resp.hasObserve {
		s.observed(r.Context(), sess.peer, path)
	}

	if startBlock > 0 && resp.code != codes.Content {
		s.write(w, resp, block1)
		return
	}
	szx := maxBlockSZX
	if v, err := r.GetOptionUint32(message.Block2); err == nil {
		if bs, _, _, err := blockwise.DecodeBlockOption(v); err == nil {
			szx = min(bs, maxBlockSZX)
		}
	}
	if int64(len(resp.body)) <= szx.Size() {
		if _, err := r.GetOptionUint32(message.Block2); err != nil {
			s.write(w, resp, block1)
			return
		}
	}
	t.mu.Lock()
	t.expire(now)
	if t.downloads == nil {
		t.downloads = map[string]*download{}
	}
	if len(t.downloads) >= maxTransfers {
		for k := range t.downloads {
			delete(t.downloads, k) // drop the oldest-ish; clients retry
			break
		}
	}
	t.downloads[key] = &download{resp: resp, expires: now.Add(transferTimeout)}
	t.mu.Unlock()
	s.writeBlockEcho(w, resp, szx, startBlock, block1)
}

func (s *Server) writeBlock(w *responsewriter.ResponseWriter[*udpClient.Conn], resp response, szx blockwise.SZX, num int64) {
	s.writeBlockEcho(w, resp, szx, num, nil)
}

// writeBlockEcho writes block num of resp with Block2 and Size2.
func (s *Server) writeBlockEcho(w *responsewriter.ResponseWriter[*udpClient.Conn], resp response, szx blockwise.SZX, num int64, block1 *uint32) {
	size := int64(szx.Size())
	off := num * size
	if off > int64(len(resp.body)) || (off == int64(len(resp.body)) && off != 0) {
		s.write(w, response{code: codes.BadOption, cf: message.TextPlain, hasCF: true, body: []byte("block beyond the end of the answer")}, nil)
		return
	}
	end := min(off+size, int64(len(resp.body)))
	more := end < int64(len(resp.body))
	part := resp
	part.body = resp.body[off:end]
	s.write(w, part, block1)
	v, _ := blockwise.EncodeBlockOption(szx, num, more)
	w.Message().SetOptionUint32(message.Block2, v)
	if num == 0 {
		w.Message().SetOptionUint32(message.Size2, uint32(len(resp.body)))
	}
}

func (s *Server) write(w *responsewriter.ResponseWriter[*udpClient.Conn], resp response, block1 *uint32) {
	var err error
	if resp.hasCF {
		err = w.SetResponse(resp.code, resp.cf, bytes.NewReader(resp.body))
	} else {
		err = w.SetResponse(resp.code, message.TextPlain, nil)
	}
	if err != nil {
		s.log.Debug("set response", "err", err)
		return
	}
	if block1 != nil {
		w.Message().SetOptionUint32(message.Block1, *block1)
	}
	if resp.hasObserve {
		w.Message().SetObserve(resp.observe)
	}
}
