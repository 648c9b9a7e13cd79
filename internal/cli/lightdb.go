package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/credloop/credloop/cloud"
)

func init() {
	register(command{name: "lightdb", summary: "read, set and delete a device's LightDB State (observers are notified)", run: runLightDB})
}

const lightdbUsage = `
Usage: credloop lightdb <subcommand> --project P --device D [flags] PATH [VALUE]

Read and change a device's LightDB State, the JSON document a device reads
and writes at CoAP .d/<PATH> as Golioth's firmware SDK does
(golioth_lightdb_get/set/delete/observe). PATH addresses a subtree ("a/b"
is member b of member a); "" or "/" is the whole document. A change is
recorded (lightdb.set, lightdb.delete); a 'credloop cloud' running on the
same DIR notifies the devices observing the path within a few
milliseconds.

Subcommands:
  get      print the value at PATH (null when it holds nothing)
  set      store the JSON VALUE at PATH ("-" reads it from standard input)
  delete   remove the value at PATH

Examples:
  credloop lightdb set --dir ./lab --project acme --device dev1 desired/led '{"on":true}'
  credloop lightdb set --dir ./lab --project acme --device dev1 desired/name '"kitchen"'
  credloop lightdb get --dir ./lab --project acme --device dev1 desired --json
  credloop lightdb delete --dir ./lab --project acme --device dev1 desired/led
`

func runLightDB(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "lightdb", lightdbUsage, map[string]func(context.Context, *Env) error{
		"get":    func(ctx context.Context, env *Env) error { return lightdbCmd(ctx, env, "get") },
		"set":    func(ctx context.Context, env *Env) error { return lightdbCmd(ctx, env, "set") },
		"delete": func(ctx context.Context, env *Env) error { return lightdbCmd(ctx, env, "delete") },
	})
}

// lightdbResult is what --json prints.
type lightdbResult struct {
	Project string          `json:"project"`
	Device  string          `json:"device"`
	Path    string          `json:"path"`
	Value   json.RawMessage `json:"value,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
}

func lightdbCmd(ctx context.Context, env *Env, verb string) (err error) {
	fs := flagSet(env, "lightdb "+verb, lightdbUsage)
	dir, project := addDeviceFlags(fs)
	device := fs.String("device", "", "`DEVICE` whose state it is")
	asJSON := fs.Bool("json", false, "print JSON")
	names := []string{"PATH"}
	if verb == "set" {
		names = append(names, "VALUE")
	}
	pos, err := parseArgs(fs, env.Args, names...)
	if err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *device == "" {
		return usageErr("missing --device")
	}
	if err := deviceArg(*device); err != nil {
		return err
	}
	path := strings.Trim(pos[0], "/")
	var value json.RawMessage
	if verb == "set" {
		v := []byte(pos[1])
		if pos[1] == "-" {
			if v, err = io.ReadAll(io.LimitReader(env.Stdin, 1<<20)); err != nil {
				return fmt.Errorf("read VALUE from standard input: %w", err)
			}
		}
		v = bytes.TrimSpace(v)
		if !json.Valid(v) {
			return usageErr("VALUE %q is not JSON (a string needs quotes: '\"text\"')", lightdbShort(string(v), 40))
		}
		value = v
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	sc := scope{dir: *dir, project: *project, device: *device}
	res := lightdbResult{Project: *project, Device: *device, Path: path}
	switch verb {
	case "get":
		if res.Value, err = a.LightDBGet(ctx, *project, *device, path); err != nil {
			return sc.explain(err)
		}
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "%s\n", res.Value)
			return nil
		}
	case "set":
		if err := a.LightDBSet(ctx, *project, *device, path, value); err != nil {
			if errors.Is(err, cloud.ErrLightDBValue) && path == "" {
				return fmt.Errorf("%w (the whole document must be a JSON object)", err)
			}
			return sc.explain(err)
		}
		res.Value = value
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "set %s of device %s (project %s)\n", lightdbPathText(path), *device, *project)
			return nil
		}
	case "delete":
		if err := a.LightDBDelete(ctx, *project, *device, path); err != nil {
			return sc.explain(err)
		}
		res.Deleted = true
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "deleted %s of device %s (project %s)\n", lightdbPathText(path), *device, *project)
			return nil
		}
	}
	return emitJSON(env.Stdout, res)
}

func lightdbPathText(p string) string {
	if p == "" {
		return "the whole state"
	}
	return p
}

func lightdbShort(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
