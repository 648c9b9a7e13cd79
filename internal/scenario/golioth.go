package scenario

// Golioth's device services in scenarios: a simulated device posts
// LightDB Stream records, logs and settings status as Golioth's firmware
// SDK does, and the operator commands check what the cloud stored.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/sim"
)

const goliothUsage = `
Golioth device services (LightDB Stream, Logs, Settings):

  sim stream NAME PATH JSON    POST JSON to .s/PATH, as golioth_stream_set
  sim log NAME LEVEL MODULE MSG
                               POST the CBOR log map of golioth_log_LEVEL to .s/logs
  sim settings NAME [--registered KEY,KEY...]
                               GET .c (CBOR); prints {"version":..,"settings":..};
                               with --registered, POST .c/status as the SDK does
                               (other keys: error 1, not recognized)
  stream list PROJECT DEVICE [--path P] [--limit N]
                               print the device's stream records: PATH FORMAT DATA
  logs PROJECT DEVICE [--limit N]
                               print the device's logs: LEVEL MODULE: MSG
  settings set PROJECT [--device D] KEY JSON | settings delete PROJECT [--device D] KEY
  settings list PROJECT [--device D]
                               KEY=VALUE (project|device) lines, then "version N"
  expect stream PROJECT DEVICE [--path P] --count N
  expect logs PROJECT DEVICE [--level L] [--msg REGEXP] --count N
`

// withAdmin runs f with the running cloud's admin, or with the
// directory's admin opened for the occasion (as the CLI would).
func (w *world) withAdmin(f func(*cloud.Admin) error) error {
	if w.cloud != nil {
		return f(w.cloud.Admin())
	}
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: w.dir, Now: w.clock.Now})
	if err != nil {
		return err
	}
	defer a.Close()
	return f(a)
}

// sdkCBOR writes CBOR as zcbor does in Golioth's firmware SDK (not
// canonical): maps of indefinite length, shortest heads.
type sdkCBOR []byte

func (b sdkCBOR) head(major byte, n uint64) sdkCBOR {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func (b sdkCBOR) text(s string) sdkCBOR { return append(b.head(3, uint64(len(s))), s...) }

func (b sdkCBOR) int(v int64) sdkCBOR {
	if v < 0 {
		return b.head(1, uint64(-1-v))
	}
	return b.head(0, uint64(v))
}

func simGolioth(ts *testscript.TestScript, d *sim.Device, sub string, rest []string, expectErr func(string, error)) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	s, err := d.Session()
	if err != nil {
		expectErr(sub, err)
		return
	}
	switch sub {
	case "stream":
		if len(rest) != 2 {
			ts.Fatalf("usage: sim stream NAME PATH JSON")
		}
		_, err = s.PostRaw(ctx, "/.s/"+strings.TrimPrefix(rest[0], "/"), message.AppJSON, []byte(rest[1]))
	case "log":
		if len(rest) != 3 {
			ts.Fatalf("usage: sim log NAME LEVEL MODULE MSG")
		}
		// golioth_log_internal (log.c): {"level", "module", "msg"}.
		b := sdkCBOR{0xbf}.text("level").text(rest[0]).text("module").text(rest[1]).text("msg").text(rest[2])
		_, err = s.PostRaw(ctx, "/.s/logs", message.AppCBOR, append(b, 0xff))
	case "settings":
		// As golioth_settings_register_* does: GET .c; with --registered,
		// also apply them as a device that registered those keys and POST
		// .c/status, each other key reported as not recognized (1).
		var registered string
		fs := flag.NewFlagSet("sim settings", flag.ContinueOnError)
		fs.StringVar(&registered, "registered", "", "comma-separated keys the device registered")
		if perr := fs.Parse(rest); perr != nil || fs.NArg() != 0 {
			ts.Fatalf("usage: sim settings NAME [--registered KEY,KEY...]")
		}
		var body []byte
		if body, err = s.GetRaw(ctx, "/.c"); err != nil {
			break
		}
		var doc struct {
			Version  int64          `cbor:"version" json:"version"`
			Settings map[string]any `cbor:"settings" json:"settings"`
		}
		if err = cbor.Unmarshal(body, &doc); err != nil {
			break
		}
		out, _ := json.Marshal(doc)
		fmt.Fprintf(ts.Stdout(), "%s\n", out)
		if registered == "" || doc.Settings == nil {
			break
		}
		known := map[string]bool{}
		for k := range strings.SplitSeq(registered, ",") {
			known[k] = true
		}
		var unknown []string
		for k := range doc.Settings {
			if !known[k] {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		// finalize_and_send_response (settings.c): "errors" only when
		// there are some, then "version".
		b := sdkCBOR{0xbf}
		if len(unknown) > 0 {
			b = append(b.text("errors"), 0x9f)
			for _, k := range unknown {
				b = append(append(b, 0xbf).text("setting_key").text(k).text("error_code").int(1), 0xff)
			}
			b = append(b, 0xff)
		}
		b = append(b.text("version").int(doc.Version), 0xff)
		_, err = s.PostRaw(ctx, "/.c/status", message.AppCBOR, b)
	}
	expectErr(sub, err)
}

func cmdStream(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "stream (use `expect stream ... --count 0`)")
	w := getWorld(ts)
	if len(args) < 3 || args[0] != "list" {
		ts.Fatalf("usage: stream list PROJECT DEVICE [--path P] [--limit N]")
	}
	var q cloud.StreamQuery
	flags(ts, "stream list", args[3:], func(fs *flag.FlagSet) {
		fs.StringVar(&q.Path, "path", "", "only this path")
		fs.IntVar(&q.Limit, "limit", 0, "only the newest N")
	})
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	ts.Check(w.withAdmin(func(a *cloud.Admin) error {
		recs, err := a.StreamRecords(ctx, args[1], args[2], q)
		for _, r := range recs {
			data := string(r.Data)
			if r.ContentFormat == int(message.AppCBOR) {
				var v any
				if cbor.Unmarshal(r.Data, &v) == nil {
					data = fmt.Sprintf("%v", v)
				}
			}
			fmt.Fprintf(ts.Stdout(), "%s %d %s\n", "/"+r.Path, r.ContentFormat, data)
		}
		return err
	}))
}

func cmdLogs(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "logs (use `expect logs ... --count 0`)")
	w := getWorld(ts)
	if len(args) < 2 {
		ts.Fatalf("usage: logs PROJECT DEVICE [--limit N]")
	}
	var limit int
	flags(ts, "logs", args[2:], func(fs *flag.FlagSet) {
		fs.IntVar(&limit, "limit", 0, "only the newest N")
	})
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	ts.Check(w.withAdmin(func(a *cloud.Admin) error {
		logs, err := a.Logs(ctx, args[0], args[1], time.Time{}, limit)
		for _, e := range logs {
			fmt.Fprintf(ts.Stdout(), "%s %s: %s\n", e.Level, e.Module, e.Msg)
		}
		return err
	}))
}

func cmdSettings(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "settings")
	w := getWorld(ts)
	usage := "usage: settings set PROJECT [--device D] KEY JSON | settings delete PROJECT [--device D] KEY | settings list PROJECT [--device D]"
	if len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	var device string
	fs := flags(ts, "settings "+args[0], args[2:], func(fs *flag.FlagSet) {
		fs.StringVar(&device, "device", "", "the device's own value")
	})
	op, project, pos := args[0], args[1], fs.Args()
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	ts.Check(w.withAdmin(func(a *cloud.Admin) error {
		switch {
		case op == "set" && len(pos) == 2:
			v, err := a.SetSetting(ctx, project, device, pos[0], json.RawMessage(pos[1]))
			fmt.Fprintf(ts.Stdout(), "version %d\n", v)
			return err
		case op == "delete" && len(pos) == 1:
			v, err := a.DeleteSetting(ctx, project, device, pos[0])
			fmt.Fprintf(ts.Stdout(), "version %d\n", v)
			return err
		case op == "list" && len(pos) == 0:
			s, err := a.Settings(ctx, project, device)
			for _, v := range s.Values {
				from := "project"
				if v.Device != "" {
					from = "device"
				}
				fmt.Fprintf(ts.Stdout(), "%s=%s (%s)\n", v.Key, v.Value, from)
			}
			fmt.Fprintf(ts.Stdout(), "version %d\n", s.Version)
			return err
		}
		return errors.New(usage)
	}))
}

// expectGolioth: expect stream|logs PROJECT DEVICE [filters] --count N.
func expectGolioth(ts *testscript.TestScript, w *world, args []string) {
	usage := "usage: expect stream PROJECT DEVICE [--path P] --count N | expect logs PROJECT DEVICE [--level L] [--msg REGEXP] --count N"
	if len(args) < 3 {
		ts.Fatalf("%s", usage)
	}
	var path, level, msg string
	count := -1
	fs := flags(ts, "expect "+args[0], args[3:], func(fs *flag.FlagSet) {
		if args[0] == "stream" {
			fs.StringVar(&path, "path", "", "only this path")
		} else {
			fs.StringVar(&level, "level", "", "only this level")
			fs.StringVar(&msg, "msg", "", "only messages matching REGEXP")
		}
		fs.IntVar(&count, "count", -1, "how many")
	})
	if fs.NArg() != 0 || count < 0 {
		ts.Fatalf("%s", usage)
	}
	re, err := regexp.Compile(msg)
	ts.Check(err)
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	ts.Check(w.withAdmin(func(a *cloud.Admin) error {
		var seen []string
		if args[0] == "stream" {
			recs, err := a.StreamRecords(ctx, args[1], args[2], cloud.StreamQuery{Path: path})
			if err != nil {
				return err
			}
			for _, r := range recs {
				seen = append(seen, fmt.Sprintf("/%s %d bytes", r.Path, len(r.Data)))
			}
		} else {
			logs, err := a.Logs(ctx, args[1], args[2], time.Time{}, 0)
			if err != nil {
				return err
			}
			for _, e := range logs {
				if (level == "" || e.Level == level) && re.MatchString(e.Msg) {
					seen = append(seen, fmt.Sprintf("%s %s: %s", e.Level, e.Module, e.Msg))
				}
			}
		}
		if len(seen) != count {
			return fmt.Errorf("%d %s match, want %d:\n  %s", len(seen), args[0], count, strings.Join(seen, "\n  "))
		}
		return nil
	}))
}
