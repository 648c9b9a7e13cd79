package coap

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/registry"
)

// Settings, as Golioth's firmware SDK uses them (settings.c): the device
// GETs (and observes) ".c" with Accept 60 and gets the CBOR map
// {"version": INT, "settings": {KEY: VALUE, ...}}; "settings" is null
// when no setting applies to the device (settings_decode then sends no
// status). Values are CBOR booleans, text strings, integers (a JSON
// number written without fraction or exponent) or floats. After applying
// them the device POSTs ".c/status": {"errors": [{"setting_key": KEY,
// "error_code": INT}, ...], "version": INT}, "errors" left out when
// there are none, both maps of indefinite length as zcbor writes them.

// maxSettingsStatus bounds a settings status payload (the SDK's
// CONFIG_GOLIOTH_SETTINGS_MAX_RESPONSE_LEN is 256 by default).
const maxSettingsStatus = 8 << 10

// maxSettingErrors bounds the errors of one status.
const maxSettingErrors = 256

var settingsEncMode = func() cbor.EncMode {
	m, err := cbor.EncOptions{Sort: cbor.SortCoreDeterministic}.EncMode()
	if err != nil {
		panic(err) // the options above are valid
	}
	return m
}()

var statusDecMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		MaxNestedLevels:  8,
		MaxArrayElements: maxSettingErrors,
		MaxMapPairs:      64,
		IndefLength:      cbor.IndefLengthAllowed,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err) // the options above are valid
	}
	return m
}()

// settingValue converts a stored JSON value to what the device is sent.
func settingValue(raw json.RawMessage) (any, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "true":
		return true, nil
	case s == "false":
		return false, nil
	case strings.HasPrefix(s, `"`):
		var v string
		err := json.Unmarshal(raw, &v)
		return v, err
	case !strings.ContainsAny(s, ".eE"):
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("stored setting value %q: %w", s, err)
	}
	return f, nil
}

// EncodeSettings is the CBOR document a device is sent for settings at
// version.
func encodeSettings(settings []registry.Setting, version int64) ([]byte, error) {
	doc := map[string]any{"version": version, "settings": nil}
	if len(settings) > 0 {
		m := make(map[string]any, len(settings))
		for _, s := range settings {
			v, err := settingValue(s.Value)
			if err != nil {
				return nil, err
			}
			m[s.Key] = v
		}
		doc["settings"] = m
	}
	return settingsEncMode.Marshal(doc)
}

// decodeSettingsStatus decodes the body of POST ".c/status".
func decodeSettingsStatus(body []byte) (registry.SettingsStatus, error) {
	var st registry.SettingsStatus
	if len(body) > maxSettingsStatus {
		return st, fmt.Errorf("%w: %d bytes, max %d", errPayload, len(body), maxSettingsStatus)
	}
	var m map[string]any
	if err := statusDecMode.Unmarshal(body, &m); err != nil || m == nil {
		return st, fmt.Errorf("%w: a settings status is a CBOR map with text keys", errPayload)
	}
	v, ok := m["version"]
	if !ok {
		return st, fmt.Errorf("%w: no \"version\"", errPayload)
	}
	var err error
	if st.Version, err = cborInt(v); err != nil {
		return st, fmt.Errorf("%w: \"version\" %v", errPayload, err)
	}
	raw, ok := m["errors"]
	if !ok {
		return st, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return st, fmt.Errorf("%w: \"errors\" is not an array", errPayload)
	}
	for i, x := range list {
		e, ok := x.(map[string]any)
		if !ok {
			return st, fmt.Errorf("%w: errors[%d] is not a map", errPayload, i)
		}
		key, ok := e["setting_key"].(string)
		if !ok || len(key) > registry.MaxSettingKey {
			return st, fmt.Errorf("%w: errors[%d]: \"setting_key\" is not a text string of at most %d bytes", errPayload, i, registry.MaxSettingKey)
		}
		code, err := cborInt(e["error_code"])
		if err != nil {
			return st, fmt.Errorf("%w: errors[%d]: \"error_code\" %v", errPayload, i, err)
		}
		st.Errors = append(st.Errors, registry.SettingError{Key: key, Code: code})
	}
	return st, nil
}

// cborInt is a decoded CBOR integer that fits an int64.
func cborInt(v any) (int64, error) {
	switch n := v.(type) {
	case uint64:
		if n > 1<<63-1 {
			return 0, fmt.Errorf("out of range")
		}
		return int64(n), nil
	case int64:
		return n, nil
	}
	return 0, fmt.Errorf("is not an integer")
}

func (s *Server) settings(w *response, r *pool.Message, p Peer, path string) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	switch strings.Trim(path, "/") {
	case "":
		if r.Code() != codes.GET {
			s.reply(w, codes.MethodNotAllowed, "GET only")
			return
		}
		if a, err := r.Accept(); err == nil && a != message.AppCBOR {
			s.reply(w, codes.NotAcceptable, "settings are CBOR (content-format 60)")
			return
		}
		body, err := s.settingsDoc(ctx, p)
		if err != nil {
			s.log.Warn("settings", "project", p.Project, "device", p.Device, "err", err)
			s.reply(w, codes.InternalServerError, "registry unavailable")
			return
		}
		s.replyBody(w, codes.Content, message.AppCBOR, body)
	case "status":
		if r.Code() != codes.POST {
			s.reply(w, codes.MethodNotAllowed, "POST only")
			return
		}
		if cf, err := r.ContentFormat(); err != nil || cf != message.AppCBOR {
			s.reply(w, codes.UnsupportedMediaType, "a settings status is CBOR (content-format 60)")
			return
		}
		body, err := r.ReadBody()
		if err != nil {
			s.reply(w, codes.BadRequest, "unreadable body")
			return
		}
		if len(body) > maxSettingsStatus {
			s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("a settings status is at most %d bytes", maxSettingsStatus))
			return
		}
		st, err := decodeSettingsStatus(body)
		if err != nil {
			s.reply(w, codes.BadRequest, err.Error())
			return
		}
		st.Project, st.Device = p.Project, p.Device
		reason := fmt.Sprintf("version %d applied", st.Version)
		if len(st.Errors) > 0 {
			keys := make([]string, 0, len(st.Errors))
			for _, e := range st.Errors {
				keys = append(keys, fmt.Sprintf("%s=%d", e.Key, e.Code))
			}
			reason = fmt.Sprintf("version %d, errors %s", st.Version, strings.Join(keys, " "))
			if len(reason) > 200 {
				reason = strings.ToValidUTF8(reason[:200], "") + "..."
			}
		}
		_, err = s.reg.AddSettingsStatus(ctx, st, registry.Event{Project: p.Project, Device: p.Device, Credential: p.Credential,
			Kind: registry.EventSettingsStatus, Reason: reason})
		if err != nil {
			s.log.Warn("settings status not stored", "project", p.Project, "device", p.Device, "err", err)
			s.replyStoreFailure(w, err)
			return
		}
		s.reply(w, codes.Changed, "")
	default:
		s.reply(w, codes.NotFound, "no such settings resource")
	}
}

// settingsDoc is the device's settings document.
func (s *Server) settingsDoc(ctx context.Context, p Peer) ([]byte, error) {
	settings, version, err := s.reg.EffectiveSettings(ctx, p.Project, p.Device)
	if err != nil {
		return nil, err
	}
	return encodeSettings(settings, version)
}
