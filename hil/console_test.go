package hil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// stopConn is a connection whose Read hands out queued chunks: text, or an
// error, as a host process's connection does across a stop and a start.
type stopConn struct {
	mu     sync.Mutex
	queue  []any // []byte or error
	notify chan struct{}
	closed bool
}

func newStopConn() *stopConn { return &stopConn{notify: make(chan struct{})} }

func (c *stopConn) push(v any) {
	c.mu.Lock()
	c.queue = append(c.queue, v)
	close(c.notify)
	c.notify = make(chan struct{})
	c.mu.Unlock()
}

func (c *stopConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 {
		if c.closed {
			return 0, io.EOF
		}
		ch := c.notify
		c.mu.Unlock()
		<-ch
		c.mu.Lock()
	}
	v := c.queue[0]
	c.queue = c.queue[1:]
	if err, ok := v.(error); ok {
		return 0, err
	}
	return copy(p, v.([]byte)), nil
}

func (c *stopConn) Write(p []byte) (int, error) { return len(p), nil }

func (c *stopConn) Close() error {
	c.push([]byte{})
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

// An error matching ErrStopped fails Expects at once without ending the
// console, and the next text clears it; LogEscapes keeps colours in the
// log only.
func TestConsoleStoppedAndLogEscapes(t *testing.T) {
	ctx := testCtx(t)
	conn := newStopConn()
	var log bytes.Buffer
	var logMu sync.Mutex
	c := newTestConsole(t, conn, ConsoleOptions{Name: "fw", Log: lockedWriter{&logMu, &log}, LogEscapes: true})
	conn.push([]byte("\x1b[32mgreen\x1b[0m ready\r\n"))
	if _, err := c.Expect(ctx, `(?m)^green ready\n`, ExpectOptions{}); err != nil {
		t.Fatal(err)
	}
	stopped := fmt.Errorf("firmware exited: exit status 3 (%w)", ErrStopped)
	conn.push(stopped)
	start := time.Now()
	_, err := c.Expect(ctx, "never", ExpectOptions{Timeout: time.Hour})
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("expect on a stopped board: %v (after %v)", err, time.Since(start))
	}
	// The console has taken the text in once a Tap has it.
	tap := c.Tap()
	defer tap.Close()
	conn.push([]byte("started again\n"))
	if _, err := io.ReadFull(tap, make([]byte, len("started again\n"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(ctx, "started again", ExpectOptions{}); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(log.String(), `< \x1b[32mgreen\x1b[0m ready`) || strings.Contains(log.String(), "read failed") {
		t.Fatalf("log:\n%s", log.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
