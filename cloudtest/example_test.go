package cloudtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/cloudtest"
	"github.com/credloop/credloop/sim"
)

// A firmware team's test starts a cloud, gives a device a PSK, connects a
// simulated device made from plain values and waits for the cloud to
// record its authentication.
//
// In a test function, pass its t to cloudtest.New and leave the closing to
// the test's cleanup; an example has no test, hence the stand-in t and the
// explicit Close.
func Example() {
	var t testing.T // in a test function: its t
	c := cloudtest.New(&t)
	defer c.Close()
	psk := c.AddPSKDevice("acme", "sensor-1")

	dev, err := sim.NewDevice(sim.DeviceOptions{
		Identity: sim.Identity{PSKIdentity: psk.Identity, PSK: psk.Key},
		Addr:     c.Addrs().CoAPS,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dev.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}

	ev := c.WaitEvent(ctx, registry.Filter{Project: "acme", Device: "sensor-1", Kind: registry.EventAuthPSK})
	fmt.Println(ev.Kind, ev.Outcome, ev.Credential)
	// Output: auth.psk ok sensor-1@acme
}
