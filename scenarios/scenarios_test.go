// Package scenarios holds credloop's scenario library: each .txtar file is
// a testscript scenario, run by `go test ./scenarios` and by
// `credloop run ./scenarios`.
package scenarios

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/internal/cli"
	"github.com/credloop/credloop/internal/scenario"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"credloop": cli.Main})
}

func TestScenarios(t *testing.T) {
	p := scenario.Params(".", nil, scenario.Options{})
	p.UpdateScripts = os.Getenv("UPDATE_SCENARIOS") != ""
	testscript.Run(t, p)
}
