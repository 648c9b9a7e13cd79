package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// A fleet of PSK devices boots with bounded concurrency; each device keeps
// its own console log, and failures are reported per device.
func TestFleet(t *testing.T) {
	c, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 40
	if _, err := c.Registry.CreateProject(ctx, "fleet"); err != nil {
		t.Fatal(err)
	}
	key := func(i int) []byte { return []byte(fmt.Sprintf("fleet-key-%06d", i)) }
	for i := range n {
		id := fmt.Sprintf("d%03d", i)
		if _, err := c.Registry.CreateDevice(ctx, "fleet", id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Registry.AddPSK(ctx, "fleet", id, id+"@fleet", key(i)); err != nil {
			t.Fatal(err)
		}
	}
	consoles := make([]bytes.Buffer, n+1)
	var (
		mu        sync.Mutex
		inFlight  int
		maxFlight int
	)
	res := sim.RunFleet(ctx, sim.FleetOptions{
		Devices:     n + 1, // the last one has a wrong key
		Concurrency: 6,
		New: func(i int) (*sim.Device, error) {
			id, k := fmt.Sprintf("d%03d", i), key(i)
			if i == n {
				id, k = "d000", []byte("not-the-key-0000")
			}
			model := devicemodel.New(devicemodel.Config{ID: id, Project: "fleet",
				Factory: devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: id + "@fleet", PSK: k}}, nil)
			return simmodel.NewDevice(model, sim.DeviceOptions{Addr: c.Addrs().CoAPS, Console: &consoles[i]}), nil
		},
		Run: func(ctx context.Context, d *sim.Device) error {
			mu.Lock()
			inFlight++
			maxFlight = max(maxFlight, inFlight)
			mu.Unlock()
			defer func() {
				mu.Lock()
				inFlight--
				mu.Unlock()
			}()
			if _, err := d.Hello(ctx); err != nil {
				return err
			}
			s, err := d.Session()
			if err != nil {
				return err
			}
			return s.PutState(ctx, "boot", []byte(`{"ok":true}`))
		},
	})
	if res.Failed != 1 || res.Results[n].Err == nil {
		t.Fatalf("failed = %d, errors %v", res.Failed, res.Errors())
	}
	if maxFlight > 6 {
		t.Fatalf("%d devices ran at once, limit 6", maxFlight)
	}
	for i := range n {
		if res.Results[i].Err != nil {
			t.Fatalf("device %d: %v", i, res.Results[i].Err)
		}
		log := consoles[i].String()
		if !strings.Contains(log, "online") || !strings.Contains(log, fmt.Sprintf("[d%03d]", i)) {
			t.Fatalf("console of device %d:\n%s", i, log)
		}
		if strings.Contains(log, string(key(i))) {
			t.Fatalf("device %d's console shows its key", i)
		}
		v, err := c.Registry.GetState(ctx, "fleet", fmt.Sprintf("d%03d", i), "boot")
		if err != nil || !strings.Contains(string(v), "true") {
			t.Fatalf("state of device %d = %s, %v", i, v, err)
		}
	}
	if errs := res.Errors(); len(errs) != 1 || !strings.Contains(errs[0], "1×") {
		t.Fatalf("errors = %v", errs)
	}
}
