package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limits of device log messages.
const (
	MaxLogMsg    = 4 << 10 // bytes of a message
	MaxLogModule = 128     // bytes of a module name
	MaxLogFields = 4 << 10 // bytes of the other fields, as JSON
)

// Log levels, spelled as Golioth's firmware SDK sends them (log.c).
const (
	LogError = "error"
	LogWarn  = "warn"
	LogInfo  = "info"
	LogDebug = "debug"
)

// LogEntry is a log message a device sent (Golioth Logs).
type LogEntry struct {
	ID      int64 // assigned by AddLog, increasing
	Project string
	Device  string
	Time    time.Time
	Level   string // one of LogError, LogWarn, LogInfo, LogDebug, or ""
	Module  string
	Msg     string
	// Fields holds what else the device sent, as a JSON object ("{}" when
	// nothing).
	Fields json.RawMessage
}

// LogFilter selects log entries. Zero fields match everything; Limit > 0
// keeps the newest Limit entries.
type LogFilter struct {
	Project, Device string
	Since           time.Time
	AfterID         int64
	Limit           int
}

const qAddLog = `INSERT INTO logs (project, device, time, level, module, msg, fields) VALUES (?, ?, ?, ?, ?, ?, ?)`

// AddLog stores a device's log message and records a device.log event
// (its reason "LEVEL MODULE: MSG", shortened) with it. It is written in
// the registry's group commit, as authentications are, so a device that
// logs a lot costs a share of one commit per message, not a commit of its
// own.
func (r *Registry) AddLog(ctx context.Context, e LogEntry) (LogEntry, Event, error) {
	if err := validDeviceIDs(e.Project, e.Device); err != nil {
		return LogEntry{}, Event{}, fmt.Errorf("add log: %w", err)
	}
	switch {
	case len(e.Msg) > MaxLogMsg:
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: message is %d bytes, max %d", e.Project, e.Device, ErrInvalid, len(e.Msg), MaxLogMsg)
	case len(e.Module) > MaxLogModule || len(e.Level) > MaxLogModule:
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: module or level longer than %d bytes", e.Project, e.Device, ErrInvalid, MaxLogModule)
	case !validText(e.Msg) || !validText(e.Module) || !validText(e.Level):
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: text is not UTF-8", e.Project, e.Device, ErrInvalid)
	}
	if len(e.Fields) == 0 {
		e.Fields = json.RawMessage("{}")
	}
	if len(e.Fields) > MaxLogFields {
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: fields are %d bytes, max %d", e.Project, e.Device, ErrInvalid, len(e.Fields), MaxLogFields)
	}
	if v, err := decodeJSON(e.Fields); err != nil {
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: fields are not JSON", e.Project, e.Device, ErrInvalid)
	} else if _, ok := v.(map[string]any); !ok {
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w: fields are not a JSON object", e.Project, e.Device, ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	ev, err := r.prepareEvent(Event{Time: e.Time, Project: e.Project, Device: e.Device, Kind: EventDeviceLog, Reason: logReason(e)})
	if err != nil {
		return LogEntry{}, Event{}, err
	}
	e.Time = ev.Time
	err = r.batched(ctx, func(in inBatch) error {
		res, err := in(r.stAddLog).Exec(e.Project, e.Device, dbTime(e.Time), e.Level, e.Module, e.Msg, string(e.Fields))
		if err != nil {
			return foreignKey(err, e.Project, e.Device)
		}
		if e.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		// In a batch of several writes this commits with the entry; a
		// write alone commits each statement by itself.
		res, err = in(r.stRecord).Exec(dbTime(ev.Time), ev.Project, ev.Device, ev.Credential, ev.Kind, ev.Outcome, ev.Reason)
		if err != nil {
			return fmt.Errorf("record event %s: %w", ev.Kind, err)
		}
		ev.Seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return LogEntry{}, Event{}, fmt.Errorf("add log of %s/%s: %w", e.Project, e.Device, err)
	}
	return e, ev, nil
}

// logReason is the reason of a log's event: "LEVEL MODULE: MSG", short.
func logReason(e LogEntry) string {
	s := e.Msg
	if e.Module != "" {
		s = e.Module + ": " + s
	}
	if e.Level != "" {
		s = e.Level + " " + s
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		cut := 200
		for cut > 0 && s[cut]&0xc0 == 0x80 {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// Logs returns the entries matching f in ascending ID order.
func (r *Registry) Logs(ctx context.Context, f LogFilter) ([]LogEntry, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`SELECT id, project, device, time, level, module, msg, fields FROM logs WHERE id > ?`)
	args := []any{f.AfterID}
	if f.Project != "" {
		b.WriteString(` AND project = ?`)
		args = append(args, f.Project)
	}
	if f.Device != "" {
		b.WriteString(` AND device = ?`)
		args = append(args, f.Device)
	}
	if !f.Since.IsZero() {
		b.WriteString(` AND time >= ?`)
		args = append(args, dbTime(f.Since))
	}
	b.WriteString(` ORDER BY id DESC`)
	if f.Limit > 0 {
		b.WriteString(` LIMIT ?`)
		args = append(args, f.Limit)
	}
	out, err := queryAll(ctx, r.rd, func(s rowScanner) (LogEntry, error) {
		var e LogEntry
		var fields string
		err := s.Scan(&e.ID, &e.Project, &e.Device, timeScan{&e.Time}, &e.Level, &e.Module, &e.Msg, &fields)
		e.Fields = json.RawMessage(fields)
		return e, err
	}, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	reverse(out)
	return out, nil
}
