package mqtt

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credloop/credloop/cloud/registry"
)

func TestScope(t *testing.T) {
	dev := deviceScope("dev1")
	claim := claimScope("tmpl")
	for _, tc := range []struct {
		sc            scope
		topic         string
		read, publish bool
	}{
		{dev, "devices/dev1/telemetry", true, true},
		{dev, "devices/dev1", true, true},
		{dev, "devices/dev1/#", true, false},
		{dev, "devices/dev1/+/x", true, false},
		{dev, "$aws/things/dev1/shadow/update", true, true},
		{dev, "devices/dev2/telemetry", false, false},
		{dev, "devices/dev10/telemetry", false, false},
		{dev, "devices/+/telemetry", false, false},
		{dev, "devices/#", false, false},
		{dev, "#", false, false},
		{dev, "+/dev1/x", false, false},
		{dev, "$share/g/devices/dev1/x", false, false},
		{dev, "$aws/certificates/create/json", false, false},
		{dev, "", false, false},
		{claim, "$aws/certificates/create/json", true, true},
		{claim, "$aws/certificates/create/cbor/accepted", true, false},
		{claim, "$aws/certificates/create-from-csr/+/rejected", true, false},
		{claim, "$aws/certificates/create-from-csr/json", true, true},
		{claim, "$aws/certificates/create-from-csr/xml", true, false},
		{claim, "$aws/certificates/#", false, false},
		{claim, "$aws/provisioning-templates/tmpl/provision/json", true, true},
		{claim, "$aws/provisioning-templates/tmpl/provision/cbor/accepted", true, false},
		{claim, "$aws/provisioning-templates/other/provision/json", false, false},
		{claim, "$aws/provisioning-templates/+/provision/json", false, false},
		{claim, "devices/dev1/telemetry", false, false},
		{claimScope(""), "$aws/provisioning-templates//provision/json", false, false},
	} {
		if got := tc.sc.canRead(tc.topic); got != tc.read {
			t.Errorf("%v canRead(%q) = %t", tc.sc.prefixes, tc.topic, got)
		}
		if got := tc.sc.canPublish(tc.topic); got != tc.publish {
			t.Errorf("%v canPublish(%q) = %t", tc.sc.prefixes, tc.topic, got)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$aws/x", false},
		{"+/x", "$aws/x", false},
		{"$aws/#", "$aws/x", true},
		{"a/b/#/c", "a/b/x/c", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"", "a", false},
	} {
		if got := match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("match(%q, %q) = %t", tc.filter, tc.topic, got)
		}
	}
}

// A device may use only its own topics and a claim certificate only the
// fleet-provisioning topics of its template: other SUBSCRIBEs fail in
// SUBACK, other PUBLISHes are dropped, and the connection stays up.
func TestACL(t *testing.T) {
	e := newEnv(t)
	ca := e.newCA("acme CA", registry.CAModeNone, "")
	claimCA := e.newCA("acme claim CA", registry.CAModeClaim, "tmpl")
	seen := make(chan string, 16)
	cancel, err := e.srv.Subscribe("devices/#", func(topic string, _ []byte) { seen <- topic })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	c1 := e.mustConnect(e.device(ca, "dev1"), "dev1")
	c2 := e.mustConnect(e.device(ca, "dev2"), "dev2")
	if got := c1.subscribe(t, "devices/dev1/#", "$aws/things/dev1/shadow/#", "devices/dev2/#", "devices/+/cmd", "#"); string(got) != "\x01\x01\x80\x80\x80" {
		t.Fatalf("dev1 SUBACK = %x", got)
	}
	c2.subscribe(t, "devices/dev2/#")
	// dev1 writes into dev2's topics: dropped (and acknowledged).
	c1.publish(t, "devices/dev2/cmd", []byte("evil"))
	c1.publish(t, "devices/dev1/telemetry", []byte("ok"))
	select {
	case topic := <-seen:
		if topic != "devices/dev1/telemetry" {
			t.Fatalf("the broker forwarded %s", topic)
		}
	case <-time.After(wait):
		t.Fatal("dev1's own publish was not forwarded")
	}
	if m := c1.next(t); m.Topic() != "devices/dev1/telemetry" {
		t.Fatalf("dev1 got %s", m.Topic())
	}
	select {
	case m := <-c2.msgs:
		t.Fatalf("dev2 got %s", m.Topic())
	default:
	}

	claim := e.mustConnect(e.issue(claimCA, "bootstrap", ""), "claim-1")
	got := claim.subscribe(t, "$aws/certificates/create-from-csr/json/accepted", "$aws/provisioning-templates/tmpl/provision/json/+",
		"$aws/provisioning-templates/other/provision/json/accepted", "devices/dev1/#", "$aws/events/#")
	if string(got) != "\x01\x01\x80\x80\x80" {
		t.Fatalf("claim SUBACK = %x", got)
	}
	claim.publish(t, "devices/dev2/cmd", []byte("evil"))
	// A forged answer to the other claim clients: dropped as well.
	claim.publish(t, "$aws/certificates/create-from-csr/json/accepted", []byte(`{"certificateId":"x"}`))
	c2.publish(t, "devices/dev2/alive", nil)
	if topic := <-seen; topic != "devices/dev2/alive" {
		t.Fatalf("the broker forwarded %s", topic)
	}
	select {
	case m := <-claim.msgs:
		t.Fatalf("claim got %s", m.Topic())
	default:
	}

	// A will outside the ACL is dropped with the rest.
	ended := make(chan string, 4)
	onEnd := func(p Peer) { ended <- p.Device }
	e.srv.testEnded.Store(&onEnd)
	o, wc := e.clientOptions(e.device(ca, "dev3"), "dev3")
	o.SetWill("devices/dev2/cmd", "will", 1, false)
	wc.Client = paho.NewClient(o)
	if tok := wc.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect dev3: %v", tok.Error())
	}
	e.srv.Drop(func(p Peer) bool { return p.Device == "dev3" }, "test")
	select {
	case d := <-ended:
		if d != "dev3" {
			t.Fatalf("%s ended", d)
		}
	case <-time.After(wait):
		t.Fatal("dev3's connection did not end")
	}
	c2.publish(t, "devices/dev2/alive", nil)
	if topic := <-seen; topic != "devices/dev2/alive" {
		t.Fatalf("the broker forwarded %s", topic)
	}
}
