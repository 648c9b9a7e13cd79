package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles credloop once for the process-level tests.
func build(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "credloop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestCloudReadyLineAndSIGTERM(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "cloud", "--dir", t.TempDir(), "--coap-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("no ready line; stderr:\n%s", stderr.String())
	}
	var ready map[string]string
	if err := json.Unmarshal(sc.Bytes(), &ready); err != nil || ready["event"] != "ready" || ready["coaps"] == "" || ready["https"] == "" || ready["mqtts"] == "" {
		t.Fatalf("ready line %q: %v", sc.Text(), err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if sc.Scan() {
		t.Fatalf("more than one line on stdout: %q", sc.Text())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

func TestRunReportsAndJUnit(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.txtar", "exec credloop project create acme\nstdout 'acme'\n")
	write("bad.txtar", "# This scenario fails on purpose.\nexec credloop project show nope\n")
	write("typo.txtar", "[bord:esp32] skip\n")
	write("kind.txtar", "[board:esp99] skip\n")
	junit := filepath.Join(t.TempDir(), "report.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "run", "--junit", junit, dir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want 1\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"PASS  good", "FAIL  bad", "FAIL  typo", "unknown condition", "FAIL  kind", "unknown board kind", "1 passed, 3 failed"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Suite struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &rep); err != nil {
		t.Fatalf("junit: %v\n%s", err, b)
	}
	if rep.Suite.Tests != 4 || rep.Suite.Failures != 3 {
		t.Fatalf("junit counts = %+v", rep.Suite)
	}
}
