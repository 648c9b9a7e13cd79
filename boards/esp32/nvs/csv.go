package nvs

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxFileSize bounds a file that a CSV `file` row reads.
const MaxFileSize = 1 << 20

// CSVOptions configures ParseCSV.
type CSVOptions struct {
	// Dir is the directory that relative paths of `file` rows are
	// resolved against. Empty means the current directory, as
	// nvs_partition_gen does.
	Dir string
	// ReadFile reads the file of a `file` row. Nil means os.ReadFile,
	// refusing files larger than MaxFileSize.
	ReadFile func(name string) ([]byte, error)
}

// Row is one row of a CSV file: a namespace row (Item.Key empty,
// Item.Namespace the namespace) or a value in the namespace above it.
type Row struct {
	Line int // line number in the file, from 1
	Item Item
}

// ParseCSV reads the CSV input of nvs_partition_gen:
//
//	key,type,encoding,value
//	# a comment
//	example,namespace,,
//	g_psk_id,data,string,device-1@my-project
//	client_cert,file,string,certs/device.crt.pem
//
// The first line that is not a comment is the header, naming the columns
// key, type, encoding and value in any order. Lines starting with # are
// skipped. type is namespace, data or file; the first row must be a
// namespace. encoding (for data and file rows) is u8, i8, u16, i16, u32,
// i32, u64, i64 (a decimal integer), string (stored as a NUL-terminated
// string of at most 4000 bytes), hex2bin, base64 or binary (stored as a
// blob: decoded from hex or base64, or the bytes as they are). A file row's
// value is a path; the file's content is then encoded the same way. Keys
// and namespace names are 1..15 bytes.
//
// Differences from nvs_partition_gen: a key may appear only once per
// namespace; integers are range-checked; encodings are case-insensitive;
// string sizes are in bytes (the generator counts characters, so its size
// field and span are wrong for non-ASCII strings); the Wi-Fi keys the
// newest generator special-cases (ap.ssid, sta.pswd, …) get no extra PMK
// entries. Errors wrap ErrCSV and give the line; they never quote the
// value of a secret key.
func ParseCSV(r io.Reader, opts CSVOptions) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = false
	var (
		rows []Row
		col  map[string]int
		ns   string
		seen = map[[2]string]int{}
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%w: line %d: %v", ErrCSV, pe.StartLine, pe.Err)
			}
			return nil, fmt.Errorf("%w: %v", ErrCSV, err)
		}
		line, _ := cr.FieldPos(0)
		if col == nil {
			if col, err = csvHeader(rec); err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrCSV, line, err)
			}
			continue
		}
		field := func(name string) string {
			if i := col[name]; i < len(rec) {
				return rec[i]
			}
			return ""
		}
		key, typ, enc, val := field("key"), field("type"), strings.ToLower(strings.TrimSpace(field("encoding"))), field("value")
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: key %s: %s", ErrCSV, line, strconv.Quote(key), fmt.Sprintf(format, args...))
		}
		if err := checkName("key", key); err != nil {
			return nil, fail("want 1..%d bytes of printable ASCII", MaxKeyLen)
		}
		switch typ {
		case "namespace":
			ns = key
			rows = append(rows, Row{Line: line, Item: Item{Namespace: ns}})
			continue
		case "data", "file":
		default:
			return nil, fail("type %s: want namespace, data or file", strconv.Quote(typ))
		}
		if ns == "" {
			return nil, fail("the first row must be a namespace row (KEY,namespace,,)")
		}
		if l, ok := seen[[2]string{ns, key}]; ok {
			return nil, fail("already set in namespace %s on line %d", strconv.Quote(ns), l)
		}
		if !knownEncoding(enc) {
			return nil, fail("encoding %s: want %s", strconv.Quote(enc), encodingList)
		}
		secret := SecretKey(key)
		raw := []byte(val)
		if typ == "file" {
			if val == "" {
				return nil, fail("file row without a path")
			}
			if raw, err = readCSVFile(opts, val); err != nil {
				return nil, fail("%v", err)
			}
		}
		it := Item{Namespace: ns, Key: key}
		if err := decodeValue(&it, enc, raw); err != nil {
			if !secret && typ == "data" && len(val) <= 64 {
				return nil, fail("%s value %s: %v", enc, strconv.Quote(val), err)
			}
			return nil, fail("%s value: %v", enc, err)
		}
		seen[[2]string{ns, key}] = line
		rows = append(rows, Row{Line: line, Item: it})
	}
	if col == nil {
		return nil, fmt.Errorf("%w: no header line (key,type,encoding,value)", ErrCSV)
	}
	return rows, nil
}

// csvHeader maps the column names key, type, encoding and value to their
// positions.
func csvHeader(rec []string) (map[string]int, error) {
	col := map[string]int{}
	for i, f := range rec {
		f = strings.TrimSpace(strings.TrimPrefix(f, "\ufeff"))
		if _, dup := col[f]; dup && f != "" {
			return nil, fmt.Errorf("column %q appears twice in the header", f)
		}
		col[f] = i
	}
	for _, need := range []string{"key", "type", "encoding", "value"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("header lacks column %q: want key,type,encoding,value", need)
		}
	}
	return col, nil
}

func readCSVFile(opts CSVOptions, name string) ([]byte, error) {
	if !filepath.IsAbs(name) && opts.Dir != "" {
		name = filepath.Join(opts.Dir, name)
	}
	if opts.ReadFile != nil {
		return opts.ReadFile(name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, MaxFileSize)
	}
	return b, nil
}

const encodingList = "u8, i8, u16, i16, u32, i32, u64, i64, string, hex2bin, base64 or binary"

func knownEncoding(enc string) bool {
	switch enc {
	case "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "string", "hex2bin", "base64", "binary":
		return true
	}
	return false
}

// decodeValue sets it's type and value from an encoding and the value's
// bytes (a CSV field, or a file's content).
func decodeValue(it *Item, enc string, v []byte) error {
	switch enc {
	case "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64":
		var t Type
		for tt, n := range typeNames {
			if n == enc {
				t = tt
			}
		}
		it.Type = t
		s := strings.TrimSpace(string(v))
		bits := 8 * t.Width()
		if t.Signed() {
			n, err := strconv.ParseInt(s, 10, bits)
			if err != nil {
				return fmt.Errorf("want a decimal integer in [%d, %d]", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
			}
			it.Int = n
		} else {
			n, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, bits)
			if err != nil {
				return fmt.Errorf("want a decimal integer in [0, %d]", ^uint64(0)>>(64-bits))
			}
			it.Uint = n
		}
	case "string":
		if n := len(v) + 1; n > MaxStringLen {
			return fmt.Errorf("%d bytes with the NUL, limit %d", n, MaxStringLen)
		}
		it.Type, it.Data = TypeString, v
	case "hex2bin":
		s := bytes.TrimSpace(v)
		if len(s)%2 != 0 {
			return fmt.Errorf("odd number of hex digits (%d)", len(s))
		}
		b := make([]byte, len(s)/2)
		if _, err := hex.Decode(b, s); err != nil {
			return errors.New("not hex")
		}
		it.Type, it.Data = TypeBlob, b
	case "base64":
		s := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, string(v))
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return errors.New("not base64")
		}
		it.Type, it.Data = TypeBlob, b
	case "binary":
		it.Type, it.Data = TypeBlob, v
	default:
		return fmt.Errorf("unknown encoding: want %s", encodingList)
	}
	return nil
}

// BuildCSV parses a CSV file (see ParseCSV) and writes its rows into a new
// image (see Writer). Errors name the CSV line.
func BuildCSV(r io.Reader, copts CSVOptions, opts Options) ([]byte, error) {
	if err := CheckSize(sizeOrMin(opts.Size)); err != nil {
		return nil, err
	}
	rows, err := ParseCSV(r, copts)
	if err != nil {
		return nil, err
	}
	w, err := NewWriter(opts)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		if err := w.Add(row.Item); err != nil {
			return nil, fmt.Errorf("line %d: %w", row.Line, err)
		}
	}
	return w.Bytes(), nil
}

func sizeOrMin(n int) int {
	if n == 0 {
		return MinSize
	}
	return n
}
