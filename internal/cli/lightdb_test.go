package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

func TestLightDBCommands(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1")
	base := []string{"--dir", dir, "--project", "proj", "--device", "dev1"}
	cmd := func(args ...string) []string {
		return append(append([]string{"lightdb"}, args[:1]...), append(base, args[1:]...)...)
	}

	if r := mustCLI(t, cmd("get", "desired/x")...); r.stdout != "null\n" {
		t.Fatalf("get of nothing: %v", r)
	}
	if r := mustCLI(t, cmd("set", "desired/x", `{"on": true}`)...); !strings.Contains(r.stdout, "set desired/x of device dev1") {
		t.Fatalf("set: %v", r)
	}
	if r := runCLIIn(t, strings.NewReader(`42`), cmd("set", "/counter/", "-")...); r.code != 0 {
		t.Fatalf("set from stdin: %v", r)
	}
	r := mustCLI(t, cmd("get", "", "--json")...)
	var res lightdbResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, res.Value); err != nil {
		t.Fatal(err)
	}
	if compact.String() != `{"counter":42,"desired":{"x":{"on":true}}}` || res.Device != "dev1" || res.Path != "" {
		t.Fatalf("get --json: %+v", res)
	}
	mustCLI(t, cmd("delete", "desired")...)
	if r := mustCLI(t, cmd("get", "/")...); r.stdout != `{"counter":42}`+"\n" {
		t.Fatalf("after delete: %v", r)
	}
	reg := openTestRegistry(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := reg.Events(ctx, registry.Filter{Kinds: []registry.EventKind{registry.EventLightDBSet, registry.EventLightDBDelete}})
	if err != nil || len(evs) != 3 || evs[0].Reason != `set "desired/x" by credloop CLI` || evs[2].Reason != `delete "desired" by credloop CLI` {
		t.Fatalf("events: %+v %v", evs, err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{cmd("set", "x", "not json"), 2, "is not JSON"},
		{cmd("set", "", "3"), 1, "must be a JSON object"},
		{cmd("get"), 2, "missing PATH"},
		{[]string{"lightdb", "get", "--dir", dir, "--project", "proj", "x"}, 2, "missing --device"},
		{[]string{"lightdb", "get", "--dir", dir, "--project", "proj", "--device", "nope", "x"}, 1, "does not exist"},
	} {
		r := runCLIIn(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %v, want exit %d with %q", tc.args, r, tc.code, tc.want)
		}
	}
	if r := runCLIIn(t, nil, "lightdb", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Fatalf("lightdb --help: %v", r)
	}
}
