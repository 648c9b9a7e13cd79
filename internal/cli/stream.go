package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
)

func init() {
	register(command{name: "stream", summary: "list the LightDB Stream records devices sent", run: runStream})
	register(command{name: "logs", summary: "show (or follow) the log messages a device sent", run: runLogs})
}

const streamUsage = `
Usage: credloop stream list --project P --device D [--path X] [--since T] [--limit N] [--dir DIR] [--json]

List the LightDB Stream records a device posted to the cloud's CoAP
endpoint (".s/<path>", as Golioth's firmware SDK's golioth_stream_set
does), oldest first: when each arrived, its path, content format and
data (CBOR shown as JSON).

Examples:
  credloop stream list --project acme --device dev1 --dir ./lab
  credloop stream list --project acme --device dev1 --path data/temp --limit 10 --json
`

func runStream(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "stream", streamUsage, map[string]func(context.Context, *Env) error{
		"list": streamList,
	})
}

// streamInfo is a stream record for --json; Data is the record as JSON
// (CBOR converted) when it can be, else absent, and Raw the bytes.
type streamInfo struct {
	ID            int64           `json:"id"`
	Time          time.Time       `json:"time"`
	Path          string          `json:"path"`
	ContentFormat int             `json:"content_format"`
	Data          json.RawMessage `json:"data,omitempty"`
	Raw           []byte          `json:"raw"`
}

func streamList(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "stream list", streamUsage)
	dir, project := addDeviceFlags(fs)
	device := fs.String("device", "", "`DEVICE` whose records to list")
	path := fs.String("path", "", "only records of this `PATH`")
	since := fs.String("since", "", "only records since `T` (RFC 3339, or a duration like 1h ago)")
	limit := fs.Int("limit", 0, "only the newest `N` records")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, env.Args); err != nil {
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
	t, err := parseSince(*since)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	recs, err := a.StreamRecords(ctx, *project, *device, cloud.StreamQuery{Path: *path, Since: t, Limit: *limit})
	if err != nil {
		return scope{dir: *dir, project: *project, device: *device}.explain(err)
	}
	infos := make([]streamInfo, 0, len(recs))
	for _, r := range recs {
		infos = append(infos, streamInfo{ID: r.ID, Time: r.Time, Path: r.Path, ContentFormat: r.ContentFormat, Data: recordJSON(r), Raw: r.Data})
	}
	return printList(env.Stdout, *asJSON, infos,
		fmt.Sprintf("no stream records of %s/%s", *project, *device),
		"TIME\tPATH\tFORMAT\tDATA",
		func(w io.Writer, s streamInfo) {
			data := string(s.Data)
			if data == "" {
				data = fmt.Sprintf("(%d bytes)", len(s.Raw))
			}
			p := s.Path
			if p == "" {
				p = "/"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Time.UTC().Format(time.RFC3339Nano), p, formatName(s.ContentFormat), data)
		})
}

func formatName(cf int) string {
	switch cf {
	case 50:
		return "json"
	case 60:
		return "cbor"
	}
	return fmt.Sprint(cf)
}

// recordJSON is a record's data as compact JSON: JSON as it is, CBOR
// converted; nil when it cannot be shown as JSON.
func recordJSON(r registry.StreamRecord) json.RawMessage {
	switch r.ContentFormat {
	case 50:
		if json.Valid(r.Data) {
			var v any
			if json.Unmarshal(r.Data, &v) == nil {
				if b, err := json.Marshal(v); err == nil {
					return b
				}
			}
		}
	case 60:
		var v any
		dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeFor[map[string]any]()}.DecMode()
		if dm.Unmarshal(r.Data, &v) == nil {
			if b, err := json.Marshal(v); err == nil {
				return b
			}
		}
	}
	return nil
}

// parseSince reads --since: RFC 3339, or a duration meaning that long
// ago ("1h", "30m").
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimSpace(s), " ago"))
	if err != nil || d < 0 {
		return time.Time{}, usageErr("--since %q: want RFC 3339 (2030-01-02T03:04:05Z) or a duration (1h)", s)
	}
	return time.Now().Add(-d), nil
}

const logsUsage = `
Usage: credloop logs --project P DEVICE [--since T] [--limit N] [--follow] [--dir DIR] [--json]

Show the log messages a device sent to the cloud's CoAP endpoint
(".s/logs", as Golioth's firmware SDK's golioth_log_* functions send
them), oldest first. --follow keeps printing new messages as the device
sends them (also to a "credloop cloud" running in another process) until
interrupted. --json prints one JSON object per line.

Examples:
  credloop logs --project acme dev1 --dir ./lab
  credloop logs --project acme dev1 --limit 20 --follow
`

// logInfo is a log message for --json.
type logInfo struct {
	ID     int64           `json:"id"`
	Time   time.Time       `json:"time"`
	Level  string          `json:"level"`
	Module string          `json:"module"`
	Msg    string          `json:"msg"`
	Fields json.RawMessage `json:"fields,omitempty"`
}

func runLogs(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "logs", logsUsage)
	dir, project := addDeviceFlags(fs)
	since := fs.String("since", "", "only messages since `T` (RFC 3339, or a duration like 1h)")
	limit := fs.Int("limit", 0, "only the newest `N` messages")
	follow := fs.Bool("follow", false, "keep printing new messages until interrupted")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	device, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	t, err := parseSince(*since)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	emit := func(e registry.LogEntry) error {
		if *asJSON {
			info := logInfo{ID: e.ID, Time: e.Time, Level: e.Level, Module: e.Module, Msg: e.Msg}
			if string(e.Fields) != "{}" {
				info.Fields = e.Fields
			}
			b, err := json.Marshal(info)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
			return err
		}
		fields := ""
		if len(e.Fields) > 0 && string(e.Fields) != "{}" {
			fields = " " + string(e.Fields)
		}
		_, err := fmt.Fprintf(env.Stdout, "%s %-5s %s: %s%s\n", e.Time.UTC().Format(time.RFC3339Nano), e.Level, e.Module, printable(e.Msg), fields)
		return err
	}
	sc := scope{dir: *dir, project: *project, device: device}
	if *follow {
		err := a.FollowLogs(ctx, *project, device, t, *limit, emit)
		if errors.Is(err, context.Canceled) {
			return nil // interrupted: the normal end of --follow
		}
		return sc.explain(err)
	}
	logs, err := a.Logs(ctx, *project, device, t, *limit)
	if err != nil {
		return sc.explain(err)
	}
	if len(logs) == 0 && !*asJSON {
		fmt.Fprintf(env.Stdout, "no log messages of %s/%s\n", *project, device)
	}
	for _, e := range logs {
		if err := emit(e); err != nil {
			return err
		}
	}
	return nil
}

// printable replaces control characters (a device's message may hold
// anything) so that a message is one line.
func printable(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
