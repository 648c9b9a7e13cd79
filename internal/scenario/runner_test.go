package scenario

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestConditionEnv(t *testing.T) {
	t.Setenv("CREDLOOP_TEST_SET_FW", "/some/firmware")
	t.Setenv("CREDLOOP_TEST_EMPTY_FW", "")
	for _, tc := range []struct {
		cond    string
		want    bool
		wantErr bool
	}{
		{cond: "env:CREDLOOP_TEST_SET_FW", want: true},
		{cond: "env:CREDLOOP_TEST_EMPTY_FW", want: false},
		{cond: "env:CREDLOOP_TEST_UNSET_FW", want: false},
		{cond: "env:", wantErr: true},
		{cond: "envy:X", wantErr: true},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			got, err := condition(tc.cond, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("condition(%q) error = %v, want error %v", tc.cond, err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("condition(%q) = %v, want %v", tc.cond, got, tc.want)
			}
		})
	}
}

func TestPassFirmwareEnv(t *testing.T) {
	env := &testscript.Env{Vars: []string{"HOME=/nowhere"}}
	passFirmwareEnv(env, []string{
		"GOLIOTH_BASICS_FW=/b/golioth_basics",
		"GOLIOTH_HIL_LIGHTDB_FW=/b/hil",
		"EMPTY_FW=",
		"SECRET_TOKEN=xyz",
		"FW_NOT_A_SUFFIX=/x",
		"malformed",
	})
	for k, want := range map[string]string{
		"GOLIOTH_BASICS_FW":      "/b/golioth_basics",
		"GOLIOTH_HIL_LIGHTDB_FW": "/b/hil",
		"EMPTY_FW":               "",
		"SECRET_TOKEN":           "",
		"FW_NOT_A_SUFFIX":        "",
		"HOME":                   "/nowhere",
	} {
		if got := env.Getenv(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestCloudStartCoAPAddr runs a scenario that starts the cloud on a fixed
// address, as firmware with a compiled-in server needs, and checks that
// $COAPS is that address, across a restart too.
func TestCloudStartCoAPAddr(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "cloud start --coap-addr " + addr + "\n" +
		"exec sh -c 'test \"$COAPS\" = \"" + addr + "\"'\n" +
		"cloud restart\n" +
		"exec sh -c 'test \"$COAPS\" = \"" + addr + "\"'\n" +
		"cloud stop\n"
	if err := os.WriteFile(filepath.Join(dir, "fixed_addr.txtar"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	p := Params(dir, nil, Options{})
	testscript.Run(t, p)
}

func TestConditionPkgConfig(t *testing.T) {
	t.Setenv("CI", "")
	if _, err := condition("pkgconfig:", nil); err == nil {
		t.Fatal("condition(pkgconfig:) = nil error, want one")
	}
	got, err := condition("pkgconfig:credloop-no-such-library", nil)
	if err != nil || got {
		t.Fatalf("condition(unknown library) = %v, %v; want false, nil", got, err)
	}
	t.Setenv("CI", "true")
	if _, err := condition("pkgconfig:credloop-no-such-library", nil); err == nil {
		t.Fatal("condition(unknown library) under CI = nil error, want one")
	}
}
