package hil

import (
	"fmt"
	"strings"
)

// usbKinds maps USB vendor (and product) ids to board kinds. An empty pid
// matches any product of the vendor.
var usbKinds = []struct {
	vid, pid string
	kind     string
	why      string
}{
	{"303A", "1001", KindESP32, "Espressif USB-Serial/JTAG (ESP32-C3/S3/C6/H2 built-in USB)"},
	{"303A", "", KindESP32, "Espressif USB (vendor 303A)"},
	{"10C4", "EA60", KindESP32, "Silicon Labs CP210x USB-UART, common on ESP32 dev kits"},
	{"1A86", "7523", KindESP32, "WCH CH340 USB-UART, common on ESP32 dev kits"},
	{"1366", "", KindNRF, "SEGGER J-Link, the on-board debugger of Nordic nRF DKs"},
	{"0451", "BEF3", KindCC3220, "TI XDS110, the on-board debugger of CC3220 LaunchPads"},
}

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

// GuessKind guesses the board kind behind a USB serial port from its
// vendor and product ids (hex, as go.bug.st/serial/enumerator reports
// them; case and a 0x prefix do not matter). It returns "" when the ids
// are unknown. why says what the adapter is, for "credloop board list".
//
// A USB-UART bridge (CP210x, CH340) is a guess: other boards use them too.
func GuessKind(vid, pid string) (kind string, why string) {
	v, p := normUSBID(vid), normUSBID(pid)
	if v == "" || p == "" {
		return "", fmt.Sprintf("not a USB id: %q:%q", vid, pid)
	}
	for _, e := range usbKinds {
		if e.vid == v && (e.pid == "" || e.pid == p) {
			return e.kind, e.why
		}
	}
	return "", "unknown USB device " + v + ":" + p
}
