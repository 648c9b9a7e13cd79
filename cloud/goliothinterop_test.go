package cloud_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/peer"
)

// libcoap's client (the CoAP stack of Golioth's firmware SDK on Linux and
// ESP-IDF) posts a stream record, a 3 KiB record in 1,024-byte blocks
// and a log message, and reads its settings.
func TestLibcoapStreamLogsSettings(t *testing.T) {
	client := peer.Require(t, "coap-client-openssl")
	c, _ := pskCloud(t, cloud.Options{}, "libcoap-secret-2")
	ctx := ctxT(t)
	a := c.Admin()
	base := "coaps://" + c.Addrs().CoAPS
	dir := t.TempDir()
	run := func(args ...string) string {
		return peer.Run(t, dir, client, append([]string{"-B", "10", "-u", "dev1@acme", "-k", "libcoap-secret-2"}, args...)...)
	}

	run("-m", "post", "-t", "50", "-e", `{"my_stream_int":15}`, base+"/.s")

	var big bytes.Buffer
	big.WriteString("[")
	for i := 0; big.Len() < 3*1024; i++ {
		fmt.Fprintf(&big, `{"i":%d,"pad":"%s"},`, i, strings.Repeat("x", 40))
	}
	big.WriteString(`null]`)
	if err := os.WriteFile(filepath.Join(dir, "big.json"), big.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	run("-m", "post", "-t", "50", "-b", "1024", "-f", "big.json", base+"/.s/data/block_upload")

	if err := os.WriteFile(filepath.Join(dir, "log.cbor"), sdkLog("info", "golioth_basics", "Hello, Golioth!"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("-m", "post", "-t", "60", "-f", "log.cbor", base+"/.s/logs")

	if _, err := a.SetSetting(ctx, "acme", "", "LOOP_DELAY_S", []byte("10")); err != nil {
		t.Fatal(err)
	}
	out := run("-m", "get", "-A", "60", base+"/.c")
	if !strings.Contains(out, "LOOP_DELAY_S") {
		t.Errorf("settings over libcoap = %q", out)
	}

	recs, err := a.StreamRecords(ctx, "acme", "dev1", cloud.StreamQuery{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("records = %+v, %v", recs, err)
	}
	if string(recs[0].Data) != `{"my_stream_int":15}` || recs[0].Path != "" {
		t.Errorf("record 0 = %+v", recs[0])
	}
	if !bytes.Equal(recs[1].Data, big.Bytes()) || recs[1].Path != "data/block_upload" {
		t.Errorf("block-wise record: %d bytes at %q, want %d", len(recs[1].Data), recs[1].Path, big.Len())
	}
	logs, err := a.Logs(ctx, "acme", "dev1", time.Time{}, 0)
	if err != nil || len(logs) != 1 || logs[0].Msg != "Hello, Golioth!" || logs[0].Module != "golioth_basics" {
		t.Fatalf("logs = %+v, %v", logs, err)
	}
	if evs, _ := c.Registry.Events(ctx, registry.Filter{Kind: registry.EventStreamRecord}); len(evs) != 2 {
		t.Errorf("%d stream events", len(evs))
	}
}
