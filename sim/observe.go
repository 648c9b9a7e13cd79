package sim

import (
	"context"
	"fmt"
	"sync"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/client"
)

// Notification is one message of an observation (RFC 7641): the answer to
// the registration, then each notification.
type Notification struct {
	Code          codes.Code
	ContentFormat message.MediaType
	Observe       uint32
	Body          []byte
}

// Observation is a registration made with Session.Observe.
type Observation struct {
	obs     client.Observation
	mu      sync.Mutex
	got     []Notification
	changed chan struct{} // closed and replaced on every notification
}

// Observe registers an observation of path (GET with Observe: 0), as
// golioth_lightdb_observe does, asking for content format accept (JSON or
// CBOR; 0 sends no Accept option). It returns once the registration is
// answered.
func (s *Session) Observe(ctx context.Context, path string, accept message.MediaType) (*Observation, error) {
	o := &Observation{changed: make(chan struct{})}
	var opts []message.Option
	if accept != 0 {
		opts = append(opts, message.Option{ID: message.Accept, Value: []byte{byte(accept)}})
	}
	obs, err := s.cc.Observe(ctx, path, func(m *pool.Message) {
		n := Notification{Code: m.Code()}
		n.ContentFormat, _ = m.ContentFormat()
		n.Observe, _ = m.Observe()
		n.Body, _ = m.ReadBody()
		o.mu.Lock()
		o.got = append(o.got, n)
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("sim: observe %s: %w", path, err)
	}
	o.obs = obs
	return o, nil
}

// Wait returns the notifications received so far once there are at least
// n of them (the registration's answer is the first).
func (o *Observation) Wait(ctx context.Context, n int) ([]Notification, error) {
	for {
		o.mu.Lock()
		got, changed := append([]Notification(nil), o.got...), o.changed
		o.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("sim: %d notifications of %d: %w", len(got), n, ctx.Err())
		}
	}
}

// Cancel deregisters the observation (GET with Observe: 1).
func (o *Observation) Cancel(ctx context.Context) error {
	if err := o.obs.Cancel(ctx); err != nil {
		return fmt.Errorf("sim: cancel observation: %w", err)
	}
	return nil
}
