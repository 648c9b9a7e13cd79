package smp

import (
	"bytes"
	"errors"
	"testing"
)

func hexBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestEncodeBodyVectors(t *testing.T) {
	total := uint64(3)
	name := "/lfs1/credentials/crt.der" // 25 bytes
	tests := []struct {
		name string
		v    any
		want []byte
	}{
		{"upload first chunk", UploadRequest{Off: 0, Data: []byte{1, 2, 3}, Name: name, Len: &total}, hexBytes(
			[]byte{0xa4},                              // map(4)
			[]byte{0x63, 'o', 'f', 'f'}, []byte{0x00}, // "off": 0
			[]byte{0x64, 'd', 'a', 't', 'a'}, []byte{0x43, 1, 2, 3}, // "data": h'010203'
			[]byte{0x64, 'n', 'a', 'm', 'e'}, []byte{0x78, 0x19}, []byte(name), // "name": tstr(25)
			[]byte{0x63, 'l', 'e', 'n'}, []byte{0x03}, // "len": 3
		)},
		{"upload later chunk has no len", UploadRequest{Off: 300, Data: nil, Name: "/a"}, hexBytes(
			[]byte{0xa3},
			[]byte{0x63, 'o', 'f', 'f'}, []byte{0x19, 0x01, 0x2c}, // 300
			[]byte{0x64, 'd', 'a', 't', 'a'}, []byte{0x40}, // empty bstr, not null
			[]byte{0x64, 'n', 'a', 'm', 'e'}, []byte{0x62, '/', 'a'},
		)},
		{"download", DownloadRequest{Off: 24, Name: "/a"}, hexBytes(
			[]byte{0xa2, 0x63, 'o', 'f', 'f', 0x18, 24, 0x64, 'n', 'a', 'm', 'e', 0x62, '/', 'a'},
		)},
		{"echo", EchoRequest{D: "hi"}, []byte{0xa1, 0x61, 'd', 0x62, 'h', 'i'}},
		{"reset", ResetRequest{}, []byte{0xa0}},
		{"hash default type", HashRequest{Name: "/a"}, []byte{0xa1, 0x64, 'n', 'a', 'm', 'e', 0x62, '/', 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeBody(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("EncodeBody = % x\nwant          % x", got, tt.want)
			}
		})
	}
}

func TestDecodeBody(t *testing.T) {
	// Zephyr's zcbor writes indefinite-length maps: BF ... FF.
	var up UploadResponse
	if err := DecodeBody([]byte{0xbf, 0x63, 'o', 'f', 'f', 0x18, 0x40, 0xff}, &up); err != nil || up.Off == nil || *up.Off != 64 {
		t.Fatalf("indefinite map: %+v, %v", up, err)
	}
	var dl DownloadResponse
	body := []byte{0xbf, 0x63, 'o', 'f', 'f', 0x00, 0x64, 'd', 'a', 't', 'a', 0x42, 0xca, 0xfe, 0x63, 'l', 'e', 'n', 0x02,
		0x63, 'x', 'y', 'z', 0xf5, 0xff} // unknown key "xyz": true is skipped
	if err := DecodeBody(body, &dl); err != nil || *dl.Off != 0 || !bytes.Equal(dl.Data, []byte{0xca, 0xfe}) || *dl.Len != 2 {
		t.Fatalf("download response: %+v, %v", dl, err)
	}
	bad := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"array", []byte{0x80}},
		{"uint", []byte{0x01}},
		{"truncated map", []byte{0xa1, 0x63, 'o', 'f'}},
		{"duplicate key", []byte{0xa2, 0x63, 'o', 'f', 'f', 0x01, 0x63, 'o', 'f', 'f', 0x02}},
		{"negative offset", []byte{0xa1, 0x63, 'o', 'f', 'f', 0x20}},
		{"trailing bytes", []byte{0xa0, 0x00}},
		{"invalid utf-8 key", []byte{0xa1, 0x61, 0xff, 0x00}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var v UploadResponse
			if err := DecodeBody(tt.in, &v); !errors.Is(err, ErrBody) {
				t.Fatalf("err = %v, want ErrBody", err)
			}
		})
	}
}

func TestResponseError(t *testing.T) {
	tests := []struct {
		name     string
		body     []byte
		want     *Error
		notFound bool
		text     string
	}{
		{"empty map", []byte{0xa0}, nil, false, ""},
		{"rc 0", []byte{0xa1, 0x62, 'r', 'c', 0x00}, nil, false, ""},
		{"no rc", []byte{0xa1, 0x63, 'o', 'f', 'f', 0x05}, nil, false, ""},
		{"rc ENOENT", []byte{0xa1, 0x62, 'r', 'c', 0x05}, &Error{RC: 5}, true, "smp: device returned rc 5 (ENOENT)"},
		{"rc EINVAL with reason", []byte{0xa2, 0x62, 'r', 'c', 0x03, 0x63, 'r', 's', 'n', 0x62, 'n', 'o'},
			&Error{RC: 3, Reason: "no"}, false, `smp: device returned rc 3 (EINVAL): "no"`},
		{"v2 fs FILE_NOT_FOUND", []byte{0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x03},
			&Error{RC: 3, GroupErr: true, Group: 8}, true, "smp: device returned fs error 3 (FILE_NOT_FOUND)"},
		{"v2 other group", []byte{0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x03, 0x62, 'r', 'c', 0x02},
			&Error{RC: 2, GroupErr: true, Group: 3}, false, "smp: device returned group 3 error 2"},
		{"v2 rc 0", []byte{0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x00}, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ResponseError(tt.body)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || *e != *tt.want {
				t.Fatalf("err = %#v, want %#v", err, tt.want)
			}
			if errors.Is(err, ErrNotFound) != tt.notFound {
				t.Fatalf("errors.Is(ErrNotFound) = %v", !tt.notFound)
			}
			if err.Error() != tt.text {
				t.Fatalf("text %q, want %q", err.Error(), tt.text)
			}
		})
	}
	if err := ResponseError([]byte{0x80}); !errors.Is(err, ErrBody) {
		t.Fatalf("array body: %v", err)
	}
}

func TestNames(t *testing.T) {
	want := []string{"EOK", "EUNKNOWN", "ENOMEM", "EINVAL", "ETIMEOUT", "ENOENT"}
	for i, w := range want {
		if got := RC(i).String(); got != w {
			t.Errorf("RC(%d) = %s, want %s", i, got, w)
		}
	}
	for rc, w := range map[RC]string{ENOTSUP: "ENOTSUP", UnsupportedTooNew: "UNSUPPORTED_TOO_NEW", 300: "EPERUSER+44", 99: "rc99"} {
		if got := rc.String(); got != w {
			t.Errorf("RC(%d) = %s, want %s", int(rc), got, w)
		}
	}
	for e, w := range map[FSErr]string{FSFileNotFound: "FILE_NOT_FOUND", FSFileEmpty: "FILE_EMPTY", 40: "fs40"} {
		if got := e.String(); got != w {
			t.Errorf("FSErr(%d) = %s, want %s", int(e), got, w)
		}
	}
}

func TestHashResult(t *testing.T) {
	tests := []struct {
		name   string
		output []byte
		want   []byte
	}{
		{"crc32 as uint", []byte{0x1a, 0xcb, 0xf4, 0x39, 0x26}, []byte{0xcb, 0xf4, 0x39, 0x26}},
		{"small uint", []byte{0x05}, []byte{0, 0, 0, 5}},
		{"sha256 as bstr", append([]byte{0x58, 0x20}, make([]byte, 32)...), make([]byte, 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := HashResponse{Type: "x", Len: 9, Output: tt.output}.result()
			if err != nil || !bytes.Equal(res.Output, tt.want) || res.Len != 9 {
				t.Fatalf("result = %+v, %v", res, err)
			}
		})
	}
	if _, err := (HashResponse{Output: []byte{0x60}}).result(); !errors.Is(err, ErrBody) {
		t.Fatalf("text output: %v", err)
	}
	if _, err := (HashResponse{}).result(); !errors.Is(err, ErrBody) {
		t.Fatalf("no output: %v", err)
	}
}
