// Package linux is the board kind linux: the user's firmware built for
// this host (Golioth's SDK Linux port, a Zephyr native_sim executable, an
// ESP-IDF linux-target build) started as a process, as Golioth's HIL
// suite's LinuxBoard and Twister's native_sim runs do. The process runs
// on a pseudo-terminal (stdin, stdout and stderr), so that its C library
// line-buffers stdout as on a terminal and its output reaches the console
// as it is printed; credentials reach it through environment variables,
// files in its working directory, or its shell on stdin.
package linux

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// Defaults of a linux board.
const (
	// DefaultStopGrace is how long a stop waits after SIGTERM before
	// SIGKILL.
	DefaultStopGrace = 2 * time.Second
	// DefaultOnline is the console line of Golioth's firmware SDK when
	// its client has connected.
	DefaultOnline = `Golioth CoAP client connected`
	// PowerCutNow is the one power-cut point of a linux board: at once.
	PowerCutNow = "now"
)

// Errors of a linux board.
var (
	// ErrExited matches an *ExitError: the firmware stopped on its own
	// (or by a power cut).
	ErrExited = errors.New("linux: firmware exited")
	// ErrNotRunning is a write to the console of a stopped firmware.
	ErrNotRunning = errors.New("linux: firmware not running")
	// ErrNoCredential is a start whose args, env or files name a
	// placeholder the board has no credential for (yet).
	ErrNoCredential = errors.New("linux: no credential for placeholder")
	// ErrRunning is a start of a firmware already running.
	ErrRunning = errors.New("linux: firmware already running")
)

// ExitError is how a firmware stopped without being asked to: its exit
// status ("exit status 3", "signal: segmentation fault"). It matches
// ErrExited and hil.ErrStopped, so the console's Expects fail with it.
type ExitError struct {
	Status   string
	PowerCut bool // the harness cut the power (a power cut)
}

func (e *ExitError) Error() string {
	if e.PowerCut {
		return "firmware stopped by a power cut (" + e.Status + ")"
	}
	return "firmware exited: " + e.Status
}

// Unwrap returns ErrExited and hil.ErrStopped.
func (e *ExitError) Unwrap() []error { return []error{ErrExited, hil.ErrStopped} }

// Options configures a Process.
type Options struct {
	// Name is the board's name.
	Name string
	// Exec is the executable (a name without a slash is looked up in
	// $PATH); Args its arguments.
	Exec string
	Args []string
	// Env adds to credloop's environment; Files are written into Workdir
	// at each start (see hil.BoardSpec).
	Env   map[string]string
	Files map[string]string
	// Workdir is the working directory, created when missing.
	Workdir string
	// Volatile are Workdir-relative paths a power cycle removes.
	Volatile []string
	// StopGrace is the wait between SIGTERM and SIGKILL
	// (DefaultStopGrace when 0).
	StopGrace time.Duration
	// ServerCA is the PEM the firmware trusts for the cloud ({ca}).
	ServerCA []byte
	// Online is the pattern of the firmware's "connected" line
	// (DefaultOnline when empty).
	Online string
}

// OptionsFromSpec turns a hardware map entry into Options; the default
// working directory is <runDir>/boards/<name>/.
func OptionsFromSpec(spec hil.BoardSpec, runDir string) Options {
	o := Options{Name: spec.Name, Exec: spec.Exec, Args: spec.Args, Env: spec.Env, Files: spec.Files,
		Workdir: spec.Workdir, Volatile: spec.Volatile, Online: spec.Online, StopGrace: spec.StopGraceDuration(DefaultStopGrace)}
	if o.Workdir == "" {
		o.Workdir = filepath.Join(runDir, "boards", spec.Name)
	}
	return o
}

// Where a Process keeps the credentials it was provisioned with, under
// its working directory: the board's flash, as an NVS partition is an
// ESP32's.
const (
	credDir   = "credloop"
	pskIDFile = "psk_id"
	pskFile   = "psk"
	certFile  = "client.crt.pem"
	keyFile   = "client.key.pem"
	caFile    = "ca.crt.pem"
)

// tag starts credloop's own lines on a linux board's console.
const tag = "[credloop] "

// Process is a firmware process and its console connection: Read returns
// what it prints on its terminal (stdout and stderr), with credloop's
// own lines ("[credloop] firmware started ...", "[credloop] firmware
// exited: exit status 3") between runs; Write types on its terminal.
// When the firmware stops without being asked, Read returns an
// *ExitError once, after its last output. The connection lives across
// restarts; Close stops the process group and ends it.
type Process struct {
	o Options

	mu      sync.Mutex
	queue   []chunk       // for Read, in order
	notify  chan struct{} // closed and replaced when queue or state changes
	cur     *run          // the running process
	last    error         // why the last run ended on its own (*ExitError)
	waiting error         // ErrNoCredential when not started for want of credentials
	lastNL  bool          // the last byte queued ends a line
	closed  bool
	closeMu sync.Mutex // serializes starts, stops and Close
}

type chunk struct {
	b    []byte
	err  error
	mark chan struct{} // closed when a Read finds it: what came before was consumed
}

type run struct {
	cmd    *exec.Cmd
	master *os.File
	pid    int
	stop   string        // why we stopped it ("" when it stopped on its own)
	cut    bool          // a power cut
	done   chan struct{} // output drained, process and group gone
}

// New makes a Process that has not started.
func New(o Options) (*Process, error) {
	if o.Exec == "" {
		return nil, fmt.Errorf("linux: board %s: no executable", o.Name)
	}
	if !strings.ContainsRune(o.Exec, filepath.Separator) {
		path, err := exec.LookPath(o.Exec)
		if err != nil {
			return nil, fmt.Errorf("linux: board %s: %w", o.Name, err)
		}
		o.Exec = path
	}
	var err error
	if o.Exec, err = filepath.Abs(o.Exec); err != nil {
		return nil, err
	}
	if o.Workdir, err = filepath.Abs(o.Workdir); err != nil {
		return nil, err
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	return &Process{o: o, notify: make(chan struct{}), lastNL: true}, nil
}

// String names the firmware and its process, for messages.
func (p *Process) String() string {
	if pid := p.Pid(); pid != 0 {
		return fmt.Sprintf("%s (pid %d)", p.o.Exec, pid)
	}
	return p.o.Exec + " (not running)"
}

// Workdir is the process's working directory.
func (p *Process) Workdir() string { return p.o.Workdir }

// wake tells waiters something changed; p.mu is held.
func (p *Process) wake() {
	close(p.notify)
	p.notify = make(chan struct{})
}

// say queues one of credloop's own lines, on a line of its own; p.mu is
// held.
func (p *Process) say(format string, args ...any) {
	line := tag + fmt.Sprintf(format, args...) + "\n"
	if !p.lastNL {
		line = "\n" + line
	}
	p.queue = append(p.queue, chunk{b: []byte(line)})
	p.lastNL = true
	p.wake()
}

func (p *Process) output(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, chunk{b: slices.Clone(b)})
	p.lastNL = b[len(b)-1] == '\n' || b[len(b)-1] == '\r'
	p.wake()
}

// Read returns the next output of the firmware, or the *ExitError of a
// firmware that stopped on its own; io.EOF once closed.
func (p *Process) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.queue) > 0 && p.queue[0].mark != nil {
			close(p.queue[0].mark)
			p.queue = p.queue[1:]
		}
		if len(p.queue) > 0 {
			break
		}
		if p.closed {
			return 0, io.EOF
		}
		ch := p.notify
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	c := &p.queue[0]
	if c.err != nil {
		err := c.err
		p.queue = p.queue[1:]
		return 0, err
	}
	n := copy(b, c.b)
	c.b = c.b[n:]
	if len(c.b) == 0 {
		p.queue = p.queue[1:]
	}
	return n, nil
}

// Write types b on the firmware's terminal (its stdin).
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return 0, fmt.Errorf("%w: board %s", ErrNotRunning, p.o.Name)
	}
	n, err := r.master.Write(b)
	if err != nil {
		return n, fmt.Errorf("%w: board %s: %w", ErrNotRunning, p.o.Name, err)
	}
	return n, nil
}

// State says whether the firmware runs: nil when it does or waits for
// credentials (ErrNoCredential is then in Waiting), the *ExitError of
// the last run when it stopped on its own.
func (p *Process) State() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil || p.waiting != nil {
		return nil
	}
	return p.last
}

// Waiting is ErrNoCredential (wrapped, naming the placeholders) while the
// firmware waits for credentials to start, nil otherwise.
func (p *Process) Waiting() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// Pid is the running firmware's process id, 0 when none runs.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.pid
}

// Start starts the firmware with the credentials stored in its working
// directory. Without the credentials its args, env or files name, it
// does not start: it says so on the console and returns ErrNoCredential
// (wrapped).
func (p *Process) Start() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	_, err := p.start()
	return err
}

// start starts the firmware; the channel it returns closes once the
// reader of the connection has consumed what came before the start (the
// console has then taken in the firmware's "started" line, which clears a
// previous run's exit).
func (p *Process) start() (<-chan struct{}, error) {
	p.mu.Lock()
	closed, running := p.closed, p.cur != nil
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("linux: board %s: %w", p.o.Name, hil.ErrConsoleClosed)
	}
	if running {
		return nil, fmt.Errorf("%w: board %s", ErrRunning, p.o.Name)
	}
	if err := os.MkdirAll(p.o.Workdir, 0o700); err != nil {
		return nil, fmt.Errorf("linux: board %s: %w", p.o.Name, err)
	}
	vals, files, err := p.credentials()
	if err != nil {
		return nil, err
	}
	args, env, err := p.expand(vals)
	if errors.Is(err, ErrNoCredential) {
		p.mu.Lock()
		p.waiting = err
		p.say("firmware not started: %v; provisioning starts it", err)
		p.mu.Unlock()
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	for _, rel := range slices.Sorted(maps.Keys(p.o.Files)) {
		content, ok := files[p.o.Files[rel]]
		if !ok {
			err := fmt.Errorf("%w %s (for file %s)", ErrNoCredential, p.o.Files[rel], rel)
			p.mu.Lock()
			p.waiting = err
			p.say("firmware not started: %v; provisioning starts it", err)
			p.mu.Unlock()
			return nil, err
		}
		path := filepath.Join(p.o.Workdir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := writeSecret(path, content); err != nil {
			return nil, fmt.Errorf("linux: board %s: %w", p.o.Name, err)
		}
	}
	pt, err := hil.OpenPTY(0)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.o.Exec, args...)
	cmd.Dir = p.o.Workdir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pt.Slave, pt.Slave, pt.Slave
	// A session of its own with the terminal as its controlling one: the
	// firmware is a process group that a stop signals whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		_ = pt.Close()
		return nil, fmt.Errorf("linux: board %s: starting %s: %w", p.o.Name, p.o.Exec, err)
	}
	_ = pt.Slave.Close() // the firmware holds it; its last exit ends the master's reads
	r := &run{cmd: cmd, master: pt.Master, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.mu.Lock()
	p.cur, p.waiting, p.last = r, nil, nil
	p.say("firmware started: %s (pid %d)", filepath.Base(p.o.Exec), r.pid)
	mark := make(chan struct{})
	p.queue = append(p.queue, chunk{mark: mark})
	p.mu.Unlock()
	go p.pump(r)
	return mark, nil
}

// pump copies a run's output until its terminal closes, then reaps it.
func (p *Process) pump(r *run) {
	waited := make(chan error, 1)
	go func() {
		err := r.cmd.Wait()
		// Whatever the firmware left behind in its group goes with it.
		_ = syscall.Kill(-r.pid, syscall.SIGKILL)
		waited <- err
	}()
	b := make([]byte, 4096)
	for {
		n, err := r.master.Read(b)
		if n > 0 {
			p.output(b[:n])
		}
		if err != nil {
			break
		}
	}
	werr := <-waited
	_ = r.master.Close()
	status := "exit status 0"
	if werr != nil {
		status = werr.Error()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == r {
		p.cur = nil
	}
	switch {
	case r.cut:
		p.say("firmware stopped by a power cut (%s)", status)
		p.last = &ExitError{Status: status, PowerCut: true}
		p.queue = append(p.queue, chunk{err: p.last})
	case r.stop != "":
		p.say("firmware stopped (%s): %s", r.stop, status)
	default:
		p.say("firmware exited: %s", status)
		p.last = &ExitError{Status: status}
		p.queue = append(p.queue, chunk{err: p.last})
	}
	close(r.done)
	p.wake()
}

// Stop stops the firmware: SIGTERM to its process group, SIGKILL after
// the grace period (at once with kill); it returns once the group is
// gone and its output read. why is logged.
func (p *Process) Stop(ctx context.Context, why string, kill bool) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	return p.stop(ctx, why, kill, false)
}

func (p *Process) stop(ctx context.Context, why string, kill, cut bool) error {
	p.mu.Lock()
	r := p.cur
	p.waiting = nil
	if r != nil {
		r.stop, r.cut = why, cut
	}
	p.mu.Unlock()
	if r == nil {
		return nil
	}
	if !kill {
		_ = syscall.Kill(-r.pid, syscall.SIGTERM)
		t := time.NewTimer(p.o.StopGrace)
		defer t.Stop()
		select {
		case <-r.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	_ = syscall.Kill(-r.pid, syscall.SIGKILL)
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("linux: board %s: stopping pid %d: %w", p.o.Name, r.pid, ctx.Err())
	}
}

// Restart stops the firmware (gracefully, or at once with kill), removes
// the volatile paths when clear is set, and starts it again. A firmware
// waiting for credentials stays waiting (no error).
func (p *Process) Restart(ctx context.Context, why string, kill, clear bool) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if err := p.stop(ctx, why, kill, false); err != nil {
		return err
	}
	if clear {
		if err := p.clearVolatile(); err != nil {
			return err
		}
	}
	mark, err := p.start()
	if errors.Is(err, ErrNoCredential) {
		return nil
	}
	if err != nil {
		return err
	}
	select {
	case <-mark:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("linux: board %s: the console did not read the restart: %w", p.o.Name, ctx.Err())
	}
}

// CutPower kills the firmware's process group at once and leaves it
// off: the console reports it stopped by a power cut until a restart.
func (p *Process) CutPower(ctx context.Context) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	return p.stop(ctx, "power cut", true, true)
}

func (p *Process) clearVolatile() error {
	var errs []error
	for _, rel := range p.o.Volatile {
		if err := os.RemoveAll(filepath.Join(p.o.Workdir, filepath.Clean(rel))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the firmware (SIGTERM, SIGKILL after the grace period) and
// ends the connection; pending and later Reads return io.EOF. It may be
// called again.
func (p *Process) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.o.StopGrace+10*time.Second)
	defer cancel()
	err := p.stop(ctx, "closed", false, false)
	p.mu.Lock()
	p.closed = true
	p.wake()
	p.mu.Unlock()
	return err
}

// SetCredentials stores cr in the working directory (replacing what was
// there), for the placeholders of the next start.
func (p *Process) SetCredentials(cr boards.Credentials) error {
	dir := filepath.Join(p.o.Workdir, credDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{pskIDFile, pskFile, certFile, keyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if cr.HasPSK() {
		if err := writeSecret(filepath.Join(dir, pskIDFile), []byte(cr.PSKIdentity)); err != nil {
			return err
		}
		if err := writeSecret(filepath.Join(dir, pskFile), cr.PSK); err != nil {
			return err
		}
	}
	if len(cr.Chain) > 0 {
		var chain []byte
		for _, der := range cr.Chain {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		if err := writeSecret(filepath.Join(dir, certFile), chain); err != nil {
			return err
		}
	}
	if key, err := keyPEM(cr); err != nil {
		return err
	} else if key != nil {
		if err := writeSecret(filepath.Join(dir, keyFile), key); err != nil {
			return err
		}
	}
	return nil
}

// keyPEM encodes the credential's private key as its DER says it is.
func keyPEM(cr boards.Credentials) ([]byte, error) {
	der := cr.KeyDER
	if len(der) == 0 && cr.Key != nil {
		var err error
		if der, err = x509.MarshalPKCS8PrivateKey(cr.Key); err != nil {
			return nil, fmt.Errorf("linux: private key: %w", err)
		}
	}
	if len(der) == 0 {
		return nil, nil
	}
	typ := "PRIVATE KEY"
	if _, err := x509.ParsePKCS8PrivateKey(der); err != nil {
		switch {
		case func() bool { _, err := x509.ParseECPrivateKey(der); return err == nil }():
			typ = "EC PRIVATE KEY"
		case func() bool { _, err := x509.ParsePKCS1PrivateKey(der); return err == nil }():
			typ = "RSA PRIVATE KEY"
		default:
			return nil, errors.New("linux: private key: not PKCS #8, SEC 1 or PKCS #1 DER")
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

func writeSecret(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// credentials reads the stored credentials: each placeholder's value in
// args and env, and its content for files.
func (p *Process) credentials() (vals, files map[string][]byte, err error) {
	dir := filepath.Join(p.o.Workdir, credDir)
	vals, files = map[string][]byte{}, map[string][]byte{}
	read := func(name string) ([]byte, bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return b, err == nil, err
	}
	if b, ok, err := read(pskIDFile); err != nil {
		return nil, nil, err
	} else if ok {
		vals["{psk_id}"], files["{psk_id}"] = b, b
	}
	if b, ok, err := read(pskFile); err != nil {
		return nil, nil, err
	} else if ok {
		vals["{psk}"], files["{psk}"] = b, b
	}
	for _, f := range []struct{ ph, name string }{{"{cert}", certFile}, {"{key}", keyFile}} {
		if b, ok, err := read(f.name); err != nil {
			return nil, nil, err
		} else if ok {
			vals[f.ph], files[f.ph] = []byte(filepath.Join(dir, f.name)), b
		}
	}
	if len(p.o.ServerCA) > 0 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
		if err := writeSecret(filepath.Join(dir, caFile), p.o.ServerCA); err != nil {
			return nil, nil, err
		}
		vals["{ca}"], files["{ca}"] = []byte(filepath.Join(dir, caFile)), p.o.ServerCA
	}
	return vals, files, nil
}

// expand fills the placeholders of args and env.
func (p *Process) expand(vals map[string][]byte) (args, env []string, err error) {
	var missing, pairs []string
	for _, ph := range hil.HostPlaceholders {
		if v, ok := vals[ph]; ok {
			pairs = append(pairs, ph, string(v))
		}
	}
	r := strings.NewReplacer(pairs...) // one pass: a value is never expanded again
	fill := func(s string) string {
		for _, ph := range hil.HostPlaceholders {
			if _, ok := vals[ph]; !ok && strings.Contains(s, ph) && !slices.Contains(missing, ph) {
				missing = append(missing, ph)
			}
		}
		return r.Replace(s)
	}
	for _, a := range p.o.Args {
		args = append(args, fill(a))
	}
	for _, k := range slices.Sorted(maps.Keys(p.o.Env)) {
		env = append(env, k+"="+fill(p.o.Env[k]))
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w %s", ErrNoCredential, strings.Join(missing, ", "))
	}
	for _, kv := range append(slices.Clone(args), env...) {
		if strings.ContainsRune(kv, 0) {
			return nil, nil, fmt.Errorf("linux: board %s: a credential holds a NUL byte, which an argument or environment variable cannot carry (use files)", p.o.Name)
		}
	}
	return args, env, nil
}
