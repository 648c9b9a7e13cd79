package boards

import (
	"fmt"
	"strings"
)

// normUSBID returns a 4-digit upper-case hex id, or "" if s is not one.
func normUSBID(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s = s[2:]
	}
	if len(s) == 0 || len(s) > 4 {
		return ""
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return ""
		}
	}
	return strings.ToUpper(strings.Repeat("0", 4-len(s)) + s)
}

// GuessKind guesses the kind of the board behind a USB serial port from
// its vendor and product ids (hex, as go.bug.st/serial/enumerator reports
// them; case and a 0x prefix do not matter), from the USB ids the kinds
// registered: an exact vendor and product match first, then a vendor
// alone. It returns "" when the ids are unknown. why says what the
// adapter is, for "credloop board list".
//
// A USB-UART bridge (CP210x, CH340) is a guess: other boards use them too.
func GuessKind(vid, pid string) (kind string, why string) {
	v, p := normUSBID(vid), normUSBID(pid)
	if v == "" || p == "" {
		return "", fmt.Sprintf("not a USB id: %q:%q", vid, pid)
	}
	ks := Kinds()
	for _, exact := range []bool{true, false} {
		for _, k := range ks {
			for _, u := range k.USB {
				if u.VID == v && (u.PID == p && exact || u.PID == "" && !exact) {
					return k.Name, u.Why
				}
			}
		}
	}
	return "", "unknown USB device " + v + ":" + p
}

// USBTable describes the USB adapters the kinds recognise, one line each
// ("303A:1001 esp32  Espressif USB-Serial/JTAG ..."), for help texts.
func USBTable() string {
	var b strings.Builder
	for _, k := range Kinds() {
		for _, u := range k.USB {
			id := u.VID + ":" + u.PID
			if u.PID == "" {
				id = u.VID + ":*   "
			}
			fmt.Fprintf(&b, "  %s  %-7s %s\n", id, k.Name, u.Why)
		}
	}
	return b.String()
}
