package bench

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
)

// TestFleet connects a small fleet to an embedded cloud, checks that the
// figures per device are positive, and that every goroutine the fleet
// started ends once Fleet has returned and the cloud is closed.
func TestFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := runtime.NumGoroutine()
	n := 20
	if s := os.Getenv("CREDLOOP_FLEET_DEVICES"); s != "" { // a bigger run by hand
		n, _ = strconv.Atoi(s)
	}
	for _, tc := range []struct {
		name string
		own  bool // pass a Cloud rather than let Fleet embed one
		pion bool
	}{{"embedded", false, false}, {"cloud", true, false}, {"pion client", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := FleetOptions{Devices: n, Concurrency: 8, Hold: 50 * time.Millisecond, Keepalive: 20 * time.Millisecond, PionClient: tc.pion}
			if tc.own {
				c, err := cloud.New(cloud.Options{HTTPSAddr: "-", MQTTAddr: "-"})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				o.Cloud = c
			}
			r, err := Fleet(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			if r.Connected != n || r.Errors != nil || r.Devices != n {
				t.Fatalf("connected %d of %d, errors %v", r.Connected, r.Devices, r.Errors)
			}
			if !r.Embedded || r.Measured != "client+server in one process" {
				t.Fatalf("embedded %v, measured %q", r.Embedded, r.Measured)
			}
			if r.KiBPerDevice <= 0 || r.GoroutinesPerDevice <= 0 || r.ConnectSummary.Count != int64(n) {
				t.Fatalf("per device: %.1f KiB, %.2f goroutines, %d connects", r.KiBPerDevice, r.GoroutinesPerDevice, r.ConnectSummary.Count)
			}
			if runtime.GOOS == "linux" && (r.RSSBefore == 0 || r.RSSAfter == 0) {
				t.Fatalf("no VmRSS: %d, %d", r.RSSBefore, r.RSSAfter)
			}
		})
	}
	// Goroutines end: poll (with a deadline) rather than sleep once.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFleetOptions(t *testing.T) {
	for _, o := range []FleetOptions{{}, {Devices: 1, Shard: Shard{Index: 1, Count: 2}}} {
		if _, err := Fleet(context.Background(), o); !errors.Is(err, ErrOptions) {
			t.Fatalf("%+v: err = %v, want ErrOptions", o, err)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"Name:\tx\nVmRSS:\t  1234 kB\nThreads: 3\n", 1234 * 1024},
		{"VmRSS: 0 kB\n", 0},
		{"VmRSS: 12 MB\n", 0},
		{"VmRSS: x kB\n", 0},
		{"VmHWM: 5 kB\n", 0},
		{"", 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseVmRSS([]byte(tc.in)); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t  1234 kB\n"))
	f.Add([]byte("VmRSS: 99999999999999999999 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v := parseVmRSS(b); v%1024 != 0 {
			t.Fatalf("%d is not whole KiB", v)
		}
	})
}

func FuzzJITPConnectPacket(f *testing.F) {
	f.Add("dev-0000001")
	f.Fuzz(func(t *testing.T, id string) {
		if len(id) > 65535 {
			return
		}
		p := jitpConnectPacket(id)
		// Decode the remaining length and check it covers the rest.
		rem, mul, i := 0, 1, 1
		for ; i < len(p) && i <= 4; i++ {
			rem += int(p[i]&0x7f) * mul
			mul *= 128
			if p[i]&0x80 == 0 {
				break
			}
		}
		if p[0] != 0x10 || rem != len(p)-i-1 || string(p[len(p)-len(id):]) != id {
			t.Fatalf("packet % x for %q", p, id)
		}
	})
}
