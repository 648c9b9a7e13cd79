package nvs

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

func FuzzRead(f *testing.F) {
	img, err := Build(allTypes(), Options{Size: 0x6000})
	if err != nil {
		f.Fatal(err)
	}
	// Seeds of one page each: large inputs make the fuzzer's
	// minimization slow. The harness pads inputs to whole pages.
	f.Add(img[:PageSize])             // a FULL page of every primitive type and strings
	f.Add(img[PageSize : 2*PageSize]) // blob chunks and a BLOB_IDX
	small, _ := Build([]Item{{Namespace: "n", Key: "a", Type: TypeU8, Uint: 1}, {Key: "s", Type: TypeString, Data: []byte("x")}, {Key: "b", Type: TypeBlob, Data: []byte("yz")}}, Options{})
	f.Add(small[:PageSize])
	f.Add(small[:200])
	f.Add(bytes.Repeat([]byte{0xFF}, PageSize))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Pad to whole pages so the fuzzer gets past the size check.
		if n := len(data) % PageSize; n != 0 && len(data) < 4*PageSize {
			data = append(data, bytes.Repeat([]byte{0xFF}, PageSize-n)...)
		}
		// Unless the input ends in 0x00, make the CRCs right so that the
		// fuzzer gets past them to the structure.
		if len(data) > 0 && data[len(data)-1] != 0 {
			fixCRCs(data)
		}
		p, err := Read(data)
		if err != nil {
			return
		}
		_ = p.Dump(io.Discard, DumpOptions{})
		_ = p.DumpJSON(io.Discard, DumpOptions{ShowSecrets: true})
		// What was read can be written again (when it fits and is
		// valid), and reads back the same.
		img, err := Build(p.Items, Options{Size: max(len(data), MinSize) + 4*PageSize})
		if err != nil {
			return
		}
		q, err := Read(img)
		if err != nil {
			t.Fatalf("rebuilt image unreadable: %v", err)
		}
		if len(q.Items) != len(p.Items) {
			t.Fatalf("rebuilt %d items, read %d", len(q.Items), len(p.Items))
		}
	})
}

func FuzzParseCSV(f *testing.F) {
	f.Add(goliothCSV)
	f.Add("key,type,encoding,value\nns,namespace,,\na,data,u8,1\nb,data,i64,-5\nc,data,hex2bin,00ff\nd,data,base64,AAE=\ne,data,string,\"x,y\"\n")
	f.Add("value,encoding,type,key\n,,namespace,ns\n1,u8,data,a\n")
	f.Add("# c\nkey,type,encoding,value\nns,namespace\na,data,binary,xyz,extra\n")
	f.Fuzz(func(t *testing.T, in string) {
		files := func(name string) ([]byte, error) { return []byte(strings.Repeat("a", len(name))), nil }
		rows, err := ParseCSV(strings.NewReader(in), CSVOptions{ReadFile: files})
		if err != nil {
			return
		}
		w, err := NewWriter(Options{Size: 0x10000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Line < 1 {
				t.Fatalf("line %d", r.Line)
			}
			if err := w.Add(r.Item); err != nil {
				return
			}
		}
		if _, err := Read(w.Bytes()); err != nil {
			t.Fatalf("built image unreadable: %v", err)
		}
	})
}

// fixCRCs recomputes the header, entry and data CRCs of every page.
func fixCRCs(data []byte) {
	for pi := 0; pi+PageSize <= len(data); pi += PageSize {
		buf := data[pi : pi+PageSize]
		binary.LittleEndian.PutUint32(buf[28:], crc(buf[4:28]))
		for i, span := 0, 1; i < EntriesPerPage; i += span {
			span = 1
			if entryState(buf, i) != esWritten {
				continue
			}
			e := buf[firstEntry+i*EntrySize:][:EntrySize]
			switch t := Type(e[1]); t {
			case TypeString, TypeBlob, TypeBlobData:
				n := int(binary.LittleEndian.Uint16(e[24:]))
				if end := firstEntry + (i+1)*EntrySize + n; end <= PageSize {
					binary.LittleEndian.PutUint32(e[28:], crc(buf[firstEntry+(i+1)*EntrySize:end]))
				}
				if s := int(e[2]); s > 1 {
					span = s // skip the data entries
				}
			}
			binary.LittleEndian.PutUint32(e[4:], entryCRC(e))
		}
	}
}
