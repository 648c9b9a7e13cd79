package smp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"sync"
)

// ServerOptions configures a Server. The zero value means defaults.
type ServerOptions struct {
	// FS backs the fs group (8). Nil: fs commands answer ENOTSUP.
	FS FS
	// MaxPathLen is the longest file name accepted
	// (CONFIG_MCUMGR_GRP_FS_PATH_LEN). Default 64.
	MaxPathLen int
	// DownloadChunk is the most file bytes per download response.
	// Default 256, which fits Zephyr's default 384-byte net_buf.
	DownloadChunk int
	// NetbufSize is the device's packet buffer
	// (MCUMGR_TRANSPORT_NETBUF_SIZE): Serve silently drops a request
	// whose length prefix, packet and CRC exceed it. Default 384.
	NetbufSize int
	// Console receives the non-SMP bytes Serve reads (what the host
	// types into the shell). Nil discards them.
	Console io.Writer
	// OnReset is called by Serve after it has written the response to an
	// os reset command, where the real device reboots.
	OnReset func()
}

// Server is the device side of SMP: the os echo and reset commands and the
// fs group over an FS, answering the way Zephyr's mcumgr does (including
// the legacy rc translation for version 0 requests). It keeps Zephyr's
// single open-file state between upload and download requests. It is safe
// for concurrent use.
type Server struct {
	opts ServerOptions

	mu sync.Mutex
	// open-file state, as fs_mgmt_ctxt in Zephyr's fs_mgmt.c
	st   uint8 // stNone, stUpload, stDownload
	off  uint64
	len  uint64
	path string
}

const (
	fsNone uint8 = iota
	fsUpload
	fsDownload
)

// NewServer returns a Server.
func NewServer(opts ServerOptions) *Server {
	if opts.MaxPathLen <= 0 {
		opts.MaxPathLen = 64
	}
	if opts.DownloadChunk <= 0 {
		opts.DownloadChunk = 256
	}
	if opts.NetbufSize <= 0 {
		opts.NetbufSize = 384
	}
	return &Server{opts: opts}
}

// Serve reads framed requests from rw, answers each in frames, and passes
// other bytes to Options.Console. Damaged frames are dropped without an
// answer, as Zephyr does. It returns nil when rw reports io.EOF, the read
// or write error otherwise, or ctx.Err() once ctx is done; a read still
// blocked on rw then ends when rw is closed.
func (s *Server) Serve(ctx context.Context, rw io.ReadWriter) error {
	dec := NewDecoder(rw, DecoderOptions{Console: s.opts.Console, MaxBody: s.opts.NetbufSize})
	ch := make(chan readResult)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			pkt, err := dec.ReadPacket()
			var fe *FrameError
			if errors.As(err, &fe) {
				continue
			}
			select {
			case ch <- readResult{pkt, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-ch:
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					return nil
				}
				return r.err
			}
			rsps, reset := s.Handle(r.pkt)
			for _, rsp := range rsps {
				out, err := EncodeFrames(rsp)
				if err != nil {
					return err
				}
				if _, err := rw.Write(out); err != nil {
					return err
				}
			}
			if reset && s.opts.OnReset != nil {
				s.opts.OnReset()
			}
		}
	}
}

// Handle answers the request packet(s) in pkt, without framing. Like
// Zephyr it processes requests one after another and stops at the first
// that fails; a packet too short for a header gets no answer. reset reports
// that an os reset was accepted: the caller should send the responses and
// then reboot the device.
func (s *Server) Handle(pkt []byte) (rsps [][]byte, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(pkt) > 0 {
		if len(pkt) < HeaderSize {
			return rsps, reset
		}
		var hb [HeaderSize]byte
		copy(hb[:], pkt)
		hb[0] &= 0x1F // Zephyr ignores the reserved bits
		h, err := UnmarshalHeader(hb[:])
		if err != nil {
			return rsps, reset
		}
		pkt = pkt[HeaderSize:]
		if len(pkt) < int(h.Len) {
			return append(rsps, s.errRsp(h, ECORRUPT)), reset
		}
		body := pkt[:h.Len]
		pkt = pkt[h.Len:]
		if h.Version > Version1 {
			return append(rsps, s.errRsp(h, UnsupportedTooNew)), reset
		}
		if h.Op != OpRead && h.Op != OpWrite {
			return append(rsps, s.errRsp(h, ENOTSUP)), reset
		}
		r := s.dispatch(h, body)
		switch {
		case r.rc != EOK:
			return append(rsps, s.errRsp(h, r.rc)), reset
		case r.ferr != FSOK && h.Version == Version0:
			return append(rsps, s.errRsp(h, r.ferr.legacy())), reset
		case r.ferr != FSOK:
			r.body = append(omap{{"err", omap{{"group", uint64(GroupFS)}, {"rc", uint64(r.ferr)}}}}, r.body...)
		}
		rsp, err := s.packet(h, r.body)
		if err != nil {
			return append(rsps, s.errRsp(h, EMSGSIZE)), reset
		}
		rsps = append(rsps, rsp)
		if r.reset {
			reset = true
			s.cleanup() // the device reboots and forgets
		}
	}
	return rsps, reset
}

type result struct {
	body  omap
	rc    RC
	ferr  FSErr
	reset bool
}

func rcResult(rc RC) result     { return result{rc: rc} }
func fsResult(e FSErr) result   { return result{ferr: e} }
func okResult(body omap) result { return result{body: body} }

func (s *Server) dispatch(h Header, body []byte) result {
	switch h.Group {
	case GroupOS:
		switch {
		case h.ID == CmdOSEcho:
			return s.echo(body)
		case h.ID == CmdOSReset && h.Op == OpWrite:
			return result{body: omap{}, reset: true}
		}
	case GroupFS:
		if s.opts.FS == nil {
			break
		}
		switch {
		case h.ID == CmdFSFile && h.Op == OpWrite:
			return s.upload(body)
		case h.ID == CmdFSFile && h.Op == OpRead:
			return s.download(body)
		case h.ID == CmdFSStatus && h.Op == OpRead:
			return s.status(body)
		case h.ID == CmdFSHash && h.Op == OpRead:
			return s.hash(body)
		case h.ID == CmdFSHashTypes && h.Op == OpRead:
			return okResult(omap{{"types", omap{
				{HashCRC32, omap{{"format", uint64(0)}, {"size", uint64(4)}}},
				{HashSHA256, omap{{"format", uint64(1)}, {"size", uint64(32)}}},
			}}})
		case h.ID == CmdFSCloseFile && h.Op == OpWrite:
			s.cleanup()
			return okResult(omap{})
		}
	}
	return rcResult(ENOTSUP)
}

func (s *Server) errRsp(h Header, rc RC) []byte {
	b, _ := s.packet(h, omap{{"rc", int64(rc)}}) // cannot fail: tiny body
	return b
}

func (s *Server) packet(req Header, body omap) ([]byte, error) {
	b, err := body.MarshalCBOR()
	if err != nil {
		return nil, err
	}
	h := Header{
		Version: min(req.Version, Version1),
		Op:      req.Op.Response(),
		Group:   req.Group,
		Seq:     req.Seq,
		ID:      req.ID,
	}
	return Packet{Header: h, Body: b}.Marshal()
}

func (s *Server) echo(body []byte) result {
	var r struct {
		D *string `cbor:"d"`
	}
	if DecodeBody(body, &r) != nil || r.D == nil {
		return rcResult(EINVAL)
	}
	return okResult(omap{{"r", *r.D}})
}

func (s *Server) cleanup() {
	s.st, s.off, s.len, s.path = fsNone, 0, 0, ""
}

func (s *Server) nameOK(name *string) bool {
	return name != nil && *name != "" && len(*name) <= s.opts.MaxPathLen
}

// statErr maps an FS error the way fs_mgmt_filelen does.
func statErr(err error) FSErr {
	switch {
	case errors.Is(err, fs.ErrInvalid):
		return FSFileInvalidName
	case errors.Is(err, fs.ErrNotExist):
		return FSFileNotFound
	case errors.Is(err, ErrIsDir):
		return FSFileIsDirectory
	}
	return FSUnknown
}

// openErr maps an error opening a file for writing.
func openErr(err error) FSErr {
	switch {
	case errors.Is(err, fs.ErrInvalid):
		return FSFileInvalidName
	case errors.Is(err, fs.ErrNotExist):
		return FSMountPointNotFound
	case errors.Is(err, ErrReadOnly):
		return FSReadOnlyFilesystem
	}
	return FSUnknown
}

func (s *Server) upload(body []byte) result {
	var r struct {
		Off  *uint64 `cbor:"off"`
		Name *string `cbor:"name"`
		Data []byte  `cbor:"data"`
		Len  *uint64 `cbor:"len"`
	}
	if DecodeBody(body, &r) != nil || r.Off == nil || !s.nameOK(r.Name) || (*r.Off == 0 && r.Len == nil) {
		return rcResult(EINVAL)
	}
	name, off := *r.Name, *r.Off
	fsys := s.opts.FS
	if s.st != fsUpload || s.path != name {
		s.cleanup()
	}
	if s.st == fsNone {
		if err := fsys.Create(name); err != nil {
			return fsResult(openErr(err))
		}
		s.st, s.path, s.off = fsUpload, name, 0
	}
	var existing int64
	if off == 0 {
		// Zephyr (v3.x fs_mgmt.c) keeps its running offset when an
		// upload in progress restarts at 0, and then reports the old
		// offset plus the new chunk; we start again from 0.
		s.len, s.off = *r.Len, 0
		size, err := fsys.Stat(name)
		if err != nil {
			s.cleanup()
			return fsResult(statErr(err))
		}
		existing = size
	} else if s.off == 0 {
		// State was lost (or another file was in between): resume
		// from the size of the file.
		size, err := fsys.Stat(name)
		if err != nil {
			s.cleanup()
			return fsResult(statErr(err))
		}
		s.off = uint64(size)
	}
	if off > 0 && off != s.off {
		cur := s.off
		s.cleanup()
		return result{ferr: FSFileOffsetNotValid, body: omap{{"len", cur}}}
	}
	if len(r.Data) > 0 {
		// As in Zephyr, an existing file is truncated only when the
		// first chunk carries data.
		if off == 0 && existing != 0 {
			if err := fsys.Truncate(name, 0); err != nil {
				s.cleanup()
				return fsResult(FSFileTruncateFailed)
			}
		}
		if err := fsys.WriteAt(name, r.Data, int64(s.off)); err != nil {
			s.cleanup()
			return fsResult(FSFileWriteFailed)
		}
		s.off += uint64(len(r.Data))
	}
	res := okResult(omap{{"off", s.off}})
	if s.len > 0 && s.off >= s.len {
		s.cleanup()
	}
	return res
}

func (s *Server) download(body []byte) result {
	var r struct {
		Off  *uint64 `cbor:"off"`
		Name *string `cbor:"name"`
	}
	if DecodeBody(body, &r) != nil || r.Off == nil || !s.nameOK(r.Name) {
		return rcResult(EINVAL)
	}
	name, off := *r.Name, *r.Off
	if s.st != fsDownload || s.path != name {
		s.cleanup()
	}
	if s.st == fsNone {
		size, err := s.opts.FS.Stat(name)
		if err != nil {
			return fsResult(statErr(err))
		}
		s.st, s.path, s.off, s.len = fsDownload, name, 0, uint64(size)
	}
	if off > 1<<62 {
		s.cleanup()
		return fsResult(FSFileSeekFailed)
	}
	s.off = off
	buf := make([]byte, s.opts.DownloadChunk)
	n, err := s.opts.FS.ReadAt(name, buf, int64(off))
	if err != nil {
		s.cleanup()
		return fsResult(FSFileReadFailed)
	}
	s.off += uint64(n)
	body2 := omap{{"off", off}, {"data", buf[:n]}}
	if off == 0 {
		body2 = append(body2, kv{"len", s.len})
	}
	if s.len > 0 && s.off >= s.len {
		s.cleanup()
	}
	return okResult(body2)
}

func (s *Server) status(body []byte) result {
	var r struct {
		Name *string `cbor:"name"`
	}
	if DecodeBody(body, &r) != nil || !s.nameOK(r.Name) {
		return rcResult(EINVAL)
	}
	size, err := s.opts.FS.Stat(*r.Name)
	if err != nil {
		return fsResult(statErr(err))
	}
	return okResult(omap{{"len", uint64(size)}})
}

func (s *Server) hash(body []byte) result {
	var r struct {
		Type *string `cbor:"type"`
		Name *string `cbor:"name"`
		Off  *uint64 `cbor:"off"`
		Len  *uint64 `cbor:"len"`
	}
	if DecodeBody(body, &r) != nil || !s.nameOK(r.Name) ||
		(r.Type != nil && len(*r.Type) > 8) || (r.Len != nil && *r.Len == 0) {
		return rcResult(EINVAL)
	}
	typ := HashCRC32
	if r.Type != nil && *r.Type != "" {
		typ = *r.Type
	}
	if typ != HashCRC32 && typ != HashSHA256 {
		return fsResult(FSChecksumHashNotFound)
	}
	var off uint64
	if r.Off != nil {
		off = *r.Off
	}
	limit := ^uint64(0)
	if r.Len != nil {
		limit = *r.Len
	}
	size, err := s.opts.FS.Stat(*r.Name)
	if err != nil {
		return fsResult(statErr(err))
	}
	if uint64(size) <= off {
		if size == 0 {
			return fsResult(FSFileEmpty)
		}
		return fsResult(FSFileOffsetLargerThanFile)
	}
	c := crc32.NewIEEE()
	sh := sha256.New()
	var done uint64
	buf := make([]byte, 4096)
	for done < limit {
		want := min(uint64(len(buf)), limit-done)
		n, err := s.opts.FS.ReadAt(*r.Name, buf[:want], int64(off+done))
		if err != nil {
			return fsResult(FSFileReadFailed)
		}
		if n == 0 {
			break
		}
		c.Write(buf[:n])
		sh.Write(buf[:n])
		done += uint64(n)
	}
	out := omap{{"type", typ}}
	if off != 0 {
		out = append(out, kv{"off", off})
	}
	out = append(out, kv{"len", done})
	if typ == HashCRC32 {
		out = append(out, kv{"output", uint64(c.Sum32())})
	} else {
		out = append(out, kv{"output", sh.Sum(nil)})
	}
	return okResult(out)
}

// omap is a CBOR map with its keys in a fixed order, so that responses are
// the same bytes every time.
type omap []kv

type kv struct {
	k string
	v any
}

// MarshalCBOR implements cbor.Marshaler.
func (m omap) MarshalCBOR() ([]byte, error) {
	b := appendHead(nil, 5, uint64(len(m)))
	for _, e := range m {
		kb, err := encMode.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		vb, err := encMode.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b = append(append(b, kb...), vb...)
	}
	return b, nil
}

// appendHead appends a CBOR initial byte and argument.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xFF:
		return append(b, m|24, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xFFFFFFFF:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}
