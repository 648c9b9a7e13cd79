package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Settings work like Golioth's Settings service: a key has a project-wide
// value and may have a per-device value that overrides it for that
// device. Values are JSON booleans, numbers or strings.
//
// The settings version devices are sent (and echo in their status) is
// the project's: the Unix time in milliseconds of the project's latest
// settings change, as Golioth's is, raised to one more than the previous
// version when the clock has not moved past it, so it increases on every
// change (a set or a delete, project-wide or for any device). It is kept
// in the project's settings row with the empty key, which no setting can
// have.

// MaxSettingKey is the longest setting key, in bytes: Golioth's firmware
// SDK keeps 63 (GOLIOTH_SETTINGS_MAX_NAME_LEN in settings.c).
const MaxSettingKey = 63

// MaxSettingValue bounds a setting's value as JSON text.
const MaxSettingValue = 1 << 10

// Setting is one stored value.
type Setting struct {
	Project string
	Device  string // "" for the project-wide value
	Key     string
	Value   json.RawMessage
	Updated time.Time
}

// SettingError is one key a device could not apply, with the code of
// Golioth's firmware SDK (enum golioth_settings_status: 1 key not
// recognized, 2 key not valid, 3 value format not valid, 4 value outside
// range, 5 string too long, 6 general error).
type SettingError struct {
	Key  string `json:"key"`
	Code int64  `json:"code"`
}

// SettingsStatus is what a device reported after applying its settings
// (POST ".c/status").
type SettingsStatus struct {
	ID      int64
	Project string
	Device  string
	Version int64
	Errors  []SettingError
	Time    time.Time
}

// CheckSettingKey reports whether key is a valid setting key: 1 to
// MaxSettingKey characters of A-Z, 0-9 and _, as Golioth's console
// requires.
func CheckSettingKey(key string) error {
	if key == "" || len(key) > MaxSettingKey {
		return fmt.Errorf("%w: setting key must be 1 to %d characters", ErrInvalid, MaxSettingKey)
	}
	for _, c := range key {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: setting key %q: only A-Z, 0-9 and _", ErrInvalid, clip(key))
		}
	}
	return nil
}

// CheckSettingValue returns value as stored (compact JSON) if it is a
// JSON boolean, number or string of at most MaxSettingValue bytes.
func CheckSettingValue(value []byte) (json.RawMessage, error) {
	if len(value) > MaxSettingValue {
		return nil, fmt.Errorf("%w: setting value is %d bytes, max %d", ErrInvalid, len(value), MaxSettingValue)
	}
	v, err := decodeJSON(value)
	if err != nil {
		return nil, fmt.Errorf("%w: setting value is not JSON", ErrInvalid)
	}
	switch v := v.(type) {
	case bool, string:
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return nil, fmt.Errorf("%w: setting value %s is out of range", ErrInvalid, clip(string(v)))
		}
	default:
		return nil, fmt.Errorf("%w: a setting value is a boolean, a number or a string", ErrInvalid)
	}
	b, err := encodeJSON(v)
	return b, err
}

// PutSetting stores a value (device "" for the project-wide one) and
// raises the project's settings version, with evs in one transaction.
// It returns the new version.
func (r *Registry) PutSetting(ctx context.Context, s Setting, evs ...Event) (int64, error) {
	if err := r.checkSettingScope(s.Project, s.Device); err != nil {
		return 0, fmt.Errorf("put setting: %w", err)
	}
	if err := CheckSettingKey(s.Key); err != nil {
		return 0, fmt.Errorf("put setting: %w", err)
	}
	v, err := CheckSettingValue(s.Value)
	if err != nil {
		return 0, fmt.Errorf("put setting %s: %w", s.Key, err)
	}
	var version int64
	err = r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		if err := settingOwnerExists(ctx, tx, s.Project, s.Device); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (project, device, key, value, updated) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (project, device, key) DO UPDATE SET value = excluded.value, updated = excluded.updated`,
			s.Project, s.Device, s.Key, string(v), r.stamp()); err != nil {
			return err
		}
		version, err = r.bumpSettingsVersion(ctx, tx, s.Project)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("put setting %s of %s: %w", s.Key, settingScope(s.Project, s.Device), err)
	}
	return version, nil
}

// DeleteSetting removes a value (device "" for the project-wide one).
// Deleting what does not exist is ErrNotFound. It returns the new
// version.
func (r *Registry) DeleteSetting(ctx context.Context, project, device, key string, evs ...Event) (int64, error) {
	if err := r.checkSettingScope(project, device); err != nil {
		return 0, fmt.Errorf("delete setting: %w", err)
	}
	if err := CheckSettingKey(key); err != nil {
		return 0, fmt.Errorf("delete setting: %w", err)
	}
	var version int64
	err := r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `DELETE FROM settings WHERE project = ? AND device = ? AND key = ?`, project, device, key))
		if err != nil {
			return err
		}
		version, err = r.bumpSettingsVersion(ctx, tx, project)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete setting %s of %s: %w", key, settingScope(project, device), err)
	}
	return version, nil
}

// Settings returns the values stored for exactly this scope (device ""
// for the project-wide ones), sorted by key, and the project's version.
func (r *Registry) Settings(ctx context.Context, project, device string) ([]Setting, int64, error) {
	if err := r.checkSettingScope(project, device); err != nil {
		return nil, 0, fmt.Errorf("settings: %w", err)
	}
	return r.settings(ctx, `SELECT project, device, key, value, updated FROM settings WHERE project = ? AND device = ? AND key != '' ORDER BY key`, project, device)
}

// EffectiveSettings returns the values a device is sent: the project-wide
// ones overridden by the device's own, sorted by key (Device tells which
// applies), and the project's version.
func (r *Registry) EffectiveSettings(ctx context.Context, project, device string) ([]Setting, int64, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, 0, fmt.Errorf("effective settings: %w", err)
	}
	all, version, err := r.settings(ctx, `SELECT project, device, key, value, updated FROM settings
		WHERE project = ? AND device IN ('', ?) AND key != '' ORDER BY key, device`, project, device)
	if err != nil {
		return nil, 0, err
	}
	// Sorted by key then device: a device's value ('dev' > '') comes
	// right after the project-wide one and replaces it.
	var out []Setting
	for _, s := range all {
		if n := len(out); n > 0 && out[n-1].Key == s.Key {
			// A setting has the type of its project-wide value, as
			// Golioth's settings do: a whole number set for one device
			// where the project's value is a float is the float 10.0,
			// which is what the SDK's float settings accept.
			if isJSONFloat(out[n-1].Value) && isJSONInteger(s.Value) {
				s.Value = append(bytes.Clone(s.Value), ".0"...)
			}
			out[n-1] = s
			continue
		}
		out = append(out, s)
	}
	return out, version, nil
}

// isJSONInteger reports whether v is a JSON number with no fraction or
// exponent.
func isJSONInteger(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return false
	}
	if t[0] == '-' {
		t = t[1:]
	}
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isJSONFloat reports whether v is a JSON number with a fraction or an
// exponent.
func isJSONFloat(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return false
	}
	return bytes.ContainsAny(t, ".eE")
}

func (r *Registry) settings(ctx context.Context, q string, args ...any) ([]Setting, int64, error) {
	if err := r.check(); err != nil {
		return nil, 0, err
	}
	project := args[0].(string)
	// The version first: a change landing between the two reads is sent
	// again with its own version.
	version, err := settingsVersion(ctx, r.rd, project)
	if err != nil {
		return nil, 0, fmt.Errorf("settings of %s: %w", project, err)
	}
	out, err := queryAll(ctx, r.rd, func(s rowScanner) (Setting, error) {
		var st Setting
		var v string
		err := s.Scan(&st.Project, &st.Device, &st.Key, &v, timeScan{&st.Updated})
		st.Value = json.RawMessage(v)
		return st, err
	}, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("settings of %s: %w", project, err)
	}
	return out, version, nil
}

// SettingsVersion returns the project's settings version (0 before its
// first change).
func (r *Registry) SettingsVersion(ctx context.Context, project string) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	return settingsVersion(ctx, r.rd, project)
}

func settingsVersion(ctx context.Context, q querier, project string) (int64, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM settings WHERE project = ? AND device = '' AND key = ''`, project).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func (r *Registry) bumpSettingsVersion(ctx context.Context, tx *sql.Tx, project string) (int64, error) {
	prev, err := settingsVersion(ctx, tx, project)
	if err != nil {
		return 0, err
	}
	v := max(r.now().UnixMilli(), prev+1)
	_, err = tx.ExecContext(ctx, `INSERT INTO settings (project, device, key, value, updated) VALUES (?, '', '', ?, ?)
		ON CONFLICT (project, device, key) DO UPDATE SET value = excluded.value, updated = excluded.updated`,
		project, strconv.FormatInt(v, 10), r.stamp())
	return v, err
}

func (r *Registry) checkSettingScope(project, device string) error {
	if err := ValidID(project); err != nil {
		return fmt.Errorf("project: %w", err)
	}
	if device != "" {
		if err := ValidID(device); err != nil {
			return fmt.Errorf("device: %w", err)
		}
	}
	return nil
}

func settingOwnerExists(ctx context.Context, q querier, project, device string) error {
	if device != "" {
		return deviceExists(ctx, q, project, device)
	}
	ok, err := exists(ctx, q, `SELECT 1 FROM projects WHERE id = ?`, project)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("project %s: %w", project, ErrNotFound)
	}
	return nil
}

func settingScope(project, device string) string {
	if device == "" {
		return project
	}
	return project + "/" + device
}

// AddSettingsStatus stores what a device reported about its settings,
// with evs in one transaction, and returns it with its ID.
func (r *Registry) AddSettingsStatus(ctx context.Context, st SettingsStatus, evs ...Event) (SettingsStatus, error) {
	if err := validDeviceIDs(st.Project, st.Device); err != nil {
		return SettingsStatus{}, fmt.Errorf("add settings status: %w", err)
	}
	if st.Errors == nil {
		st.Errors = []SettingError{}
	}
	errs, err := json.Marshal(st.Errors)
	if err != nil {
		return SettingsStatus{}, fmt.Errorf("add settings status: %w", err)
	}
	if st.Time.IsZero() {
		st.Time = r.now()
	}
	st.Time = time.UnixMicro(st.Time.UnixMicro()).UTC()
	err = r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO settings_status (project, device, version, errors, time) VALUES (?, ?, ?, ?, ?)`,
			st.Project, st.Device, st.Version, string(errs), dbTime(st.Time))
		if err != nil {
			return foreignKey(err, st.Project, st.Device)
		}
		st.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return SettingsStatus{}, fmt.Errorf("add settings status of %s/%s: %w", st.Project, st.Device, err)
	}
	return st, nil
}

// SettingsStatuses returns a device's newest limit reports (all when
// limit <= 0), oldest first.
func (r *Registry) SettingsStatuses(ctx context.Context, project, device string, limit int) ([]SettingsStatus, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, fmt.Errorf("settings statuses: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	q := `SELECT id, project, device, version, errors, time FROM settings_status WHERE project = ? AND device = ? ORDER BY id DESC`
	args := []any{project, device}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	out, err := queryAll(ctx, r.rd, func(s rowScanner) (SettingsStatus, error) {
		var st SettingsStatus
		var errs string
		if err := s.Scan(&st.ID, &st.Project, &st.Device, &st.Version, &errs, timeScan{&st.Time}); err != nil {
			return st, err
		}
		if err := json.NewDecoder(strings.NewReader(errs)).Decode(&st.Errors); err != nil {
			return st, fmt.Errorf("stored settings errors: %w", err)
		}
		return st, nil
	}, q, args...)
	if err != nil {
		return nil, fmt.Errorf("settings statuses of %s/%s: %w", project, device, err)
	}
	reverse(out)
	return out, nil
}
