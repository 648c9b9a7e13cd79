package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/sim"
)

// startCloudCmd runs `credloop cloud` in-process and returns its ready line.
func startCloudCmd(t *testing.T, dir string, extra ...string) (map[string]string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		args := append([]string{"cloud", "--dir", dir, "--coap-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"}, extra...)
		done <- Run(ctx, &Env{Args: args, Stdout: pw, Stderr: &lockedWriter{w: &stderr}})
		pw.Close()
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	var ready map[string]string
	select {
	case line, ok := <-lines:
		if !ok {
			cancel()
			t.Fatalf("cloud exited before its ready line: %d", <-done)
		}
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("ready line %q: %v", line, err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("no ready line")
	}
	stop := func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(20 * time.Second):
			t.Fatal("cloud did not shut down")
			return -1
		}
	}
	return ready, stop
}

func TestCloudCommandReadyAndRestart(t *testing.T) {
	dir := t.TempDir()
	ready, stop := startCloudCmd(t, dir)
	if ready["event"] != "ready" || !strings.HasPrefix(ready["coaps"], "127.0.0.1:") {
		t.Fatalf("ready = %v", ready)
	}
	// The admin commands work on the same directory while it runs.
	for _, args := range [][]string{
		{"project", "create", "acme", "--dir", dir},
		{"device", "add", "--dir", dir, "--project", "acme", "dev1", "--psk", "000102030405060708090a0b0c0d0e0f"},
	} {
		var out, errOut strings.Builder
		if code := Run(context.Background(), &Env{Args: args, Stdout: &out, Stderr: &errOut}); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
	}
	key := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: ready["coaps"], Credential: sim.Credential{PSKIdentity: "dev1@acme", PSK: key}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "cfg", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if code := stop(); code != 0 {
		t.Fatalf("shutdown exit code %d", code)
	}

	// A restart on the same directory knows the device and its state.
	ready, stop = startCloudCmd(t, dir)
	defer stop()
	s, err = sim.Dial(ctx, sim.DialOptions{Addr: ready["coaps"], Credential: sim.Credential{PSKIdentity: "dev1@acme", PSK: key}})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer s.Close()
	got, err := s.GetState(ctx, "cfg")
	if err != nil || !strings.Contains(string(got), `"n":1`) {
		t.Fatalf("state after restart = %s, %v", got, err)
	}
}

// lockedWriter serialises writes from the cloud's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// --dtls-psk-stack pion serves PSK devices with pion; an unknown stack is
// a usage error that names the choices.
func TestCloudCommandDTLSPSKStack(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "project", "create", "acme", "--dir", dir)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "acme", "dev1", "--psk", "000102030405060708090a0b0c0d0e0f")
	ready, stop := startCloudCmd(t, dir, "--dtls-psk-stack", "pion")
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: ready["coaps"], Credential: sim.Credential{PSKIdentity: "dev1@acme", PSK: key}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	r := runCLI(t, "cloud", "--dir", t.TempDir(), "--dtls-psk-stack", "openssl")
	const want = `--dtls-psk-stack: cloud: unknown DTLS PSK stack "openssl": want "credloop" or "pion"`
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("unknown stack: exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, want)
	}
	if r := runCLI(t, "cloud", "--help"); !strings.Contains(r.stdout+r.stderr, "-dtls-psk-stack") {
		t.Errorf("--help does not describe --dtls-psk-stack: %s", r.stdout+r.stderr)
	}
}

// credloop run takes the same --dtls-psk-stack and rejects an unknown one
// before running anything.
func TestRunDTLSPSKStackUnknown(t *testing.T) {
	r := runCLI(t, "run", "--dtls-psk-stack", "openssl", t.TempDir())
	const want = `--dtls-psk-stack: cloud: unknown DTLS PSK stack "openssl": want "credloop" or "pion"`
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, want)
	}
}
