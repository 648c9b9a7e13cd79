package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/credloop/credloop/cloud/registry"
)

// ReleaseOTA releases data as version of package to every device of the
// project (device "") or to one device, whose release then overrides the
// project's for that package. The release gets the project's next
// sequence number and the SHA-256 of data as its hash, and is recorded
// with an ota.release event in the same transaction. Devices observing
// .u/desired get the new manifest once: the running cloud's watch of the
// event log (woken at once by its own Admin's events, within about 100 ms
// by another process's) notifies them.
func (a *Admin) ReleaseOTA(ctx context.Context, project, device, pkg, version string, data []byte) (registry.OTARelease, error) {
	o, err := a.reg.ReleaseOTA(ctx, project, device, pkg, version, data, a.origin)
	if errors.Is(err, registry.ErrNotFound) {
		if device == "" {
			return registry.OTARelease{}, fmt.Errorf("%w: %s", ErrNoProject, project)
		}
		return registry.OTARelease{}, fmt.Errorf("%w: %s/%s", ErrNoDevice, project, device)
	}
	if err != nil {
		return registry.OTARelease{}, fmt.Errorf("cloud: %w", err)
	}
	return o, nil
}

// OTAStatus is what a device is to run and what it reported.
type OTAStatus struct {
	Project  string
	Device   string
	Sequence int64                 // of the device's manifest, 0 without releases
	Desired  []registry.OTARelease // one per package, without data
	Reports  []registry.OTAReport  // newest first, at most MaxOTAStatusReports
}

// MaxOTAStatusReports is how many reports OTAStatus returns.
const MaxOTAStatusReports = 50

// Latest returns the newest report about pkg, if any.
func (s OTAStatus) Latest(pkg string) (registry.OTAReport, bool) {
	for _, r := range s.Reports {
		if r.Package == pkg {
			return r, true
		}
	}
	return registry.OTAReport{}, false
}

// OTAStatus returns the device's desired manifest and its latest reports.
func (a *Admin) OTAStatus(ctx context.Context, project, device string) (OTAStatus, error) {
	if _, err := a.reg.Device(ctx, project, device); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return OTAStatus{}, fmt.Errorf("%w: %s/%s", ErrNoDevice, project, device)
		}
		return OTAStatus{}, fmt.Errorf("cloud: %w", err)
	}
	st := OTAStatus{Project: project, Device: device}
	var err error
	if st.Desired, err = a.reg.OTAManifest(ctx, project, device); err != nil {
		return OTAStatus{}, fmt.Errorf("cloud: %w", err)
	}
	for _, o := range st.Desired {
		st.Sequence = max(st.Sequence, o.Sequence)
	}
	if st.Reports, err = a.reg.OTAReports(ctx, project, device, MaxOTAStatusReports); err != nil {
		return OTAStatus{}, fmt.Errorf("cloud: %w", err)
	}
	return st, nil
}
