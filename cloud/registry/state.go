package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of the per-device state store.
const (
	MaxStateValue = 16 << 10 // bytes of one PutState value
	MaxStateDoc   = 64 << 10 // bytes of a device's whole state document
	MaxStatePath  = 256      // bytes of a state path
)

// ErrStateTooLarge is returned by PutState for a value or a resulting
// document over its limit; it is also ErrInvalid.
var ErrStateTooLarge = fmt.Errorf("%w: state too large", ErrInvalid)

// PutState stores value (valid JSON, at most MaxStateValue bytes) at path
// in the device's state, creating intermediate objects and replacing
// whatever was at path, or in the way of it. At path "" value must be an
// object and replaces the whole state.
//
// The state store works like Golioth LightDB State (CoAP ".d/<path>"):
// each device has one JSON object (at most MaxStateDoc bytes); a path
// "a/b/c" addresses a member of nested objects, and "" the whole object.
// Empty segments are ignored, so "/a//b/" is "a/b". Numbers keep their
// text; objects come back compact, with their keys sorted.
func (r *Registry) PutState(ctx context.Context, project, device, path string, value []byte) error {
	if err := validDeviceIDs(project, device); err != nil {
		return fmt.Errorf("put state: %w", err)
	}
	segs, err := statePath(path)
	if err != nil {
		return fmt.Errorf("put state of %s/%s: %w", project, device, err)
	}
	if len(value) > MaxStateValue {
		return fmt.Errorf("put state %s/%s %q: %w: value is %d bytes, max %d", project, device, path, ErrStateTooLarge, len(value), MaxStateValue)
	}
	v, err := decodeJSON(value)
	if err != nil {
		return fmt.Errorf("put state %s/%s %q: %w: value is not JSON", project, device, path, ErrInvalid)
	}
	if _, ok := v.(map[string]any); len(segs) == 0 && !ok {
		return fmt.Errorf("put state %s/%s: %w: the root value must be an object", project, device, ErrInvalid)
	}
	err = r.write(ctx, func(tx *sql.Tx) error {
		if err := deviceExists(ctx, tx, project, device); err != nil {
			return err
		}
		doc, err := loadDoc(ctx, tx, project, device)
		if err != nil {
			return err
		}
		doc = setPath(doc, segs, v)
		b, err := encodeJSON(doc)
		if err != nil {
			return err
		}
		if len(b) > MaxStateDoc {
			return fmt.Errorf("%w: state document would be %d bytes, max %d", ErrStateTooLarge, len(b), MaxStateDoc)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO device_state (project, device, doc, updated) VALUES (?, ?, ?, ?)
			ON CONFLICT (project, device) DO UPDATE SET doc = excluded.doc, updated = excluded.updated`,
			project, device, b, r.stamp())
		return err
	})
	if err != nil {
		return fmt.Errorf("put state %s/%s %q: %w", project, device, path, err)
	}
	return nil
}

// GetState returns the JSON value at path in the device's state
// (ErrNotFound if the device or the path does not exist).
func (r *Registry) GetState(ctx context.Context, project, device, path string) ([]byte, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, fmt.Errorf("get state: %w", err)
	}
	segs, err := statePath(path)
	if err != nil {
		return nil, fmt.Errorf("get state of %s/%s: %w", project, device, err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	var raw []byte
	err = r.rd.QueryRowContext(ctx, `SELECT doc FROM device_state WHERE project = ? AND device = ?`, project, device).Scan(&raw)
	if err != nil {
		return nil, fmt.Errorf("get state %s/%s %q: %w", project, device, path, notFound(err))
	}
	if len(segs) == 0 {
		return raw, nil
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("get state %s/%s: stored document: %w", project, device, err)
	}
	for _, s := range segs {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("get state %s/%s %q: %w", project, device, path, ErrNotFound)
		}
		if doc, ok = m[s]; !ok {
			return nil, fmt.Errorf("get state %s/%s %q: %w", project, device, path, ErrNotFound)
		}
	}
	return encodeJSON(doc)
}

// DeleteState removes the value at path ("" for all of the device's
// state). Deleting what does not exist is not an error.
func (r *Registry) DeleteState(ctx context.Context, project, device, path string) error {
	if err := validDeviceIDs(project, device); err != nil {
		return fmt.Errorf("delete state: %w", err)
	}
	segs, err := statePath(path)
	if err != nil {
		return fmt.Errorf("delete state of %s/%s: %w", project, device, err)
	}
	err = r.write(ctx, func(tx *sql.Tx) error {
		if len(segs) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM device_state WHERE project = ? AND device = ?`, project, device)
			return err
		}
		doc, err := loadDoc(ctx, tx, project, device)
		if err != nil || doc == nil {
			return err
		}
		m := doc
		for _, s := range segs[:len(segs)-1] {
			if m, _ = m[s].(map[string]any); m == nil {
				return nil
			}
		}
		delete(m, segs[len(segs)-1])
		b, err := encodeJSON(doc)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_state SET doc = ?, updated = ? WHERE project = ? AND device = ?`, b, r.stamp(), project, device)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete state %s/%s %q: %w", project, device, path, err)
	}
	return nil
}

// loadDoc returns the device's state object, nil if it has none.
func loadDoc(ctx context.Context, tx *sql.Tx, project, device string) (map[string]any, error) {
	var raw []byte
	err := tx.QueryRowContext(ctx, `SELECT doc FROM device_state WHERE project = ? AND device = ?`, project, device).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("stored state document: %w", err)
	}
	m, _ := v.(map[string]any)
	return m, nil
}

// setPath sets doc[segs...] = v, replacing non-objects on the way.
func setPath(doc map[string]any, segs []string, v any) map[string]any {
	if len(segs) == 0 {
		m, _ := v.(map[string]any)
		return m
	}
	if doc == nil {
		doc = map[string]any{}
	}
	m := doc
	for _, s := range segs[:len(segs)-1] {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	m[segs[len(segs)-1]] = v
	return doc
}

// statePath splits a state path into its non-empty segments.
func statePath(path string) ([]string, error) {
	if len(path) > MaxStatePath {
		return nil, fmt.Errorf("%w: state path longer than %d bytes", ErrInvalid, MaxStatePath)
	}
	if !utf8.ValidString(path) {
		return nil, fmt.Errorf("%w: state path %q is not UTF-8", ErrInvalid, path)
	}
	for _, c := range path {
		if c < 0x20 || c == 0x7f {
			return nil, fmt.Errorf("%w: state path %q has a control character", ErrInvalid, path)
		}
	}
	var segs []string
	for s := range strings.SplitSeq(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return segs, nil
}

// decodeJSON decodes exactly one JSON value, keeping numbers as
// json.Number.
func decodeJSON(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
