package nvs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goliothCSV provisions the Golioth ESP-IDF samples (namespace "example",
// docs/protocols.md) and rotated certificates in namespace "certs"
// (the ESP32 rotation example), stored as strings as nvs_set_str stores them.
const goliothCSV = `key,type,encoding,value
# Golioth PSK credentials for the ESP-IDF samples
example,namespace,,
g_psk_id,data,string,device-1@my-project
g_psk,data,string,supersecret
w_ssid,data,string,lab-wifi
w_pass,data,string,lab-password
# rotated certificate and key (the ESP32 rotation example)
certs,namespace,,
client_cert,file,string,device.crt.pem
client_key,file,string,device.key.pem
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseCSVGolioth(t *testing.T) {
	cert := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	key := "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"
	dir := writeFiles(t, map[string]string{"device.crt.pem": cert, "device.key.pem": key})
	rows, err := ParseCSV(strings.NewReader(goliothCSV), CSVOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{3, Item{Namespace: "example"}},
		{4, Item{Namespace: "example", Key: "g_psk_id", Type: TypeString, Data: []byte("device-1@my-project")}},
		{5, Item{Namespace: "example", Key: "g_psk", Type: TypeString, Data: []byte("supersecret")}},
		{6, Item{Namespace: "example", Key: "w_ssid", Type: TypeString, Data: []byte("lab-wifi")}},
		{7, Item{Namespace: "example", Key: "w_pass", Type: TypeString, Data: []byte("lab-password")}},
		{9, Item{Namespace: "certs"}},
		{10, Item{Namespace: "certs", Key: "client_cert", Type: TypeString, Data: []byte(cert)}},
		{11, Item{Namespace: "certs", Key: "client_key", Type: TypeString, Data: []byte(key)}},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		if rows[i].Line != want[i].Line || !sameItem(rows[i].Item, want[i].Item) {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	img, err := BuildCSV(strings.NewReader(goliothCSV), CSVOptions{Dir: dir}, Options{Size: 0x6000})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := p.Get("certs", "client_key"); !ok || string(it.Data) != key || it.Type != TypeString {
		t.Fatalf("client_key %+v", it)
	}
	if it, ok := p.Get("example", "g_psk_id"); !ok || string(it.Data) != "device-1@my-project" {
		t.Fatalf("g_psk_id %+v", it)
	}
}

func TestParseCSVEncodings(t *testing.T) {
	dir := writeFiles(t, map[string]string{"blob.bin": "\x00\x01\xff", "num.txt": " 42\n", "hex.txt": "c0ffee\n", "b64.txt": "aGVs\nbG8=\n"})
	in := "\ufeffkey, type ,encoding,value\n" +
		"ns,namespace,,\n" +
		"\n" +
		"u8,data,u8,255\n" +
		"i8,data,I8,-128\n" +
		"u16,data,u16,+65535\n" +
		"i16,data,i16, -32768 \n" +
		"u32,data,u32,4294967295\n" +
		"i32,data,i32,-2147483648\n" +
		"u64,data,u64,18446744073709551615\n" +
		"i64,data,i64,-9223372036854775808\n" +
		"str,data,string,\"a, \"\"quoted\"\" string\"\n" +
		"emptystr,data,string,\n" +
		"hex,data,hex2bin, 00ff10 \n" +
		"b64,data,base64,aGVsbG8=\n" +
		"bin,data,binary,raw text\n" +
		"fbin,file,binary,blob.bin\n" +
		"fnum,file,u8,num.txt\n" +
		"fhex,file,hex2bin,hex.txt\n" +
		"fb64,file,base64,b64.txt\n" +
		"other,namespace,,\n" +
		"u8,data,u8,1\n" +
		"ns,namespace,,\n" +
		"again,data,u8,2\n"
	rows, err := ParseCSV(strings.NewReader(in), CSVOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Item{
		"u8": {Type: TypeU8, Uint: 255}, "i8": {Type: TypeI8, Int: -128}, "u16": {Type: TypeU16, Uint: 65535},
		"i16": {Type: TypeI16, Int: -32768}, "u32": {Type: TypeU32, Uint: 1<<32 - 1}, "i32": {Type: TypeI32, Int: -1 << 31},
		"u64": {Type: TypeU64, Uint: 1<<64 - 1}, "i64": {Type: TypeI64, Int: -1 << 63},
		"str": {Type: TypeString, Data: []byte(`a, "quoted" string`)}, "emptystr": {Type: TypeString, Data: []byte{}},
		"hex": {Type: TypeBlob, Data: []byte{0, 0xff, 0x10}}, "b64": {Type: TypeBlob, Data: []byte("hello")},
		"bin": {Type: TypeBlob, Data: []byte("raw text")}, "fbin": {Type: TypeBlob, Data: []byte{0, 1, 0xff}},
		"fnum": {Type: TypeU8, Uint: 42}, "fhex": {Type: TypeBlob, Data: []byte{0xc0, 0xff, 0xee}},
		"fb64": {Type: TypeBlob, Data: []byte("hello")},
	}
	n := 0
	for _, r := range rows {
		w, ok := want[r.Item.Key]
		if !ok || r.Item.Namespace != "ns" {
			continue
		}
		n++
		w.Namespace, w.Key = "ns", r.Item.Key
		if !sameItem(r.Item, w) {
			t.Errorf("line %d: %+v, want %+v", r.Line, r.Item, w)
		}
	}
	if n != len(want) {
		t.Fatalf("%d of %d items found", n, len(want))
	}
	last := rows[len(rows)-1]
	if last.Line != 24 || last.Item.Namespace != "ns" || last.Item.Key != "again" {
		t.Fatalf("last row %+v", last)
	}
	img, err := BuildCSV(strings.NewReader(in), CSVOptions{Dir: dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Namespaces) != 2 || p.Namespaces[0].Name != "ns" {
		t.Fatalf("%v", p.Namespaces)
	}
	if it, _ := p.Get("ns", "again"); it.Uint != 2 {
		t.Fatal("again")
	}
}

func TestParseCSVErrors(t *testing.T) {
	const h = "key,type,encoding,value\n"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "no header line"},
		{"only comments", "# nothing\n", "no header line"},
		{"bad header", "key,type,value\n", `line 1: header lacks column "encoding"`},
		{"duplicate column", "key,type,encoding,value,key\n", `column "key" appears twice`},
		{"no namespace first", h + "a,data,u8,1\n", "line 2: key \"a\": the first row must be a namespace"},
		{"long key", h + "ns,namespace,,\n0123456789abcdef,data,u8,1\n", "line 3: key \"0123456789abcdef\": want 1..15 bytes"},
		{"empty key", h + ",namespace,,\n", "line 2"},
		{"long namespace", h + "0123456789abcdef,namespace,,\n", "line 2"},
		{"bad type", h + "ns,namespace,,\na,blob,u8,1\n", `line 3: key "a": type "blob": want namespace, data or file`},
		{"bad encoding", h + "ns,namespace,,\na,data,u128,1\n", `encoding "u128": want u8`},
		{"missing encoding", h + "ns,namespace,,\na,data,,1\n", `encoding "": want`},
		{"u8 range", h + "ns,namespace,,\na,data,u8,256\n", `line 3: key "a": u8 value "256": want a decimal integer in [0, 255]`},
		{"i8 range", h + "ns,namespace,,\na,data,i8,128\n", "[-128, 127]"},
		{"hex number", h + "ns,namespace,,\na,data,u16,0x10\n", "decimal integer"},
		{"u64 negative", h + "ns,namespace,,\na,data,u64,-1\n", "[0, 18446744073709551615]"},
		{"odd hex", h + "ns,namespace,,\na,data,hex2bin,abc\n", "odd number of hex digits"},
		{"not hex", h + "ns,namespace,,\na,data,hex2bin,zz\n", "not hex"},
		{"not base64", h + "ns,namespace,,\na,data,base64,!!!\n", "not base64"},
		{"long string", h + "ns,namespace,,\na,data,string," + strings.Repeat("x", 4000) + "\n", "4001 bytes with the NUL, limit 4000"},
		{"duplicate key", h + "ns,namespace,,\na,data,u8,1\n# c\na,data,u8,2\n", `line 5: key "a": already set in namespace "ns" on line 3`},
		{"missing file", h + "ns,namespace,,\na,file,binary,nope.bin\n", "line 3"},
		{"file without path", h + "ns,namespace,,\na,file,binary,\n", "file row without a path"},
		{"bad quotes", h + "ns,namespace,,\n\"a\"x,data,u8,1\n", "line 3"},
		{"secret not quoted", h + "ns,namespace,,\ng_psk,data,hex2bin,s3cr3tzz\n", `key "g_psk": hex2bin value: not hex`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSV(strings.NewReader(tt.in), CSVOptions{Dir: t.TempDir()})
			if !errors.Is(err, ErrCSV) {
				t.Fatalf("err = %v, want ErrCSV", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error shows a secret: %v", err)
			}
		})
	}
}

func TestBuildCSVErrors(t *testing.T) {
	in := "key,type,encoding,value\nns,namespace,,\nbig,data,hex2bin," + strings.Repeat("ab", 9000) + "\n"
	_, err := BuildCSV(strings.NewReader(in), CSVOptions{}, Options{Size: 0x3000})
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
	if _, err := BuildCSV(strings.NewReader(in), CSVOptions{}, Options{Size: 0x2000}); !errors.Is(err, ErrBadSize) {
		t.Fatalf("err = %v", err)
	}
	// ReadFile replaces the file system.
	in = "key,type,encoding,value\nns,namespace,,\nf,file,binary,x/y.bin\n"
	var asked string
	img, err := BuildCSV(strings.NewReader(in), CSVOptions{Dir: "base", ReadFile: func(name string) ([]byte, error) {
		asked = name
		return []byte{1, 2, 3}, nil
	}}, Options{})
	if err != nil || asked != filepath.Join("base", "x", "y.bin") {
		t.Fatalf("%v %q", err, asked)
	}
	p, _ := Read(img)
	if it, _ := p.Get("ns", "f"); !bytes.Equal(it.Data, []byte{1, 2, 3}) {
		t.Fatal("file content")
	}
}
