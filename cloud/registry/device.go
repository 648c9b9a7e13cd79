package registry

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Device is a device of a project. Device ids are unique within a project.
type Device struct {
	Project         string
	ID              string
	Disabled        bool
	AutoProvisioned bool // created on first connect rather than by an operator
	Created         time.Time
	LastSeen        time.Time // zero if never seen
}

const deviceColumns = `project, id, disabled, auto, created, last_seen`

func scanDevice(s rowScanner) (Device, error) {
	var d Device
	err := s.Scan(&d.Project, &d.ID, &d.Disabled, &d.AutoProvisioned, timeScan{&d.Created}, timeScan{&d.LastSeen})
	return d, err
}

func validDeviceIDs(project, id string) error {
	if err := ValidID(project); err != nil {
		return fmt.Errorf("project: %w", err)
	}
	if err := ValidID(id); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// CreateDevice creates a device in an existing project (ErrNotFound if
// the project does not exist, ErrExists if the device does).
func (r *Registry) CreateDevice(ctx context.Context, project, id string) (Device, error) {
	if err := validDeviceIDs(project, id); err != nil {
		return Device{}, fmt.Errorf("create device: %w", err)
	}
	d, created, err := r.ensureDevice(ctx, project, id, false)
	if err == nil && !created {
		err = ErrExists
	}
	if err != nil {
		return Device{}, fmt.Errorf("create device %s/%s: %w", project, id, err)
	}
	return d, nil
}

// EnsureDevice returns the device, creating it first if it does not exist
// (auto marks it AutoProvisioned). It is atomic, also across processes:
// of two concurrent first connects exactly one reports created. The
// project must exist. A disabled device is returned as it is.
func (r *Registry) EnsureDevice(ctx context.Context, project, id string, auto bool) (Device, bool, error) {
	if err := validDeviceIDs(project, id); err != nil {
		return Device{}, false, fmt.Errorf("ensure device: %w", err)
	}
	d, created, err := r.ensureDevice(ctx, project, id, auto)
	if err != nil {
		return Device{}, false, fmt.Errorf("ensure device %s/%s: %w", project, id, err)
	}
	return d, created, nil
}

func (r *Registry) ensureDevice(ctx context.Context, project, id string, auto bool) (Device, bool, error) {
	var (
		d       Device
		created bool
	)
	err := r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, project); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO devices (project, id, auto, created) VALUES (?, ?, ?, ?)
			ON CONFLICT (project, id) DO NOTHING`, project, id, boolInt(auto), r.stamp())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		d, err = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE project = ? AND id = ?`, project, id))
		return err
	})
	if err != nil {
		return Device{}, false, err
	}
	if created {
		r.log.Debug("device created", "project", project, "device", id, "auto", auto)
	}
	return d, created, nil
}

// Device returns a device.
func (r *Registry) Device(ctx context.Context, project, id string) (Device, error) {
	if err := validDeviceIDs(project, id); err != nil {
		return Device{}, fmt.Errorf("device: %w", err)
	}
	if err := r.check(); err != nil {
		return Device{}, err
	}
	d, err := scanDevice(r.stDevice.QueryRowContext(ctx, project, id))
	if err != nil {
		return Device{}, fmt.Errorf("device %s/%s: %w", project, id, notFound(err))
	}
	return d, nil
}

// Devices returns the devices of a project ("" for all projects), ordered
// by project and id. A project that does not exist has none.
func (r *Registry) Devices(ctx context.Context, project string) ([]Device, error) {
	return ofProject(ctx, r, "devices", scanDevice, `SELECT `+deviceColumns+` FROM devices`, `project, id`, project)
}

// SetDeviceDisabled disables or re-enables a device. The events evs are
// recorded in the same transaction (see Record).
func (r *Registry) SetDeviceDisabled(ctx context.Context, project, id string, disabled bool, evs ...Event) error {
	if err := validDeviceIDs(project, id); err != nil {
		return fmt.Errorf("set device disabled: %w", err)
	}
	err := r.writeEvents(ctx, evs, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE devices SET disabled = ? WHERE project = ? AND id = ?`, boolInt(disabled), project, id))
	})
	if err != nil {
		return fmt.Errorf("set device %s/%s disabled=%t: %w", project, id, disabled, err)
	}
	r.log.Debug("device disabled", "project", project, "device", id, "disabled", disabled)
	return nil
}

// TouchDevice sets the device's LastSeen to t.
func (r *Registry) TouchDevice(ctx context.Context, project, id string, t time.Time) error {
	if err := validDeviceIDs(project, id); err != nil {
		return fmt.Errorf("touch device: %w", err)
	}
	if err := r.check(); err != nil {
		return err
	}
	err := r.batched(ctx, func(in inBatch) error {
		return mustAffect(in(r.stTouch).Exec(dbTime(t), project, id))
	})
	if err != nil {
		return fmt.Errorf("touch device %s/%s: %w", project, id, err)
	}
	return nil
}

// DeleteDevice deletes a device with its credentials and state. Events
// about it stay in the log.
func (r *Registry) DeleteDevice(ctx context.Context, project, id string) error {
	if err := validDeviceIDs(project, id); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	err := r.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM devices WHERE project = ? AND id = ?`, project, id))
	})
	if err != nil {
		return fmt.Errorf("delete device %s/%s: %w", project, id, err)
	}
	r.log.Debug("device deleted", "project", project, "device", id)
	return nil
}
