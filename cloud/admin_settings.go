package cloud

// The admin's Settings operations, as on Golioth's Settings service: a
// key's project-wide value, and per-device values that override it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/credloop/credloop/cloud/registry"
)

// ErrNoSetting: the setting to delete is not set at that level.
var ErrNoSetting = fmt.Errorf("cloud: no such setting: %w", registry.ErrNotFound)

// Settings are the values of a project or of one device, and the
// project's settings version (see registry's Settings).
type Settings struct {
	// Values are sorted by key. For a device they are the values it is
	// sent: its own (Device set) and the project-wide ones it does not
	// override (Device "").
	Values  []registry.Setting
	Version int64
}

// SetSetting sets key to value (JSON: a boolean, a number or a string)
// for the whole project (device "") or for one device, and records
// settings.set. The observing devices it applies to are sent their new
// settings by every running cloud on the registry, which follows the
// event log (Cloud.watch). It returns the new version.
func (a *Admin) SetSetting(ctx context.Context, project, device, key string, value json.RawMessage) (int64, error) {
	if err := a.settingScope(ctx, project, device); err != nil {
		return 0, err
	}
	v, err := registry.CheckSettingValue(value)
	if err != nil {
		return 0, fmt.Errorf("set setting %s: %w", key, err)
	}
	version, err := a.reg.PutSetting(ctx, registry.Setting{Project: project, Device: device, Key: key, Value: v},
		registry.Event{Project: project, Device: device, Kind: registry.EventSettingsSet, Reason: a.reason("%s=%s", key, v)})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// DeleteSetting removes the project-wide (device "") or the device's
// value of key (ErrNoSetting when it has none) and records settings.set.
// A device then gets the project-wide value again, if there is one.
func (a *Admin) DeleteSetting(ctx context.Context, project, device, key string) (int64, error) {
	if err := a.settingScope(ctx, project, device); err != nil {
		return 0, err
	}
	version, err := a.reg.DeleteSetting(ctx, project, device, key,
		registry.Event{Project: project, Device: device, Kind: registry.EventSettingsSet, Reason: a.reason("%s deleted", key)})
	if errors.Is(err, registry.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s at %s", ErrNoSetting, key, scopeName(project, device))
	}
	if err != nil {
		return 0, err
	}
	return version, nil
}

// Settings returns the project-wide values (device "") or the values the
// device is sent.
func (a *Admin) Settings(ctx context.Context, project, device string) (Settings, error) {
	if err := a.settingScope(ctx, project, device); err != nil {
		return Settings{}, err
	}
	var s Settings
	var err error
	if device == "" {
		s.Values, s.Version, err = a.reg.Settings(ctx, project, "")
	} else {
		s.Values, s.Version, err = a.reg.EffectiveSettings(ctx, project, device)
	}
	return s, err
}

// SettingsStatuses returns what a device reported after applying its
// settings (POST .c/status), the newest limit reports when limit > 0,
// oldest first.
func (a *Admin) SettingsStatuses(ctx context.Context, project, device string, limit int) ([]registry.SettingsStatus, error) {
	if _, err := a.needDevice(ctx, project, device); err != nil {
		return nil, err
	}
	return a.reg.SettingsStatuses(ctx, project, device, limit)
}

func (a *Admin) settingScope(ctx context.Context, project, device string) error {
	if device == "" {
		return a.needProject(ctx, project)
	}
	_, err := a.needDevice(ctx, project, device)
	return err
}

func scopeName(project, device string) string {
	if device == "" {
		return "project " + project
	}
	return "device " + project + "/" + device
}
