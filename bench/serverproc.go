package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// ServerProcOptions configures StartServerProc.
type ServerProcOptions struct {
	// Exe is the credloop executable, run as `Exe cloud --dir DIR ...`
	// (required; the command line passes its own, os.Executable()).
	Exe string
	// Env is added to the child's environment (KEY=VALUE).
	Env []string
	// LogLevel is the child's --log-level (default "warn"). Its logs are
	// kept in memory (the last 4 KiB) for error messages, never printed.
	LogLevel string
	// StartTimeout bounds the start up to the ready line (default
	// DefaultPeerStartTimeout).
	StartTimeout time.Duration
}

// ServerProc is `credloop cloud` running in a child process on loopback,
// so that the load generator's CPU and the server's are told apart. Its
// CA and registry live in a temporary directory, removed by Close.
type ServerProc struct {
	// Addrs are the endpoints from its ready line (CoAPS and MQTTS; HTTPS
	// is off).
	Addrs cloud.Addrs
	// Dir is the child's --dir.
	Dir string
	// Registry is the child's registry database, opened in this process
	// (SQLite in WAL mode is shared between processes): workloads
	// register their devices there.
	Registry *registry.Registry
	// RootCAs holds the child's root CA; it verifies the server
	// certificate, issued for ServerName and 127.0.0.1.
	RootCAs    *x509.CertPool
	ServerName string

	proc *proc
}

// StartServerProc starts `o.Exe cloud --dir TMP --coap-addr 127.0.0.1:0
// --mqtt-addr 127.0.0.1:0 --https-addr -` and returns once it has printed
// its ready line, with its registry opened and its root CA loaded. ctx
// bounds the start only; the server runs until Close.
func StartServerProc(ctx context.Context, o ServerProcOptions) (*ServerProc, error) {
	if o.Exe == "" {
		return nil, fmt.Errorf("%w: ServerProcOptions.Exe is empty", ErrOptions)
	}
	ctx, cancel := context.WithTimeout(ctx, orDefaultDur(o.StartTimeout, DefaultPeerStartTimeout))
	defer cancel()
	dir, err := os.MkdirTemp("", "credloop-cloud-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	ready := &firstLine{ch: make(chan []byte, 1)}
	args := []string{"cloud", "--dir", dir, "--coap-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--https-addr", "-", "--log-level", orDefault(o.LogLevel, "warn")}
	p, err := startProc(o.Exe, args, o.Env, ready)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.name = "credloop cloud"
	p.dir = dir
	s := &ServerProc{Dir: dir, ServerName: "localhost", proc: p}
	fail := func(err error) (*ServerProc, error) {
		if s.Registry != nil {
			_ = s.Registry.Close()
		}
		_ = p.stop()
		return nil, fmt.Errorf("%w: server process: %w", ErrPeer, err)
	}
	var line []byte
	select {
	case line = <-ready.ch:
	case <-p.done:
		return fail(p.exited())
	case <-ctx.Done():
		return fail(fmt.Errorf("no ready line: %w", ctx.Err()))
	}
	var msg struct {
		Event string `json:"event"`
		cloud.Addrs
	}
	if err := json.Unmarshal(line, &msg); err != nil || msg.Event != "ready" {
		return fail(fmt.Errorf("unexpected first line %.200q", line))
	}
	s.Addrs = msg.Addrs
	pemData, err := os.ReadFile(filepath.Join(cloud.CADir(dir, ""), fakeca.RootCertFile))
	if err != nil {
		return fail(err)
	}
	certs, err := fakeca.ParseCertPEMOrDER(pemData)
	if err != nil {
		return fail(err)
	}
	s.RootCAs = x509.NewCertPool()
	s.RootCAs.AddCert(certs[0])
	if s.Registry, err = registry.Open(cloud.RegistryPath(dir), registry.Options{}); err != nil {
		return fail(err)
	}
	return s, nil
}

// Target returns the address a workload connects to: MQTT over TLS for
// mqtt-mtls and onboard in jitp mode, CoAPS for the others.
func (s *ServerProc) Target(workload, onboardMode string) string {
	if workload == WorkloadMQTTMTLS || (workload == WorkloadOnboard && (onboardMode == "" || onboardMode == OnboardJITP)) {
		return s.Addrs.MQTTS
	}
	return s.Addrs.CoAPS
}

// Pid is the server's process id.
func (s *ServerProc) Pid() int { return s.proc.pid() }

// Done is closed when the server process has exited.
func (s *ServerProc) Done() <-chan struct{} { return s.proc.done }

// CPU returns the server process's user+system CPU time so far, for
// Options.ServerCPU.
func (s *ServerProc) CPU() (time.Duration, error) { return s.proc.cpu() }

// Memory returns the server process's resident set (VmRSS) and its peak
// (VmHWM, since start or the last ResetPeak), in bytes.
func (s *ServerProc) Memory() (rss, peak uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: memory of the server process: %w", ErrPeer, err)
	}
	rss, peak = parseStatusKiB(b, "VmRSS:"), parseStatusKiB(b, "VmHWM:")
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("%w: memory of the server process: no VmRSS or VmHWM", ErrPeer)
	}
	return rss, peak, nil
}

// ResetPeak sets the peak resident set (VmHWM) to the current one
// (Linux: 5 written to /proc/PID/clear_refs).
func (s *ServerProc) ResetPeak() error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/clear_refs", s.Pid()), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("%w: reset peak memory: %w", ErrPeer, err)
	}
	_, err = f.WriteString("5")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: reset peak memory: %w", ErrPeer, err)
	}
	return nil
}

// Close closes the registry, stops the server (SIGTERM, then SIGKILL
// after DefaultPeerStopTimeout) and removes its directory.
func (s *ServerProc) Close() error {
	var err error
	if s.Registry != nil {
		err = s.Registry.Close()
	}
	return errors.Join(err, s.proc.stop())
}

// parseStatusKiB finds "key N kB" in a /proc/PID/status text and returns
// N KiB in bytes; 0 when it is missing or malformed.
func parseStatusKiB(status []byte, key string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > 1<<50 {
			return 0
		}
		return kb * 1024
	}
	return 0
}

// firstLine is a child's stdout: it sends the first line (without its
// newline) on ch and discards everything after it.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	ch   chan []byte
}

// maxReadyLine bounds what firstLine keeps while waiting for a newline.
const maxReadyLine = 64 << 10

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent {
		return len(p), nil
	}
	f.buf = append(f.buf, p...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.sent = true
		f.ch <- bytes.TrimSuffix(f.buf[:i], []byte("\r"))
		f.buf = nil
	} else if len(f.buf) > maxReadyLine {
		f.sent = true
		f.ch <- f.buf[:maxReadyLine]
		f.buf = nil
	}
	return len(p), nil
}
