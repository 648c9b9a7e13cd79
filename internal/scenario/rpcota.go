package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
)

// admin is the admin of the running cloud, or of the scenario's
// directory when it is stopped; done closes what it opened.
func (w *world) serviceAdmin() (a *cloud.Admin, done func(), err error) {
	if w.cloud != nil {
		return w.cloud.Admin(), func() {}, nil
	}
	a, err = cloud.OpenAdmin(cloud.AdminOptions{Dir: w.dir, Now: w.clock.Now, Origin: "by scenario"})
	if err != nil {
		return nil, nil, err
	}
	return a, func() { _ = a.Close() }, nil
}

// cmdRPC: rpc call PROJECT DEVICE METHOD [ARG]... [--timeout D]. It
// prints "status NAME (CODE)" and, when the device sent one, "detail
// JSON". '! rpc call' expects no OK: a timeout or another status.
func cmdRPC(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: rpc call PROJECT DEVICE METHOD [ARG]... [--timeout D]"
	if len(args) < 4 || args[0] != "call" {
		ts.Fatalf(usage)
	}
	w := getWorld(ts)
	if w.cloud == nil {
		ts.Fatalf("rpc call: the cloud is not running (cloud start)")
	}
	timeout := cloud.DefaultRPCTimeout
	var pos []string
	for i := 1; i < len(args); i++ {
		if args[i] == "--timeout" && i+1 < len(args) {
			d, err := parseDuration(args[i+1])
			if err != nil || d <= 0 {
				ts.Fatalf("rpc call: --timeout %q: want a positive duration", args[i+1])
			}
			timeout = d
			i++
			continue
		}
		pos = append(pos, args[i])
	}
	if len(pos) < 3 {
		ts.Fatalf(usage)
	}
	params := make([]any, 0, len(pos)-3)
	for _, s := range pos[3:] {
		if json.Valid([]byte(s)) {
			params = append(params, json.RawMessage(s))
		} else {
			params = append(params, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	res, err := w.cloud.Admin().CallRPC(ctx, pos[0], pos[1], pos[2], params, timeout)
	if err != nil && !errors.Is(err, cloud.ErrRPCTimeout) {
		ts.Fatalf("rpc call: %v", err)
	}
	out := fmt.Sprintf("status %s (%d)\n", res.Status, int(res.Status))
	if res.TimedOut {
		out = fmt.Sprintf("status %s (%d): no answer within %s\n", res.Status, int(res.Status), timeout)
	}
	if len(res.Detail) > 0 {
		out += fmt.Sprintf("detail %s\n", res.Detail)
	}
	fmt.Fprint(ts.Stdout(), out)
	failed := err != nil || res.Status != registry.RPCOK
	switch {
	case failed && !neg:
		ts.Fatalf("rpc call %s: %s", pos[2], out)
	case !failed && neg:
		ts.Fatalf("rpc call %s answered OK, want a failure", pos[2])
	}
}

// cmdOTA: ota release PROJECT PACKAGE VERSION FILE [--device D], and ota
// status PROJECT DEVICE.
func cmdOTA(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "ota")
	const usage = "usage: ota release PROJECT PACKAGE VERSION FILE [--device D] | ota status PROJECT DEVICE"
	if len(args) < 1 {
		ts.Fatalf(usage)
	}
	w := getWorld(ts)
	a, done, err := w.serviceAdmin()
	ts.Check(err)
	defer done()
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	switch args[0] {
	case "release":
		var device string
		fs := flags(ts, "ota release", reorder(args[1:], "--device"), func(fs *flag.FlagSet) {
			fs.StringVar(&device, "device", "", "release to this device only")
		})
		if fs.NArg() != 4 {
			ts.Fatalf(usage)
		}
		data, err := os.ReadFile(ts.MkAbs(fs.Arg(3)))
		ts.Check(err)
		o, err := a.ReleaseOTA(ctx, fs.Arg(0), device, fs.Arg(1), fs.Arg(2), data)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "released %s@%s sequence %d size %d sha256 %s\n", o.Package, o.Version, o.Sequence, o.Size, o.Hash)
	case "status":
		if len(args) != 3 {
			ts.Fatalf(usage)
		}
		st, err := a.OTAStatus(ctx, args[1], args[2])
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "sequence %d\n", st.Sequence)
		for _, o := range st.Desired {
			fmt.Fprintf(ts.Stdout(), "desired %s %s sha256 %s\n", o.Package, o.Version, o.Hash)
			if r, ok := st.Latest(o.Package); ok {
				fmt.Fprintf(ts.Stdout(), "reported %s %s %s version %q target %q\n", r.Package,
					registry.OTAStateName(r.State), registry.OTAReasonName(r.Reason), r.Version, r.Target)
			}
		}
	default:
		ts.Fatalf(usage)
	}
}

// reorder moves flag (and its value) in front of the positional
// arguments, so it may come anywhere.
func reorder(args []string, flagName string) []string {
	var flagsFirst, rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == flagName && i+1 < len(args) {
			flagsFirst = append(flagsFirst, args[i], args[i+1])
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	return append(flagsFirst, rest...)
}
