package devicemodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"testing"
)

func TestMemStoreBasics(t *testing.T) {
	var s MemStore // zero value is usable
	if _, ok := s.Get("a"); ok {
		t.Fatal("empty store has a")
	}
	val := []byte("one")
	if err := s.Set("b", val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store keeps its own copy
	if err := s.Set("a", nil); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Get("b")
	if !ok || string(got) != "one" {
		t.Fatalf("Get(b) = %q %t", got, ok)
	}
	got[0] = 'Y' // and hands out copies
	if got, _ := s.Get("b"); string(got) != "one" {
		t.Fatalf("Get returned an alias")
	}
	if v, ok := s.Get("a"); !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %t", v, ok)
	}
	if keys := s.Keys(); !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("Keys = %v", keys)
	}
	if err := s.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("never"); err != nil {
		t.Fatal(err)
	}
	if keys := s.Keys(); !slices.Equal(keys, []string{"b"}) {
		t.Fatalf("Keys = %v", keys)
	}
	for _, k := range []string{"", "sixteen_chars_xx", "sp ace", "tab\t", "é"} {
		if err := s.Set(k, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("Set(%q) = %v, want ErrBadKey", k, err)
		}
	}
	if err := s.Set("big", make([]byte, MaxValueLen+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("big value: %v", err)
	}
}

func TestMemStoreUpdate(t *testing.T) {
	s := NewMemStore()
	_ = s.Set("keep", []byte("1"))
	boom := errors.New("boom")
	var leaked *Tx
	err := s.Update(func(tx *Tx) error {
		leaked = tx
		if err := tx.Set("new", []byte("x")); err != nil {
			return err
		}
		if v, ok := tx.Get("new"); !ok || string(v) != "x" {
			t.Errorf("tx.Get(new) = %q %t", v, ok)
		}
		_ = tx.Delete("keep")
		if _, ok := tx.Get("keep"); ok {
			t.Error("tx sees a deleted key")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if keys := s.Keys(); !slices.Equal(keys, []string{"keep"}) {
		t.Fatalf("failed tx changed the store: %v", keys)
	}
	if err := leaked.Set("late", nil); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Set after Update = %v", err)
	}
	err = s.Update(func(tx *Tx) error {
		_ = tx.Set("a", []byte("1"))
		_ = tx.Set("a", []byte("2")) // last write wins
		return tx.Delete("keep")
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("a"); string(v) != "2" || len(s.Keys()) != 1 {
		t.Fatalf("after update: a=%q keys=%v", v, s.Keys())
	}
}

func TestMemStorePowerCut(t *testing.T) {
	tests := []struct {
		name    string
		armed   string
		write   func(s *MemStore) error
		cut     bool
		stillOn bool // the cut stays armed when it did not fire
	}{
		{"set on the armed key", "set:a", func(s *MemStore) error { return s.Set("a", []byte("new")) }, true, false},
		{"set on another key", "set:a", func(s *MemStore) error { return s.Set("b", []byte("new")) }, false, true},
		{"delete on the armed key", "delete:a", func(s *MemStore) error { return s.Delete("a") }, true, false},
		{"set does not match a delete point", "delete:a", func(s *MemStore) error { return s.Set("a", nil) }, false, true},
		{"any", "any", func(s *MemStore) error { return s.Delete("zzz") }, true, false},
		{"prefix", "set:psk_*", func(s *MemStore) error { return s.Set("psk_bak", nil) }, true, false},
		{"one key of a tx aborts all of it", "set:c", func(s *MemStore) error {
			return s.Update(func(tx *Tx) error {
				return errors.Join(tx.Set("a", []byte("new")), tx.Delete("b"), tx.Set("c", []byte("new")))
			})
		}, true, false},
		{"disarmed", "", func(s *MemStore) error { return s.Set("a", []byte("new")) }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemStore()
			_ = s.Set("a", []byte("old"))
			_ = s.Set("b", []byte("old"))
			before := image(t, s)
			s.ArmPowerCut(tt.armed)
			err := tt.write(s)
			if tt.cut {
				if !errors.Is(err, ErrPowerCut) {
					t.Fatalf("err = %v, want ErrPowerCut", err)
				}
				if image(t, s) != before {
					t.Fatal("a cut write changed the store")
				}
				if err := tt.write(s); err != nil { // one-shot
					t.Fatalf("second write after the cut: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.stillOn != (s.cut.Armed() != "") {
				t.Fatalf("armed = %q", s.cut.Armed())
			}
		})
	}
}

func TestMemStoreImage(t *testing.T) {
	s := NewMemStore()
	_ = s.Set("client_cert", []byte("-----BEGIN CERTIFICATE-----\n"))
	_ = s.Set("empty", nil)
	_ = s.Set("bin", []byte{0, 1, 2, 0xff})
	img, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back MemStore
	if err := back.UnmarshalBinary(img); err != nil {
		t.Fatal(err)
	}
	if img2, _ := back.MarshalBinary(); !bytes.Equal(img, img2) {
		t.Fatal("round trip differs")
	}
	if !slices.Equal(back.Keys(), s.Keys()) {
		t.Fatalf("keys %v", back.Keys())
	}
	emptyImg, _ := NewMemStore().MarshalBinary()
	if err := back.UnmarshalBinary(emptyImg); err != nil || len(back.Keys()) != 0 {
		t.Fatalf("empty image: %v %v", err, back.Keys())
	}

	// reseal recomputes the CRC so that structural checks are reached.
	reseal := func(b []byte) []byte {
		b = bytes.Clone(b[:len(b)-4])
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	}
	body := img[:len(img)-4]
	corrupt := map[string][]byte{
		"empty":          nil,
		"short":          img[:8],
		"bad magic":      reseal(append([]byte("XLNV"), img[4:]...)),
		"bad version":    reseal(append(append([]byte("CLNV"), 9), img[5:]...)),
		"trailing bytes": reseal(append(append(bytes.Clone(body), 0), 0, 0, 0, 0)),
		"count too high": reseal(append(append([]byte("CLNV\x01"), 0, 0, 0, 4), img[9:]...)),
		"huge count":     reseal(append([]byte("CLNV\x01\xff\xff\xff\xff"), img[9:]...)),
		"unsorted keys": reseal(binary.BigEndian.AppendUint32(append(append([]byte("CLNV\x01\x00\x00\x00\x02"),
			"\x01b\x00\x00\x00\x00"...), "\x01a\x00\x00\x00\x00"...), 0)),
		"duplicate keys": reseal(binary.BigEndian.AppendUint32(append(append([]byte("CLNV\x01\x00\x00\x00\x02"),
			"\x01a\x00\x00\x00\x00"...), "\x01a\x00\x00\x00\x00"...), 0)),
		"bad key": reseal(binary.BigEndian.AppendUint32(append([]byte("CLNV\x01\x00\x00\x00\x01"),
			"\x02a \x00\x00\x00\x00"...), 0)),
	}
	for i := range img { // every single bit flip
		b := bytes.Clone(img)
		b[i] ^= 0x10
		corrupt[fmt.Sprintf("flip byte %d", i)] = b
	}
	for n := range len(img) { // every truncation
		corrupt[fmt.Sprintf("truncate to %d", n)] = img[:n]
	}
	for name, b := range corrupt {
		t.Run(name, func(t *testing.T) {
			target := NewMemStore()
			_ = target.Set("mine", []byte("1"))
			err := target.UnmarshalBinary(b)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("UnmarshalBinary = %v, want ErrCorrupt", err)
			}
			if keys := target.Keys(); !slices.Equal(keys, []string{"mine"}) {
				t.Fatalf("failed unmarshal changed the store: %v", keys)
			}
		})
	}
}

func FuzzStoreUnmarshal(f *testing.F) {
	s := NewMemStore()
	_ = s.Set("client_cert", []byte("pem"))
	_ = s.Set("psk_main", []byte{0, 1, 2})
	_ = s.Set("e", nil)
	img, _ := s.MarshalBinary()
	f.Add(img)
	f.Add(img[:len(img)-4]) // body only: sealed by the target
	empty, _ := NewMemStore().MarshalBinary()
	f.Add(empty)
	f.Add([]byte("CLNV\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Try the input as is, and with a correct CRC appended so that the
		// fuzzer reaches the structural checks behind the checksum.
		sealed := binary.BigEndian.AppendUint32(bytes.Clone(data), crc32.ChecksumIEEE(data))
		for _, img := range [][]byte{data, sealed} {
			var m MemStore
			if err := m.UnmarshalBinary(img); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error does not wrap ErrCorrupt: %v", err)
				}
				continue
			}
			// A valid image is canonical: it re-encodes to the same bytes.
			out, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, img) {
				t.Fatalf("re-encoding differs:\n in %x\nout %x", img, out)
			}
		}
	})
}

// plainStore is a minimal non-MemStore backend built on NewTx and Tx.Ops,
// as the ESP32 NVS image backend will be.
type plainStore struct{ m map[string][]byte }

func (p *plainStore) Get(k string) ([]byte, bool) { v, ok := p.m[k]; return bytes.Clone(v), ok }
func (p *plainStore) Set(k string, v []byte) error {
	return p.Update(func(tx *Tx) error { return tx.Set(k, v) })
}
func (p *plainStore) Delete(k string) error {
	return p.Update(func(tx *Tx) error { return tx.Delete(k) })
}
func (p *plainStore) Keys() []string { return slices.Sorted(maps.Keys(p.m)) }
func (p *plainStore) Update(fn func(tx *Tx) error) error {
	tx := NewTx(p.Get)
	if err := fn(tx); err != nil {
		return err
	}
	for _, op := range tx.Ops() {
		if op.Delete {
			delete(p.m, op.Key)
		} else {
			p.m[op.Key] = op.Value
		}
	}
	return nil
}

func TestOtherStoreBackend(t *testing.T) {
	f := newFixtures(t)
	d := New(f.certCfg, &plainStore{m: map[string][]byte{}})
	if dec := d.HandleRotation(credPayload(t, f.rotated)); !dec.Reboot {
		t.Fatalf("rotation: %+v", dec)
	}
	for i := 1; i <= 3; i++ {
		if p := d.Boot(); p.Slot != SlotRotated || p.BootCount != i {
			t.Fatalf("boot %d: %q %d", i, p.Slot, p.BootCount)
		}
		d.Reset()
	}
	if p := d.Boot(); p.Slot != SlotFactory || !p.FellBack {
		t.Fatalf("boot 4: %q fellback %t", p.Slot, p.FellBack)
	}
	if keys := d.Store().Keys(); len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
}
