package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

// answerNextCall plays the device's side of the next call through the
// registry, as the CoAP endpoint would on .rpc/status, and returns the
// call it answered.
func answerNextCall(t *testing.T, reg *registry.Registry, status registry.RPCStatus, detail string) <-chan registry.RPCCall {
	ch := make(chan registry.RPCCall, 1)
	after, err := reg.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ev, err := reg.WaitEvent(ctx, registry.Filter{Kind: registry.EventRPCCall, AfterSeq: after})
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		id, _ := registry.RPCCallOf(ev)
		c, err := reg.RPCCall(ctx, id)
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		var d json.RawMessage
		if detail != "" {
			d = json.RawMessage(detail)
		}
		if _, err := reg.CompleteRPCCall(ctx, c.Project, c.Device, c.CallID, status, d, false); err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	return ch
}

func TestRPCCall(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1", "--psk-random")
	reg := openTestRegistry(t, dir)

	answered := answerNextCall(t, reg, registry.RPCOK, `{"value":42}`)
	r := mustCLI(t, "rpc", "call", "--dir", dir, "--project", "proj", "dev1", "multiply", "2", "3.5", `"quoted"`, "word", "true", "--timeout", "10s", "--", "-1")
	if r.stdout != "status OK (0)\ndetail {\"value\":42}\n" {
		t.Fatalf("output:\n%v", r)
	}
	c := <-answered
	if c.Method != "multiply" || string(c.Params) != `[2,3.5,"quoted","word",true,-1]` {
		t.Fatalf("call %s %s", c.Method, c.Params)
	}

	// Another status than OK is printed, and fails the command.
	answerNextCall(t, reg, registry.RPCInvalidArgument, "")
	r = runCLI(t, "rpc", "call", "--dir", dir, "--project", "proj", "dev1", "m", "--json")
	var info rpcResultInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || r.code != 1 || info.Status != "INVALID_ARGUMENT" || info.Code != 3 {
		t.Fatalf("--json: %+v, %v\n%v", info, err, r)
	}
	if !strings.Contains(r.stderr, "device answered INVALID_ARGUMENT") {
		t.Fatalf("stderr: %s", r.stderr)
	}

	// Nobody answers.
	r = failCLI(t, 1, []string{"timed out", "observing .rpc"}, "rpc", "call", "--dir", dir, "--project", "proj", "dev1", "reboot", "--timeout", "200ms")
	if r.stdout != "" {
		t.Fatalf("stdout on timeout: %q", r.stdout)
	}
	ev, err := reg.Events(context.Background(), registry.Filter{Kind: registry.EventRPCStatus, Outcome: registry.OutcomeFail})
	if err != nil || len(ev) != 1 || !strings.Contains(ev[0].Reason, "reboot timeout") {
		t.Fatalf("timeout events %+v, %v", ev, err)
	}

	failCLI(t, 1, []string{"device dev9 does not exist"}, "rpc", "call", "--dir", dir, "--project", "proj", "dev9", "m")
	failCLI(t, 2, []string{"missing method"}, "rpc", "call", "--dir", dir, "--project", "proj", "dev1")
	failCLI(t, 2, []string{"missing --project"}, "rpc", "call", "--dir", dir, "dev1", "m")
	failCLI(t, 2, []string{"--timeout must be positive"}, "rpc", "call", "--dir", dir, "--project", "proj", "dev1", "m", "--timeout", "0s")
}

func TestOTAReleaseAndStatus(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1", "--psk-random")
	fw := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(fw, []byte("firmware bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustCLI(t, "ota", "release", "--dir", dir, "--project", "proj", "--package", "main", "--version", "1.2.3", "--file", fw)
	if !strings.Contains(r.stdout, "released main@1.2.3 to all devices of proj: sequence 1, 14 bytes, sha256 ") {
		t.Fatalf("output:\n%v", r)
	}
	r = mustCLI(t, "ota", "release", "--dir", dir, "--project", "proj", "--device", "dev1", "--package", "main", "--version", "1.2.4", "--file", fw, "--json")
	var rel otaReleaseInfo
	if err := json.Unmarshal([]byte(r.stdout), &rel); err != nil || rel.Sequence != 2 || rel.Device != "dev1" || rel.URI != "/.u/c/main@1.2.4" || len(rel.SHA256) != 64 {
		t.Fatalf("--json %+v, %v", rel, err)
	}

	reg := openTestRegistry(t, dir)
	if _, err := reg.AddOTAReport(context.Background(), registry.OTAReport{Project: "proj", Device: "dev1", Package: "main", State: 1, Reason: 0, Version: "1.2.3", Target: "1.2.4"}, ""); err != nil {
		t.Fatal(err)
	}
	r = mustCLI(t, "ota", "status", "--dir", dir, "--project", "proj", "dev1")
	for _, want := range []string{"manifest sequence 2", "main", "1.2.4", "device", "DOWNLOADING", "READY", "reports, newest first"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustCLI(t, "ota", "status", "--dir", dir, "--project", "proj", "dev1", "--json")
	var st otaStatusInfo
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Sequence != 2 || len(st.Desired) != 1 || len(st.Reports) != 1 || st.Reports[0].State != "DOWNLOADING" {
		t.Fatalf("--json %+v, %v", st, err)
	}

	failCLI(t, 2, []string{"--package"}, "ota", "release", "--dir", dir, "--project", "proj", "--package", "ma@in", "--version", "1", "--file", fw)
	failCLI(t, 2, []string{"--version"}, "ota", "release", "--dir", dir, "--project", "proj", "--package", "main", "--file", fw)
	failCLI(t, 2, []string{"missing --file"}, "ota", "release", "--dir", dir, "--project", "proj", "--package", "main", "--version", "1")
	failCLI(t, 1, []string{"project nope does not exist"}, "ota", "release", "--dir", dir, "--project", "nope", "--package", "main", "--version", "1", "--file", fw)
	failCLI(t, 1, []string{"device dev9 does not exist"}, "ota", "status", "--dir", dir, "--project", "proj", "dev9")
}
