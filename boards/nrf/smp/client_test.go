package smp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type port struct {
	io.Reader
	io.Writer
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deviceWire is the device's side of the UART: before every response it
// writes a log line and a shell prompt without a newline, and it can drop
// or damage chosen responses (numbered from 1).
type deviceWire struct {
	w       io.Writer
	drop    map[int]bool
	corrupt map[int]bool

	mu       sync.Mutex
	n        int
	injected strings.Builder
}

func (d *deviceWire) Write(p []byte) (int, error) {
	d.mu.Lock()
	d.n++
	n := d.n
	text := fmt.Sprintf("[00:00:%02d.000,000] <inf> golioth: tick %d\r\nuart:~$ ", n%60, n)
	d.injected.WriteString(text)
	d.mu.Unlock()
	if _, err := io.WriteString(d.w, text); err != nil {
		return 0, err
	}
	switch {
	case d.drop[n]:
		return len(p), nil
	case d.corrupt[n]:
		q := bytes.Clone(p)
		if q[10] == 'A' {
			q[10] = 'B'
		} else {
			q[10] = 'A'
		}
		p = q
	}
	return d.w.Write(p)
}

func (d *deviceWire) text() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.injected.String()
}

type rig struct {
	client     *Client
	fs         *MemFS
	wire       *deviceWire
	toDevice   io.Writer // raw bytes to the device, as typed into its shell
	devConsole *syncBuf
	hostCon    *syncBuf
	resets     chan struct{} // one value per OnReset call
}

func newRig(t *testing.T, version uint8, drop, corrupt map[int]bool) *rig {
	t.Helper()
	r := &rig{fs: newTestFS(t), devConsole: &syncBuf{}, hostCon: &syncBuf{}, resets: make(chan struct{}, 4)}
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	r.wire = &deviceWire{w: s2cW, drop: drop, corrupt: corrupt}
	r.toDevice = c2sW
	srv := NewServer(ServerOptions{FS: r.fs, Console: r.devConsole, OnReset: func() { r.resets <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, port{c2sR, r.wire}) }()
	r.client = &Client{Port: port{s2cR, c2sW}, Console: r.hostCon, Version: version, Timeout: 5 * time.Second}
	if drop != nil || corrupt != nil {
		r.client.Timeout = 150 * time.Millisecond
	}
	t.Cleanup(func() {
		cancel()
		c2sW.Close()
		s2cW.Close()
		c2sR.Close()
		s2cR.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// derFile is a 2 KiB DER object: SEQUENCE { OCTET STRING (2040 bytes) }.
func derFile() []byte {
	b := []byte{0x30, 0x82, 0x07, 0xfc, 0x04, 0x82, 0x07, 0xf8}
	for i := range 2040 {
		b = append(b, byte(i*31+7))
	}
	return b
}

func TestClientServer(t *testing.T) {
	const name = "/lfs1/credentials/crt.der"
	der := derFile()
	if len(der) != 2048 {
		t.Fatalf("DER is %d bytes", len(der))
	}
	for _, version := range []uint8{Version0, Version1} {
		for _, mtu := range []int{256, 128} {
			t.Run(fmt.Sprintf("v%d/mtu%d", version, mtu), func(t *testing.T) {
				ctx := testCtx(t)
				r := newRig(t, version, nil, nil)
				if mtu == 128 {
					r.client.FrameGap = time.Millisecond // frame by frame, as newtmgr writes
				}
				shell := "fs mkdir /lfs1/credentials\r\nlog halt\r\n"
				if _, err := io.WriteString(r.toDevice, shell); err != nil {
					t.Fatal(err)
				}
				if got, err := r.client.Echo(ctx, "hello"); err != nil || got != "hello" {
					t.Fatalf("Echo = %q, %v", got, err)
				}
				if err := r.client.Upload(ctx, name, der, mtu); err != nil {
					t.Fatalf("Upload: %v", err)
				}
				if got, _ := r.fs.ReadFile(name); !bytes.Equal(got, der) {
					t.Fatal("file on the device differs")
				}
				if n, err := r.client.Status(ctx, name); err != nil || n != 2048 {
					t.Fatalf("Status = %d, %v", n, err)
				}
				h, err := r.client.Hash(ctx, name, "")
				want := crc32.ChecksumIEEE(der)
				if err != nil || h.Type != HashCRC32 || !bytes.Equal(h.Output, []byte{byte(want >> 24), byte(want >> 16), byte(want >> 8), byte(want)}) {
					t.Fatalf("Hash crc32 = %+v, %v", h, err)
				}
				h, err = r.client.Hash(ctx, name, HashSHA256)
				sum := sha256.Sum256(der)
				if err != nil || !bytes.Equal(h.Output, sum[:]) || h.Len != 2048 {
					t.Fatalf("Hash sha256 = %+v, %v", h, err)
				}
				got, err := r.client.Download(ctx, name)
				if err != nil || !bytes.Equal(got, der) {
					t.Fatalf("Download: %d bytes, %v", len(got), err)
				}
				if err := r.client.Reset(ctx); err != nil {
					t.Fatal(err)
				}
				// OnReset runs after the answer is written: wait for it.
				select {
				case <-r.resets:
				case <-ctx.Done():
					t.Fatal("OnReset not called")
				}
				// Every byte of console text reached the host's console,
				// and only that; the shell input reached the device's.
				if got, want := r.hostCon.String(), r.wire.text(); got != want {
					t.Fatalf("host console:\n%q\nwant\n%q", got, want)
				}
				if got := r.devConsole.String(); got != shell {
					t.Fatalf("device console %q, want %q", got, shell)
				}
			})
		}
	}
}

func TestClientEmptyFile(t *testing.T) {
	ctx := testCtx(t)
	r := newRig(t, Version1, nil, nil)
	if err := r.client.Upload(ctx, "/lfs1/empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := r.client.Status(ctx, "/lfs1/empty"); err != nil || n != 0 {
		t.Fatalf("Status = %d, %v", n, err)
	}
	if got, err := r.client.Download(ctx, "/lfs1/empty"); err != nil || len(got) != 0 {
		t.Fatalf("Download = %x, %v", got, err)
	}
}

func TestClientDeviceErrors(t *testing.T) {
	for _, version := range []uint8{Version0, Version1} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			ctx := testCtx(t)
			r := newRig(t, version, nil, nil)
			var e *Error
			err := r.client.Upload(ctx, "/lfs1/nodir/crt.der", []byte{1, 2, 3}, 0)
			if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) {
				t.Fatalf("upload without directory: %v", err)
			}
			if version == Version1 && FSErr(e.RC) != FSMountPointNotFound {
				t.Fatalf("v1 error %v", e)
			}
			if _, err := r.client.Download(ctx, "/lfs1/none"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("download missing: %v", err)
			}
			if _, err := r.client.Status(ctx, "/lfs1/none"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("status missing: %v", err)
			}
			if _, err := r.client.Hash(ctx, "/lfs1/none", ""); !errors.Is(err, ErrNotFound) {
				t.Fatalf("hash missing: %v", err)
			}
			if err := r.client.Upload(ctx, "/lfs1/credentials/crt.der", []byte{1}, 30); !errors.Is(err, ErrMTU) {
				t.Fatalf("tiny MTU: %v", err)
			}
		})
	}
}

func TestClientRetries(t *testing.T) {
	const name = "/lfs1/credentials/key.der"
	der := derFile()[:700]
	tests := []struct {
		name    string
		version uint8
		drop    map[int]bool
		corrupt map[int]bool
	}{
		{"first chunk answer lost", Version1, map[int]bool{1: true}, nil},
		{"middle chunk answer lost, v1", Version1, map[int]bool{3: true}, nil},
		{"middle chunk answer lost, v0", Version0, map[int]bool{3: true}, nil},
		{"last chunk answer lost", Version1, map[int]bool{4: true}, nil}, // 700 bytes at MTU 256 is 4 chunks
		{"answer with a bad CRC", Version1, nil, map[int]bool{2: true}},
		{"two answers lost in a row", Version1, map[int]bool{2: true, 3: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			r := newRig(t, tt.version, tt.drop, tt.corrupt)
			if err := r.client.Upload(ctx, name, der, 256); err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if got, _ := r.fs.ReadFile(name); !bytes.Equal(got, der) {
				t.Fatalf("file differs: %d bytes", len(got))
			}
		})
	}
}

// blockingPort never answers: reads wait until Close.
type blockingPort struct {
	closed chan struct{}
	once   sync.Once
	writes atomic.Int32
}

func (p *blockingPort) Read([]byte) (int, error) { <-p.closed; return 0, io.EOF }
func (p *blockingPort) Write(b []byte) (int, error) {
	p.writes.Add(1)
	return len(b), nil
}
func (p *blockingPort) Close() { p.once.Do(func() { close(p.closed) }) }

func TestClientTimeout(t *testing.T) {
	p := &blockingPort{closed: make(chan struct{})}
	t.Cleanup(p.Close)
	c := &Client{Port: p, Timeout: 10 * time.Millisecond, Tries: 2}
	_, err := c.Echo(testCtx(t), "x")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if p.writes.Load() != 2 {
		t.Fatalf("%d writes, want 2", p.writes.Load())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c.Timeout = time.Hour
	if _, err := c.Echo(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	p.Close()
	c.Timeout = time.Second
	if _, err := c.Echo(testCtx(t), "x"); !errors.Is(err, io.EOF) {
		t.Fatalf("closed port: %v", err)
	}
	if err := (&Client{}).Reset(t.Context()); !errors.Is(err, ErrNoPort) {
		t.Fatalf("no port: %v", err)
	}
}

// scripted runs a fake device whose answers come from fn.
func scripted(t *testing.T, fn func(req Packet, s *Server) [][]byte) *Client {
	t.Helper()
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	srv := NewServer(ServerOptions{FS: newTestFS(t)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		dec := NewDecoder(c2sR, DecoderOptions{})
		for {
			pkt, err := dec.ReadPacket()
			if err != nil {
				return
			}
			p, err := UnmarshalPacket(pkt)
			if err != nil {
				continue
			}
			for _, rsp := range fn(p, srv) {
				f, _ := EncodeFrames(rsp)
				if _, err := s2cW.Write(f); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		c2sW.Close()
		s2cR.Close()
		<-done
	})
	return &Client{Port: port{s2cR, c2sW}, Timeout: 100 * time.Millisecond}
}

func answer(t *testing.T, req Header, body any) []byte {
	h := Header{Version: req.Version, Op: req.Op.Response(), Group: req.Group, Seq: req.Seq, ID: req.ID}
	return mustPacket(t, h, body)
}

func TestClientIgnoresOtherAnswers(t *testing.T) {
	c := scripted(t, func(req Packet, s *Server) [][]byte {
		stale := req.Header
		stale.Seq += 100
		other := req.Header
		other.ID++
		raw, _ := Packet{Header: req.Header, Body: req.Body}.Marshal()
		real, _ := s.Handle(raw)
		return append([][]byte{
			answer(t, stale, EchoResponse{R: "stale"}),
			answer(t, other, EchoResponse{R: "other command"}),
			{1, 2, 3}, // not a packet
		}, real...)
	})
	if got, err := c.Echo(testCtx(t), "mine"); err != nil || got != "mine" {
		t.Fatalf("Echo = %q, %v", got, err)
	}
}

func TestClientOddDevices(t *testing.T) {
	u64 := func(v uint64) *uint64 { return &v }
	t.Run("wrong upload offset", func(t *testing.T) {
		c := scripted(t, func(req Packet, _ *Server) [][]byte {
			return [][]byte{answer(t, req.Header, UploadResponse{Off: u64(1)})}
		})
		if err := c.Upload(testCtx(t), "/lfs1/a", []byte("abc"), 0); !errors.Is(err, ErrOffset) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("zephyr v3 offset after a retried first chunk", func(t *testing.T) {
		// The device loses the first answer, then (like Zephyr v3.x)
		// adds the repeated chunk to its running offset; the client
		// closes the file and starts over.
		var mu sync.Mutex
		calls := 0
		var closes int
		c := scripted(t, func(req Packet, s *Server) [][]byte {
			mu.Lock()
			defer mu.Unlock()
			calls++
			raw, _ := Packet{Header: req.Header, Body: req.Body}.Marshal()
			rsps, _ := s.Handle(raw)
			switch {
			case req.Header.ID == CmdFSCloseFile:
				closes++
			case calls == 1:
				return nil // lost
			case calls == 2:
				return [][]byte{answer(t, req.Header, UploadResponse{Off: u64(6)})}
			}
			return rsps
		})
		if err := c.Upload(testCtx(t), "/lfs1/credentials/x", []byte("abc"), 0); err != nil {
			t.Fatal(err)
		}
		if closes != 1 {
			t.Fatalf("%d closes", closes)
		}
	})
	t.Run("download without len", func(t *testing.T) {
		c := scripted(t, func(req Packet, _ *Server) [][]byte {
			return [][]byte{answer(t, req.Header, DownloadResponse{Off: u64(0), Data: []byte{1}})}
		})
		if _, err := c.Download(testCtx(t), "/lfs1/a"); !errors.Is(err, ErrBody) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("download overrun", func(t *testing.T) {
		c := scripted(t, func(req Packet, _ *Server) [][]byte {
			return [][]byte{answer(t, req.Header, DownloadResponse{Off: u64(0), Data: []byte{1, 2}, Len: u64(1)})}
		})
		if _, err := c.Download(testCtx(t), "/lfs1/a"); !errors.Is(err, ErrOffset) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("indefinite-length answers", func(t *testing.T) {
		c := scripted(t, func(req Packet, _ *Server) [][]byte {
			body := []byte{0xbf, 0x61, 'r', 0x62, 'o', 'k', 0xff}
			return [][]byte{answer(t, req.Header, body)}
		})
		if got, err := c.Echo(testCtx(t), "x"); err != nil || got != "ok" {
			t.Fatalf("Echo = %q, %v", got, err)
		}
	})
}

func TestChunkSize(t *testing.T) {
	names := []string{"/a", "/lfs1/credentials/crt.der", "/lfs1/" + strings.Repeat("n", 50)}
	for _, name := range names {
		for _, total := range []uint64{1, 23, 24, 255, 256, 2048, 70000} {
			for _, mtu := range []int{64, 128, 256, 380, 1024} {
				for _, off := range []uint64{0, 1, 23, 24, 255, 256, 65535, 65536} {
					if off >= total {
						continue
					}
					n, err := chunkSize(name, off, total, mtu)
					if err != nil {
						if errors.Is(err, ErrMTU) && mtu <= 128 {
							continue
						}
						t.Fatalf("%s off %d mtu %d: %v", name, off, mtu, err)
					}
					size := func(n uint64) int {
						req := UploadRequest{Off: off, Data: make([]byte, n), Name: name}
						if off == 0 {
							req.Len = &total
						}
						b, _ := EncodeBody(req)
						return HeaderSize + len(b)
					}
					if s := size(n); s > mtu {
						t.Fatalf("%s off %d mtu %d: %d-byte chunk makes a %d-byte packet", name, off, mtu, n, s)
					}
					if off+n < total && size(n+1) <= mtu {
						t.Fatalf("%s off %d mtu %d: chunk %d is not the largest", name, off, mtu, n)
					}
				}
			}
		}
	}
}
