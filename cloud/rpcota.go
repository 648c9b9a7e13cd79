package cloud

import (
	"context"

	"github.com/credloop/credloop/cloud/registry"
)

// deliverKinds are the events the watch hands to the device services.
var deliverKinds = []registry.EventKind{registry.EventRPCCall, registry.EventOTARelease}

// deliver notifies the observers concerned by the RPC calls and OTA
// releases recorded in (after, last]: those made by an Admin of this
// cloud were notified at once (the CoAP endpoint sends a call only once),
// those of the CLI or another process are picked up here.
func (c *Cloud) deliver(ctx context.Context, after, last int64) {
	if c.coap == nil {
		return
	}
	evs, err := c.Registry.Events(ctx, registry.Filter{AfterSeq: after, UpToSeq: last, Kinds: deliverKinds})
	if err != nil {
		c.opts.Logger.Warn("device services watch", "err", err)
		return
	}
	for _, e := range evs {
		switch e.Kind {
		case registry.EventRPCCall:
			if id, ok := registry.RPCCallOf(e); ok {
				c.notifyRPC(ctx, id)
			}
		case registry.EventOTARelease:
			c.notifyOTA(e.Project, e.Device)
		}
	}
}

// notifyRPC sends a pending call to the device's observers of .rpc.
func (c *Cloud) notifyRPC(ctx context.Context, id int64) {
	if c.coap != nil {
		c.coap.NotifyRPC(ctx, id)
	}
}

// notifyOTA sends the manifest to the observers of .u/desired of the
// device, or of every device of the project when device is "".
func (c *Cloud) notifyOTA(project, device string) {
	if c.coap != nil {
		c.coap.NotifyOTA(project, device)
	}
}
