package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

func init() {
	register(command{name: "settings", summary: "set, delete and list the settings devices are sent", run: runSettings})
}

const settingsUsage = `
Usage: credloop settings <subcommand> --project P [--device D] ...

Manage settings as on Golioth's Settings service: a key has a project-wide
value and may have a per-device value that overrides it. Devices get them
on ".c" of the cloud's CoAP endpoint (GET or observe, CBOR), and a running
cloud sends the new values to observing devices after every change, also
one made here while "credloop cloud" runs in another process.

Keys are 1 to 63 characters of A-Z, 0-9 and _. Values are JSON booleans,
numbers or strings; a VALUE that is not JSON is taken as a string. A
number written with a fraction or exponent (1.0, 2e3) is sent as a float,
otherwise as an integer.

Subcommands:
  set KEY VALUE   set the project's (or with --device, the device's) value
  delete KEY      delete it
  list            the project's values, or with --device those the device
                  is sent, and the version

Examples:
  credloop settings set --project acme LOOP_DELAY_S 10
  credloop settings set --project acme --device dev1 LOOP_DELAY_S 2
  credloop settings set --project acme GREETING hello
  credloop settings list --project acme --device dev1 --json
  credloop settings delete --project acme --device dev1 LOOP_DELAY_S
`

func runSettings(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "settings", settingsUsage, map[string]func(context.Context, *Env) error{
		"set":    func(ctx context.Context, env *Env) error { return settingsChange(ctx, env, "set") },
		"delete": func(ctx context.Context, env *Env) error { return settingsChange(ctx, env, "delete") },
		"list":   settingsList,
	})
}

// settingInfo is a setting for --json.
type settingInfo struct {
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
	Device  string          `json:"device,omitempty"` // set when the device's own value
	Updated time.Time       `json:"updated"`
}

type settingsInfo struct {
	Project  string        `json:"project"`
	Device   string        `json:"device,omitempty"`
	Version  int64         `json:"version"`
	Settings []settingInfo `json:"settings"`
}

func settingsChange(ctx context.Context, env *Env, op string) (err error) {
	fs := flagSet(env, "settings "+op, settingsUsage)
	dir, project := addDeviceFlags(fs)
	device := fs.String("device", "", "`DEVICE` whose own value to change (default: the project-wide value)")
	asJSON := fs.Bool("json", false, "print JSON")
	names := []string{"KEY"}
	if op == "set" {
		names = append(names, "VALUE")
	}
	pos, err := parseArgs(fs, env.Args, names...)
	if err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *device != "" {
		if err := deviceArg(*device); err != nil {
			return err
		}
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	var version int64
	var value json.RawMessage
	if op == "set" {
		value = json.RawMessage(pos[1])
		if !json.Valid(value) {
			value, _ = json.Marshal(pos[1])
		}
		version, err = a.SetSetting(ctx, *project, *device, pos[0], value)
	} else {
		version, err = a.DeleteSetting(ctx, *project, *device, pos[0])
	}
	if err != nil {
		return scope{dir: *dir, project: *project, device: *device}.explain(err)
	}
	if *asJSON {
		return emitJSON(env.Stdout, map[string]any{"project": *project, "device": *device, "key": pos[0], "value": value, "version": version, "op": op})
	}
	where := "project " + *project
	if *device != "" {
		where = "device " + *project + "/" + *device
	}
	if op == "set" {
		fmt.Fprintf(env.Stdout, "set %s=%s for %s (version %d)\n", pos[0], value, where, version)
	} else {
		fmt.Fprintf(env.Stdout, "deleted %s of %s (version %d)\n", pos[0], where, version)
	}
	return nil
}

func settingsList(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "settings list", settingsUsage)
	dir, project := addDeviceFlags(fs)
	device := fs.String("device", "", "list the values `DEVICE` is sent (its own and the project's)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *device != "" {
		if err := deviceArg(*device); err != nil {
			return err
		}
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	s, err := a.Settings(ctx, *project, *device)
	if err != nil {
		return scope{dir: *dir, project: *project, device: *device}.explain(err)
	}
	info := settingsInfo{Project: *project, Device: *device, Version: s.Version, Settings: []settingInfo{}}
	for _, v := range s.Values {
		info.Settings = append(info.Settings, settingInfo{Key: v.Key, Value: v.Value, Device: v.Device, Updated: v.Updated})
	}
	if *asJSON {
		return emitJSON(env.Stdout, info)
	}
	if err := printList(env.Stdout, false, info.Settings, "no settings", "KEY\tVALUE\tFROM\tUPDATED",
		func(w io.Writer, v settingInfo) {
			from := "project"
			if v.Device != "" {
				from = "device"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", v.Key, v.Value, from, rfc3339(v.Updated))
		}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "version %d\n", info.Version)
	return nil
}
