package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/scenario"
)

func init() {
	register(command{name: "run", summary: "run scenarios (.txtar) against an embedded cloud and simulated devices", run: runScenarios})
}

const runUsage = `
Usage: credloop run [flags] PATH...

Runs scenario files (testscript .txtar) against an embedded cloud and
simulated devices. PATH is a scenario file or a directory of them. Each
scenario gets a fresh work directory with its own CA and registry
($CREDLOOP_DIR), so scenarios never see each other's state.

Prints one line per scenario (PASS/FAIL and duration), the log of each
failed one, and a summary; exits 1 if any scenario failed.

Boards: a scenario's "board add NAME" uses the real board NAME of the
hardware map given with --hardware (or $CREDLOOP_HARDWARE), else an
emulator on a pseudo-terminal; [board:esp32] is true when the map has a
real esp32. Board logs go to boards/NAME.log in the work directory.

Examples:
  credloop run ./scenarios
  credloop run --run 'psk_.*' -v ./scenarios
  credloop run --junit report.xml ./scenarios
  credloop run --hardware hardware.yml --run 'esp32_.*' ./scenarios
  credloop run --dtls-psk-stack pion ./scenarios   # pion serves PSK clients too
  credloop run --commands          # the scenario command reference
`

func runScenarios(ctx context.Context, env *Env) error {
	fs := flagSet(env, "run", runUsage)
	junit := fs.String("junit", "", "write a JUnit XML report to `FILE`")
	match := fs.String("run", "", "only run scenarios whose name matches `REGEXP`")
	verbose := fs.Bool("v", false, "print every scenario's log, not only failures'")
	keep := fs.String("keep-work", "", "keep each scenario's work directory (logs, CA, registry) under `DIR`")
	commandsRef := fs.Bool("commands", false, "print the scenario command reference and exit")
	hardware := fs.String("hardware", os.Getenv("CREDLOOP_HARDWARE"), "hardware map `FILE`: boards it names run for real, others are emulated (env CREDLOOP_HARDWARE)")
	pskStack := fs.String("dtls-psk-stack", os.Getenv("CREDLOOP_DTLS_PSK_STACK"), "DTLS implementation serving PSK clients in every `cloud start`: credloop (its own DTLS 1.2 PSK server, the default) or pion (env CREDLOOP_DTLS_PSK_STACK)")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	stack, err := cloud.ParseDTLSPSKStack(*pskStack)
	if err != nil {
		return usageErr("--dtls-psk-stack: %v", err)
	}
	if *commandsRef {
		fmt.Fprint(env.Stdout, scenario.Usage)
		return nil
	}
	if fs.NArg() == 0 {
		return usageErr("give at least one scenario file or directory (e.g. ./scenarios)")
	}
	o := scenario.RunOptions{Paths: fs.Args(), Out: env.Stdout, Verbose: *verbose, DTLSPSKStack: stack}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			return usageErr("--run: %v", err)
		}
		o.Match = re
	}
	if *keep != "" {
		abs, err := filepath.Abs(*keep)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return err
		}
		o.KeepWork = abs
	}
	if *hardware != "" {
		m, err := boards.LoadMap(*hardware)
		if err != nil {
			return err
		}
		o.Hardware = m
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the credloop executable for `exec credloop`: %w", err)
	}
	o.Exe = exe
	results, err := scenario.Run(o)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, scenario.Summary(results))
	if *junit != "" {
		f, err := os.Create(*junit)
		if err != nil {
			return err
		}
		if err := scenario.WriteJUnit(f, "credloop", results); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	for _, r := range results {
		if !r.Passed {
			return errors.New("some scenarios failed")
		}
	}
	_ = ctx
	return nil
}
