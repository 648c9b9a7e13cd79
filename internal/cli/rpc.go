package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/credloop/credloop/cloud"
)

func init() {
	register(command{name: "rpc", summary: "call a remote procedure on a device (Golioth RPC)", run: runRPC})
}

const rpcUsage = `
Usage: credloop rpc <subcommand> [flags]

Remote procedure calls on devices, as Golioth's console makes them: the
device observes .rpc on the CoAP endpoint, gets the call and posts its
status to .rpc/status.

Subcommands:
  call     call a method on a device and print its status and detail

Run 'credloop rpc call --help' for its flags and examples.
`

func runRPC(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "rpc", rpcUsage, map[string]func(context.Context, *Env) error{
		"call": rpcCall,
	})
}

const rpcCallUsage = `
Usage: credloop rpc call --project P DEVICE METHOD [ARG]... [--timeout D] [--json] [--dir DIR]

Call METHOD on DEVICE with the ARGs as its params (each parsed as a JSON
value when it is one, else taken as a string) and wait for the device's
answer: its status code (OK, INVALID_ARGUMENT, NOT_FOUND, ...) and detail.
A 'credloop cloud' serving DIR delivers the call to the device's
observation of .rpc; without an answer within --timeout the call is
closed as DEADLINE_EXCEEDED and the command fails. A status other than
OK fails the command too (exit 1), after printing it. Put -- before
arguments that start with '-'.

Examples:
  credloop rpc call --project acme dev1 basic_return_type int
  credloop rpc call --project acme dev1 multiply 2 3.5 --json
  credloop rpc call --project acme dev1 set_name '"42"' --timeout 30s
  credloop rpc call --project acme dev1 add -- -1 -2
`

// rpcResultInfo is a call's outcome for --json.
type rpcResultInfo struct {
	Device   string          `json:"device"`
	Method   string          `json:"method"`
	CallID   string          `json:"call_id"`
	Status   string          `json:"status"`
	Code     int             `json:"status_code"`
	Detail   json.RawMessage `json:"detail,omitempty"`
	TimedOut bool            `json:"timed_out,omitempty"`
}

// errRPCStatus: the device answered with a status other than OK.
var errRPCStatus = errors.New("device answered")

func rpcCall(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "rpc call", rpcCallUsage)
	dir, project := addDeviceFlags(fs)
	timeout := fs.Duration("timeout", cloud.DefaultRPCTimeout, "how long to wait for the device's answer")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseVarArgs(fs, env.Args, 2, "device ID", "METHOD")
	if err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if err := deviceArg(pos[0]); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	device, method := pos[0], pos[1]
	params := rpcArgs(pos[2:])
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	res, err := a.CallRPC(ctx, *project, device, method, params, *timeout)
	if err != nil && !errors.Is(err, cloud.ErrRPCTimeout) {
		return scope{dir: *dir, project: *project, device: device}.explain(err)
	}
	info := rpcResultInfo{Device: device, Method: method, CallID: res.CallID, Status: res.Status.String(), Code: int(res.Status), Detail: res.Detail, TimedOut: res.TimedOut}
	if *asJSON {
		if perr := emitJSON(env.Stdout, info); perr != nil {
			return perr
		}
	} else if err == nil {
		fmt.Fprintf(env.Stdout, "status %s (%d)\n", info.Status, info.Code)
		if len(res.Detail) > 0 {
			fmt.Fprintf(env.Stdout, "detail %s\n", res.Detail)
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("%w (is the device connected and observing .rpc? is `credloop cloud --dir %s` running?)", err, shellArg(*dir))
	case res.Status != 0:
		return fmt.Errorf("%w %s", errRPCStatus, res.Status)
	}
	return nil
}

// rpcArgs parses each argument as a JSON value when it is one, else takes
// it as a string.
func rpcArgs(args []string) []any {
	out := make([]any, 0, len(args))
	for _, s := range args {
		var v json.RawMessage
		if json.Valid([]byte(s)) && json.Unmarshal([]byte(s), &v) == nil {
			out = append(out, v)
			continue
		}
		out = append(out, s)
	}
	return out
}

// parseVarArgs is parseArgs for commands with at least len(names)
// positional arguments.
func parseVarArgs(fs *flag.FlagSet, args []string, least int, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < least {
		return nil, usageErr("missing %s", strings.ToLower(names[len(pos)]))
	}
	return pos, nil
}
