package hil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// Directions of a board log line.
const (
	DirReceived = '<' // the board printed it
	DirSent     = '>' // we sent it
	DirNote     = '#' // the harness says something (port lost, reopened)
)

// LogTimeFormat is the timestamp at the start of each board log line:
// RFC 3339 with milliseconds, in UTC.
const LogTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// maxLogLine is where a line without an end is cut in the log.
const maxLogLine = 4096

// BoardLogPath is where a board's console log goes in a run directory:
// <runDir>/boards/<name>.log.
func BoardLogPath(runDir, name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("hil: board log: %q is not a board name", name)
	}
	return filepath.Join(runDir, "boards", name+".log"), nil
}

// normalizer turns raw console bytes into the text Expect and the log see:
// \r\n and a bare \r become \n, also when split between reads, and ANSI
// escape sequences (colours, cursor movement) are dropped.
type normalizer struct {
	// keepEscapes passes escape sequences through (for a log that keeps
	// colours); \r is normalized all the same.
	keepEscapes bool

	cr  bool // the last byte was \r
	esc byte // 0, or escState*
	csi int  // bytes of the current CSI sequence
}

const (
	escStart = 1 // after ESC
	escCSI   = 2 // in ESC [ ...
)

func (n *normalizer) append(dst, p []byte) []byte {
	for _, c := range p {
		switch n.esc {
		case escStart:
			if n.keepEscapes {
				dst = append(dst, c)
			}
			if c == '[' {
				n.esc, n.csi = escCSI, 0
			} else {
				n.esc = 0 // a two-byte sequence such as ESC 7
			}
			continue
		case escCSI:
			n.csi++
			switch {
			case 0x20 <= c && c <= 0x3f && n.csi < 32:
				if n.keepEscapes {
					dst = append(dst, c)
				}
				continue // parameters and intermediates
			case 0x40 <= c && c <= 0x7e:
				if n.keepEscapes {
					dst = append(dst, c)
				}
				n.esc = 0
				continue // final byte
			}
			n.esc = 0 // not a CSI sequence after all: keep the byte
		}
		switch c {
		case 0x1b:
			n.esc = escStart
			if n.keepEscapes {
				dst = append(dst, c)
			}
		case '\r':
			dst = append(dst, '\n')
			n.cr = true
		case '\n':
			if !n.cr {
				dst = append(dst, '\n')
			}
			n.cr = false
		default:
			dst = append(dst, c)
			n.cr = false
		}
	}
	return dst
}

// boardLog writes a board's console log: one line per console line,
// redacted, with a direction and the time the line ended (so the times
// only go forward).
type boardLog struct {
	mu     sync.Mutex
	w      io.Writer // nil: no log
	closer io.Closer
	path   string
	now    func() time.Time
	red    *Redactor
	err    error // the first write error
	rx, tx logLine
}

type logLine struct {
	buf []byte
}

// openBoardLog opens <runDir>/boards/<name>.log for appending, or uses w
// when runDir is empty; with neither it logs nowhere.
func openBoardLog(runDir, name string, w io.Writer, now func() time.Time, red *Redactor) (*boardLog, error) {
	l := &boardLog{w: w, now: now, red: red}
	if runDir != "" {
		path, err := BoardLogPath(runDir, name)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("hil: board log: %w", err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("hil: board log: %w", err)
		}
		l.w, l.closer, l.path = f, f, path
	}
	return l, nil
}

// text logs normalized console text going in direction dir: complete lines
// now, the rest when its line ends (or on close).
func (l *boardLog) text(dir byte, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	ll := &l.rx
	if dir == DirSent {
		ll = &l.tx
	}
	for len(p) > 0 {
		i := 0
		for i < len(p) && p[i] != '\n' {
			i++
		}
		ll.buf = append(ll.buf, p[:i]...)
		if i == len(p) {
			break
		}
		p = p[i+1:]
		l.emit(dir, l.red.RedactBytes(ll.buf))
		ll.buf = ll.buf[:0]
	}
	// A line that does not end is logged in pieces, cut where no secret
	// can cross.
	for len(ll.buf) > maxLogLine {
		window := ll.buf[:min(len(ll.buf), maxLogLine+l.red.MaxLen()-1)]
		red, n := l.red.cut(window, false)
		if n == 0 {
			break
		}
		l.emit(dir, red)
		ll.buf = append(ll.buf[:0], ll.buf[n:]...)
	}
}

// note logs a line from the harness.
func (l *boardLog) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	l.emit(DirNote, l.red.RedactBytes(fmt.Appendf(nil, format, args...)))
}

// close logs unfinished lines and closes the file it opened.
func (l *boardLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	for _, d := range []struct {
		dir byte
		ll  *logLine
	}{{DirReceived, &l.rx}, {DirSent, &l.tx}} {
		if len(d.ll.buf) > 0 {
			l.emit(d.dir, l.red.RedactBytes(d.ll.buf))
			d.ll.buf = nil
		}
	}
	l.emit(DirNote, []byte("console closed"))
	err := l.err
	if l.closer != nil {
		err = errors.Join(err, l.closer.Close())
	}
	l.w = nil
	return err
}

// emit writes one redacted line, stamped now; l.mu is held.
func (l *boardLog) emit(dir byte, line []byte) {
	b := make([]byte, 0, len(line)+32)
	b = l.now().UTC().AppendFormat(b, LogTimeFormat)
	b = append(b, ' ', dir, ' ')
	b = appendPrintable(b, line)
	b = append(b, '\n')
	if _, err := l.w.Write(b); err != nil && l.err == nil {
		l.err = fmt.Errorf("hil: board log: %w", err)
	}
}

// appendPrintable appends s with control characters and invalid UTF-8
// written as \xNN, so a log line stays one printable line.
func appendPrintable(dst, s []byte) []byte {
	const hexdig = "0123456789abcdef"
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && size == 1, r < 0x20 && r != '\t', r == 0x7f:
			dst = append(dst, '\\', 'x', hexdig[s[0]>>4], hexdig[s[0]&15])
		case 0x80 <= r && r < 0xa0:
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
