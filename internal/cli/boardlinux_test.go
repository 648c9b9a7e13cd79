package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/peer"
)

// board provision on a linux board stores the registry's PSK in the
// firmware's working directory and starts it with it; the process ends
// with the command.
func TestBoardProvisionLinux(t *testing.T) {
	cc := peer.Require(t, "cc")
	fw := filepath.Join(t.TempDir(), "fw")
	src, err := filepath.Abs(filepath.Join("..", "..", "boards", "linux", "testdata", "fw.c"))
	if err != nil {
		t.Fatal(err)
	}
	peer.Run(t, t.TempDir(), cc, "-o", fw, src)
	dir := t.TempDir()
	c, err := cloud.New(cloud.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Registry.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", []byte("linux-psk-secret")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	bench := t.TempDir()
	mapFile := filepath.Join(bench, "hardware.yml")
	yml := "- name: fw\n  kind: linux\n  exec: " + fw + "\n  workdir: state\n  env: {FW_PSK_ID: '{psk_id}', FW_PSK: '{psk}'}\n"
	if err := os.WriteFile(mapFile, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	var out, errOut bytes.Buffer
	args := []string{"board", "provision", "--map", mapFile, "--dir", dir, "--log-dir", logDir, "fw", "--device", "acme/dev1"}
	if code := Run(ctx, &Env{Args: args, Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if id, err := os.ReadFile(filepath.Join(bench, "state", "credloop", "psk_id")); err != nil || string(id) != "dev1@acme" {
		t.Fatalf("stored identity %q, %v", id, err)
	}
	log, err := os.ReadFile(filepath.Join(logDir, "boards", "fw.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "[credloop] firmware started") || strings.Contains(string(log)+out.String()+errOut.String(), "linux-psk-secret") {
		t.Fatalf("log:\n%s\nout: %s%s", log, out.String(), errOut.String())
	}
}
