package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/credloop/credloop/cloud/internal/coap"
	"github.com/credloop/credloop/cloud/registry"
)

// LightDB State, the operator's side (Golioth's console and REST API write
// a device's state the same way): a device has one JSON document, a path
// "a/b" addresses a subtree of it and "" the whole document. A change
// records lightdb.set or lightdb.delete; on a running cloud
// ((*Cloud).Admin) the device's observers are notified at once, and a
// cloud serving the same directory in another process notifies them when
// its watch of the event log reads the event.

// ErrLightDBValue: a value to set is not JSON, or is not an object where
// the whole document is set.
var ErrLightDBValue = fmt.Errorf("cloud: bad LightDB State value: %w", registry.ErrInvalid)

// lightDBPath normalizes a LightDB State path: no empty segments.
func lightDBPath(path string) string {
	var segs []string
	for s := range strings.SplitSeq(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return strings.Join(segs, "/")
}

// LightDBGet returns the JSON value at path of the device's LightDB
// State: "null" when the path holds nothing, as a device reads it.
func (a *Admin) LightDBGet(ctx context.Context, project, device, path string) (json.RawMessage, error) {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return nil, err
	}
	v, err := a.reg.GetState(ctx, project, device, lightDBPath(path))
	if errors.Is(err, registry.ErrNotFound) {
		return json.RawMessage("null"), nil
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(v), nil
}

// LightDBSet stores the JSON value at path (lightdb.set); "" sets the
// whole document, which must then be an object.
func (a *Admin) LightDBSet(ctx context.Context, project, device, path string, value json.RawMessage) error {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return err
	}
	path = lightDBPath(path)
	if !json.Valid(value) {
		return fmt.Errorf("%w: not JSON", ErrLightDBValue)
	}
	if err := a.reg.PutState(ctx, project, device, path, value); err != nil {
		if errors.Is(err, registry.ErrInvalid) && !errors.Is(err, registry.ErrStateTooLarge) {
			return fmt.Errorf("%w: %w", ErrLightDBValue, err)
		}
		return err
	}
	a.lightDBChanged(ctx, project, device, registry.EventLightDBSet, "set", path)
	return nil
}

// LightDBDelete removes the value at path ("" for the whole document;
// deleting nothing is no error) and records lightdb.delete.
func (a *Admin) LightDBDelete(ctx context.Context, project, device, path string) error {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return err
	}
	path = lightDBPath(path)
	if err := a.reg.DeleteState(ctx, project, device, path); err != nil {
		return err
	}
	a.lightDBChanged(ctx, project, device, registry.EventLightDBDelete, "delete", path)
	return nil
}

func (a *Admin) lightDBChanged(ctx context.Context, project, device string, kind registry.EventKind, verb, path string) {
	e := registry.Event{Project: project, Device: device, Kind: kind, Reason: a.reason("%s", coap.LightDBReason(verb, path))}
	stored, err := a.reg.Record(ctx, e)
	if err != nil {
		a.log.Warn("could not record event", "kind", e.Kind, "err", err)
		a.warn(fmt.Errorf("could not record event %s: %w", e.Kind, err))
	}
	if a.cloud != nil && a.cloud.coap != nil {
		a.cloud.coap.Notify(project, device, coap.LightDBResource(path))
		if err == nil {
			a.cloud.coap.MarkNotified(stored.Seq)
		}
	}
}

// NotifyObservers sends every CoAP observer of the device's path (one
// that is the path, under it or above it, e.g. ".d/desired/x") its current
// representation again, on every session of the device; device "" means
// every device of the project. It returns the number of observers
// notified; sending goes on after it returns. A resource's change made
// through this cloud's own methods notifies by itself: this is for
// changes that concern many devices at once, and for measuring.
func (c *Cloud) NotifyObservers(project, device, path string) int {
	if c.coap == nil {
		return 0
	}
	return c.coap.Notify(project, device, path)
}
