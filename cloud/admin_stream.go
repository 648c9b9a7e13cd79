package cloud

// The admin's view of Golioth's LightDB Stream and Logs: the records and
// log messages devices sent to the CoAP endpoint.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

// StreamQuery selects stream records. Zero fields select everything;
// Limit > 0 keeps the newest Limit records.
type StreamQuery struct {
	Path  string // exactly this path ("" for every path)
	Since time.Time
	Limit int
}

// StreamRecords returns a device's LightDB Stream records, oldest first.
func (a *Admin) StreamRecords(ctx context.Context, project, device string, q StreamQuery) ([]registry.StreamRecord, error) {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return nil, err
	}
	return a.reg.StreamRecords(ctx, registry.StreamFilter{Project: project, Device: device, Path: q.Path, Since: q.Since, Limit: q.Limit})
}

// Logs returns a device's log messages since since (zero: all), the
// newest limit of them when limit > 0, oldest first.
func (a *Admin) Logs(ctx context.Context, project, device string, since time.Time, limit int) ([]registry.LogEntry, error) {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return nil, err
	}
	return a.reg.Logs(ctx, registry.LogFilter{Project: project, Device: device, Since: since, Limit: limit})
}

// FollowLogs calls fn with the device's log messages as Logs returns
// them, then with every message the device sends after, in order, until
// ctx ends (its error is returned) or fn fails. It waits on the event
// log (device.log), so it sees the messages a cloud in another process
// stores.
func (a *Admin) FollowLogs(ctx context.Context, project, device string, since time.Time, limit int, fn func(registry.LogEntry) error) error {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return err
	}
	// The event log's position first: a message stored after it is read
	// below or found by the wait.
	seq, err := a.reg.LastSeq(ctx)
	if err != nil {
		return err
	}
	logs, err := a.reg.Logs(ctx, registry.LogFilter{Project: project, Device: device, Since: since, Limit: limit})
	if err != nil {
		return err
	}
	var last int64
	for _, e := range logs {
		if err := fn(e); err != nil {
			return err
		}
		last = e.ID
	}
	if last == 0 {
		// Nothing yet: start after the newest entry there is (none
		// matched since), so only new messages follow.
		if all, err := a.reg.Logs(ctx, registry.LogFilter{Project: project, Device: device, Limit: 1}); err == nil && len(all) > 0 {
			last = all[0].ID
		}
	}
	for {
		if _, err := a.reg.WaitEvent(ctx, registry.Filter{Project: project, Device: device, Kind: registry.EventDeviceLog, AfterSeq: seq}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow logs of %s/%s: %w", project, device, err)
		}
		// A message is stored before its event: every event up to the
		// newest has its message readable now.
		if seq, err = a.reg.LastSeq(ctx); err != nil {
			return err
		}
		logs, err := a.reg.Logs(ctx, registry.LogFilter{Project: project, Device: device, AfterID: last})
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return ctx.Err()
			}
			return err
		}
		for _, e := range logs {
			if err := fn(e); err != nil {
				return err
			}
			last = e.ID
		}
	}
}
