package mqtt

import (
	"bytes"
	"context"
	"errors"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
)

// hook plugs the endpoint into the broker: authentication of CONNECT,
// the ACL, and the requests the cloud answers itself.
type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "credloop" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnConnectAuthenticate,
		mochi.OnACLCheck,
		mochi.OnPublish,
		mochi.OnSubscribed,
		mochi.OnUnsubscribed,
		mochi.OnDisconnect,
	}, []byte{b})
}

// OnConnectAuthenticate accepts the CONNECT of every connection the
// listener handed over: TLS and the registry already decided. It records
// the successful authentication.
func (h *hook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	sess := sessionOf(cl)
	if sess == nil {
		return false
	}
	sess.attach(cl)
	p := sess.getPeer()
	// A will is a publish too: one outside the ACL is dropped.
	if cl.Properties.Will.Flag != 0 && !sess.scope.canPublish(cl.Properties.Will.TopicName) {
		h.s.log.Debug("will outside the ACL dropped", "client", cl.ID, "topic", endpoint.Printable(cl.Properties.Will.TopicName))
		cl.Properties.Will = mochi.Will{}
	}
	reason := "session established"
	if p.Role == RoleClaim {
		reason = "session established (claim certificate)"
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), h.s.opts.HandshakeTimeout)
		_ = h.s.reg.TouchDevice(ctx, p.Project, p.Device, h.s.now())
		cancel()
	}
	h.s.record(registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential, Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Reason: reason})
	h.s.log.Info("session established", "project", p.Project, "device", p.Device, "role", p.Role, "client", endpoint.Printable(cl.ID), "credential", short(p.Credential))
	return true
}

// OnACLCheck allows SUBSCRIBE filters and deliveries inside the peer's
// scope. Publishes are checked in OnPublish, so that a refused PUBLISH is
// dropped rather than answered by a disconnect (mochi's MQTT 3.1.1
// behaviour for QoS > 0).
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline || write {
		return true
	}
	sess := sessionOf(cl)
	if sess == nil {
		return false
	}
	if !sess.scope.canRead(topic) {
		h.s.log.Debug("acl: refused", "client", endpoint.Printable(cl.ID), "filter", endpoint.Printable(topic))
		return false
	}
	return true
}

// OnPublish answers the requests the cloud handles (fleet provisioning,
// rotation CSRs) on the requesting connection only, and drops publishes
// outside the ACL (MQTT 5: PUBACK "not authorized").
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	sess := sessionOf(cl)
	if sess == nil || !sess.scope.canPublish(pk.TopicName) {
		h.s.log.Debug("acl: publish refused", "client", endpoint.Printable(cl.ID), "topic", endpoint.Printable(pk.TopicName))
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, packets.ErrNotAuthorized
		}
		return pk, packets.CodeSuccessIgnore
	}
	r, ok := parseRequest(pk.TopicName)
	if !ok {
		return pk, nil
	}
	p := sess.getPeer()
	switch {
	case p.Role == RoleClaim && r.op != opRotationCSR:
		h.s.fleet(sess, cl, r, pk.Payload)
	case p.Role == RoleDevice && r.op == opRotationCSR && r.device == p.Device:
		h.s.rotationCSR(sess, cl, r, pk.Payload)
	default:
		return pk, nil
	}
	// A request to the cloud is acknowledged, not forwarded.
	return pk, packets.CodeSuccessIgnore
}

func (h *hook) OnSubscribed(*mochi.Client, packets.Packet, []byte) { h.s.notify() }
func (h *hook) OnUnsubscribed(*mochi.Client, packets.Packet)       { h.s.notify() }
func (h *hook) OnDisconnect(*mochi.Client, error, bool)            { h.s.notify() }

// errNotSubscribed: the requesting client did not subscribe to the
// response topic, so it gets nothing (as from AWS).
var errNotSubscribed = errors.New("mqtt: client not subscribed to the response topic")

// deliver writes one PUBLISH to one client, not to every subscriber:
// responses to requests go to the requesting connection only (many
// devices share a claim certificate). The client must have subscribed to
// a matching filter; the QoS is its subscription's, at most 1.
func (s *Server) deliver(cl *mochi.Client, topic string, payload []byte) error {
	var (
		qos   byte
		found bool
	)
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if match(filter, topic) {
			found = true
			qos = max(qos, sub.Qos)
		}
	}
	if !found {
		return errNotSubscribed
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(qos, 1)},
		TopicName:   topic,
		Payload:     payload,
		Created:     time.Now().Unix(),
	}
	if pk.FixedHeader.Qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			return err
		}
		pk.PacketID = uint16(id)
		// In flight, so that the PUBACK is matched (and the message
		// resent to a persistent session).
		if cl.State.Inflight.Set(pk) {
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
	return cl.WritePacket(pk)
}
