package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

func init() {
	register(command{name: "ota", summary: "release firmware to devices and see their update state (Golioth OTA)", run: runOTA})
}

const otaUsage = `
Usage: credloop ota <subcommand> [flags]

Firmware releases, as Golioth's OTA service serves them: a device observes
.u/desired for its manifest, downloads each component block-wise from
.u/c/<package>@<version> and reports its state to .u/c/<package>.

Subcommands:
  release  release a component to a project's devices, or to one device
  status   show what a device is to run and what it reported

Run 'credloop ota <subcommand> --help' for its flags and examples.
`

func runOTA(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "ota", otaUsage, map[string]func(context.Context, *Env) error{
		"release": otaRelease,
		"status":  otaStatus,
	})
}

const otaReleaseUsage = `
Usage: credloop ota release --project P --package PKG --version V --file F [--device D] [--json] [--dir DIR]

Release the file F as version V of package PKG to every device of project
P, or with --device to that device alone (its release of PKG then
overrides the project's). The release gets the project's next sequence
number; devices observing .u/desired on a running 'credloop cloud' get the
new manifest. Package and version are 1 to 16 characters of letters,
digits and . _ + - (what Golioth's firmware SDK holds by default).

Examples:
  credloop ota release --project acme --package main --version 1.2.3 --file build/zephyr.signed.bin
  credloop ota release --project acme --device dev1 --package main --version 1.2.4-rc1 --file fw.bin --json
`

// otaReleaseInfo is a release for --json.
type otaReleaseInfo struct {
	Project  string    `json:"project"`
	Device   string    `json:"device,omitempty"`
	Package  string    `json:"package"`
	Version  string    `json:"version"`
	Sequence int64     `json:"sequence"`
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	URI      string    `json:"uri"`
	Created  time.Time `json:"created"`
}

func releaseInfo(o registry.OTARelease) otaReleaseInfo {
	return otaReleaseInfo{Project: o.Project, Device: o.Device, Package: o.Package, Version: o.Version, Sequence: o.Sequence,
		SHA256: o.Hash, Size: o.Size, URI: "/.u/c/" + o.Package + "@" + o.Version, Created: o.Created}
}

func otaRelease(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ota release", otaReleaseUsage)
	dir, project := addDeviceFlags(fs)
	device := fs.String("device", "", "release to this `DEVICE` only")
	pkg := fs.String("package", "", "`PACKAGE` name, e.g. main")
	version := fs.String("version", "", "`VERSION`, e.g. 1.2.3")
	file := fs.String("file", "", "the component's `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *device != "" {
		if err := deviceArg(*device); err != nil {
			return err
		}
	}
	if err := registry.ValidOTAName("package", *pkg, registry.MaxOTAPackage); err != nil {
		return usageErr("--package: %v", err)
	}
	if err := registry.ValidOTAName("version", *version, registry.MaxOTAVersion); err != nil {
		return usageErr("--version: %v", err)
	}
	if *file == "" {
		return usageErr("missing --file")
	}
	data, err := readInput(*file, registry.MaxOTAComponent)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	o, err := a.ReleaseOTA(ctx, *project, *device, *pkg, *version, data)
	if err != nil {
		return scope{dir: *dir, project: *project, device: *device}.explain(err)
	}
	info := releaseInfo(o)
	if *asJSON {
		return emitJSON(env.Stdout, info)
	}
	to := "all devices of " + o.Project
	if o.Device != "" {
		to = "device " + o.Device + " of " + o.Project
	}
	fmt.Fprintf(env.Stdout, "released %s@%s to %s: sequence %d, %d bytes, sha256 %s\n", o.Package, o.Version, to, o.Sequence, o.Size, o.Hash)
	return nil
}

const otaStatusUsage = `
Usage: credloop ota status --project P DEVICE [--json] [--dir DIR]

Show the manifest DEVICE gets on .u/desired (one release per package, its
own over the project's) and the state it last reported for each package,
then its latest reports, newest first.

Examples:
  credloop ota status --project acme dev1
  credloop ota status --project acme dev1 --json
`

// otaReportInfo is a device's report for --json.
type otaReportInfo struct {
	Package string    `json:"package"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Version string    `json:"version,omitempty"`
	Target  string    `json:"target,omitempty"`
	Time    time.Time `json:"time"`
}

// otaStatusInfo is a device's OTA status for --json.
type otaStatusInfo struct {
	Project  string           `json:"project"`
	Device   string           `json:"device"`
	Sequence int64            `json:"sequence"`
	Desired  []otaReleaseInfo `json:"desired"`
	Reports  []otaReportInfo  `json:"reports"`
}

func otaStatus(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ota status", otaStatusUsage)
	dir, project := addDeviceFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	device, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	st, err := a.OTAStatus(ctx, *project, device)
	if err != nil {
		return scope{dir: *dir, project: *project, device: device}.explain(err)
	}
	info := otaStatusInfo{Project: st.Project, Device: st.Device, Sequence: st.Sequence, Desired: []otaReleaseInfo{}, Reports: []otaReportInfo{}}
	for _, o := range st.Desired {
		info.Desired = append(info.Desired, releaseInfo(o))
	}
	for _, r := range st.Reports {
		info.Reports = append(info.Reports, otaReportInfo{Package: r.Package, State: registry.OTAStateName(r.State),
			Reason: registry.OTAReasonName(r.Reason), Version: r.Version, Target: r.Target, Time: r.Time})
	}
	if *asJSON {
		return emitJSON(env.Stdout, info)
	}
	fmt.Fprintf(env.Stdout, "device %s/%s, manifest sequence %d\n", st.Project, st.Device, st.Sequence)
	if len(st.Desired) == 0 {
		fmt.Fprintln(env.Stdout, "no release (the manifest is empty)")
	} else {
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "PACKAGE\tDESIRED\tSCOPE\tSIZE\tSHA256\tREPORTED STATE\tREASON\tRUNNING")
		for _, o := range st.Desired {
			scope := "project"
			if o.Device != "" {
				scope = "device"
			}
			state, reason, running := "-", "-", "-"
			if r, ok := st.Latest(o.Package); ok {
				state, reason, running = registry.OTAStateName(r.State), registry.OTAReasonName(r.Reason), orDash(r.Version)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", o.Package, o.Version, scope, o.Size, short(o.Hash, 16), state, reason, running)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Reports) == 0 {
		fmt.Fprintln(env.Stdout, "no reports")
		return nil
	}
	fmt.Fprintln(env.Stdout, "\nreports, newest first:")
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "TIME\tPACKAGE\tSTATE\tREASON\tVERSION\tTARGET")
	for _, r := range info.Reports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rfc3339(r.Time), r.Package, r.State, r.Reason, orDash(r.Version), orDash(r.Target))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
