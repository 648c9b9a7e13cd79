package smp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"testing"
)

func mustPacket(t testing.TB, h Header, body any) []byte {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = EncodeBody(v); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Packet{Header: h, Body: b}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestFS(t testing.TB) *MemFS {
	t.Helper()
	m, err := NewMemFS("/lfs1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Mkdir("/lfs1/credentials"); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestServerVectors(t *testing.T) {
	m := newTestFS(t)
	if err := m.WriteFile("/lfs1/credentials/crt.der", []byte("123456789")); err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerOptions{FS: m})
	u64 := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name string
		req  []byte
		want []byte // complete response packet
	}{
		{"echo v0", echoHiPkt,
			[]byte{0x03, 0x00, 0x00, 0x06, 0x00, 0x00, 0x42, 0x00, 0xa1, 0x61, 'r', 0x62, 'h', 'i'}},
		{"echo v1 read", mustPacket(t, Header{Version: 1, Op: OpRead, Seq: 1}, EchoRequest{D: ""}),
			[]byte{0x09, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, 0xa1, 0x61, 'r', 0x60}},
		{"echo without d", mustPacket(t, Header{Op: OpWrite, Seq: 2}, []byte{0xa0}),
			[]byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x02, 0x00, 0xa1, 0x62, 'r', 'c', 0x03}},
		{"unknown group", mustPacket(t, Header{Op: OpRead, Group: 77, Seq: 3, ID: 1}, []byte{0xa0}),
			[]byte{0x01, 0x00, 0x00, 0x05, 0x00, 0x4d, 0x03, 0x01, 0xa1, 0x62, 'r', 'c', 0x08}},
		{"reset read is not supported", mustPacket(t, Header{Op: OpRead, Seq: 4, ID: CmdOSReset}, []byte{0xa0}),
			[]byte{0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x04, 0x05, 0xa1, 0x62, 'r', 'c', 0x08}},
		{"version 2 is too new", mustPacket(t, Header{Version: 2, Op: OpWrite, Seq: 5}, EchoRequest{D: "x"}),
			[]byte{0x0b, 0x00, 0x00, 0x05, 0x00, 0x00, 0x05, 0x00, 0xa1, 0x62, 'r', 'c', 0x0d}},
		{"response op from host", mustPacket(t, Header{Op: OpWriteRsp, Seq: 6}, []byte{0xa0}),
			[]byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x06, 0x00, 0xa1, 0x62, 'r', 'c', 0x08}},
		{"body shorter than header says", []byte{0x02, 0x00, 0x00, 0x09, 0x00, 0x00, 0x07, 0x00, 0xa0},
			[]byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x07, 0x00, 0xa1, 0x62, 'r', 'c', 0x09}},
		{"v0 status of missing file", mustPacket(t, Header{Op: OpRead, Group: 8, Seq: 8, ID: CmdFSStatus}, StatusRequest{Name: "/lfs1/x"}),
			[]byte{0x01, 0x00, 0x00, 0x05, 0x00, 0x08, 0x08, 0x01, 0xa1, 0x62, 'r', 'c', 0x05}},
		{"v1 status of missing file", mustPacket(t, Header{Version: 1, Op: OpRead, Group: 8, Seq: 9, ID: CmdFSStatus}, StatusRequest{Name: "/lfs1/x"}),
			[]byte{0x09, 0x00, 0x00, 0x11, 0x00, 0x08, 0x09, 0x01,
				0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x03}},
		{"status", mustPacket(t, Header{Op: OpRead, Group: 8, Seq: 10, ID: CmdFSStatus}, StatusRequest{Name: "/lfs1/credentials/crt.der"}),
			[]byte{0x01, 0x00, 0x00, 0x06, 0x00, 0x08, 0x0a, 0x01, 0xa1, 0x63, 'l', 'e', 'n', 0x09}},
		{"crc32 of 123456789", mustPacket(t, Header{Op: OpRead, Group: 8, Seq: 11, ID: CmdFSHash}, HashRequest{Name: "/lfs1/credentials/crt.der"}),
			hexBytes([]byte{0x01, 0x00, 0x00, 0x1d, 0x00, 0x08, 0x0b, 0x02, 0xa3},
				[]byte{0x64, 't', 'y', 'p', 'e', 0x65, 'c', 'r', 'c', '3', '2'},
				[]byte{0x63, 'l', 'e', 'n', 0x09},
				[]byte{0x66, 'o', 'u', 't', 'p', 'u', 't', 0x1a, 0xcb, 0xf4, 0x39, 0x26})},
		{"hash type unknown, v0", mustPacket(t, Header{Op: OpRead, Group: 8, Seq: 12, ID: CmdFSHash}, HashRequest{Name: "/lfs1/credentials/crt.der", Type: "md5"}),
			[]byte{0x01, 0x00, 0x00, 0x05, 0x00, 0x08, 0x0c, 0x02, 0xa1, 0x62, 'r', 'c', 0x03}},
		{"upload without len at offset 0", mustPacket(t, Header{Op: OpWrite, Group: 8, Seq: 13}, UploadRequest{Name: "/lfs1/a", Data: []byte{1}}),
			[]byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x08, 0x0d, 0x00, 0xa1, 0x62, 'r', 'c', 0x03}},
		{"v1 upload without mount point", mustPacket(t, Header{Version: 1, Op: OpWrite, Group: 8, Seq: 14}, UploadRequest{Name: "/sd/a", Data: []byte{1}, Len: u64(1)}),
			[]byte{0x0b, 0x00, 0x00, 0x11, 0x00, 0x08, 0x0e, 0x00,
				0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x0e}},
		{"reset", mustPacket(t, Header{Op: OpWrite, Seq: 15, ID: CmdOSReset}, ResetRequest{}),
			[]byte{0x03, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x05, 0xa0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rsps, _ := s.Handle(tt.req)
			if len(rsps) != 1 {
				t.Fatalf("%d responses, want 1", len(rsps))
			}
			if !bytes.Equal(rsps[0], tt.want) {
				t.Fatalf("response\n got % x\nwant % x", rsps[0], tt.want)
			}
		})
	}
}

func TestServerHandleShape(t *testing.T) {
	s := NewServer(ServerOptions{})
	if rsps, _ := s.Handle([]byte{2, 0, 0}); len(rsps) != 0 {
		t.Errorf("short packet answered: % x", rsps)
	}
	two := append(append([]byte{}, echoHiPkt...), echoHiPkt...)
	if rsps, _ := s.Handle(two); len(rsps) != 2 {
		t.Errorf("two requests: %d responses", len(rsps))
	}
	// Processing stops at the first failing request.
	bad := mustPacket(t, Header{Op: OpWrite, Group: 8}, []byte{0xa0})
	if rsps, _ := s.Handle(append(bad, echoHiPkt...)); len(rsps) != 1 {
		t.Errorf("after a failure: %d responses, want 1", len(rsps))
	}
	_, reset := s.Handle(mustPacket(t, Header{Op: OpWrite, ID: CmdOSReset}, []byte{0xa0}))
	if !reset {
		t.Error("reset not reported")
	}
	// Without an FS the fs group is not supported.
	rsps, _ := s.Handle(mustPacket(t, Header{Op: OpRead, Group: 8, ID: CmdFSHashTypes}, []byte{0xa0}))
	if err := ResponseError(rsps[0][HeaderSize:]); !errors.As(err, new(*Error)) {
		t.Errorf("fs without FS: %v", err)
	}
}

// send runs one request through Handle and decodes the answer.
func send(t *testing.T, s *Server, v uint8, op Op, id uint8, req, rsp any) error {
	t.Helper()
	rsps, _ := s.Handle(mustPacket(t, Header{Version: v, Op: op, Group: GroupFS, ID: id}, req))
	if len(rsps) != 1 {
		t.Fatalf("%d responses", len(rsps))
	}
	body := rsps[0][HeaderSize:]
	if rsp != nil {
		_ = DecodeBody(body, rsp)
	}
	return ResponseError(body)
}

func TestServerUploadStates(t *testing.T) {
	const name = "/lfs1/credentials/key.der"
	u64 := func(v uint64) *uint64 { return &v }
	m := newTestFS(t)
	s := NewServer(ServerOptions{FS: m})

	var r UploadResponse
	if err := send(t, s, 1, OpWrite, CmdFSFile, UploadRequest{Name: name, Data: []byte("abc"), Len: u64(6)}, &r); err != nil || *r.Off != 3 {
		t.Fatalf("chunk 0: %+v %v", r, err)
	}
	// A repeated chunk at a stale offset: FILE_OFFSET_NOT_VALID with len.
	r = UploadResponse{}
	err := send(t, s, 1, OpWrite, CmdFSFile, UploadRequest{Off: 1, Name: name, Data: []byte("bc")}, &r)
	var e *Error
	if !errors.As(err, &e) || FSErr(e.RC) != FSFileOffsetNotValid || r.Len == nil || *r.Len != 3 {
		t.Fatalf("stale offset: %v, %+v", err, r)
	}
	// State was dropped; the next chunk resumes from the file size.
	r = UploadResponse{}
	if err := send(t, s, 1, OpWrite, CmdFSFile, UploadRequest{Off: 3, Name: name, Data: []byte("def")}, &r); err != nil || *r.Off != 6 {
		t.Fatalf("resume: %+v %v", r, err)
	}
	if b, _ := m.ReadFile(name); string(b) != "abcdef" {
		t.Fatalf("file %q", b)
	}
	// Restart at 0 truncates when there is data.
	if err := send(t, s, 0, OpWrite, CmdFSFile, UploadRequest{Name: name, Data: []byte("Z"), Len: u64(1)}, &r); err != nil || *r.Off != 1 {
		t.Fatalf("rewrite: %+v %v", r, err)
	}
	if b, _ := m.ReadFile(name); string(b) != "Z" {
		t.Fatalf("file %q", b)
	}
	// An empty first chunk leaves an existing file alone (Zephyr).
	if err := send(t, s, 0, OpWrite, CmdFSFile, UploadRequest{Name: name, Len: u64(0)}, &r); err != nil || *r.Off != 0 {
		t.Fatalf("empty: %+v %v", r, err)
	}
	if b, _ := m.ReadFile(name); string(b) != "Z" {
		t.Fatalf("file %q", b)
	}
	// A too-long name is EINVAL, in v0 and v1 alike.
	long := "/lfs1/" + string(bytes.Repeat([]byte{'a'}, 60))
	if err := send(t, s, 1, OpWrite, CmdFSFile, UploadRequest{Name: long, Data: []byte{1}, Len: u64(1)}, nil); !errors.As(err, &e) || e.GroupErr || RC(e.RC) != EINVAL {
		t.Fatalf("long name: %v", err)
	}
}

func TestServerDownloadAndHash(t *testing.T) {
	const name = "/lfs1/credentials/crt.der"
	m := newTestFS(t)
	data := bytes.Repeat([]byte("0123456789"), 70) // 700 bytes
	if err := m.WriteFile(name, data); err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerOptions{FS: m, DownloadChunk: 300})
	var got []byte
	for off := uint64(0); off < uint64(len(data)); {
		var r DownloadResponse
		if err := send(t, s, 1, OpRead, CmdFSFile, DownloadRequest{Off: off, Name: name}, &r); err != nil {
			t.Fatal(err)
		}
		if (off == 0) != (r.Len != nil) {
			t.Fatalf("len present at offset %d: %v", off, r.Len != nil)
		}
		got = append(got, r.Data...)
		off += uint64(len(r.Data))
	}
	if !bytes.Equal(got, data) {
		t.Fatal("download differs")
	}
	var h HashResponse
	if err := send(t, s, 1, OpRead, CmdFSHash, HashRequest{Name: name, Type: HashSHA256}, &h); err != nil {
		t.Fatal(err)
	}
	res, err := h.result()
	sum := sha256.Sum256(data)
	if err != nil || !bytes.Equal(res.Output, sum[:]) || res.Len != 700 {
		t.Fatalf("sha256: %+v %v", res, err)
	}
	// Range: off 690, len 100 hashes the last 10 bytes; off past the end fails.
	l := uint64(100)
	if err := send(t, s, 1, OpRead, CmdFSHash, HashRequest{Name: name, Type: HashSHA256, Off: 690, Len: &l}, &h); err != nil {
		t.Fatal(err)
	}
	sum = sha256.Sum256(data[690:])
	if res, _ := h.result(); !bytes.Equal(res.Output, sum[:]) || res.Len != 10 || res.Off != 690 {
		t.Fatalf("range: %+v", res)
	}
	var e *Error
	if err := send(t, s, 1, OpRead, CmdFSHash, HashRequest{Name: name, Off: 700}, nil); !errors.As(err, &e) || FSErr(e.RC) != FSFileOffsetLargerThanFile {
		t.Fatalf("past end: %v", err)
	}
	if err := m.WriteFile("/lfs1/empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := send(t, s, 1, OpRead, CmdFSHash, HashRequest{Name: "/lfs1/empty"}, nil); !errors.As(err, &e) || FSErr(e.RC) != FSFileEmpty {
		t.Fatalf("empty: %v", err)
	}
	if err := send(t, s, 1, OpRead, CmdFSStatus, StatusRequest{Name: "/lfs1/credentials"}, nil); !errors.As(err, &e) || FSErr(e.RC) != FSFileIsDirectory {
		t.Fatalf("status of dir: %v", err)
	}
}

func TestMemFS(t *testing.T) {
	m := newTestFS(t)
	if _, err := NewMemFS("lfs1"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("relative mount: %v", err)
	}
	if err := m.Mkdir("/lfs1/credentials"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("mkdir twice: %v", err)
	}
	if err := m.Mkdir("/lfs1/a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mkdir without parent: %v", err)
	}
	if err := m.WriteFile("/top", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file outside a mount: %v", err)
	}
	if err := m.WriteFile("/lfs1/credentials/../x", nil); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("unclean name: %v", err)
	}
	if err := m.WriteFile("/lfs1/credentials/crt.der", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("/lfs1/credentials"); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("remove non-empty dir: %v", err)
	}
	if got, _ := m.ReadDir("/lfs1"); len(got) != 1 || got[0] != "credentials/" {
		t.Errorf("ReadDir = %q", got)
	}
	if err := m.WriteAt("/lfs1/credentials/crt.der", []byte{9}, 3); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.ReadFile("/lfs1/credentials/crt.der"); !bytes.Equal(b, []byte{1, 0, 0, 9}) {
		t.Errorf("sparse write: %v", b)
	}
	if err := m.Remove("/lfs1/credentials/crt.der"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("/lfs1/credentials"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stat("/lfs1/credentials"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat removed: %v", err)
	}
}
