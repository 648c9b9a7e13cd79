package registry

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of LightDB Stream records.
const (
	MaxStreamRecord = 64 << 10 // bytes of one record's data
	MaxStreamPath   = 256      // bytes of a record's path
)

// StreamRecord is one LightDB Stream record: what a device posted to
// ".s/<path>", stored whole, with the time it arrived and its CoAP
// content format (50 JSON, 60 CBOR).
type StreamRecord struct {
	ID            int64 // assigned by AddStreamRecord, increasing
	Project       string
	Device        string
	Path          string // without leading or trailing slashes; "" for ".s"
	Time          time.Time
	ContentFormat int
	Data          []byte
}

// StreamFilter selects stream records of one device. Zero fields match
// everything; Limit > 0 keeps the newest Limit records.
type StreamFilter struct {
	Project, Device string
	Path            string // exactly this path ("" matches every path)
	Since           time.Time
	AfterID         int64
	Limit           int
}

// CleanStreamPath returns the path of a stream record as it is stored:
// empty segments dropped ("/a//b/" is "a/b"). It fails for a path that is
// too long, not UTF-8 or has a control character.
func CleanStreamPath(path string) (string, error) {
	segs, err := statePath(path)
	if err != nil {
		return "", err
	}
	if len(path) > MaxStreamPath {
		return "", fmt.Errorf("%w: stream path longer than %d bytes", ErrInvalid, MaxStreamPath)
	}
	return strings.Join(segs, "/"), nil
}

// AddStreamRecord stores rec (Time defaults to now) and returns it with
// its ID. The record and evs commit in one transaction: the record is
// stored whole with its events, or not at all.
func (r *Registry) AddStreamRecord(ctx context.Context, rec StreamRecord, evs ...Event) (StreamRecord, error) {
	if err := validDeviceIDs(rec.Project, rec.Device); err != nil {
		return StreamRecord{}, fmt.Errorf("add stream record: %w", err)
	}
	path, err := CleanStreamPath(rec.Path)
	if err != nil {
		return StreamRecord{}, fmt.Errorf("add stream record of %s/%s: %w", rec.Project, rec.Device, err)
	}
	rec.Path = path
	if len(rec.Data) > MaxStreamRecord {
		return StreamRecord{}, fmt.Errorf("add stream record of %s/%s: %w: %d bytes, max %d", rec.Project, rec.Device, ErrInvalid, len(rec.Data), MaxStreamRecord)
	}
	if rec.Data == nil {
		rec.Data = []byte{}
	}
	if rec.Time.IsZero() {
		rec.Time = r.now()
	}
	rec.Time = time.UnixMicro(rec.Time.UnixMicro()).UTC()
	err = r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO stream (project, device, path, time, content_format, data) VALUES (?, ?, ?, ?, ?, ?)`,
			rec.Project, rec.Device, rec.Path, dbTime(rec.Time), rec.ContentFormat, rec.Data)
		if err != nil {
			return foreignKey(err, rec.Project, rec.Device)
		}
		rec.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return StreamRecord{}, fmt.Errorf("add stream record of %s/%s: %w", rec.Project, rec.Device, err)
	}
	return rec, nil
}

// StreamRecords returns the records matching f in ascending ID order.
func (r *Registry) StreamRecords(ctx context.Context, f StreamFilter) ([]StreamRecord, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`SELECT id, project, device, path, time, content_format, data FROM stream WHERE id > ?`)
	args := []any{f.AfterID}
	if f.Project != "" {
		b.WriteString(` AND project = ?`)
		args = append(args, f.Project)
	}
	if f.Device != "" {
		b.WriteString(` AND device = ?`)
		args = append(args, f.Device)
	}
	if f.Path != "" {
		p, err := CleanStreamPath(f.Path)
		if err != nil {
			return nil, fmt.Errorf("stream records: %w", err)
		}
		b.WriteString(` AND path = ?`)
		args = append(args, p)
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
	recs, err := queryAll(ctx, r.rd, func(s rowScanner) (StreamRecord, error) {
		var rec StreamRecord
		err := s.Scan(&rec.ID, &rec.Project, &rec.Device, &rec.Path, timeScan{&rec.Time}, &rec.ContentFormat, &rec.Data)
		return rec, err
	}, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("stream records: %w", err)
	}
	reverse(recs)
	return recs, nil
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// foreignKey turns SQLite's foreign key failure into ErrNotFound: the
// device a record belongs to does not exist.
func foreignKey(err error, project, device string) error {
	if err != nil && strings.Contains(err.Error(), "FOREIGN KEY") {
		return fmt.Errorf("device %s/%s: %w", project, device, ErrNotFound)
	}
	return err
}

// validText reports whether s is UTF-8 without NUL.
func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
