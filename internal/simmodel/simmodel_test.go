package simmodel_test

import (
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/simmodel"
	"github.com/credloop/credloop/sim"
)

// TestModelRoundTrip: a device made around a model hands back that very
// model, and runs it (its ID is the model's).
func TestModelRoundTrip(t *testing.T) {
	psk := devicemodel.Credential{Kind: devicemodel.KindPSK, PSKIdentity: "dev-1@acme", PSK: []byte("k")}
	m := devicemodel.New(devicemodel.Config{ID: "dev-1", Project: "acme", Factory: psk}, nil)
	d := simmodel.NewDevice(m, sim.DeviceOptions{Addr: "127.0.0.1:1"})
	if simmodel.Of(d) != m || d.ID() != "dev-1" {
		t.Fatalf("CoAP device: model %p (want %p), id %q", simmodel.Of(d), m, d.ID())
	}
	mm := devicemodel.New(devicemodel.Config{ID: "dev-2", Project: "acme"}, nil)
	md := simmodel.NewMQTTDevice(mm, sim.MQTTDeviceOptions{Addr: "127.0.0.1:1"})
	if simmodel.Of(md) != mm || md.ID() != "dev-2" {
		t.Fatalf("MQTT device: model %p (want %p), id %q", simmodel.Of(md), mm, md.ID())
	}
	// A model's state shows through the public snapshot.
	if st := md.State(); st.Model.ID != "dev-2" || st.Model.Slot != sim.SlotNone {
		t.Fatalf("state = %s", st.Model)
	}
}
