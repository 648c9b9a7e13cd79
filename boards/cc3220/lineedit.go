package cc3220

// maxLine is the longest command line the shell keeps; further characters
// are dropped (with a bell), as on the board's UART terminal.
const maxLine = 256

// lineEditor is the shell's input side: it turns raw UART bytes into
// command lines and the echo the terminal shows. \r, \n and \r\n end a
// line; backspace and DEL erase; Ctrl-C abandons the line; a tab is a
// space; every other control byte, escape sequences and bytes outside
// ASCII are ignored.
type lineEditor struct {
	buf  []byte
	cr   bool // the last byte was \r
	full bool // the bell was rung for the current line
	esc  int  // 0, 1 after ESC, 2 inside ESC [ ...
}

// feed takes the next bytes and returns the completed lines and the echo.
func (l *lineEditor) feed(p []byte) (lines []string, echo []byte) {
	for _, c := range p {
		cr := l.cr
		l.cr = false
		switch l.esc {
		case 1:
			l.esc = 0
			if c == '[' {
				l.esc = 2
			}
			continue
		case 2:
			if 0x40 <= c && c <= 0x7e {
				l.esc = 0
			} else if c < 0x20 || c > 0x3f {
				l.esc = 0
			}
			continue
		}
		switch {
		case c == '\r' || c == '\n':
			if c == '\n' && cr {
				continue
			}
			l.cr = c == '\r'
			lines = append(lines, string(l.buf))
			echo = append(echo, '\r', '\n')
			l.buf, l.full = l.buf[:0], false
		case c == 0x08 || c == 0x7f:
			if len(l.buf) > 0 {
				l.buf = l.buf[:len(l.buf)-1]
				echo = append(echo, '\b', ' ', '\b')
			}
		case c == 0x03:
			lines = append(lines, "")
			echo = append(echo, '^', 'C', '\r', '\n')
			l.buf, l.full = l.buf[:0], false
		case c == 0x1b:
			l.esc = 1
		case c == '\t' || 0x20 <= c && c <= 0x7e:
			if c == '\t' {
				c = ' '
			}
			if len(l.buf) >= maxLine {
				if !l.full {
					echo = append(echo, 0x07)
					l.full = true
				}
				continue
			}
			l.buf = append(l.buf, c)
			echo = append(echo, c)
		}
	}
	return lines, echo
}
