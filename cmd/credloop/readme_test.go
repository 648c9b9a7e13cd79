package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credloop/credloop/internal/peer"
)

// readmeMarker precedes a ```sh block of README.md that must run as
// written: all marked blocks, in order, run in one shell, in one empty
// directory.
const readmeMarker = "<!-- test: shell -->"

// readmeSession returns the command lines of README.md's marked blocks:
// backslash continuations joined, blank lines and comment lines dropped.
func readmeSession(readme string) ([]string, error) {
	var lines []string
	src := strings.Split(readme, "\n")
	for i := 0; i < len(src); i++ {
		if strings.TrimSpace(src[i]) != readmeMarker {
			continue
		}
		if i+1 >= len(src) || strings.TrimSpace(src[i+1]) != "```sh" {
			return nil, fmt.Errorf("README.md:%d: %s is not followed by a ```sh block", i+1, readmeMarker)
		}
		closed := false
		cont := ""
		for i += 2; i < len(src); i++ {
			l := src[i]
			if strings.TrimSpace(l) == "```" {
				closed = true
				break
			}
			if cont != "" {
				l = cont + " " + strings.TrimSpace(l)
				cont = ""
			}
			if strings.HasSuffix(l, "\\") {
				cont = strings.TrimSpace(strings.TrimSuffix(l, "\\"))
				continue
			}
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, l)
		}
		if !closed || cont != "" {
			return nil, fmt.Errorf("README.md: unterminated block or continuation near line %d", i)
		}
	}
	return lines, nil
}

// stripComment drops a trailing shell comment (" # ...").
func stripComment(line string) string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// readmeChecks are what some lines must print besides exiting 0.
var readmeChecks = []struct {
	line string // a substring of the command line
	want *regexp.Regexp
}{
	{"--psk-random", regexp.MustCompile(`psk: [0-9a-f]{32}`)},
	{"-u dev1@acme -k secret-key-0001 coaps://127.0.0.1:5684/hello", regexp.MustCompile(`"device":"dev1".*"method":"psk"`)},
	{"-c certs/dev-7.crt.pem", regexp.MustCompile(`"device":"dev-7".*"method":"cert"`)},
	{"openssl pkcs7", regexp.MustCompile(`subject=O ?= ?acme, CN ?= ?dev1`)},
	{"credloop device events --device thing-1", regexp.MustCompile(`provision\.jitp`)},
}

// readmeShell runs README lines: `export` sets the environment of later
// lines, `credloop cloud ... &` starts the cloud in the background on
// 127.0.0.1 with free ports and waits for its ready line, `kill %1` stops
// it, and every other line runs with sh, the cloud's default ports
// rewritten to the ones it printed.
type readmeShell struct {
	t     *testing.T
	bin   string
	dir   string
	env   []string
	cloud *exec.Cmd
	done  chan error // the cloud's exit
	addrs map[string]string
	log   strings.Builder
}

func (s *readmeShell) run(line string) {
	t := s.t
	t.Helper()
	fmt.Fprintf(&s.log, "$ %s\n", line)
	code := stripComment(line)
	switch {
	case strings.HasPrefix(code, "export "):
		name, value, ok := strings.Cut(strings.TrimPrefix(code, "export "), "=")
		if !ok {
			t.Fatalf("cannot read %q", line)
		}
		s.env = append(s.env, name+"="+strings.Trim(value, `"'`))
	case strings.HasPrefix(code, "credloop cloud"):
		s.startCloud(code)
	case code == "kill %1":
		s.stopCloud()
	default:
		s.exec(s.rewrite(code), line)
	}
}

// rewrite points a client line at the ports the cloud printed.
func (s *readmeShell) rewrite(code string) string {
	for def, key := range map[string]string{"127.0.0.1:5684": "coaps", "127.0.0.1:8443": "https"} {
		if strings.Contains(code, def) {
			code = strings.ReplaceAll(code, def, s.addr(key))
		}
	}
	if strings.Contains(code, "-p 8883") {
		_, port, _ := net.SplitHostPort(s.addr("mqtts"))
		code = strings.ReplaceAll(code, "-p 8883", "-p "+port)
	}
	return code
}

func (s *readmeShell) addr(key string) string {
	if s.cloud == nil {
		s.t.Fatalf("a line uses the cloud's %s port but no cloud runs\n%s", key, s.log.String())
	}
	return s.addrs[key]
}

func (s *readmeShell) exec(code, line string) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", code)
	cmd.Dir, cmd.Env = s.dir, s.env
	out, err := cmd.CombinedOutput()
	s.log.Write(out)
	if err != nil {
		t.Fatalf("%q: %v\n%s", line, err, s.log.String())
	}
	for _, c := range readmeChecks {
		if strings.Contains(line, c.line) && !c.want.Match(out) {
			t.Fatalf("%q printed no match for %s\n%s", line, c.want, s.log.String())
		}
	}
}

func (s *readmeShell) startCloud(code string) {
	t := s.t
	t.Helper()
	if s.cloud != nil {
		t.Fatalf("a second cloud started\n%s", s.log.String())
	}
	args := []string{"cloud"}
	stderrFile := ""
	f := strings.Fields(strings.TrimPrefix(code, "credloop cloud"))
	for i := 0; i < len(f); i++ {
		switch a := f[i]; {
		case a == "&":
		case a == "2>" && i+1 < len(f):
			i++
			stderrFile = f[i]
		case strings.HasPrefix(a, "2>"):
			stderrFile = a[2:]
		case a == "--coap-addr" || a == "--mqtt-addr" || a == "--https-addr":
			i++
		case strings.HasPrefix(a, "--coap-addr=") || strings.HasPrefix(a, "--mqtt-addr=") || strings.HasPrefix(a, "--https-addr="):
		default:
			args = append(args, a)
		}
	}
	args = append(args, "--coap-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0")
	cmd := exec.Command(s.bin, args...)
	cmd.Dir, cmd.Env = s.dir, s.env
	var stderr io.Writer = io.Discard
	if stderrFile != "" {
		f, err := os.Create(filepath.Join(s.dir, stderrFile))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		stderr = f
	}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cloud, s.done = cmd, make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			ready <- sc.Text()
		}
		close(ready)
		_, _ = io.Copy(io.Discard, stdout) // nothing more is expected; read to EOF
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cloud != nil {
			s.stopCloud()
		}
	})
	var line string
	select {
	case l, ok := <-ready:
		if !ok {
			t.Fatalf("the cloud exited without a ready line\n%s", s.log.String())
		}
		line = l
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line from the cloud within 30s\n%s", s.log.String())
	}
	fmt.Fprintln(&s.log, line)
	var r map[string]string
	if err := json.Unmarshal([]byte(line), &r); err != nil || r["event"] != "ready" || r["coaps"] == "" || r["mqtts"] == "" || r["https"] == "" {
		t.Fatalf("ready line %q: %v", line, err)
	}
	s.addrs = r
}

func (s *readmeShell) stopCloud() {
	t := s.t
	t.Helper()
	if s.cloud == nil {
		t.Fatalf("kill %%1 without a cloud\n%s", s.log.String())
	}
	cmd := s.cloud
	s.cloud = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("the cloud exited after SIGTERM with %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-s.done
		t.Errorf("the cloud did not stop within 30s of SIGTERM")
	}
}

// TestReadmeSession runs README.md's marked shell blocks, top to bottom,
// in an empty directory, with credloop built from this checkout first on
// PATH and the third-party clients (libcoap, openssl, mosquitto_pub, curl)
// talking to a real `credloop cloud` process.
func TestReadmeSession(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := readmeSession(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	clouds := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "credloop cloud") {
			clouds++
		}
	}
	if len(lines) < 20 || clouds != 1 {
		t.Fatalf("README.md's marked blocks have %d lines and %d cloud lines; want the session, the clients and one cloud", len(lines), clouds)
	}
	// Every program the lines call, besides credloop, is a peer.
	for _, l := range lines {
		f := strings.Fields(strings.TrimPrefix(stripComment(l), "! "))
		switch f[0] {
		case "credloop", "export", "kill":
		default:
			peer.Require(t, f[0])
		}
	}
	bin := build(t)
	env := []string{"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "PATH" && !strings.HasPrefix(name, "CREDLOOP_") {
			env = append(env, kv)
		}
	}
	s := &readmeShell{t: t, bin: bin, dir: t.TempDir(), env: env}
	for _, l := range lines {
		s.run(l)
	}
	if s.cloud != nil {
		t.Errorf("the README leaves the cloud running")
	}
	if testing.Verbose() {
		t.Log("\n" + s.log.String())
	}
}

func TestReadmeSessionParsing(t *testing.T) {
	readme := "text\n" + readmeMarker + "\n```sh\nexport A=b   # set\n\n# a comment\nrun one \\\n  two\n```\n```sh\nnot marked\n```\n"
	got, err := readmeSession(readme)
	if err != nil || strings.Join(got, "|") != "export A=b   # set|run one two" {
		t.Fatalf("lines = %q, %v", got, err)
	}
	for _, bad := range []string{readmeMarker + "\n```\nx\n```\n", readmeMarker + "\n```sh\nx\n"} {
		if _, err := readmeSession(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestReadmeSummaryLine checks that the summary line README.md shows for
// `credloop run ./scenarios` has the runner's format and counts the
// bundled scenarios.
func TestReadmeSummaryLine(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	scenarios, err := filepath.Glob(filepath.Join("..", "..", "scenarios", "*.txtar"))
	if err != nil || len(scenarios) == 0 {
		t.Fatalf("scenarios: %v, %v", scenarios, err)
	}
	m := regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed(, (\d+) skipped)?$`).FindSubmatch(readme)
	if m == nil {
		t.Fatal(`README.md shows no "N passed, N failed" summary line`)
	}
	var passed, failed, skipped int
	fmt.Sscan(string(m[1]), &passed)
	fmt.Sscan(string(m[2]), &failed)
	if len(m[4]) > 0 {
		fmt.Sscan(string(m[4]), &skipped)
	}
	if passed+failed+skipped != len(scenarios) {
		t.Errorf("README.md's summary %q counts %d scenarios; scenarios/ has %d", m[0], passed+failed+skipped, len(scenarios))
	}
}
