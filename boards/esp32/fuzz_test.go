package esp32

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/internal/devicemodel"
)

// FuzzConsoleInput types arbitrary bytes on the console: the line reader,
// argv splitting, argument parsing and every command must cope, and the
// flash must stay a readable NVS image.
func FuzzConsoleInput(f *testing.F) {
	for _, s := range []string{
		"nvs_set a u8 -v 1\n", "nvs_set b blob -v 00ff\r\n", "nvs_get b blob\n", "nvs_set s str --value=\"x y\"\n",
		"nvs_namespace certs\nnvs_set client_cert blob -v 2d2d\n", "nvs_erase a\n", "nvs_erase_namespace storage\n",
		"nvs_list nvs -t u8 -n storage\n", "settings set golioth/psk-id a@b\nsettings get golioth/psk --json\n",
		"settings erase wifi/ssid\n", "help\nversion\ninfo\nrestart\nreset\n", "nvs_set \"\\\"\" i64 -v -0x8000000000000000\n",
		"nvs_set k u64 -v 0777\x7f\x7f8\n", "\x1b[A\x1bOx\x00\t\n", "nvs_set -v\n", "nvs_set --value\n", "nvs_get --nope x\n",
		strings.Repeat("a", MaxLine+1) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fl, _, err := openFlash("", nvs.MinSize, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		con := &conlog{w: &out, now: time.Now}
		con.reboot()
		sh := newShell(con, fl, func() []string { return []string{"info"} })
		r := lineReader{max: MaxLine}
		for _, l := range r.feed(in) {
			sh.exec(l)
		}
		if _, err := nvs.Read(fl.snapshot()); err != nil {
			t.Fatalf("flash no longer reads: %v", err)
		}
	})
}

// FuzzSplitArgv checks that quoteArg gives back what splitArgv parsed.
func FuzzSplitArgv(f *testing.F) {
	for _, s := range []string{"a b", `"a b" c\ d`, `\"`, `""`, `"`, `a\`, "x\ty", strings.Repeat("z ", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv, err := splitArgv(s)
		if err != nil {
			return
		}
		if len(argv) > maxArgs {
			t.Fatalf("%d args", len(argv))
		}
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = quoteArg(a)
		}
		again, err := splitArgv(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, argv) {
			t.Fatalf("%q: %q then %q (%v)", s, argv, again, err)
		}
	})
}

// FuzzSimLines feeds arbitrary text where the sim device's console lines
// go: the firmware's log must cope.
func FuzzSimLines(f *testing.F) {
	for _, s := range []string{
		"12:00:00.000 [dev] boot\n12:00:00.000 [dev] boot\n",
		"12:00:00.000 [dev] subscribed to devices/dev/certs/rotate and devices/dev/certs/csr/+\n",
		"12:00:00.000 [dev] connecting to mqtts://x with factory credential 1234\n",
		"12:00:00.000 [dev] connection failed: nope\n12:00:00.000 [dev] rebooting\n12:00:00.000 [dev] disconnected\n",
		"12:00:00.000 [dev] online (TLS_PSK)\n", "no prefix at all\n", "[", "a [b] \n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, psk bool) {
		fl, _, err := openFlash("", nvs.MinSize, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		e := &Emulator{con: &conlog{w: &out, now: time.Now}, fl: fl, mac: []byte{0x24, 0x0a, 0xc4, 1, 2, 3}}
		e.sh = newShell(e.con, fl, nil)
		mode := modeCert
		if psk {
			mode = modePSK
		}
		s := &simLines{e: e, run: &appRun{}, mode: mode, pskID: "d@p", addr: "127.0.0.1:1",
			model: devicemodel.New(devicemodel.Config{ID: "d"}, nil), first: true}
		if n, err := s.Write([]byte(in)); n != len(in) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	})
}
