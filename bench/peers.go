package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/sim"
)

// ErrPeer reports a third-party server that is missing or did not start.
var ErrPeer = errors.New("bench: peer")

// Third-party servers StartCoAPServer and StartMosquitto run.
const (
	CoAPServerBinary = "coap-server-openssl" // Debian libcoap3-bin
	MosquittoBinary  = "mosquitto"           // Debian mosquitto
)

// Defaults used when the PeerOptions or MosquittoOptions field is zero.
const (
	DefaultPeerStartTimeout = 15 * time.Second
	DefaultPeerStopTimeout  = 5 * time.Second
	DefaultPSKHint          = "CoAP"
)

// PeerOptions configures StartCoAPServer.
type PeerOptions struct {
	// Binary is the program to run (default CoAPServerBinary, looked up
	// in PATH).
	Binary string
	// Credentials are the PSK identities the server accepts, each with its
	// key (at least one). libcoap reads them from a file, so identities and
	// keys must be printable ASCII without commas or spaces (use hex keys).
	Credentials []sim.Credential
	// Hint is the PSK identity hint the server sends (default
	// DefaultPSKHint).
	Hint string
	// StartTimeout bounds the start, readiness probe included (default
	// DefaultPeerStartTimeout).
	StartTimeout time.Duration
}

// MosquittoOptions configures StartMosquitto.
type MosquittoOptions struct {
	// Binary is the program to run (default MosquittoBinary, looked up in
	// PATH and then in /usr/sbin).
	Binary string
	// ClientCA issues the device certificates; the broker requires a
	// client certificate that chains to it (required).
	ClientCA *cloud.CA
	// StartTimeout bounds the start, readiness probe included (default
	// DefaultPeerStartTimeout).
	StartTimeout time.Duration
}

// Peer is a third-party server running as a child process on loopback.
// Close stops it and removes its files.
type Peer struct {
	// Name is the program's base name.
	Name string
	// Addr is the host:port clients connect to: CoAPS (UDP) for
	// coap-server-openssl, MQTT over TLS for mosquitto.
	Addr string
	// RootCAs verifies the server certificate, issued for ServerName and
	// 127.0.0.1 (mosquitto; nil for a PSK-only server).
	RootCAs    *x509.CertPool
	ServerName string

	proc *proc
}

// Pid is the server's process id.
func (p *Peer) Pid() int { return p.proc.pid() }

// Done is closed when the server process has exited.
func (p *Peer) Done() <-chan struct{} { return p.proc.done }

// CPU returns the server process's user+system CPU time so far, for
// Options.ServerCPU.
func (p *Peer) CPU() (time.Duration, error) { return p.proc.cpu() }

// Close stops the server (SIGTERM, then SIGKILL after
// DefaultPeerStopTimeout), waits for it and removes its files.
func (p *Peer) Close() error { return p.proc.stop() }

// FindPeer returns the path of a third-party server program
// (CoAPServerBinary, MosquittoBinary), or an error that says which Debian
// package installs it.
func FindPeer(name string) (string, error) {
	switch name {
	case CoAPServerBinary:
		return lookBinary(name, "libcoap3-bin")
	case MosquittoBinary:
		return lookBinary(name, "mosquitto", mosquittoDirs...)
	}
	return "", fmt.Errorf("%w: unknown peer %q", ErrOptions, name)
}

// mosquittoDirs are searched for mosquitto after PATH (Debian installs it
// in /usr/sbin, which a user's PATH may lack).
var mosquittoDirs = []string{"/usr/sbin", "/usr/local/sbin"}

// errNotInstalled reports a missing peer program; it is an ErrPeer.
type errNotInstalled struct{ name, pkg string }

func (e errNotInstalled) Error() string {
	return fmt.Sprintf("bench: %s not found: install %s", e.name, e.pkg)
}

func (e errNotInstalled) Is(target error) bool { return target == ErrPeer }

// lookBinary finds a program: given path or name in PATH, then extra dirs.
func lookBinary(name, pkg string, extra ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.ContainsRune(name, os.PathSeparator) {
		for _, d := range extra {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", errNotInstalled{name, pkg}
}

// peerText checks that s can go into libcoap's identity file.
func peerText(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ',' {
			return false
		}
	}
	return true
}

// StartCoAPServer starts libcoap's coap-server-openssl on 127.0.0.1 with
// DTLS PSK for opts.Credentials and returns once a DTLS PSK handshake and
// a CoAP GET / with the first credential have succeeded. It serves GET /
// (a short text). ctx bounds the start only; the server runs until Close.
// The keys go to a 0600 file in a private temporary directory, never on
// the command line; the key given with -k (required by coap-server) is a
// random one no client knows.
func StartCoAPServer(ctx context.Context, opts PeerOptions) (*Peer, error) {
	bin, err := lookBinary(orDefault(opts.Binary, CoAPServerBinary), "libcoap3-bin")
	if err != nil {
		return nil, err
	}
	if len(opts.Credentials) == 0 {
		return nil, fmt.Errorf("%w: coap-server needs at least one PSK credential", ErrOptions)
	}
	hint := orDefault(opts.Hint, DefaultPSKHint)
	if !peerText(hint) {
		return nil, fmt.Errorf("%w: PSK hint must be printable ASCII without commas or spaces", ErrOptions)
	}
	var ids bytes.Buffer
	for i, c := range opts.Credentials {
		if !peerText(c.PSKIdentity) || !peerText(string(c.PSK)) {
			return nil, fmt.Errorf("%w: credential %d: identity and key must be printable ASCII without commas or spaces", ErrOptions, i)
		}
		fmt.Fprintf(&ids, "%s,%s,%s\n", hint, c.PSKIdentity, c.PSK)
	}
	timeout := orDefaultDur(opts.StartTimeout, DefaultPeerStartTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "credloop-coap-server-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	idFile := filepath.Join(dir, "identities")
	if err := os.WriteFile(idFile, ids.Bytes(), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	unknownKey := hex.EncodeToString(nonce[:])
	probe := opts.Credentials[0]

	var lastErr error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		// coap-server binds UDP and TCP on port (CoAP) and port+1 (DTLS,
		// TLS); it keeps running when a bind fails, so the log is watched.
		port, err := freePortPair()
		if err != nil {
			lastErr = err
			continue
		}
		args := []string{"-A", "127.0.0.1", "-p", strconv.Itoa(port), "-v", "3",
			"-h", hint, "-k", unknownKey, "-i", idFile}
		p, err := startProc(bin, args, nil, nil)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		p.dir = dir
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
		err = p.waitReady(ctx, []string{"cannot create", "Address already in use"}, func(ctx context.Context) error {
			return probeCoAP(ctx, addr, probe)
		})
		if err == nil {
			return &Peer{Name: filepath.Base(bin), Addr: addr, proc: p}, nil
		}
		lastErr = err
		p.dir = "" // keep the identity file for the next attempt
		_ = p.stop()
	}
	_ = os.RemoveAll(dir)
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, fmt.Errorf("%w: %s did not start: %w", ErrPeer, filepath.Base(bin), lastErr)
}

// probeCoAP does one DTLS PSK handshake and GET /.
func probeCoAP(ctx context.Context, addr string, c sim.Credential) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: addr, Credential: c, HandshakeTimeout: time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.GetRaw(ctx, "/")
	return err
}

// StartMosquitto starts mosquitto on 127.0.0.1 with an MQTT over mutual
// TLS listener: a server certificate for localhost and 127.0.0.1 from a
// fresh server CA (Peer.RootCAs), client certificates required and
// chaining to opts.ClientCA, the certificate's CN as the username, no
// anonymous clients. It returns once a client certificate from ClientCA
// got CONNACK 0. ctx bounds the start only; the broker runs until Close.
// Run as root, the broker keeps running as root (it would otherwise drop
// to the mosquitto user and could not read its 0600 key).
func StartMosquitto(ctx context.Context, opts MosquittoOptions) (*Peer, error) {
	bin, err := lookBinary(orDefault(opts.Binary, MosquittoBinary), "mosquitto", mosquittoDirs...)
	if err != nil {
		return nil, err
	}
	if opts.ClientCA == nil {
		return nil, fmt.Errorf("%w: mosquitto needs a client CA", ErrOptions)
	}
	timeout := orDefaultDur(opts.StartTimeout, DefaultPeerStartTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	serverCA, err := fakeca.NewRoot("credloop bench server CA", fakeca.ECDSAP256, 0, fakeca.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: server CA: %w", ErrPeer, err)
	}
	serverCert, err := serverCA.ServerCert([]string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	signer, ok := serverCert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: server key is not a signer", ErrPeer)
	}
	keyPEM, err := fakeca.EncodeKeyPEM(signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	probe, err := opts.ClientCA.IssueDevice(Project, "credloop-probe")
	if err != nil {
		return nil, fmt.Errorf("%w: probe certificate: %w", ErrPeer, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	probeCfg := &tls.Config{
		Certificates: []tls.Certificate{probe.TLS},
		RootCAs:      roots,
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS12,
	}

	dir, err := os.MkdirTemp("", "credloop-mosquitto-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeer, err)
	}
	caPEM := fakeca.EncodeCertPEM(opts.ClientCA.Issuer())
	if root := opts.ClientCA.Root(); !root.Equal(opts.ClientCA.Issuer()) {
		caPEM = append(caPEM, fakeca.EncodeCertPEM(root)...)
	}
	var chainPEM []byte
	for _, der := range serverCert.Certificate {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"client-ca.pem", caPEM},
		{"server.pem", chainPEM},
		{"server.key", keyPEM},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("%w: %w", ErrPeer, err)
		}
	}

	var lastErr error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			lastErr = err
			continue
		}
		conf := mosquittoConf(dir, port, os.Geteuid() == 0)
		confFile := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("%w: %w", ErrPeer, err)
		}
		p, err := startProc(bin, []string{"-c", confFile}, nil, nil)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		p.dir = dir
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = p.waitReady(ctx, nil, func(ctx context.Context) error {
			return probeMQTT(ctx, addr, probeCfg)
		})
		if err == nil {
			return &Peer{Name: filepath.Base(bin), Addr: addr, RootCAs: roots, ServerName: "localhost", proc: p}, nil
		}
		lastErr = err
		p.dir = ""
		_ = p.stop()
	}
	_ = os.RemoveAll(dir)
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, fmt.Errorf("%w: %s did not start: %w", ErrPeer, filepath.Base(bin), lastErr)
}

// mosquittoConf is the broker configuration: one mutual TLS listener on
// loopback; only errors and warnings are logged (to stderr).
func mosquittoConf(dir string, port int, root bool) string {
	var b strings.Builder
	if root {
		b.WriteString("user root\n")
	}
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", port)
	fmt.Fprintf(&b, "cafile %s\n", filepath.Join(dir, "client-ca.pem"))
	fmt.Fprintf(&b, "certfile %s\n", filepath.Join(dir, "server.pem"))
	fmt.Fprintf(&b, "keyfile %s\n", filepath.Join(dir, "server.key"))
	b.WriteString("require_certificate true\n")
	b.WriteString("use_identity_as_username true\n")
	b.WriteString("allow_anonymous false\n")
	b.WriteString("persistence false\n")
	// Go clients and the credloop broker set TCP_NODELAY; without it the
	// CONNACK waits on Nagle and delayed ACKs (40 ms).
	b.WriteString("set_tcp_nodelay true\n")
	b.WriteString("log_dest stderr\n")
	b.WriteString("log_type error\n")
	b.WriteString("log_type warning\n")
	b.WriteString("connection_messages false\n")
	return b.String()
}

// probeMQTT connects over TLS, sends CONNECT and expects CONNACK 0.
func probeMQTT(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return mqttSession(c, mqttConnectPkt("credloop-probe", 60))
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("%w: free port: %w", ErrPeer, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePortPair returns a port p such that UDP and TCP p and p+1 on
// loopback were all free a moment ago.
func freePortPair() (int, error) {
	for range 20 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("%w: free port: %w", ErrPeer, err)
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		if p >= 65535 {
			u.Close()
			continue
		}
		held := []io.Closer{u}
		ok := true
		for _, try := range []struct{ net, addr string }{
			{"udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))},
			{"tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))},
			{"tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))},
		} {
			var c io.Closer
			if try.net == "udp" {
				c, err = net.ListenPacket("udp", try.addr)
			} else {
				c, err = net.Listen("tcp", try.addr)
			}
			if err != nil {
				ok = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: no free loopback port pair", ErrPeer)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefaultDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// proc is a child process: started, watched, stopped.
type proc struct {
	cmd     *exec.Cmd
	name    string
	dir     string // removed once the process has exited ("" none)
	log     *tailBuffer
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// startProc starts bin with args; stdout goes to stdout (nil: discarded),
// stderr to a tail buffer kept for error messages. extraEnv is appended
// to the environment.
func startProc(bin string, args, extraEnv []string, stdout io.Writer) (*proc, error) {
	p := &proc{name: filepath.Base(bin), log: &tailBuffer{max: 4096}, done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = nil
	cmd.Stdout = stdout
	cmd.Stderr = p.log
	if len(extraEnv) > 0 {
		cmd.Env = append(os.Environ(), extraEnv...)
	}
	// Bounds Wait when something else holds the output pipes open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrPeer, p.name, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports how the process ended, with the tail of its stderr.
func (p *proc) exited() error {
	msg := strings.TrimSpace(p.log.String())
	if msg != "" {
		msg = ": " + msg
	}
	return fmt.Errorf("%s exited (%v)%s", p.name, p.waitErr, msg)
}

// waitReady calls probe until it succeeds, the process exits, its stderr
// shows one of fatal, or ctx is done. Failed probes are retried every
// 20 ms (a poll interval, not a readiness signal: only a successful probe
// is).
func (p *proc) waitReady(ctx context.Context, fatal []string, probe func(context.Context) error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.done:
			return p.exited()
		default:
		}
		for _, f := range fatal {
			if strings.Contains(p.log.String(), f) {
				return fmt.Errorf("%s: %s", p.name, strings.TrimSpace(p.log.String()))
			}
		}
		if last = probe(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exited()
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last probe: %w)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, waits DefaultPeerStopTimeout, then kills; it
// removes dir once the process is gone. It returns an error when the
// process had to be killed or had already exited on its own.
func (p *proc) stop() error {
	p.stopOnce.Do(func() {
		var errs []error
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%w: %w", ErrPeer, p.exited()))
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(DefaultPeerStopTimeout)
			select {
			case <-p.done:
				t.Stop()
			case <-t.C:
				_ = p.cmd.Process.Kill()
				<-p.done
				errs = append(errs, fmt.Errorf("%w: %s did not stop within %s: killed", ErrPeer, p.name, DefaultPeerStopTimeout))
			}
		}
		if p.dir != "" {
			if err := os.RemoveAll(p.dir); err != nil {
				errs = append(errs, err)
			}
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

// cpu reads the process's user+system CPU time from /proc.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, fmt.Errorf("%w: cpu of %s: %w", ErrPeer, p.name, err)
	}
	ticks, err := parseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("%w: cpu of %s: %w", ErrPeer, p.name, err)
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat:
// 100 on Linux on every architecture Go supports.
const clockTicks = 100

// errProcStat reports a /proc/PID/stat text that does not parse.
var errProcStat = errors.New("malformed /proc/PID/stat")

// parseProcStat returns utime+stime (fields 14 and 15, clock ticks) of a
// /proc/PID/stat text. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted after the
// last ')'.
func parseProcStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errProcStat
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errProcStat
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || ut > 1<<40 || st > 1<<40 {
		return 0, errProcStat
	}
	return ut + st, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
