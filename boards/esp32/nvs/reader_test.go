package nvs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func sameItem(a, b Item) bool {
	return a.Namespace == b.Namespace && a.Key == b.Key && a.Type == b.Type &&
		a.Int == b.Int && a.Uint == b.Uint && bytes.Equal(a.Data, b.Data)
}

// allTypes has one item of every type, in two namespaces, with a blob
// larger than a page.
func allTypes() []Item {
	return []Item{
		{Namespace: "example", Key: "u8", Type: TypeU8, Uint: 255},
		{Namespace: "example", Key: "i8", Type: TypeI8, Int: -128},
		{Namespace: "example", Key: "u16", Type: TypeU16, Uint: 65535},
		{Namespace: "example", Key: "i16", Type: TypeI16, Int: -32768},
		{Namespace: "example", Key: "u32", Type: TypeU32, Uint: 1<<32 - 1},
		{Namespace: "example", Key: "i32", Type: TypeI32, Int: -1 << 31},
		{Namespace: "example", Key: "u64", Type: TypeU64, Uint: 1<<64 - 1},
		{Namespace: "example", Key: "i64", Type: TypeI64, Int: 1<<63 - 1},
		{Namespace: "example", Key: "i64neg", Type: TypeI64, Int: -5},
		{Namespace: "example", Key: "empty", Type: TypeString, Data: []byte{}},
		{Namespace: "example", Key: "g_psk_id", Type: TypeString, Data: []byte("dev1@proj")},
		{Namespace: "example", Key: "g_psk", Type: TypeString, Data: []byte("s3cr3t-psk-value")},
		{Namespace: "certs", Key: "client_cert", Type: TypeString, Data: bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n"), 40)},
		{Namespace: "certs", Key: "client_key", Type: TypeBlob, Data: blobPattern(9000)},
		{Namespace: "certs", Key: "noblob", Type: TypeBlob, Data: []byte{}},
		{Namespace: "certs", Key: "tiny", Type: TypeBlob, Data: []byte{0, 1, 2}},
	}
}

func TestRoundTrip(t *testing.T) {
	items := allTypes()
	img, err := Build(items, Options{Size: 0x6000})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != len(items) {
		t.Fatalf("%d items, want %d", len(p.Items), len(items))
	}
	for i, want := range items {
		t.Run(want.Key, func(t *testing.T) {
			if got := p.Items[i]; !sameItem(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
	if p.Size != 0x6000 || len(p.Pages) != 6 {
		t.Fatalf("size %d pages %d", p.Size, len(p.Pages))
	}
	// Writing what was read gives the same image.
	again, err := Build(p.Items, Options{Size: 0x6000})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "rebuilt image", again, img)
}

// corruptible is a valid image: page 0 holds namespace "ns" (entry 0),
// u8 "a" (1), string "s" (2, 3), 120 filler u8s, and the blob's chunk 0
// (header at entry 124); page 1 holds chunk 1 (entries 0..) and the index.
func corruptible(t *testing.T) []byte {
	t.Helper()
	items := []Item{
		{Namespace: "ns", Key: "a", Type: TypeU8, Uint: 7},
		{Key: "s", Type: TypeString, Data: []byte("hello")},
	}
	for i := range 120 {
		items = append(items, Item{Key: "f" + itoa(i), Type: TypeU8})
	}
	items = append(items, Item{Key: "blob", Type: TypeBlob, Data: blobPattern(100)})
	img, err := Build(items, Options{Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func entryAt(img []byte, pi, ei int) []byte {
	return img[pi*PageSize+firstEntry+ei*EntrySize:][:EntrySize]
}

// reseal recomputes an entry's CRC after the test changed it.
func reseal(img []byte, pi, ei int) {
	e := entryAt(img, pi, ei)
	binary.LittleEndian.PutUint32(e[4:], entryCRC(e))
}

func resealPage(img []byte, pi int) {
	h := img[pi*PageSize:][:headerSize]
	binary.LittleEndian.PutUint32(h[28:], crc(h[4:28]))
}

func setEntryState(img []byte, pi, ei, st int) {
	bit := ei * 2
	b := &img[pi*PageSize+bitmapOff+bit/8]
	*b = *b&^(3<<(bit%8)) | byte(st)<<(bit%8)
}

func TestReadCorrupt(t *testing.T) {
	base := corruptible(t)
	if _, err := Read(base); err != nil {
		t.Fatalf("base image: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(b []byte) []byte
		wants string
	}{
		{"empty", func(b []byte) []byte { return nil }, "not a positive multiple"},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)-100] }, "truncated"},
		{"blob chunk erased", func(b []byte) []byte {
			for i := range 4 { // chunk 1: header and 3 data entries
				setEntryState(b, 1, i, esErased)
			}
			return b
		}, `blob "blob": chunk 1 of 0..1 is missing`},
		{"header CRC", func(b []byte) []byte { b[29] ^= 1; return b }, "page 0 (offset 0x0): header CRC"},
		{"unknown state", func(b []byte) []byte { b[0] = 0x12; return b }, "unknown page state"},
		{"unknown version", func(b []byte) []byte { b[8] = 0x01; resealPage(b, 0); return b }, "unknown format version"},
		{"entry CRC", func(b []byte) []byte { entryAt(b, 0, 1)[8] = 'b'; return b }, "page 0 entry 1 (offset 0x60): entry CRC"},
		{"data CRC", func(b []byte) []byte { entryAt(b, 0, 3)[0] = 'j'; return b }, `data CRC of "s"`},
		{"blob chunk CRC", func(b []byte) []byte { entryAt(b, 1, 1)[5] ^= 0xFF; return b }, `data CRC of "blob"`},
		{"overlong span", func(b []byte) []byte { entryAt(b, 0, 2)[2] = 200; reseal(b, 0, 2); return b }, "span 200 overruns the page"},
		{"zero span", func(b []byte) []byte { entryAt(b, 0, 1)[2] = 0; reseal(b, 0, 1); return b }, "span 0"},
		{"span disagrees with size", func(b []byte) []byte { entryAt(b, 0, 2)[2] = 3; reseal(b, 0, 2); return b }, "span 3, want 2"},
		{"primitive span", func(b []byte) []byte { entryAt(b, 0, 1)[2] = 2; reseal(b, 0, 1); return b }, "u8 entry with span 2"},
		{"data entry not written", func(b []byte) []byte { setEntryState(b, 0, 3, esEmpty); return b }, "data entry 3"},
		{"unknown type", func(b []byte) []byte { entryAt(b, 0, 1)[1] = 0x99; reseal(b, 0, 1); return b }, "unknown entry type 0x99"},
		{"unknown namespace", func(b []byte) []byte { entryAt(b, 0, 1)[0] = 7; reseal(b, 0, 1); return b }, "namespace index 7"},
		{"namespace type", func(b []byte) []byte { entryAt(b, 0, 0)[1] = byte(TypeU16); reseal(b, 0, 0); return b }, "want u8"},
		{"namespace index 0", func(b []byte) []byte { entryAt(b, 0, 0)[24] = 0; reseal(b, 0, 0); return b }, "has index 0"},
		{"key not terminated", func(b []byte) []byte { copy(entryAt(b, 0, 1)[8:24], "aaaaaaaaaaaaaaaa"); reseal(b, 0, 1); return b }, "not NUL-terminated"},
		{"empty key", func(b []byte) []byte { entryAt(b, 0, 1)[8] = 0; reseal(b, 0, 1); return b }, "key is empty"},
		{"blob size", func(b []byte) []byte {
			i := blobIndexEntry(b)
			entryAt(b, 1, i)[24]++
			reseal(b, 1, i)
			return b
		}, "index says 101 bytes"},
		{"blob chunk count", func(b []byte) []byte {
			i := blobIndexEntry(b)
			entryAt(b, 1, i)[28] = 3
			reseal(b, 1, i)
			return b
		}, "chunk 2 of 0..2 is missing"},
		{"blob size beyond its chunks", func(b []byte) []byte {
			i := blobIndexEntry(b)
			binary.LittleEndian.PutUint32(entryAt(b, 1, i)[24:], 1<<31)
			reseal(b, 1, i)
			return b
		}, "cannot fit"},
		{"blank page not blank", func(b []byte) []byte { b[3*PageSize+100] = 0; return b }, "page 3 (offset 0x3000): state EMPTY but the page is not blank"},
		{"chunk without index", func(b []byte) []byte { entryAt(b, 0, 124)[3] = 0xFF; reseal(b, 0, 124); return b }, "without a chunk index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.edit(bytes.Clone(base))
			p, err := Read(img)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, partition %v; want ErrCorrupt", err, p != nil)
			}
			if !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("error %q lacks %q", err, tt.wants)
			}
		})
	}
}

// blobIndexEntry finds the BLOB_IDX entry on page 1 of corruptible.
func blobIndexEntry(img []byte) int {
	for e := range EntriesPerPage {
		if Type(entryAt(img, 1, e)[1]) == TypeBlobIndex {
			return e
		}
	}
	return -1
}

func TestReadTolerates(t *testing.T) {
	base := corruptible(t)
	tests := []struct {
		name  string
		edit  func(b []byte)
		check func(t *testing.T, p *Partition)
	}{
		{"erased entry", func(b []byte) { setEntryState(b, 0, 1, esErased) }, func(t *testing.T, p *Partition) {
			if _, ok := p.Get("ns", "a"); ok {
				t.Fatal("erased entry still read")
			}
			if p.Pages[0].Erased != 1 {
				t.Fatalf("erased count %d", p.Pages[0].Erased)
			}
		}},
		{"illegal state 01 reads as erased", func(b []byte) { setEntryState(b, 0, 1, 1) }, func(t *testing.T, p *Partition) {
			if _, ok := p.Get("ns", "a"); ok {
				t.Fatal("entry still read")
			}
		}},
		{"orphan chunks", func(b []byte) { setEntryState(b, 1, blobIndexEntry(b), esErased) }, func(t *testing.T, p *Partition) {
			if _, ok := p.Get("ns", "blob"); ok {
				t.Fatal("blob without index read")
			}
		}},
		{"corrupt page skipped", func(b []byte) { binary.LittleEndian.PutUint32(b[PageSize:], 0) }, func(t *testing.T, p *Partition) {
			if p.Pages[1].State != StateCorrupt {
				t.Fatalf("page 1 %v", p.Pages[1].State)
			}
			if _, ok := p.Get("ns", "blob"); ok {
				t.Fatal("blob read without its index page")
			}
		}},
		{"later duplicate wins", func(b []byte) {
			// Rename filler "f0" (entry 4, value 0) to "a".
			e := entryAt(b, 0, 4)
			copy(e[8:24], "a\x00")
			e[24] = 42
			reseal(b, 0, 4)
		}, func(t *testing.T, p *Partition) {
			if it, _ := p.Get("ns", "a"); it.Uint != 42 {
				t.Fatalf("a = %d, want the later 42", it.Uint)
			}
			n := 0
			for _, it := range p.Items {
				if it.Key == "a" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d items named a", n)
			}
		}},
		{"pages in sequence order", func(b []byte) {
			// Swap the two pages' sequence numbers: page 1 now comes
			// first, and the namespace entry still resolves.
			binary.LittleEndian.PutUint32(b[4:], 9)
			resealPage(b, 0)
		}, func(t *testing.T, p *Partition) {
			if it, _ := p.Get("ns", "a"); it.Uint != 7 {
				t.Fatal("a")
			}
			if p.Items[len(p.Items)-1].Key != "s" && p.Items[0].Key != "blob" {
				t.Fatalf("order: first %q", p.Items[0].Key)
			}
		}},
		{"blob version 0x80", func(b []byte) {
			entryAt(b, 0, 124)[3] = 0x80
			reseal(b, 0, 124)
			entryAt(b, 1, 0)[3] = 0x81
			reseal(b, 1, 0)
			i := blobIndexEntry(b)
			entryAt(b, 1, i)[29] = 0x80
			reseal(b, 1, i)
		}, func(t *testing.T, p *Partition) {
			if it, _ := p.Get("ns", "blob"); !bytes.Equal(it.Data, blobPattern(100)) {
				t.Fatal("blob")
			}
		}},
		{"garbage in empty entries", func(b []byte) { copy(entryAt(b, 1, 100), "garbage") }, func(t *testing.T, p *Partition) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := bytes.Clone(base)
			tt.edit(img)
			p, err := Read(img)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

// TestReadV1Blob reads a version 1 page with a BLOB (0x41) entry, built by
// hand.
func TestReadV1Blob(t *testing.T) {
	img := ff(3 * PageSize)
	h := img[:headerSize]
	binary.LittleEndian.PutUint32(h, uint32(StateActive))
	binary.LittleEndian.PutUint32(h[4:], 0)
	h[8] = Version1
	resealPage(img, 0)
	copy(entryAt(img, 0, 0), entry(0, TypeU8, 1, chunkAny, "v1"))
	entryAt(img, 0, 0)[24] = 1
	reseal(img, 0, 0)
	data := []byte("forty bytes of blob data in a V1 page..")
	e := entry(1, TypeBlob, 3, chunkAny, "b")
	binary.LittleEndian.PutUint16(e[24:], uint16(len(data)))
	binary.LittleEndian.PutUint32(e[28:], crc(data))
	copy(entryAt(img, 0, 1), e)
	reseal(img, 0, 1)
	copy(img[firstEntry+2*EntrySize:], data)
	for i := range 4 {
		setEntryState(img, 0, i, esWritten)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := p.Get("v1", "b"); !ok || it.Type != TypeBlob || !bytes.Equal(it.Data, data) {
		t.Fatalf("%+v", it)
	}
	if p.Pages[0].Version != Version1 || p.Pages[0].Written != 4 {
		t.Fatalf("page %+v", p.Pages[0])
	}
}

func TestDump(t *testing.T) {
	img, err := Build(allTypes(), Options{Size: 0x6000})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	psk := []byte("s3cr3t-psk-value")
	fpPSK := Fingerprint(psk)
	fpKey := Fingerprint(blobPattern(9000))

	var b bytes.Buffer
	if err := p.Dump(&b, DumpOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"NVS partition: 24576 bytes, 6 pages",
		`namespace "example" (index 1)`,
		`namespace "certs" (index 2)`,
		"g_psk_id", "<9 bytes fp=" + Fingerprint([]byte("dev1@proj")) + ">", // its name contains "psk"
		`empty     string  ""`,
		"<16 bytes fp=" + fpPSK + ">",
		"<9000 bytes fp=" + fpKey + ">",
		"u64", "18446744073709551615",
		"i8", "-128",
		`"-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n`, "(1120 bytes)",
		"3 bytes: 000102", "0 bytes\n",
		"FULL", "ACTIVE", "EMPTY",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, string(psk)) || strings.Contains(out, "030a11") {
		t.Fatalf("dump shows a secret:\n%s", out)
	}

	b.Reset()
	if err := p.Dump(&b, DumpOptions{ShowSecrets: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"s3cr3t-psk-value"`) || !strings.Contains(b.String(), `"dev1@proj"`) {
		t.Fatalf("--show-secrets dump lacks the PSK:\n%s", b.String())
	}

	b.Reset()
	if err := p.DumpJSON(&b, DumpOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), string(psk)) {
		t.Fatal("JSON shows a secret")
	}
	var j jsonPartition
	if err := json.Unmarshal(b.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Namespaces) != 2 || len(j.Pages) != 6 || j.Pages[0].State != "FULL" {
		t.Fatalf("%+v", j)
	}
	var sawPSK, sawTiny bool
	for _, it := range j.Namespaces[0].Items {
		if it.Key == "g_psk" {
			sawPSK = it.Redacted && it.Value == nil && it.Size == 16 && it.FP == fpPSK
		}
		if it.Key == "u64" && it.Value.(float64) != 18446744073709551615 {
			t.Fatalf("u64 %v", it.Value)
		}
	}
	for _, it := range j.Namespaces[1].Items {
		if it.Key == "tiny" {
			sawTiny = it.Base64 == "AAEC" && it.Type == "blob"
		}
	}
	if !sawPSK || !sawTiny {
		t.Fatalf("JSON items wrong:\n%s", b.String())
	}

	// Empty partition.
	w, _ := NewWriter(Options{})
	p, err = Read(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := p.Dump(&b, DumpOptions{}); err != nil || !strings.Contains(b.String(), "no namespaces") {
		t.Fatalf("%v\n%s", err, b.String())
	}
}

func TestSecretKey(t *testing.T) {
	for k, want := range map[string]bool{
		"g_psk": true, "g_psk_id": true, "client_key": true, "w_pass": true, "sta.pswd": false,
		"wifi_pwd": true, "KEY": true, "client_cert": false, "w_ssid": false, "count": false,
	} {
		if SecretKey(k) != want {
			t.Errorf("SecretKey(%q) = %v", k, !want)
		}
	}
}
