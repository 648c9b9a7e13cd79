package nrf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/internal/devicemodel"
)

// entry is one record of a hand-built flash image.
type entry struct {
	kind byte
	name string
	val  []byte
}

// buildImage lays out entries exactly as the format comment says.
func buildImage(entries ...entry) []byte {
	b := []byte("CLNRFLS\x01")
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.kind)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.name)))
		b = append(b, e.name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.val)))
		b = append(b, e.val...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func TestImageVector(t *testing.T) {
	im := newImage()
	im.dirs["/lfs1/credentials"] = true
	im.files["/lfs1/credentials/crt.der"] = []byte{0x30, 0x00}
	im.settings["golioth/psk-id"] = []byte("d@p")
	want := buildImage(
		entry{'d', "/lfs1/credentials", nil},
		entry{'f', "/lfs1/credentials/crt.der", []byte{0x30, 0x00}},
		entry{'s', "golioth/psk-id", []byte("d@p")},
	)
	got := im.marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("marshal:\n got %x\nwant %x", got, want)
	}
	back, err := parseImage(got)
	if err != nil || !reflect.DeepEqual(back, im) {
		t.Fatalf("parse: %+v, %v", back, err)
	}
}

func TestParseImageRejects(t *testing.T) {
	good := buildImage(entry{'d', "/lfs1/a", nil})
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	withCRC := func(b []byte) []byte { return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b)) }
	for name, data := range map[string][]byte{
		"empty":            nil,
		"short":            []byte("CLNRFLS\x01\x00"),
		"magic":            withCRC([]byte("CLNRFLS\x02\x00\x00\x00\x00")),
		"crc":              badCRC,
		"truncated entry":  withCRC([]byte("CLNRFLS\x01\x00\x00\x00\x01d\x00")),
		"value overrun":    withCRC([]byte("CLNRFLS\x01\x00\x00\x00\x01s\x00\x01a\x00\x00\x00\x09x")),
		"count overrun":    withCRC([]byte("CLNRFLS\x01\x00\x00\x00\x02s\x00\x01a\x00\x00\x00\x00")),
		"trailing":         withCRC(append(buildImage(entry{'s', "a", nil})[:len(buildImage(entry{'s', "a", nil}))-4], 0)),
		"unknown kind":     buildImage(entry{'x', "/lfs1/a", nil}),
		"order":            buildImage(entry{'s', "b", nil}, entry{'s', "a", nil}),
		"duplicate":        buildImage(entry{'s', "a", nil}, entry{'s', "a", nil}),
		"kinds out":        buildImage(entry{'f', "/lfs1/x", nil}, entry{'d', "/lfs1/a", nil}),
		"dir outside":      buildImage(entry{'d', "/etc", nil}),
		"dir is mount":     buildImage(entry{'d', "/lfs1", nil}),
		"dir no parent":    buildImage(entry{'d', "/lfs1/a/b", nil}),
		"dir with value":   buildImage(entry{'d', "/lfs1/a", []byte{1}}),
		"dir unclean":      buildImage(entry{'d', "/lfs1/a/", nil}),
		"file no dir":      buildImage(entry{'f', "/lfs1/a/b", nil}),
		"file at root":     buildImage(entry{'f', "/x", nil}),
		"file relative":    buildImage(entry{'f', "lfs1/x", nil}),
		"file control":     buildImage(entry{'f', "/lfs1/a\x00b", nil}),
		"files over":       buildImage(entry{'f', "/lfs1/a", make([]byte, FSCapacity)}, entry{'f', "/lfs1/b", []byte{1}}),
		"setting space":    buildImage(entry{'s', "a b", nil}),
		"setting empty":    buildImage(entry{'s', "", nil}),
		"setting equals":   buildImage(entry{'s', "a=b", nil}),
		"setting too long": buildImage(entry{'s', "a", make([]byte, devicemodel.MaxValueLen+1)}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseImage(data); !errors.Is(err, ErrFlashCorrupt) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if _, err := parseImage(good); err != nil {
		t.Fatal(err)
	}
}

func TestFlashPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "flash.bin")
	f, formatted, err := openFlash(p)
	if err != nil || formatted == nil {
		t.Fatalf("new flash: formatted=%v err=%v", formatted, err)
	}
	if err := f.Mkdir(CredentialsDir); err != nil {
		t.Fatal(err)
	}
	if err := f.Create(CertPath); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAt(CertPath, []byte("abc"), 2); err != nil {
		t.Fatal(err)
	}
	st := settingsStore{f}
	if err := st.setRaw(SettingPSKID, []byte("d@p")); err != nil {
		t.Fatal(err)
	}
	if err := st.Set(devicemodel.KeyPSKMain, []byte("k")); err != nil {
		t.Fatal(err)
	}
	g, formatted, err := openFlash(p)
	if err != nil || formatted != nil {
		t.Fatalf("reopen: formatted=%v err=%v", formatted, err)
	}
	if b, err := g.ReadFile(CertPath); err != nil || !bytes.Equal(b, []byte("\x00\x00abc")) {
		t.Fatalf("file after reopen: %q %v", b, err)
	}
	if got := (settingsStore{g}).Keys(); !reflect.DeepEqual(got, []string{SettingPSKID, devicemodel.KeyPSKMain}) {
		t.Fatalf("settings after reopen: %q", got)
	}
	if matches, _ := filepath.Glob(p + ".tmp*"); len(matches) != 0 {
		t.Fatalf("temp files left: %q", matches)
	}
}

func TestFlashCorruptIsFormatted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "flash.bin")
	junk := []byte("not a flash image at all")
	if err := os.WriteFile(p, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	f, formatted, err := openFlash(p)
	if err != nil || !errors.Is(formatted, ErrFlashCorrupt) {
		t.Fatalf("formatted=%v err=%v", formatted, err)
	}
	if kept, err := os.ReadFile(p + ".corrupt"); err != nil || !bytes.Equal(kept, junk) {
		t.Fatalf("corrupt image not kept: %v", err)
	}
	if entries, err := f.ReadDir(MountPoint); err != nil || len(entries) != 0 {
		t.Fatalf("formatted fs: %q %v", entries, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseImage(data); err != nil {
		t.Fatalf("formatted image: %v", err)
	}
}

func TestFlashFS(t *testing.T) {
	f, _, err := openFlash("")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"mkdir", func() error { return f.Mkdir("/lfs1/d") }, nil},
		{"mkdir again", func() error { return f.Mkdir("/lfs1/d") }, fs.ErrExist},
		{"mkdir mount", func() error { return f.Mkdir("/lfs1") }, fs.ErrExist},
		{"mkdir no parent", func() error { return f.Mkdir("/lfs1/x/y") }, fs.ErrNotExist},
		{"mkdir no mount", func() error { return f.Mkdir("/other") }, fs.ErrNotExist},
		{"mkdir unclean", func() error { return f.Mkdir("/lfs1/d/../e") }, fs.ErrInvalid},
		{"create", func() error { return f.Create("/lfs1/d/f") }, nil},
		{"create again", func() error { return f.Create("/lfs1/d/f") }, nil},
		{"create dir", func() error { return f.Create("/lfs1/d") }, smp.ErrIsDir},
		{"create no dir", func() error { return f.Create("/lfs1/x/f") }, fs.ErrNotExist},
		{"create at root", func() error { return f.Create("/f") }, fs.ErrNotExist},
		{"write", func() error { return f.WriteAt("/lfs1/d/f", []byte("hello"), 0) }, nil},
		{"write missing", func() error { return f.WriteAt("/lfs1/d/g", []byte("x"), 0) }, fs.ErrNotExist},
		{"write negative", func() error { return f.WriteAt("/lfs1/d/f", []byte("x"), -1) }, fs.ErrInvalid},
		{"write full", func() error { return f.WriteAt("/lfs1/d/f", make([]byte, FSCapacity), 1) }, ErrNoSpace},
		{"truncate", func() error { return f.Truncate("/lfs1/d/f", 2) }, nil},
		{"truncate full", func() error { return f.Truncate("/lfs1/d/f", FSCapacity+1) }, fs.ErrInvalid},
		{"rm non-empty", func() error { return f.Remove("/lfs1/d") }, smp.ErrNotEmpty},
		{"rm mount", func() error { return f.Remove("/lfs1") }, fs.ErrInvalid},
		{"rm missing", func() error { return f.Remove("/lfs1/nope") }, fs.ErrNotExist},
		{"rm file", func() error { return f.Remove("/lfs1/d/f") }, nil},
		{"rm dir", func() error { return f.Remove("/lfs1/d") }, nil},
	}
	for _, s := range steps {
		if err := s.do(); s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
		if s.name == "truncate" {
			if b, _ := f.ReadFile("/lfs1/d/f"); string(b) != "he" {
				t.Fatalf("after truncate: %q", b)
			}
		}
	}
	if got, err := f.ReadDir("/"); err != nil || !reflect.DeepEqual(got, []string{"lfs1/"}) {
		t.Fatalf("ReadDir / = %q, %v", got, err)
	}
}

func TestFlashPowerCut(t *testing.T) {
	p := filepath.Join(t.TempDir(), "flash.bin")
	f, _, err := openFlash(p)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []string
	f.onCut = func(point string) { cuts = append(cuts, point) }
	st := settingsStore{f}
	if err := st.setRaw(SettingPSKID, []byte("old@p")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)

	f.arm("set:" + devicemodel.KeyPSKBackup)
	err = st.Update(func(tx *devicemodel.Tx) error {
		return errors.Join(tx.Set(devicemodel.KeyPSKBackupID, []byte("new@p")), tx.Set(devicemodel.KeyPSKBackup, []byte("k")))
	})
	if !errors.Is(err, devicemodel.ErrPowerCut) || !reflect.DeepEqual(cuts, []string{"set:" + devicemodel.KeyPSKBackup}) {
		t.Fatalf("err = %v, cuts = %q", err, cuts)
	}
	if _, ok := st.Get(devicemodel.KeyPSKBackupID); ok {
		t.Fatal("half a transaction was written")
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(after, before) {
		t.Fatal("the flash file changed in a cut write")
	}
	if err := f.Mkdir("/lfs1/x"); !errors.Is(err, devicemodel.ErrPowerCut) {
		t.Fatalf("write while dark: %v", err)
	}
	f.powerOn()
	if err := f.Mkdir("/lfs1/x"); err != nil {
		t.Fatalf("write after power on: %v", err)
	}
	for _, tc := range []struct{ pattern, point string }{
		{"any", "rm:/lfs1/x"},
		{"write:/lfs1/*", "write:/lfs1/f"},
		{"mkdir:/lfs1/y", "mkdir:/lfs1/y"},
	} {
		cuts = nil
		f.powerOn()
		f.arm(tc.pattern)
		var err error
		switch {
		case strings.HasPrefix(tc.point, "rm:"):
			err = f.Remove("/lfs1/x")
		case strings.HasPrefix(tc.point, "write:"):
			err = f.Create("/lfs1/f")
		default:
			err = f.Mkdir("/lfs1/y")
		}
		if !errors.Is(err, devicemodel.ErrPowerCut) || !reflect.DeepEqual(cuts, []string{tc.point}) {
			t.Fatalf("%s: err = %v, cuts = %q", tc.pattern, err, cuts)
		}
	}

	// The settings are a devicemodel.Store the model can run on.
	f.powerOn()
	m := devicemodel.New(devicemodel.Config{ID: "d", Project: "p",
		Factory: devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: "d@p", PSK: []byte("factory-key")}}, st)
	if err := m.InstallBackupPSK("d2@p", []byte("backup-key")); err != nil {
		t.Fatal(err)
	}
	if plan := m.Boot(); plan.Slot != devicemodel.SlotBackup {
		t.Fatalf("plan = %+v", plan)
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		err  error
	}{
		{"", nil, nil},
		{"  fs   ls  ", []string{"fs", "ls"}, nil},
		{`settings set golioth/psk-id "a b@c"`, []string{"settings", "set", "golioth/psk-id", "a b@c"}, nil},
		{`x 'single "q"' "dq \" \\ end"`, []string{"x", `single "q"`, `dq " \ end`}, nil},
		{`a\ b c`, []string{"a b", "c"}, nil},
		{`x ""`, []string{"x", ""}, nil},
		{`x "open`, nil, ErrUnterminatedQuote},
		{strings.Repeat("a ", maxArgs+1), nil, ErrTooManyArgs},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := SplitArgs(tc.line)
			if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	for _, s := range []string{"plain", "dev1@acme", "", "with space", `q"uote`, `back\slash`, "tab\there", "'"} {
		got, err := SplitArgs("set " + QuoteArg(s))
		if err != nil || len(got) != 2 || got[1] != s {
			t.Errorf("QuoteArg(%q) = %s splits to %q, %v", s, QuoteArg(s), got, err)
		}
	}
}

func TestSplitDER(t *testing.T) {
	seq := func(body ...byte) []byte { return append([]byte{0x30, byte(len(body))}, body...) }
	a, b := seq(1, 2, 3), seq(0x05, 0x00)
	for _, tc := range []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"one", a, [][]byte{a}},
		{"two", append(bytes.Clone(a), b...), [][]byte{a, b}},
		{"empty", nil, nil},
		{"not a sequence", []byte{0x04, 0x01, 0x00}, nil},
		{"truncated", a[:3], nil},
		{"garbage after", append(bytes.Clone(a), 0xff), nil},
		{"pem", []byte("-----BEGIN CERTIFICATE-----\n"), nil},
		{"too many", bytes.Repeat(b, maxChain+1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitDER(tc.in)
			if tc.want == nil {
				if !errors.Is(err, ErrBadCertFile) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %x, %v", got, err)
			}
		})
	}
}

func FuzzParseImage(f *testing.F) {
	f.Add(buildImage(entry{'d', "/lfs1/credentials", nil}, entry{'f', "/lfs1/credentials/crt.der", []byte{0x30, 0}},
		entry{'s', "golioth/psk", []byte("k")}))
	f.Add(buildImage())
	f.Add([]byte("CLNRFLS\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := parseImage(data)
		if err != nil {
			if !errors.Is(err, ErrFlashCorrupt) {
				t.Fatalf("error without ErrFlashCorrupt: %v", err)
			}
			return
		}
		again, err := parseImage(im.marshal())
		if err != nil || !reflect.DeepEqual(again, im) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzSplitArgs(f *testing.F) {
	f.Add(`settings set golioth/psk "a \" b"`)
	f.Add(`fs mkdir /lfs1/credentials`)
	f.Add(`'x\`)
	f.Fuzz(func(t *testing.T, line string) {
		args, err := SplitArgs(line)
		if err != nil {
			return
		}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = QuoteArg(a)
		}
		again, err := SplitArgs(strings.Join(quoted, " "))
		if err != nil || !reflect.DeepEqual(again, args) {
			t.Fatalf("%q → %q → %q, %v", line, args, again, err)
		}
	})
}

func FuzzSplitDER(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 1, 2, 3, 0x30, 0x00})
	f.Add([]byte{0x30, 0x81, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := SplitDER(data)
		if err != nil {
			return
		}
		if !bytes.Equal(bytes.Join(certs, nil), data) {
			t.Fatal("the parts do not add up to the input")
		}
	})
}
