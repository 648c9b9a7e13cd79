package sim_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/sim"
)

// A session observes a LightDB path in CBOR; an operator's change arrives.
func TestSessionObserve(t *testing.T) {
	c, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Registry.CreateProject(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.CreateDevice(ctx, "p", "d"); err != nil {
		t.Fatal(err)
	}
	key := []byte("observe-key-0001")
	if _, err := c.Registry.AddPSK(ctx, "p", "d", "d@p", key); err != nil {
		t.Fatal(err)
	}
	s, err := sim.Dial(ctx, sim.DialOptions{Addr: c.Addrs().CoAPS, Credential: sim.Credential{PSKIdentity: "d@p", PSK: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := s.Observe(ctx, "/.d/desired/x", message.AppCBOR)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Admin().LightDBSet(ctx, "p", "d", "desired/x", json.RawMessage(`5`)); err != nil {
		t.Fatal(err)
	}
	got, err := o.Wait(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Body) != "\xf6" || string(got[1].Body) != "\x05" || got[1].ContentFormat != message.AppCBOR || got[1].Observe <= got[0].Observe {
		t.Fatalf("notifications = %+v", got)
	}
	if err := o.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := o.Wait(short, 3); err == nil {
		t.Fatal("Wait for a notification that never comes succeeded")
	}
}
