package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Limits of OTA releases. Package names and versions fit the buffers
// Golioth's firmware SDK sizes by default (CONFIG_GOLIOTH_OTA_MAX_PACKAGE_NAME_LEN
// and CONFIG_GOLIOTH_OTA_MAX_VERSION_LEN, 16 each): a longer one would make
// the device refuse the whole manifest.
const (
	MaxOTAPackage   = 16
	MaxOTAVersion   = 16
	MaxOTAComponent = 8 << 20 // bytes of one component
	// MaxOTAReportText bounds the package and versions of a report.
	MaxOTAReportText = 64
)

// OTARelease is a firmware component released to a project's devices
// (Device "") or to one device, which then overrides the project's
// release of the same package.
type OTARelease struct {
	Project  string
	Device   string // "" for every device of the project
	Package  string
	Version  string
	Sequence int64  // increases with every release in the project
	Hash     string // hex SHA-256 of the component
	Size     int64
	Created  time.Time
	Data     []byte // only from OTAComponent
}

// OTAReport is what a device reported about a component: its OTA state
// and the reason, as Golioth's firmware SDK numbers them (enum
// golioth_ota_state and golioth_ota_reason in include/golioth/ota.h).
type OTAReport struct {
	ID      int64
	Project string
	Device  string
	Package string
	State   int
	Reason  int
	Version string // the version the device runs, "" if it did not say
	Target  string // the version it is updating to, "" if it did not say
	Time    time.Time
}

// OTA states and reasons by number, as Golioth's firmware SDK names them.
var (
	otaStates  = [...]string{"IDLE", "DOWNLOADING", "DOWNLOADED", "UPDATING"}
	otaReasons = [...]string{"READY", "FIRMWARE_UPDATED_SUCCESSFULLY", "NOT_ENOUGH_FLASH_MEMORY",
		"OUT_OF_RAM", "CONNECTION_LOST", "INTEGRITY_CHECK_FAILURE", "UNSUPPORTED_PACKAGE_TYPE",
		"INVALID_URI", "FIRMWARE_UPDATE_FAILED", "UNSUPPORTED_PROTOCOL", "IO", "AWAIT_RETRY"}
)

// OTAStateName names an OTA state ("DOWNLOADING"), or gives its number.
func OTAStateName(s int) string {
	if s >= 0 && s < len(otaStates) {
		return otaStates[s]
	}
	return strconv.Itoa(s)
}

// OTAReasonName names an OTA reason ("INTEGRITY_CHECK_FAILURE"), or gives
// its number.
func OTAReasonName(r int) string {
	if r >= 0 && r < len(otaReasons) {
		return otaReasons[r]
	}
	return strconv.Itoa(r)
}

// ValidOTAName checks a package name or version: 1..limit bytes of
// letters, digits and . _ + - (no '@' or '/', which the component's URI
// uses).
func ValidOTAName(what, s string, limit int) error {
	if s == "" || len(s) > limit {
		return fmt.Errorf("%w: %s must be 1..%d characters", ErrInvalid, what, limit)
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '+', c == '-':
		default:
			return fmt.Errorf("%w: %s %q: only letters, digits and . _ + - are allowed", ErrInvalid, what, clip(s))
		}
	}
	return nil
}

const otaColumns = `project, device, package, version, sequence, hash, size, created`

func scanOTARelease(s rowScanner) (OTARelease, error) {
	var o OTARelease
	err := s.Scan(&o.Project, &o.Device, &o.Package, &o.Version, &o.Sequence, &o.Hash, &o.Size, timeScan{&o.Created})
	return o, err
}

// ReleaseOTA stores data as version of package for the project's devices
// (device "") or for one device, replacing that scope's release of the
// package, and records the ota.release event (reason ends with origin
// when given) in the same transaction. The release's sequence number is
// one more than any in the project.
func (r *Registry) ReleaseOTA(ctx context.Context, project, device, pkg, version string, data []byte, origin string) (OTARelease, error) {
	if err := ValidID(project); err != nil {
		return OTARelease{}, fmt.Errorf("release ota: project: %w", err)
	}
	if device != "" {
		if err := ValidID(device); err != nil {
			return OTARelease{}, fmt.Errorf("release ota: device: %w", err)
		}
	}
	if err := ValidOTAName("package", pkg, MaxOTAPackage); err != nil {
		return OTARelease{}, fmt.Errorf("release ota: %w", err)
	}
	if err := ValidOTAName("version", version, MaxOTAVersion); err != nil {
		return OTARelease{}, fmt.Errorf("release ota: %w", err)
	}
	if len(data) == 0 || len(data) > MaxOTAComponent {
		return OTARelease{}, fmt.Errorf("release ota: %w: a component is 1..%d bytes, this one %d", ErrInvalid, MaxOTAComponent, len(data))
	}
	sum := sha256.Sum256(data)
	o := OTARelease{Project: project, Device: device, Package: pkg, Version: version, Hash: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	err := r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, project); err != nil {
			return err
		}
		if device != "" {
			if err := deviceExists(ctx, tx, project, device); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(sequence), 0) + 1 FROM ota_releases WHERE project = ?`, project).Scan(&o.Sequence); err != nil {
			return err
		}
		o.Created = r.now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO ota_releases (project, device, package, version, sequence, hash, size, data, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (project, device, package) DO UPDATE SET version = excluded.version, sequence = excluded.sequence,
				hash = excluded.hash, size = excluded.size, data = excluded.data, created = excluded.created`,
			project, device, pkg, version, o.Sequence, o.Hash, o.Size, data, dbTime(o.Created)); err != nil {
			return err
		}
		scope := "all devices"
		if device != "" {
			scope = "device " + device
		}
		reason := fmt.Sprintf("%s@%s for %s, sequence %d, sha256 %s", pkg, version, scope, o.Sequence, o.Hash[:16])
		if origin != "" {
			reason += " " + origin
		}
		_, err := r.recordTx(ctx, tx, Event{Project: project, Device: device, Kind: EventOTARelease, Reason: reason})
		return err
	})
	if err != nil {
		return OTARelease{}, fmt.Errorf("release ota %s %s@%s: %w", project, pkg, version, err)
	}
	r.broadcast()
	o.Created = time.UnixMicro(o.Created.UnixMicro()).UTC()
	return o, nil
}

// OTAManifest returns the releases a device is to run, one per package
// (its own release over the project's), sorted by package. Data is not
// loaded.
func (r *Registry) OTAManifest(ctx context.Context, project, device string) ([]OTARelease, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, fmt.Errorf("ota manifest: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	rows, err := queryAll(ctx, r.rd, scanOTARelease, `SELECT `+otaColumns+` FROM ota_releases
		WHERE project = ? AND (device = '' OR device = ?) ORDER BY package, device DESC`, project, device)
	if err != nil {
		return nil, fmt.Errorf("ota manifest of %s/%s: %w", project, device, err)
	}
	var out []OTARelease
	for _, o := range rows {
		// device DESC puts the device's own release before the project's.
		if n := len(out); n > 0 && out[n-1].Package == o.Package {
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// OTAComponent returns the release of pkg at version the device is to
// run, with its data (ErrNotFound if the device's manifest has no such
// component).
func (r *Registry) OTAComponent(ctx context.Context, project, device, pkg, version string) (OTARelease, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return OTARelease{}, fmt.Errorf("ota component: %w", err)
	}
	if err := r.check(); err != nil {
		return OTARelease{}, err
	}
	row := r.rd.QueryRowContext(ctx, `SELECT `+otaColumns+`, data FROM ota_releases
		WHERE project = ? AND (device = '' OR device = ?) AND package = ? ORDER BY device DESC LIMIT 1`, project, device, pkg)
	var o OTARelease
	err := row.Scan(&o.Project, &o.Device, &o.Package, &o.Version, &o.Sequence, &o.Hash, &o.Size, timeScan{&o.Created}, &o.Data)
	if err == nil && o.Version != version {
		err = ErrNotFound
	}
	if err != nil {
		return OTARelease{}, fmt.Errorf("ota component %s@%s of %s/%s: %w", pkg, version, project, device, notFound(err))
	}
	return o, nil
}

// OTAReleases lists the project's releases (project-wide and per device),
// sorted by package and device. Data is not loaded.
func (r *Registry) OTAReleases(ctx context.Context, project string) ([]OTARelease, error) {
	if err := ValidID(project); err != nil {
		return nil, fmt.Errorf("ota releases: project: %w", err)
	}
	return ofProject(ctx, r, "ota releases", scanOTARelease, `SELECT `+otaColumns+` FROM ota_releases`, `package, device`, project)
}

// AddOTAReport stores a device's report and records the ota.report event
// in the same transaction.
func (r *Registry) AddOTAReport(ctx context.Context, rep OTAReport, credential string) (OTAReport, error) {
	if err := validDeviceIDs(rep.Project, rep.Device); err != nil {
		return OTAReport{}, fmt.Errorf("add ota report: %w", err)
	}
	// A device reports what its application passes the SDK: printable
	// text, not necessarily a name the cloud would release.
	if err := validPrintable("package", rep.Package, MaxOTAReportText); err != nil {
		return OTAReport{}, fmt.Errorf("add ota report: %w", err)
	}
	for what, v := range map[string]string{"version": rep.Version, "target": rep.Target} {
		if v != "" {
			if err := validPrintable(what, v, MaxOTAReportText); err != nil {
				return OTAReport{}, fmt.Errorf("add ota report: %w", err)
			}
		}
	}
	if rep.State < 0 || rep.Reason < 0 || rep.State > 1<<16 || rep.Reason > 1<<16 {
		return OTAReport{}, fmt.Errorf("add ota report: %w: state %d, reason %d", ErrInvalid, rep.State, rep.Reason)
	}
	err := r.write(ctx, func(tx *sql.Tx) error {
		if err := deviceExists(ctx, tx, rep.Project, rep.Device); err != nil {
			return err
		}
		rep.Time = r.now()
		res, err := tx.ExecContext(ctx, `INSERT INTO ota_reports (project, device, package, state, reason, version, target, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rep.Project, rep.Device, rep.Package, rep.State, rep.Reason, rep.Version, rep.Target, dbTime(rep.Time))
		if err != nil {
			return err
		}
		if rep.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		reason := fmt.Sprintf("%s state %s reason %s", rep.Package, OTAStateName(rep.State), OTAReasonName(rep.Reason))
		if rep.Version != "" {
			reason += " version " + rep.Version
		}
		if rep.Target != "" {
			reason += " target " + rep.Target
		}
		_, err = r.recordTx(ctx, tx, Event{Project: rep.Project, Device: rep.Device, Credential: credential, Kind: EventOTAReport, Reason: reason})
		return err
	})
	if err != nil {
		return OTAReport{}, fmt.Errorf("add ota report %s/%s: %w", rep.Project, rep.Device, err)
	}
	r.broadcast()
	rep.Time = time.UnixMicro(rep.Time.UnixMicro()).UTC()
	return rep, nil
}

// OTAReports returns the device's reports, newest first, at most limit
// (0: all).
func (r *Registry) OTAReports(ctx context.Context, project, device string, limit int) ([]OTAReport, error) {
	if err := validDeviceIDs(project, device); err != nil {
		return nil, fmt.Errorf("ota reports: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	q := `SELECT id, project, device, package, state, reason, version, target, time FROM ota_reports
		WHERE project = ? AND device = ? ORDER BY id DESC`
	args := []any{project, device}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	out, err := queryAll(ctx, r.rd, func(s rowScanner) (OTAReport, error) {
		var o OTAReport
		err := s.Scan(&o.ID, &o.Project, &o.Device, &o.Package, &o.State, &o.Reason, &o.Version, &o.Target, timeScan{&o.Time})
		return o, err
	}, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ota reports of %s/%s: %w", project, device, err)
	}
	return out, nil
}
