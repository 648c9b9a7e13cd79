package hil

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzParseMap(f *testing.F) {
	f.Add([]byte(goodMap))
	f.Add([]byte("- name: a\n  kind: nrf\n  emulate: true\n"))
	f.Add([]byte("- &b {name: a, kind: nrf, emulate: true}\n- *b\n"))
	f.Add([]byte("- name: a\n  <<: {kind: nrf}\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("- name: fw\n  kind: linux\n  exec: fw\n  env: {A: '{psk}'}\n  files: {c/x.pem: '{cert}'}\n  volatile: [ram]\n  stop_grace: 1s\n"))
	f.Add([]byte("- name: x\n  kind: esp32\n  port: 0\n  fixtures: []")) // once failed the round trip
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseMap(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidMap) {
				t.Fatalf("error does not match ErrInvalidMap: %v", err)
			}
			return
		}
		// A valid map writes out and reads back the same.
		var buf bytes.Buffer
		if err := WriteMap(&buf, m); err != nil {
			t.Fatalf("WriteMap of a parsed map: %v", err)
		}
		back, err := ParseMap(buf.Bytes())
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, buf.String())
		}
		for i := range back.Boards {
			back.Boards[i].Line, m.Boards[i].Line = 0, 0
		}
		if len(m.Boards) == 0 && len(back.Boards) == 0 {
			return
		}
		if !reflect.DeepEqual(back.Boards, m.Boards) {
			t.Fatalf("round trip:\n%+v\n%+v", back.Boards, m.Boards)
		}
		for _, b := range m.Boards {
			if _, err := b.ResetPlan(); err != nil {
				t.Fatalf("valid board with a bad reset: %v", err)
			}
		}
	})
}

func FuzzParseResetSequence(f *testing.F) {
	for _, s := range []string{ClassicReset, USBJTAGSerialReset, UnixTightReset, HardReset, "W1e-9|D1", "U1,0", "W10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		steps, err := ParseResetSequence(s)
		if err != nil {
			if !errors.Is(err, ErrResetSequence) {
				t.Fatalf("error does not match ErrResetSequence: %v", err)
			}
			return
		}
		if len(steps) == 0 || len(steps) > MaxSteps {
			t.Fatalf("%d steps", len(steps))
		}
		for _, st := range steps {
			if st.Kind == StepWait && (st.Wait < 0 || st.Wait > MaxWait) {
				t.Fatalf("wait %v", st.Wait)
			}
		}
		again, err := ParseResetSequence(FormatResetSequence(steps))
		if err != nil || !reflect.DeepEqual(again, steps) {
			t.Fatalf("round trip of %q via %q: %v", s, FormatResetSequence(steps), err)
		}
	})
}
