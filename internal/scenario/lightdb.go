package scenario

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/sim"
)

// LightDB State in scenarios: the operator's side (the same cloud.Admin
// methods as `credloop lightdb`) and a simulated device's observations.

// lightdbUsage is appended to Usage.
const lightdbUsage = `
  lightdb get PROJECT DEVICE PATH
                               print the device's LightDB State at PATH ("" or /:
                               the whole document; null when it holds nothing)
  lightdb set PROJECT DEVICE PATH JSON | lightdb delete PROJECT DEVICE PATH
                               change it as an operator; a running cloud notifies
                               the observers of the path
  sim observe NAME PATH [--cbor]
                               GET .d/PATH with Observe: 0 (golioth_lightdb_observe);
                               the answer is the first notification
  sim notifications NAME PATH --count N [--timeout D]
                               wait until the observation of PATH has N notifications
                               (the answer included); print them, one a line:
                               "#1 Content null", "#2 Content {...}" (CBOR in hex)
`

func cmdLightDB(ts *testscript.TestScript, neg bool, args []string) {
	w := getWorld(ts)
	usage := "usage: lightdb get PROJECT DEVICE PATH | lightdb set PROJECT DEVICE PATH JSON | lightdb delete PROJECT DEVICE PATH"
	if len(args) < 4 || (args[0] == "set") != (len(args) == 5) || len(args) > 5 {
		ts.Fatalf("%s", usage)
	}
	verb, project, device, path := args[0], args[1], args[2], args[3]
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	a := (*cloud.Admin)(nil)
	if w.cloud != nil {
		a = w.cloud.Admin()
	} else {
		var err error
		a, err = cloud.OpenAdmin(cloud.AdminOptions{Dir: w.dir, Now: w.clock.Now, Origin: "by scenario"})
		ts.Check(err)
		defer a.Close()
	}
	var err error
	switch verb {
	case "get":
		var v json.RawMessage
		if v, err = a.LightDBGet(ctx, project, device, path); err == nil {
			fmt.Fprintf(ts.Stdout(), "%s\n", v)
		}
	case "set":
		err = a.LightDBSet(ctx, project, device, path, json.RawMessage(args[4]))
	case "delete":
		err = a.LightDBDelete(ctx, project, device, path)
	default:
		ts.Fatalf("%s", usage)
	}
	switch {
	case err != nil && !neg:
		ts.Fatalf("lightdb %s: %v", verb, err)
	case err == nil && neg:
		ts.Fatalf("lightdb %s succeeded unexpectedly", verb)
	case err != nil:
		fmt.Fprintf(ts.Stderr(), "lightdb %s: %v\n", verb, err)
	}
}

// simObserve runs `sim observe` and `sim notifications` for device d.
func simObserve(ts *testscript.TestScript, w *world, neg bool, sub, name string, d *sim.Device, args []string) {
	noNeg(ts, neg, "sim "+sub)
	if w.observations == nil {
		w.observations = map[string]*sim.Observation{}
	}
	// PATH comes first, the flags after it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		ts.Fatalf("usage: sim %s NAME PATH [flags]", sub)
	}
	path, args := strings.Trim(args[0], "/"), args[1:]
	switch sub {
	case "observe":
		var asCBOR bool
		fs := flags(ts, "sim observe", args, func(fs *flag.FlagSet) {
			fs.BoolVar(&asCBOR, "cbor", false, "ask for CBOR (Accept 60) instead of JSON")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("usage: sim observe NAME PATH [--cbor]")
		}
		accept := message.AppJSON
		if asCBOR {
			accept = message.AppCBOR
		}
		s, err := d.Session()
		ts.Check(err)
		ctx, cancel := ctxTimeout(30 * time.Second)
		defer cancel()
		o, err := s.Observe(ctx, "/.d/"+path, accept)
		ts.Check(err)
		w.observations[name+" "+path] = o
	case "notifications":
		var count int
		var timeout time.Duration
		fs := flags(ts, "sim notifications", args, func(fs *flag.FlagSet) {
			fs.IntVar(&count, "count", 1, "notifications to wait for, the registration's answer included")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait")
		})
		if fs.NArg() != 0 {
			ts.Fatalf("usage: sim notifications NAME PATH --count N [--timeout D]")
		}
		o := w.observations[name+" "+path]
		if o == nil {
			ts.Fatalf("sim notifications: %s does not observe %s (sim observe %s %s)", name, path, name, path)
		}
		ctx, cancel := ctxTimeout(timeout)
		defer cancel()
		got, err := o.Wait(ctx, count)
		for i, n := range got {
			if n.ContentFormat == message.AppCBOR {
				fmt.Fprintf(ts.Stdout(), "#%d %s cbor %x\n", i+1, n.Code, n.Body)
			} else {
				fmt.Fprintf(ts.Stdout(), "#%d %s %s\n", i+1, n.Code, n.Body)
			}
		}
		ts.Check(err)
	}
}
