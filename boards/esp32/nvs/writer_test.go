package nvs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// The vectors below were written out by hand from the format description
// (docs/protocols.md, ESP-IDF NVS); the CRC constants were computed with Python's
// zlib.crc32(buf, 0xFFFFFFFF), the function nvs_partition_gen uses.

// hexBytes decodes hex written with spaces, "|" separators and newlines.
func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test hex: %v", err)
	}
	return b
}

func ff(n int) []byte { return bytes.Repeat([]byte{0xFF}, n) }

// blankPage is an untouched (erased) flash page.
func blankPage() []byte { return ff(PageSize) }

// sameBytes fails with the first differing offset.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			lo := i &^ 31
			t.Fatalf("%s: first difference at offset 0x%x (page %d, byte 0x%x):\n got %x\nwant %x",
				what, i, i/PageSize, i%PageSize, got[lo:min(lo+32, len(got))], want[lo:min(lo+32, len(want))])
		}
	}
}

// bitcrc is an independent bitwise CRC-32 (reflected, polynomial
// 0xEDB88320) with the zlib convention: crc(seed, buf) inverts the seed
// before and the result after, so seed 0xFFFFFFFF starts from register 0.
func bitcrc(seed uint32, b []byte) uint32 {
	r := ^seed
	for _, c := range b {
		r ^= uint32(c)
		for range 8 {
			if r&1 != 0 {
				r = r>>1 ^ 0xEDB88320
			} else {
				r >>= 1
			}
		}
	}
	return ^r
}

func TestCRC(t *testing.T) {
	// Page 0's header bytes 4..28: sequence 0, version 2, 0xFF padding.
	h := append([]byte{0, 0, 0, 0, 0xFE}, ff(19)...)
	const verified = 0xb9ba2d84 // checked against the vendor tool (docs/protocols.md)
	if got := crc(h); got != verified {
		t.Fatalf("crc = 0x%08x, want 0x%08x", got, verified)
	}
	if got := bitcrc(0xFFFFFFFF, h); got != verified {
		t.Fatalf("bitcrc = 0x%08x, want 0x%08x", got, verified)
	}
	if crc32.ChecksumIEEE(h) == verified {
		t.Fatal("plain ChecksumIEEE should differ")
	}
}

// Page headers by hand: state | seq | version | 19 × 0xFF | CRC(bytes 4..28).
const (
	hdrPage0Active = "feffffff | 00000000 | fe | ffffffffffffffffffffffffffffffffffffff | 842dbab9"
	hdrPage0Full   = "fcffffff | 00000000 | fe | ffffffffffffffffffffffffffffffffffffff | 842dbab9"
	hdrPage1Active = "feffffff | 01000000 | fe | ffffffffffffffffffffffffffffffffffffff | a3489f38"
)

// Entries by hand: ns | type | span | chunk | CRC(0..4 + 8..32) | key[16] | data[8].
const (
	// Namespace "example" = index 1: namespace 0, U8, span 1, chunk any.
	entNSExample = "00 01 01 ff | dc 8c f6 2b | 6578616d706c65 000000000000000000 | 01 ffffffffffffff"
	// U8 "count" = 5 in namespace 1.
	entU8Count = "01 01 01 ff | 9e a0 2e 21 | 636f756e74 0000000000000000000000 | 05 ffffffffffffff"
	// SZ "id" = "dev1@proj": span 2, size 10 (with the NUL), 0xFFFF, CRC of the 10 bytes.
	entSZID   = "01 21 02 ff | 98 8a 49 38 | 6964 0000000000000000000000000000 | 0a00 ffff 6b2409be"
	entSZData = "6465763140 70726f6a 00 ffffffffffffffffffffffffffffffffffffffffffff" // "dev1@proj\0" + 22 × 0xFF
)

func TestVectorSmallImage(t *testing.T) {
	img, err := Build([]Item{
		{Namespace: "example"},
		{Key: "count", Type: TypeU8, Uint: 5},
		{Key: "id", Type: TypeString, Data: []byte("dev1@proj")},
	}, Options{Size: 0x3000})
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = append(want, hexBytes(t, hdrPage0Active)...)
	// Bitmap: entries 0..3 written (2 bits each, LSB first, 11 -> 10):
	// 10 10 10 10 = 0xAA, the rest 11 (empty).
	want = append(want, 0xAA)
	want = append(want, ff(31)...)
	want = append(want, hexBytes(t, entNSExample)...)
	want = append(want, hexBytes(t, entU8Count)...)
	want = append(want, hexBytes(t, entSZID)...)
	want = append(want, hexBytes(t, entSZData)...)
	want = append(want, ff(PageSize-len(want))...)
	// Pages 1 and 2 stay erased: one free page and the page reserved for
	// garbage collection.
	want = append(want, blankPage()...)
	want = append(want, blankPage()...)
	sameBytes(t, "image", img, want)
}

func TestVectorPrimitives(t *testing.T) {
	// Each: entry 1 of page 0 after the namespace entry. Data: the value
	// little-endian at its width, the rest of the 8 bytes 0xFF.
	tests := []struct {
		item Item
		want string
	}{
		{Item{Key: "v_u8", Type: TypeU8, Uint: 200}, "01 01 01 ff 53 16 45 9c 765f7538 000000000000000000000000 c8 ffffffffffffff"},
		{Item{Key: "v_i8", Type: TypeI8, Int: -1}, "01 11 01 ff 23 18 2c 01 765f6938 000000000000000000000000 ff ffffffffffffff"},
		{Item{Key: "v_u16", Type: TypeU16, Uint: 0xBEEF}, "01 02 01 ff 01 c2 2f fa 765f753136 0000000000000000000000 efbe ffffffffffff"},
		{Item{Key: "v_i16", Type: TypeI16, Int: -2}, "01 12 01 ff 6d d9 23 ba 765f693136 0000000000000000000000 feff ffffffffffff"},
		{Item{Key: "v_u32", Type: TypeU32, Uint: 0x12345678}, "01 04 01 ff 63 cd 3e 52 765f753332 0000000000000000000000 78563412 ffffffff"},
		{Item{Key: "v_i32", Type: TypeI32, Int: -100000}, "01 14 01 ff 20 c4 c3 b6 765f693332 0000000000000000000000 6079feff ffffffff"},
		{Item{Key: "v_u64", Type: TypeU64, Uint: 0x0123456789abcdef}, "01 08 01 ff 60 a0 24 bd 765f753634 0000000000000000000000 efcdab8967452301"},
		{Item{Key: "v_i64", Type: TypeI64, Int: -2}, "01 18 01 ff b1 c9 90 06 765f693634 0000000000000000000000 feffffffffffffff"},
	}
	for _, tt := range tests {
		t.Run(tt.item.Type.String(), func(t *testing.T) {
			img, err := Build([]Item{{Namespace: "example"}, tt.item}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "entry 0", img[firstEntry:][:EntrySize], hexBytes(t, entNSExample))
			sameBytes(t, "entry 1", img[firstEntry+EntrySize:][:EntrySize], hexBytes(t, tt.want))
			if img[bitmapOff] != 0xFA { // entries 0 and 1 written: 11 11 10 10
				t.Fatalf("bitmap byte 0 = %08b", img[bitmapOff])
			}
			p, err := Read(img)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := p.Get("example", tt.item.Key)
			tt.item.Namespace = "example"
			if !ok || !sameItem(got, tt.item) {
				t.Fatalf("read back %+v, want %+v", got, tt.item)
			}
		})
	}
}

func blobPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// TestVectorBlob5000 is the vendor tool's layout (docs/protocols.md): a 5000-byte blob
// after 5 used entries is chunk 0 of 3840 bytes filling page 0, chunk 1 of
// 1160 bytes on page 1, then BLOB_IDX size=5000 count=2 start=0.
func TestVectorBlob5000(t *testing.T) {
	data := blobPattern(5000)
	img, err := Build([]Item{
		{Namespace: "example"},
		{Key: "a", Type: TypeU8, Uint: 1},
		{Key: "b", Type: TypeU8, Uint: 2},
		{Key: "c", Type: TypeU8, Uint: 3},
		{Key: "d", Type: TypeU8, Uint: 4},
		{Key: "blob", Type: TypeBlob, Data: data},
	}, Options{Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	// Page 0: FULL; all 126 entries written. Bitmap: bytes 0..30 are
	// 0xAA (4 written entries each), byte 31 holds entries 124, 125 (10 10)
	// and two bit pairs beyond the last entry (11 11): 0xFA.
	var p0 []byte
	p0 = append(p0, hexBytes(t, hdrPage0Full)...)
	p0 = append(p0, bytes.Repeat([]byte{0xAA}, 31)...)
	p0 = append(p0, 0xFA)
	p0 = append(p0, hexBytes(t, entNSExample)...)
	for _, e := range []string{
		"01 01 01 ff 36 74 16 9c 61 000000000000000000000000000000 01 ffffffffffffff",
		"01 01 01 ff fd da 87 4a 62 000000000000000000000000000000 02 ffffffffffffff",
		"01 01 01 ff 44 bf 08 07 63 000000000000000000000000000000 03 ffffffffffffff",
		"01 01 01 ff 2a 81 d5 3c 64 000000000000000000000000000000 04 ffffffffffffff",
		// BLOB_DATA chunk 0: span 121 (0x79) = 1 + 3840/32, size 0x0f00, CRC of the chunk.
		"01 42 79 00 ca 33 3d 28 626c6f62 000000000000000000000000 000f ffff c4271342",
	} {
		p0 = append(p0, hexBytes(t, e)...)
	}
	p0 = append(p0, data[:3840]...)
	sameBytes(t, "page 0", img[:PageSize], p0)

	// Page 1: ACTIVE, sequence 1. Entries 0..38 written: bytes 0..8 0xAA,
	// byte 9 = 11 10 10 10 (entries 36, 37, 38; 39 empty) = 0xEA.
	var p1 []byte
	p1 = append(p1, hexBytes(t, hdrPage1Active)...)
	p1 = append(p1, bytes.Repeat([]byte{0xAA}, 9)...)
	p1 = append(p1, 0xEA)
	p1 = append(p1, ff(22)...)
	// BLOB_DATA chunk 1: span 38 (0x26) = 1 + ceil(1160/32), size 0x0488.
	p1 = append(p1, hexBytes(t, "01 42 26 01 1c ba 7d ec 626c6f62 000000000000000000000000 8804 ffff 2c0a87e8")...)
	p1 = append(p1, data[3840:]...)
	p1 = append(p1, ff(37*EntrySize-1160)...) // last data entry padded with 0xFF
	// BLOB_IDX: span 1, chunk any, size 5000 (0x1388), count 2, start 0, 0xFFFF.
	p1 = append(p1, hexBytes(t, "01 48 01 ff 88 48 89 b8 626c6f62 000000000000000000000000 88130000 02 00 ffff")...)
	p1 = append(p1, ff(PageSize-len(p1))...)
	sameBytes(t, "page 1", img[PageSize:2*PageSize], p1)
	sameBytes(t, "pages 2, 3", img[2*PageSize:], append(blankPage(), blankPage()...))

	// The data CRCs, independently.
	if got := binary.LittleEndian.Uint32(p0[firstEntry+5*EntrySize+28:]); got != bitcrc(0xFFFFFFFF, data[:3840]) {
		t.Fatalf("chunk 0 CRC constant 0x%08x disagrees with bitcrc", got)
	}
	if bitcrc(0xFFFFFFFF, data[3840:]) != 0xe8870a2c {
		t.Fatal("chunk 1 CRC constant disagrees with bitcrc")
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := p.Get("example", "blob"); !ok || it.Type != TypeBlob || !bytes.Equal(it.Data, data) {
		t.Fatalf("blob read back wrong: %v %v", ok, it.Type)
	}
}

// pageEntries returns how many entries of page i are marked written or
// erased, from the bitmap.
func pageEntries(img []byte, i int) int {
	pg := img[i*PageSize:][:PageSize]
	n := 0
	for e := range EntriesPerPage {
		if entryState(pg, e) != esEmpty {
			n++
		}
	}
	return n
}

func state(img []byte, i int) PageState {
	return PageState(binary.LittleEndian.Uint32(img[i*PageSize:]))
}

// fill returns items that use n entries after the namespace entry.
func fill(n int) []Item {
	items := []Item{{Namespace: "ns"}}
	for i := range n {
		items = append(items, Item{Key: "k" + itoa(i), Type: TypeU8, Uint: uint64(i & 0xFF)})
	}
	return items
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestStringPlacement(t *testing.T) {
	tests := []struct {
		name     string
		used     int // entries used before the string (namespace included)
		strLen   int // without the NUL
		wantPage int // page of the string's header
		wantErr  error
	}{
		// 32 bytes with NUL = 1 data entry, span 2.
		{"fits", 10, 31, 0, nil},
		// used + span = 125 < 126: stays.
		{"leaves one entry", 123, 31, 0, nil},
		// used + span = 126: the generator's ">=" rule moves it on.
		{"would fill the page exactly", 124, 31, 1, nil},
		{"does not fit", 125, 31, 1, nil},
		// 3999 + NUL = 4000 bytes: span 126, allowed on a fresh page only.
		{"4000 bytes on a fresh page", 126, 3999, 1, nil},
		{"4000 bytes mid-page", 3, 3999, 1, nil},
		{"4001 bytes", 1, 4000, 0, ErrBadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := fill(tt.used - 1)
			s := bytes.Repeat([]byte("x"), tt.strLen)
			items = append(items, Item{Key: "str", Type: TypeString, Data: s})
			img, err := Build(items, Options{Size: 0x4000})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			span := 1 + (tt.strLen+1+31)/32
			if tt.wantPage == 0 {
				if n := pageEntries(img, 0); n != tt.used+span {
					t.Fatalf("page 0 has %d entries, want %d", n, tt.used+span)
				}
				if state(img, 0) != StateActive {
					t.Fatalf("page 0 is %v", state(img, 0))
				}
			} else {
				if state(img, 0) != StateFull || state(img, 1) != StateActive {
					t.Fatalf("page states %v %v", state(img, 0), state(img, 1))
				}
				if n := pageEntries(img, 1); n != span {
					t.Fatalf("page 1 has %d entries, want %d", n, span)
				}
			}
			p, err := Read(img)
			if err != nil {
				t.Fatal(err)
			}
			if it, _ := p.Get("ns", "str"); !bytes.Equal(it.Data, s) {
				t.Fatal("string read back wrong")
			}
		})
	}
}

func TestBlobPlacement(t *testing.T) {
	tests := []struct {
		name   string
		used   int
		size   int
		chunks []int // chunk sizes
		pages  []int // page of each chunk, then of the index
	}{
		{"empty blob", 1, 0, []int{0}, []int{0, 0}},
		{"small", 1, 100, []int{100}, []int{0, 0}},
		// 124 used: tailroom (126-124-1)*32 = 32: chunk of 32 fills the
		// page, the index goes to the next page.
		{"index on next page", 124, 32, []int{32}, []int{0, 1}},
		// 125 used: tailroom 0: the generator writes an empty chunk 0 in
		// the last entry, then the data on the next page.
		{"empty first chunk", 125, 40, []int{0, 40}, []int{0, 1, 1}},
		// 126 used: a new page first.
		{"page full", 126, 40, []int{40}, []int{1, 1}},
		{"three pages", 1, 9000, []int{4000 - 32, 4000, 9000 - 3968 - 4000}, []int{0, 1, 2, 2}},
		// Exactly a page: 4000 bytes on a fresh page leave no entry.
		{"exactly a page", 126, 4000, []int{4000}, []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := fill(tt.used - 1)
			data := blobPattern(tt.size)
			items = append(items, Item{Key: "blob", Type: TypeBlob, Data: data})
			img, err := Build(items, Options{Size: 0x5000})
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			var sizes []int
			for pi := range imgPages(img) {
				pg := img[pi*PageSize:][:PageSize]
				for e := 0; e < EntriesPerPage; {
					if entryState(pg, e) == esEmpty {
						e++
						continue
					}
					ent := pg[firstEntry+e*EntrySize:][:EntrySize]
					switch Type(ent[1]) {
					case TypeBlobData:
						if int(ent[3]) != len(sizes) {
							t.Fatalf("chunk index %d, want %d", ent[3], len(sizes))
						}
						got = append(got, pi)
						sizes = append(sizes, int(binary.LittleEndian.Uint16(ent[24:])))
					case TypeBlobIndex:
						got = append(got, pi)
						if n := binary.LittleEndian.Uint32(ent[24:]); int(n) != tt.size || int(ent[28]) != len(sizes) || ent[29] != 0 {
							t.Fatalf("index: size %d count %d start %d", n, ent[28], ent[29])
						}
					}
					e += int(ent[2])
				}
			}
			if !equalInts(sizes, tt.chunks) || !equalInts(got, tt.pages) {
				t.Fatalf("chunks %v on pages %v, want %v on %v", sizes, got, tt.chunks, tt.pages)
			}
			p, err := Read(img)
			if err != nil {
				t.Fatal(err)
			}
			if it, _ := p.Get("ns", "blob"); !bytes.Equal(it.Data, data) || it.Type != TypeBlob {
				t.Fatal("blob read back wrong")
			}
		})
	}
}

func imgPages(img []byte) int { return len(img) / PageSize }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPageStates(t *testing.T) {
	// 300 entries: pages 0 and 1 FULL, page 2 ACTIVE, 3 and 4 blank.
	img, err := Build(fill(299), Options{Size: 0x5000})
	if err != nil {
		t.Fatal(err)
	}
	want := []PageState{StateFull, StateFull, StateActive, StateEmpty, StateEmpty}
	for i, s := range want {
		if got := state(img, i); got != s {
			t.Fatalf("page %d is %v, want %v", i, got, s)
		}
		if s != StateEmpty && binary.LittleEndian.Uint32(img[i*PageSize+4:]) != uint32(i) {
			t.Fatalf("page %d has the wrong sequence number", i)
		}
	}
	if !bytes.Equal(img[3*PageSize:], ff(2*PageSize)) {
		t.Fatal("unused pages are not blank")
	}
}

func TestWriterFull(t *testing.T) {
	w, err := NewWriter(Options{Size: 0x3000}) // 2 data pages
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range fill(200) {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	before := w.Bytes()
	err = w.Add(Item{Key: "big", Type: TypeBlob, Data: blobPattern(3000)})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	sameBytes(t, "after a failed Add", w.Bytes(), before)
	// A new namespace whose first item fails leaves no namespace entry.
	if err := w.Add(Item{Namespace: "other", Key: "big", Type: TypeBlob, Data: blobPattern(3000)}); !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v", err)
	}
	sameBytes(t, "after a failed Add in a new namespace", w.Bytes(), before)
	// The writer still works, in the old namespace.
	if err := w.Add(Item{Key: "small", Type: TypeU8, Uint: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := Read(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Namespaces) != 1 {
		t.Fatalf("namespaces %v", p.Namespaces)
	}
	if it, ok := p.Get("ns", "small"); !ok || it.Uint != 1 {
		t.Fatal("small not written")
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name  string
		items []Item
		want  error
	}{
		{"no namespace", []Item{{Key: "a", Type: TypeU8}}, ErrBadKey},
		{"long key", []Item{{Namespace: "n"}, {Key: "0123456789abcdef", Type: TypeU8}}, ErrBadKey},
		{"long namespace", []Item{{Namespace: "0123456789abcdef"}}, ErrBadKey},
		{"control character", []Item{{Namespace: "n"}, {Key: "a\n", Type: TypeU8}}, ErrBadKey},
		{"duplicate key", []Item{{Namespace: "n"}, {Key: "a", Type: TypeU8}, {Key: "a", Type: TypeString}}, ErrBadKey},
		{"u8 range", []Item{{Namespace: "n"}, {Key: "a", Type: TypeU8, Uint: 256}}, ErrBadValue},
		{"i8 range", []Item{{Namespace: "n"}, {Key: "a", Type: TypeI8, Int: -129}}, ErrBadValue},
		{"u32 range", []Item{{Namespace: "n"}, {Key: "a", Type: TypeU32, Uint: 1 << 32}}, ErrBadValue},
		{"i64 any", []Item{{Namespace: "n"}, {Key: "a", Type: TypeI64, Int: -1 << 63}}, nil},
		{"bad type", []Item{{Namespace: "n"}, {Key: "a", Type: TypeBlobIndex}}, ErrBadValue},
		{"too many chunks", []Item{{Namespace: "n"}, {Key: "a", Type: TypeBlob, Data: make([]byte, 129*4000)}}, ErrBadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.items, Options{Size: 140 * PageSize})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	for _, size := range []int{-1, 0x1000, 0x2000, 0x3001, 0x3800} {
		if _, err := NewWriter(Options{Size: size}); !errors.Is(err, ErrBadSize) {
			t.Errorf("size 0x%x: err = %v", size, err)
		}
	}
}

func TestNamespaces(t *testing.T) {
	// A namespace used again keeps its index and gets no second entry.
	img, err := Build([]Item{
		{Namespace: "a", Key: "x", Type: TypeU8, Uint: 1},
		{Namespace: "b", Key: "x", Type: TypeU8, Uint: 2},
		{Namespace: "a", Key: "y", Type: TypeU8, Uint: 3},
		{Namespace: "empty"},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := pageEntries(img, 0); n != 6 {
		t.Fatalf("%d entries, want 6 (3 namespaces, 3 values)", n)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	want := []Namespace{{"a", 1}, {"b", 2}, {"empty", 3}}
	if len(p.Namespaces) != 3 || p.Namespaces[0] != want[0] || p.Namespaces[1] != want[1] || p.Namespaces[2] != want[2] {
		t.Fatalf("namespaces %v", p.Namespaces)
	}
	if a, _ := p.Get("a", "y"); a.Uint != 3 {
		t.Fatal("a/y")
	}
	if b, _ := p.Get("b", "x"); b.Uint != 2 {
		t.Fatal("b/x")
	}
	// 254 namespaces at most.
	w, _ := NewWriter(Options{Size: 0x5000})
	for i := range MaxNamespaces {
		if err := w.Namespace("n" + itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Namespace("one-more"); !errors.Is(err, ErrFull) {
		t.Fatalf("255th namespace: %v", err)
	}
}
