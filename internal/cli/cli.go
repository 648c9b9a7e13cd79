// Package cli implements the credloop command line.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Env is what a command may touch: its arguments and standard streams.
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand: `credloop NAME ...`.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// errUsage marks an error caused by how the command was called; Main prints
// it with a pointer to --help and exits 2.
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Main runs the command line with the process's arguments and streams and
// exits. It is what cmd/credloop calls, and what scenarios run in-process.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, &Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// Run runs one command line and returns the exit code: 0 success, 1
// failure, 2 usage error.
func Run(ctx context.Context, env *Env) int {
	if len(env.Args) == 0 || env.Args[0] == "-h" || env.Args[0] == "--help" || env.Args[0] == "help" {
		if len(env.Args) > 1 {
			if c, ok := commands[env.Args[1]]; ok {
				return Run(ctx, &Env{Args: []string{c.name, "--help"}, Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr})
			}
		}
		printUsage(env.Stdout)
		return 0
	}
	if env.Args[0] == "--version" || env.Args[0] == "-version" {
		env = &Env{Args: append([]string{"version"}, env.Args[1:]...), Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr}
	}
	c, ok := commands[env.Args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "credloop: unknown command %q\n\n", env.Args[0])
		printUsage(env.Stderr)
		return 2
	}
	sub := &Env{Args: env.Args[1:], Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr}
	err := c.run(ctx, sub)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "credloop %s: %s\nRun 'credloop %s --help' for usage.\n", c.name, strings.TrimPrefix(err.Error(), "usage: "), c.name)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "credloop %s: %v\n", c.name, err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `credloop is a test harness for the credential lifecycle of IoT devices: it
plays the cloud (CA, registry, CoAP/DTLS endpoint) for real boards and
simulated devices, and runs scenarios against them.

Usage:
  credloop <command> [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run 'credloop <command> --help' for a command's flags and examples, and
'credloop --version' for the version and revision credloop was built from.

Quick start:
  credloop run ./scenarios                 run the bundled scenarios
  credloop cloud --dir ./lab               run the cloud for real boards
  credloop ca init --dir ./lab             create a root and an intermediate CA
`)
}

// flagSet returns a FlagSet that prints usage text to stderr and whose
// errors are returned, not fatal.
func flagSet(env *Env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "%s\n\nFlags:\n", strings.TrimSpace(usage))
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning parse failures into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}

// subcommands dispatches `credloop GROUP SUB ...`.
func subcommands(ctx context.Context, env *Env, group, usage string, subs map[string]func(context.Context, *Env) error) error {
	if len(env.Args) == 0 || env.Args[0] == "-h" || env.Args[0] == "--help" || env.Args[0] == "help" {
		fmt.Fprintln(env.Stdout, strings.TrimSpace(usage))
		if len(env.Args) == 0 {
			return usageErr("missing subcommand")
		}
		return flag.ErrHelp
	}
	f, ok := subs[env.Args[0]]
	if !ok {
		return usageErr("unknown subcommand %q", env.Args[0])
	}
	return f(ctx, &Env{Args: env.Args[1:], Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr})
}
