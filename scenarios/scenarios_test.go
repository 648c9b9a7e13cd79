// Package scenarios holds credloop's scenario library: each .txtar file is
// a testscript scenario, run by `go test ./scenarios` and by
// `credloop run ./scenarios`.
package scenarios

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/cli"
	"github.com/credloop/credloop/internal/scenario"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"credloop": cli.Main})
}

func TestScenarios(t *testing.T) {
	var o scenario.Options
	if f := os.Getenv("CREDLOOP_HARDWARE"); f != "" {
		m, err := boards.LoadMap(f)
		if err != nil {
			t.Fatal(err)
		}
		o.Hardware = m
	}
	stack, err := cloud.ParseDTLSPSKStack(os.Getenv("CREDLOOP_DTLS_PSK_STACK"))
	if err != nil {
		t.Fatalf("CREDLOOP_DTLS_PSK_STACK: %v", err)
	}
	o.DTLSPSKStack = stack
	p := scenario.Params(".", nil, o)
	p.UpdateScripts = os.Getenv("UPDATE_SCENARIOS") != ""
	testscript.Run(t, p)
}
