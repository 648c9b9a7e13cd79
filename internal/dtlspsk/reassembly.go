package dtlspsk

// maxSpans bounds the disjoint received ranges tracked for one message; a
// fragment that would need more is dropped (a retransmission fills it in).
const maxSpans = 8

// numSlots is how many server messages (consecutive message_seq values
// from the next expected one) are buffered at a time.
const numSlots = 4

type span struct{ lo, hi int }

// inMessage is a server handshake message being reassembled.
type inMessage struct {
	used   bool
	epoch  uint16
	typ    byte
	seq    uint16
	length int
	body   []byte
	spans  [maxSpans]span
	nspans int
}

// complete reports whether every byte of the message has arrived.
func (m *inMessage) complete() bool {
	return m.nspans == 1 && m.spans[0].lo == 0 && m.spans[0].hi == m.length
}

// add copies a fragment in and merges its range; the fragment has been
// checked to lie inside the message.
func (m *inMessage) add(off int, data []byte) {
	lo, hi := off, off+len(data)
	if lo == hi && m.length != 0 {
		return
	}
	var ns [maxSpans + 1]span
	n, placed := 0, false
	for _, s := range m.spans[:m.nspans] {
		switch {
		case s.hi < lo:
			ns[n] = s
			n++
		case s.lo > hi:
			if !placed {
				ns[n] = span{lo, hi}
				n++
				placed = true
			}
			if n == len(ns) {
				return
			}
			ns[n] = s
			n++
		default: // overlaps or touches: absorb
			lo, hi = min(lo, s.lo), max(hi, s.hi)
		}
	}
	if !placed {
		ns[n] = span{lo, hi}
		n++
	}
	if n > maxSpans {
		return
	}
	copy(m.body[off:], data)
	m.nspans = copy(m.spans[:], ns[:n])
}

// reassembler buffers server handshake fragments by message_seq.
type reassembler struct {
	slots [numSlots]inMessage
}

// slot returns the message the fragment belongs to, starting one if it is
// new, or nil when it does not fit: no free slot, or a fragment that
// disagrees with the fragments already held for its message_seq.
func (r *reassembler) slot(f *fragment, epoch uint16) *inMessage {
	var free *inMessage
	for i := range r.slots {
		m := &r.slots[i]
		if !m.used {
			if free == nil {
				free = m
			}
			continue
		}
		if m.seq == f.seq {
			if m.typ != f.typ || m.length != f.length || m.epoch != epoch {
				return nil
			}
			return m
		}
	}
	if free == nil {
		return nil
	}
	*free = inMessage{used: true, epoch: epoch, typ: f.typ, seq: f.seq, length: f.length, body: free.body}
	if cap(free.body) < f.length {
		free.body = make([]byte, f.length, max(f.length, 256))
	}
	free.body = free.body[:f.length]
	return free
}

// add files a fragment and reports whether it was kept.
func (r *reassembler) add(f *fragment, epoch uint16) bool {
	m := r.slot(f, epoch)
	if m == nil {
		return false
	}
	m.add(f.off, f.body)
	return true
}

// next returns the complete message with message_seq seq, or nil.
func (r *reassembler) next(seq uint16) *inMessage {
	for i := range r.slots {
		m := &r.slots[i]
		if m.used && m.seq == seq && m.complete() {
			return m
		}
	}
	return nil
}

// hello returns the complete HelloVerifyRequest or ServerHello with the
// lowest message_seq, or nil.
func (r *reassembler) hello() *inMessage {
	var best *inMessage
	for i := range r.slots {
		m := &r.slots[i]
		if m.used && m.complete() && (m.typ == hsHelloVerifyRequest || m.typ == hsServerHello) &&
			(best == nil || m.seq < best.seq) {
			best = m
		}
	}
	return best
}

// forget frees every message below seq.
func (r *reassembler) forget(seq uint16) {
	for i := range r.slots {
		if r.slots[i].seq < seq {
			r.slots[i].used = false
		}
	}
}

// reset frees every message, keeping small buffers for reuse.
func (r *reassembler) reset() {
	for i := range r.slots {
		m := &r.slots[i]
		body := m.body
		if cap(body) > 4096 {
			body = nil
		}
		*m = inMessage{body: body[:0]}
	}
}
