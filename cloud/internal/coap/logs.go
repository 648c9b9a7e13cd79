package coap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/credloop/credloop/cloud/registry"
)

// Logs, as Golioth's firmware SDK sends them (log.c,
// golioth_log_internal): a POST of a CBOR map {"level": "error" | "warn" |
// "info" | "debug", "module": TAG, "msg": TEXT} to ".s/logs" (the Logs
// Pipeline path, CONFIG_GOLIOTH_LOG_PIPELINES_PATH) or, with
// CONFIG_GOLIOTH_LOG_LEGACY, to "logs". zcbor writes the map with an
// indefinite length. Keys other than those three are kept as the entry's
// fields. The answer is 2.04: the SDK counts any 2.xx as success, and
// anything else makes it log a warning, which it sends as a log again.

// maxLogBody bounds a log message's payload; the SDK's buffer is 1,024
// bytes (CBOR_LOG_MAX_LEN).
const maxLogBody = 8 << 10

// logDecMode decodes a log map: text keys, no duplicates, nested maps
// as map[string]any.
var logDecMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		MaxNestedLevels:  8,
		MaxArrayElements: 1024,
		MaxMapPairs:      256,
		IndefLength:      cbor.IndefLengthAllowed,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err) // the options above are valid
	}
	return m
}()

var logLevels = map[string]bool{registry.LogError: true, registry.LogWarn: true, registry.LogInfo: true, registry.LogDebug: true}

// decodeLog decodes a log message in content format cf (CBOR as the SDK
// sends it, or the same map in JSON).
func decodeLog(cf message.MediaType, body []byte) (registry.LogEntry, error) {
	var e registry.LogEntry
	if len(body) > maxLogBody {
		return e, fmt.Errorf("%w: %d bytes, max %d", errPayload, len(body), maxLogBody)
	}
	m := map[string]any{}
	switch cf {
	case message.AppCBOR:
		if err := logDecMode.Unmarshal(body, &m); err != nil {
			return e, fmt.Errorf("%w: a log message is a CBOR map with text keys: %v", errPayload, err)
		}
	case message.AppJSON:
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&m); err != nil || d.More() {
			return e, fmt.Errorf("%w: a log message is a JSON object", errPayload)
		}
	default:
		return e, fmt.Errorf("%w: content-format %d", errPayload, cf)
	}
	if m == nil {
		return e, fmt.Errorf("%w: a log message is a map", errPayload)
	}
	text := func(key string) (string, error) {
		v, ok := m[key]
		if !ok {
			return "", nil
		}
		delete(m, key)
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: %q is not a text string", errPayload, key)
		}
		return s, nil
	}
	var err error
	if e.Level, err = text("level"); err != nil {
		return e, err
	}
	if e.Module, err = text("module"); err != nil {
		return e, err
	}
	_, hasMsg := m["msg"]
	if e.Msg, err = text("msg"); err != nil {
		return e, err
	}
	switch {
	case !hasMsg:
		return e, fmt.Errorf("%w: no \"msg\"", errPayload)
	case !logLevels[e.Level]:
		return e, fmt.Errorf("%w: \"level\" is error, warn, info or debug", errPayload)
	case len(e.Msg) > registry.MaxLogMsg:
		return e, fmt.Errorf("%w: \"msg\" is longer than %d bytes", errPayload, registry.MaxLogMsg)
	case len(e.Module) > registry.MaxLogModule:
		return e, fmt.Errorf("%w: \"module\" is longer than %d bytes", errPayload, registry.MaxLogModule)
	}
	if len(m) > 0 {
		f, err := json.Marshal(jsonable(m))
		if err != nil {
			return e, fmt.Errorf("%w: fields cannot be kept as JSON: %v", errPayload, err)
		}
		if len(f) > registry.MaxLogFields {
			return e, fmt.Errorf("%w: other fields longer than %d bytes", errPayload, registry.MaxLogFields)
		}
		e.Fields = f
	}
	return e, nil
}

// jsonable turns what CBOR decoded into values encoding/json accepts:
// maps with text keys stay maps, byte strings become base64 (as
// encoding/json writes []byte), tags their content.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = jsonable(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = jsonable(x)
		}
		return v
	case cbor.Tag:
		return jsonable(v.Content)
	case cbor.SimpleValue:
		return int(v)
	}
	return v
}

func (s *Server) logs(w *response, r *pool.Message, p Peer) {
	if r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, "POST only")
		return
	}
	cf, ok := contentFormat(r)
	if !ok {
		s.reply(w, codes.UnsupportedMediaType, "log messages are CBOR (content-format 60) or JSON (50)")
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		s.reply(w, codes.BadRequest, "unreadable body")
		return
	}
	if len(body) > maxLogBody {
		s.reply(w, codes.RequestEntityTooLarge, fmt.Sprintf("a log message is at most %d bytes", maxLogBody))
		return
	}
	e, err := decodeLog(cf, body)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return
	}
	e.Project, e.Device = p.Project, p.Device
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, _, err := s.reg.AddLog(ctx, e); err != nil {
		if !errors.Is(err, registry.ErrInvalid) {
			s.log.Warn("log not stored", "project", p.Project, "device", p.Device, "err", err)
		}
		s.replyStoreFailure(w, err)
		return
	}
	s.reply(w, codes.Changed, "")
}
