package esp32

import (
	"io"
	"sync"
)

// maxTxBuffer bounds what the board has printed but nobody has read yet.
// A UART with nothing listening drops what it sends; so does the
// emulator once this much is waiting.
const maxTxBuffer = 256 << 10

// uart is the board's transmit side: the firmware writes without ever
// blocking, a goroutine copies to the pseudo-terminal.
type uart struct {
	mu   sync.Mutex
	buf  []byte
	wake chan struct{} // cap 1
}

func newUART() *uart { return &uart{wake: make(chan struct{}, 1)} }

// Write queues p; it never blocks and never fails.
func (u *uart) Write(p []byte) (int, error) {
	u.mu.Lock()
	if len(u.buf)+len(p) <= maxTxBuffer {
		u.buf = append(u.buf, p...)
	}
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// pump copies queued output to w until done is closed or w fails.
func (u *uart) pump(w io.Writer, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-u.wake:
		}
		for {
			u.mu.Lock()
			b := u.buf
			u.buf = nil
			u.mu.Unlock()
			if len(b) == 0 {
				break
			}
			if _, err := w.Write(b); err != nil {
				return
			}
		}
	}
}

// lineReader turns the bytes typed on the console into lines, as
// linenoise does in its dumb-terminal mode: \r, \n or \r\n ends a line,
// backspace and DEL erase, escape sequences (arrow keys) and other control
// characters are dropped. A line longer than max is reported as too long.
type lineReader struct {
	max     int
	buf     []byte
	tooLong bool
	lastCR  bool
	esc     int // 0 none, 1 after ESC, 2 inside CSI
}

// line is one line typed on the console.
type line struct {
	text    string
	tooLong bool // text is empty; the line had more than max bytes
}

// feed consumes p and returns the lines it completed.
func (r *lineReader) feed(p []byte) []line {
	var out []line
	for _, c := range p {
		if r.esc == 1 {
			if c == '[' || c == 'O' {
				r.esc = 2
			} else {
				r.esc = 0
			}
			continue
		}
		if r.esc == 2 {
			if c >= 0x40 && c <= 0x7e {
				r.esc = 0
			}
			continue
		}
		cr := r.lastCR
		r.lastCR = false
		switch {
		case c == '\n' && cr:
			// the \n of \r\n
		case c == '\r' || c == '\n':
			r.lastCR = c == '\r'
			out = append(out, line{text: string(r.buf), tooLong: r.tooLong})
			if r.tooLong {
				out[len(out)-1].text = ""
			}
			r.buf, r.tooLong = r.buf[:0], false
		case c == 0x1b:
			r.esc = 1
		case c == 0x7f || c == 0x08:
			if len(r.buf) > 0 {
				r.buf = r.buf[:len(r.buf)-1]
			}
		case c == '\t':
			r.add(' ')
		case c < 0x20:
			// other control characters: ignored
		default:
			r.add(c)
		}
	}
	return out
}

func (r *lineReader) add(c byte) {
	if r.tooLong {
		return
	}
	if len(r.buf) >= r.max {
		r.tooLong = true
		r.buf = r.buf[:0]
		return
	}
	r.buf = append(r.buf, c)
}
