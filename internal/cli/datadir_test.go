package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
)

// cliResult is what one command line did.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLIIn runs a command line in-process with stdin.
func runCLIIn(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Run(ctx, &Env{Args: args, Stdin: stdin, Stdout: &out, Stderr: &errb})
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runCLIIn(t, strings.NewReader(""), args...)
}

// mustCLI runs a command line that must succeed.
func mustCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("credloop %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// failCLI runs a command line that must exit with code and mention each
// of want in its standard error.
func failCLI(t *testing.T, code int, want []string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != code {
		t.Fatalf("credloop %s: want exit %d, got %v", strings.Join(args, " "), code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("credloop %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// openssl runs openssl in dir and returns its combined output; wantOK
// says whether it must succeed or fail. A missing openssl skips the test
// (fails it under CI).
func openssl(t *testing.T, dir string, wantOK bool, args ...string) string {
	t.Helper()
	bin := peer.Require(t, "openssl")
	if wantOK {
		return peer.Run(t, dir, bin, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("openssl %s: succeeded, want a failure\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// openTestRegistry opens the registry of dir until the test ends, as a
// running `credloop cloud` holds it.
func openTestRegistry(t *testing.T, dir string) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(cloud.RegistryPath(dir), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// readCert parses the first certificate of a PEM or DER file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := fakeca.ParseCertPEMOrDER(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		names   []string
		wantPos []string
		wantX   string
		wantErr string
	}{
		{args: []string{"p1"}, names: []string{"ID"}, wantPos: []string{"p1"}},
		{args: []string{"p1", "-x", "v"}, names: []string{"ID"}, wantPos: []string{"p1"}, wantX: "v"},
		{args: []string{"-x", "v", "p1"}, names: []string{"ID"}, wantPos: []string{"p1"}, wantX: "v"},
		{args: []string{"-x", "v", "--", "-p1"}, names: []string{"ID"}, wantPos: []string{"-p1"}, wantX: "v"},
		{args: nil, names: []string{"ID"}, wantErr: "missing ID"},
		{args: []string{"a", "b"}, names: []string{"ID"}, wantErr: `unexpected argument "b"`},
		{args: []string{"a"}, wantErr: `unexpected argument "a"`},
		{args: []string{"-y"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			x := fs.String("x", "", "")
			pos, err := parseArgs(fs, tt.args, tt.names...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(pos, ",") != strings.Join(tt.wantPos, ",") || *x != tt.wantX {
				t.Fatalf("pos %q x %q, want %q %q", pos, *x, tt.wantPos, tt.wantX)
			}
		})
	}
}

func TestParseHexKey(t *testing.T) {
	tests := []struct {
		in   string
		want string // hex, "" for an error
	}{
		{"00112233", "00112233"},
		{"0xAABB", "aabb"},
		{"aa:bb:cc", "aabbcc"},
		{" 0102 \n", "0102"},
		{"", ""},
		{"abc", ""},
		{"zz", ""},
		{strings.Repeat("ab", 65), ""},
		{strings.Repeat("ab", 64), strings.Repeat("ab", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseHexKey(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("parseHexKey(%q) = %x, want an error", tt.in, got)
				}
				return
			}
			if err != nil || hex.EncodeToString(got) != tt.want {
				t.Fatalf("parseHexKey(%q) = %x, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseHexKey(f *testing.F) {
	for _, s := range []string{"00112233", "0x00", "aa:bb", "zz", "abc", "", "0X" + strings.Repeat("f", 128), "secretkey!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := parseHexKey(s)
		if err != nil {
			// The input is a secret: it must not be quoted back.
			if len(s) >= 4 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q quotes the input", err)
			}
			return
		}
		if len(key) == 0 || len(key) > 64 {
			t.Fatalf("key of %d bytes accepted", len(key))
		}
	})
}

func TestShellArg(t *testing.T) {
	for in, want := range map[string]string{
		"./lab":    "./lab",
		"my lab":   "'my lab'",
		"it's":     `'it'\''s'`,
		"":         "''",
		"/tmp/x-1": "/tmp/x-1",
	} {
		if got := shellArg(in); got != want {
			t.Errorf("shellArg(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteFileAtomicMode(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "k")
	if err := os.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(name, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m := fileMode(t, name); m != 0o600 {
		t.Fatalf("mode %o, want 600", m)
	}
	if b, _ := os.ReadFile(name); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
}
