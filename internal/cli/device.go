package cli

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

func init() {
	register(command{name: "device", summary: "add devices and their PSKs, list, show, disable, watch events", run: runDevice})
}

const deviceUsage = `
Usage: credloop device <subcommand> [flags]

Manage the devices of a credloop directory's registry (DIR/registry.db):
create them with pre-shared keys, rotate keys, enable and disable them, and
read the event log the cloud writes (authentications, provisioning). The
commands work while 'credloop cloud' runs on the same DIR. PSKs are shown
only once, when generated; everything else shows their fingerprint
(fp=first 8 hex digits of SHA-256).

Subcommands:
  add        create a device, optionally with one or two PSKs
  psk        add or revoke a PSK of a device (rotation)
  list       list devices
  show       show a device, its credentials and its last events
  disable    refuse a device's connections
  enable     accept them again
  events     list events
  activate   make a certificate ACTIVE (a JITR certificate PENDING_ACTIVATION)
  deactivate make a certificate INACTIVE
  allow      put a UDID and its public key on the run-time CSR allowlist
  allowlist  list the allowlist
  expiring   list certificates that expire soon

Examples:
  credloop device add --dir ./lab --project myproject dev1 --psk-random
  credloop device show --dir ./lab --project myproject dev1
  credloop device events --dir ./lab --project myproject --outcome fail

Run 'credloop device <subcommand> --help' for its flags and examples.
`

func runDevice(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "device", deviceUsage, map[string]func(context.Context, *Env) error{
		"add":     deviceAdd,
		"psk":     devicePSK,
		"list":    deviceList,
		"show":    deviceShow,
		"disable": func(ctx context.Context, env *Env) error { return deviceSetDisabled(ctx, env, true) },
		"enable":  func(ctx context.Context, env *Env) error { return deviceSetDisabled(ctx, env, false) },
		"events":  deviceEvents,

		"activate":   func(ctx context.Context, env *Env) error { return deviceSetCertState(ctx, env, true) },
		"deactivate": func(ctx context.Context, env *Env) error { return deviceSetCertState(ctx, env, false) },
		"allow":      deviceAllow,
		"allowlist":  deviceAllowlist,
		"expiring":   deviceExpiring,
	})
}

// pskSpec is a PSK to add: a key given in hex or one to generate.
type pskSpec struct {
	idFlag   string // the flag that names its identity, for messages
	identity string
	key      []byte
	random   bool
}

// resolvePSK reads --psk-style flag values: hex, or "-" for a line of
// standard input.
func resolvePSK(env *Env, flagName, value string, random bool) (*pskSpec, error) {
	switch {
	case value != "" && random:
		return nil, usageErr("give either --%s or its random variant, not both", flagName)
	case random:
		return &pskSpec{random: true}, nil
	case value == "":
		return nil, nil
	}
	if value == "-" {
		line, err := readKeyLine(env.Stdin)
		if err != nil {
			return nil, usageErr("--%s -: %v", flagName, err)
		}
		value = line
	}
	key, err := parseHexKey(value)
	if err != nil {
		return nil, usageErr("--%s: %v", flagName, err)
	}
	return &pskSpec{key: key}, nil
}

// checkIdentity makes sure a PSK identity is NAME@PROJECT of this project.
func checkIdentity(flagName, identity, project string) error {
	_, p, err := registry.ParsePSKIdentity(identity)
	if err != nil {
		return usageErr("--%s: %v (want NAME@%s)", flagName, err, project)
	}
	if p != project {
		return usageErr("--%s %q: the identity must end in @%s, the device's project", flagName, identity, project)
	}
	return nil
}

// pskInUse turns the admin's error about a PSK identity in use into one
// that names the flag to change.
func pskInUse(err error, psks []*pskSpec) error {
	var e *cloud.PSKInUseError
	if !errors.As(err, &e) {
		return err
	}
	for _, p := range psks {
		if p.identity == e.Identity {
			return fmt.Errorf("PSK identity %s is already in use (identities are unique in the registry): choose another with --%s", p.identity, p.idFlag)
		}
	}
	return err
}

// cloudPSKs are the PSKs to give the admin.
func cloudPSKs(psks []*pskSpec) []cloud.PSK {
	out := make([]cloud.PSK, 0, len(psks))
	for _, p := range psks {
		out = append(out, cloud.PSK{Identity: p.identity, Key: p.key})
	}
	return out
}

// announcePSKs prints PSKs that were added: by fingerprint, and a
// generated key once, on a line of its own.
func announcePSKs(env *Env, added []cloud.NewPSK) {
	for _, n := range added {
		c := n.Credential
		fmt.Fprintf(env.Stdout, "  psk  %s  fp=%s  %s\n", c.PSKIdentity, short(c.Fingerprint, 8), c.State)
	}
	for _, n := range added {
		if n.Generated {
			// The only place a PSK is ever shown, as a cloud console does
			// when it generates one.
			fmt.Fprintf(env.Stdout, "psk: %s\n", hex.EncodeToString(n.Key))
			fmt.Fprintf(env.Stderr, "note: the key of %s is shown only this once; store it now\n", n.Credential.PSKIdentity)
		}
	}
}

const deviceAddUsage = `
Usage: credloop device add --project PROJECT ID [--psk HEX | --psk-random] [--psk-identity NAME@PROJECT] [--psk2 HEX --psk2-identity NAME2@PROJECT] [--dir DIR]

Create a device in a project, optionally with a pre-shared key, or two for
rotation (a main and a backup key). The identity of the first PSK is
ID@PROJECT unless --psk-identity is given, as Golioth names them.
--psk-random generates a 16-byte key and prints it once, on a line
"psk: <hex>"; it is never shown again. '--psk -' reads the hex key from
standard input, which keeps it out of the process list. A device with a
certificate needs no 'device add': trust its CA in the project instead.

Examples:
  credloop device add --dir ./lab --project myproject dev1 --psk-random
  credloop device add --dir ./lab --project myproject dev2 --psk 00112233445566778899aabbccddeeff
  credloop device add --dir ./lab --project myproject dev3 --psk-random --psk2 a1b2c3d4e5f60718 --psk2-identity dev3-b@myproject
`

func deviceAdd(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device add", deviceAddUsage)
	dir, project := addDeviceFlags(fs)
	pskHex := fs.String("psk", "", "pre-shared key in `HEX` (- reads it from standard input)")
	pskRandom := fs.Bool("psk-random", false, "generate a random 16-byte PSK and print it once")
	pskID := fs.String("psk-identity", "", "`IDENTITY` of the PSK (default ID@PROJECT)")
	psk2Hex := fs.String("psk2", "", "a second pre-shared key in `HEX`, for rotation (- reads it from standard input)")
	psk2ID := fs.String("psk2-identity", "", "`IDENTITY` of the second PSK (required with --psk2)")
	id, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	if *pskHex == "-" && *psk2Hex == "-" {
		return usageErr("only one of --psk and --psk2 can read standard input")
	}
	psk1, err := resolvePSK(env, "psk", *pskHex, *pskRandom)
	if err != nil {
		return err
	}
	psk2, err := resolvePSK(env, "psk2", *psk2Hex, false)
	if err != nil {
		return err
	}
	var psks []*pskSpec
	switch {
	case psk1 == nil && *pskID != "":
		return usageErr("--psk-identity needs --psk or --psk-random")
	case psk1 == nil && psk2 != nil:
		return usageErr("--psk2 needs a first key: --psk or --psk-random")
	case psk2 == nil && *psk2ID != "":
		return usageErr("--psk2-identity needs --psk2")
	case psk2 != nil && *psk2ID == "":
		return usageErr("--psk2 needs --psk2-identity (PSK identities are unique, e.g. %s-b@%s)", id, *project)
	}
	if psk1 != nil {
		psk1.identity, psk1.idFlag = *pskID, "psk-identity"
		if psk1.identity == "" {
			psk1.identity = registry.PSKIdentity(id, *project)
		}
		if err := checkIdentity("psk-identity", psk1.identity, *project); err != nil {
			return err
		}
		psks = append(psks, psk1)
	}
	if psk2 != nil {
		psk2.identity, psk2.idFlag = *psk2ID, "psk2-identity"
		if err := checkIdentity("psk2-identity", psk2.identity, *project); err != nil {
			return err
		}
		if psk2.identity == psk1.identity {
			return usageErr("--psk2-identity %s is the identity of the first PSK: each PSK needs its own", psk2.identity)
		}
		psks = append(psks, psk2)
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	d, added, err := a.AddDevice(ctx, *project, id, cloudPSKs(psks)...)
	var inUse *cloud.PSKInUseError
	switch {
	case errors.As(err, &inUse):
		return fmt.Errorf("%w (device %s not created)", pskInUse(err, psks), id)
	case errors.Is(err, registry.ErrExists):
		return fmt.Errorf("device %s already exists in project %s: see it with `credloop device show --project %s %s --dir %s`; add a PSK with `credloop device psk add`",
			id, *project, *project, id, shellArg(*dir))
	case err != nil:
		return scope{dir: *dir, project: *project, device: id}.explain(err)
	}
	fmt.Fprintf(env.Stdout, "created device %s in project %s\n", d.ID, d.Project)
	announcePSKs(env, added)
	return nil
}

const devicePSKUsage = `
Usage: credloop device psk <add|revoke> --project PROJECT ID --identity NAME@PROJECT [flags]

Rotate the pre-shared keys of a device. A device holds at most two PSKs
that are not revoked (a main and a backup key): add the new key, let the
device switch to it, then revoke the old one.

Examples:
  credloop device psk add --dir ./lab --project myproject dev1 --identity dev1-b@myproject --random
  credloop device psk revoke --dir ./lab --project myproject dev1 --identity dev1@myproject
`

func devicePSK(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "device psk", devicePSKUsage, map[string]func(context.Context, *Env) error{
		"add":    devicePSKAdd,
		"revoke": devicePSKRevoke,
	})
}

const devicePSKAddUsage = `
Usage: credloop device psk add --project PROJECT ID --identity NAME@PROJECT (--key HEX | --random) [--dir DIR]

Add a pre-shared key to an existing device, for rotation. Identities are
unique in the registry, and a device holds at most two PSKs that are not
revoked: revoke one first ('credloop device psk revoke') when it has two.
--random generates a 16-byte key and prints it once, on a line
"psk: <hex>". '--key -' reads the hex key from standard input.

Examples:
  credloop device psk add --dir ./lab --project myproject dev1 --identity dev1-b@myproject --random
  echo 00112233445566778899aabbccddeeff | credloop device psk add --dir ./lab --project myproject dev1 --identity dev1-c@myproject --key -
`

func devicePSKAdd(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device psk add", devicePSKAddUsage)
	dir, project := addDeviceFlags(fs)
	identity := fs.String("identity", "", "`IDENTITY` of the new PSK, NAME@PROJECT")
	keyHex := fs.String("key", "", "the key in `HEX` (- reads it from standard input)")
	random := fs.Bool("random", false, "generate a random 16-byte key and print it once")
	id, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	if *identity == "" {
		return usageErr("missing --identity (e.g. %s-b@%s)", id, *project)
	}
	if err := checkIdentity("identity", *identity, *project); err != nil {
		return err
	}
	if *keyHex == "" && !*random {
		return usageErr("give --key HEX or --random")
	}
	spec, err := resolvePSK(env, "key", *keyHex, *random)
	if err != nil {
		return err
	}
	spec.identity, spec.idFlag = *identity, "identity"
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	added, err := a.AddPSK(ctx, *project, id, cloud.PSK{Identity: spec.identity, Key: spec.key})
	if errors.Is(err, registry.ErrTooManyPSKs) {
		var held []string
		if dd, derr := a.Device(ctx, *project, id, 0); derr == nil {
			for _, c := range dd.Credentials {
				if c.Kind == registry.KindPSK && c.State != registry.StateRevoked {
					held = append(held, c.PSKIdentity)
				}
			}
		}
		return fmt.Errorf("device %s already has %d PSKs (%s), the most a device holds: revoke one first with `credloop device psk revoke --project %s %s --identity IDENTITY --dir %s`",
			id, registry.MaxPSKsPerDevice, strings.Join(held, ", "), *project, id, shellArg(*dir))
	}
	if err != nil {
		return scope{dir: *dir, project: *project, device: id}.explain(pskInUse(err, []*pskSpec{spec}))
	}
	fmt.Fprintf(env.Stdout, "added a PSK to device %s of project %s\n", id, *project)
	announcePSKs(env, []cloud.NewPSK{added})
	return nil
}

const devicePSKRevokeUsage = `
Usage: credloop device psk revoke --project PROJECT ID --identity NAME@PROJECT [--dir DIR]

Revoke a pre-shared key of a device: the cloud refuses it from the next
handshake on. Revoked is final; the key stays listed as REVOKED.

Examples:
  credloop device psk revoke --dir ./lab --project myproject dev1 --identity dev1@myproject
`

func devicePSKRevoke(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device psk revoke", devicePSKRevokeUsage)
	dir, project := addDeviceFlags(fs)
	identity := fs.String("identity", "", "`IDENTITY` of the PSK to revoke")
	id, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	if *identity == "" {
		return usageErr("missing --identity")
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	c, already, err := a.RevokePSK(ctx, *project, id, *identity)
	switch {
	case errors.Is(err, cloud.ErrNoPSK):
		return fmt.Errorf("device %s of project %s has no PSK with identity %s (see `credloop device show --project %s %s --dir %s`)",
			id, *project, *identity, *project, id, shellArg(*dir))
	case err != nil:
		return scope{dir: *dir, project: *project, device: id}.explain(err)
	case already:
		fmt.Fprintf(env.Stdout, "psk %s fp=%s of device %s was already revoked\n", c.PSKIdentity, short(c.Fingerprint, 8), id)
	default:
		fmt.Fprintf(env.Stdout, "revoked psk %s fp=%s of device %s\n", c.PSKIdentity, short(c.Fingerprint, 8), id)
	}
	return nil
}

// deviceInfo is a device for --json.
type deviceInfo struct {
	Project         string     `json:"project"`
	ID              string     `json:"id"`
	State           string     `json:"state"` // "enabled" or "disabled"
	AutoProvisioned bool       `json:"auto_provisioned"`
	Created         time.Time  `json:"created"`
	LastSeen        time.Time  `json:"last_seen,omitzero"`
	Credentials     int        `json:"credentials"`
	CredentialList  []credInfo `json:"credential_list,omitempty"`
	Events          []evInfo   `json:"events,omitempty"`
}

func deviceInfoOf(d registry.Device, ncred int) deviceInfo {
	state := "enabled"
	if d.Disabled {
		state = "disabled"
	}
	return deviceInfo{Project: d.Project, ID: d.ID, State: state, AutoProvisioned: d.AutoProvisioned,
		Created: d.Created, LastSeen: d.LastSeen, Credentials: ncred}
}

// credInfo is a credential for --json; it never holds a key, and a PSK's
// fingerprint is cut to 8 hex digits.
type credInfo struct {
	ID                int64     `json:"id"`
	Kind              string    `json:"kind"`
	State             string    `json:"state"`
	PSKIdentity       string    `json:"psk_identity,omitempty"`
	Fingerprint       string    `json:"fingerprint"`
	Serial            string    `json:"serial,omitempty"`
	Subject           string    `json:"subject,omitempty"`
	Issuer            string    `json:"issuer,omitempty"`
	IssuerFingerprint string    `json:"issuer_fingerprint,omitempty"`
	NotBefore         time.Time `json:"not_before,omitzero"`
	NotAfter          time.Time `json:"not_after,omitzero"`
	Created           time.Time `json:"created"`
}

func credInfoOf(c registry.Credential) credInfo {
	ci := credInfo{ID: c.ID, Kind: string(c.Kind), State: string(c.State), Fingerprint: c.Fingerprint, Created: c.Created}
	if c.Kind == registry.KindPSK {
		ci.PSKIdentity = c.PSKIdentity
		ci.Fingerprint = short(c.Fingerprint, 8)
		return ci
	}
	ci.Serial, ci.Subject, ci.Issuer, ci.IssuerFingerprint = c.Serial, c.Subject, c.Issuer, c.IssuerFingerprint
	ci.NotBefore, ci.NotAfter = c.NotBefore, c.NotAfter
	return ci
}

// evInfo is an event for --json.
type evInfo struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Project    string    `json:"project,omitempty"`
	Device     string    `json:"device,omitempty"`
	Credential string    `json:"credential,omitempty"`
	Kind       string    `json:"kind"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
}

func evInfos(evs []registry.Event) []evInfo {
	out := make([]evInfo, 0, len(evs))
	for _, e := range evs {
		out = append(out, evInfo{Seq: e.Seq, Time: e.Time, Project: e.Project, Device: e.Device, Credential: e.Credential,
			Kind: string(e.Kind), Outcome: e.Outcome, Reason: e.Reason})
	}
	return out
}

// shortCred shortens a certificate fingerprint in an event for a table.
func shortCred(s string) string {
	if len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" {
		return s[:16]
	}
	return s
}

func printEvents(w io.Writer, indent string, evs []evInfo, withDevice bool) error {
	tw := newTable(w)
	if withDevice {
		fmt.Fprintln(tw, indent+"SEQ\tTIME\tPROJECT\tDEVICE\tKIND\tOUTCOME\tCREDENTIAL\tREASON")
	} else {
		fmt.Fprintln(tw, indent+"SEQ\tTIME\tKIND\tOUTCOME\tCREDENTIAL\tREASON")
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, e := range evs {
		if withDevice {
			fmt.Fprintf(tw, "%s%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, e.Seq, rfc3339(e.Time), dash(e.Project), dash(e.Device), e.Kind, e.Outcome, dash(shortCred(e.Credential)), e.Reason)
		} else {
			fmt.Fprintf(tw, "%s%d\t%s\t%s\t%s\t%s\t%s\n", indent, e.Seq, rfc3339(e.Time), e.Kind, e.Outcome, dash(shortCred(e.Credential)), e.Reason)
		}
	}
	return tw.Flush()
}

const deviceListUsage = `
Usage: credloop device list [--project PROJECT] [--dir DIR] [--json]

List devices, of one project or of all: their state (enabled or disabled),
whether the cloud created them on first connect (auto-provisioned), how
many credentials they hold and when they were last seen.

Examples:
  credloop device list --dir ./lab
  credloop device list --dir ./lab --project myproject --json
`

func deviceList(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device list", deviceListUsage)
	lf := addListFlags(fs, "only devices of `PROJECT`")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	a, err := lf.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	devs, err := a.Devices(ctx, *lf.project)
	if err != nil {
		return lf.scope().explain(err)
	}
	infos := make([]deviceInfo, 0, len(devs))
	for _, d := range devs {
		infos = append(infos, deviceInfoOf(d.Device, d.Credentials))
	}
	return printList(env.Stdout, *lf.json, infos,
		"no devices: add one with `credloop device add --project PROJECT ID`, or let a device with a trusted certificate connect",
		"ID\tPROJECT\tSTATE\tAUTO-PROVISIONED\tCREDENTIALS\tLAST SEEN",
		func(w io.Writer, d deviceInfo) {
			auto := "no"
			if d.AutoProvisioned {
				auto = "yes"
			}
			last := "never"
			if !d.LastSeen.IsZero() {
				last = rfc3339(d.LastSeen)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.Project, d.State, auto, d.Credentials, last)
		})
}

const deviceShowUsage = `
Usage: credloop device show --project PROJECT ID [--events N] [--dir DIR] [--json]

Show a device: its state, its credentials (PSKs by identity and
fingerprint, never the key; certificates by serial, fingerprint, issuer and
validity) and its last N events (default 20).

Examples:
  credloop device show --dir ./lab --project myproject dev1
  credloop device show --dir ./lab --project myproject dev1 --events 100 --json
`

func deviceShow(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device show", deviceShowUsage)
	dir, project := addDeviceFlags(fs)
	nev := fs.Int("events", 20, "show the last `N` events")
	asJSON := fs.Bool("json", false, "print JSON")
	id, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	if *nev < 0 {
		return usageErr("--events %d: must not be negative", *nev)
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	dd, err := a.Device(ctx, *project, id, *nev)
	if err != nil {
		return scope{dir: *dir, project: *project, device: id}.explain(err)
	}
	creds, evs := dd.Credentials, dd.Events
	info := deviceInfoOf(dd.Device, len(creds))
	for _, c := range creds {
		info.CredentialList = append(info.CredentialList, credInfoOf(c))
	}
	info.Events = evInfos(evs)
	if *asJSON {
		return emitJSON(env.Stdout, info)
	}
	tw := newTable(env.Stdout)
	fmt.Fprintf(tw, "device\t%s\n", info.ID)
	fmt.Fprintf(tw, "project\t%s\n", info.Project)
	fmt.Fprintf(tw, "state\t%s\n", info.State)
	if info.AutoProvisioned {
		fmt.Fprintf(tw, "auto-provisioned\tyes (created on first connect)\n")
	} else {
		fmt.Fprintf(tw, "auto-provisioned\tno\n")
	}
	fmt.Fprintf(tw, "created\t%s\n", rfc3339(info.Created))
	if info.LastSeen.IsZero() {
		fmt.Fprintf(tw, "last seen\tnever\n")
	} else {
		fmt.Fprintf(tw, "last seen\t%s\n", rfc3339(info.LastSeen))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var psks, certs []credInfo
	for _, c := range info.CredentialList {
		if c.Kind == string(registry.KindPSK) {
			psks = append(psks, c)
		} else {
			certs = append(certs, c)
		}
	}
	if len(info.CredentialList) == 0 {
		fmt.Fprintln(env.Stdout, "\nno credentials")
	}
	if len(psks) > 0 {
		fmt.Fprintln(env.Stdout, "\npre-shared keys")
		tw = newTable(env.Stdout)
		fmt.Fprintln(tw, "  ID\tSTATE\tIDENTITY\tFINGERPRINT\tADDED")
		for _, c := range psks {
			fmt.Fprintf(tw, "  %d\t%s\t%s\tfp=%s\t%s\n", c.ID, c.State, c.PSKIdentity, c.Fingerprint, rfc3339(c.Created))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(certs) > 0 {
		fmt.Fprintln(env.Stdout, "\ncertificates")
		tw = newTable(env.Stdout)
		fmt.Fprintln(tw, "  ID\tSTATE\tSERIAL\tFINGERPRINT\tSUBJECT\tISSUER\tNOT BEFORE\tNOT AFTER")
		for _, c := range certs {
			issuer := c.Issuer
			if c.IssuerFingerprint != "" {
				issuer += " (" + short(c.IssuerFingerprint, 8) + ")"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.State, c.Serial, short(c.Fingerprint, 16), c.Subject, issuer, rfc3339(c.NotBefore), rfc3339(c.NotAfter))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if *nev == 0 {
		return nil
	}
	if len(info.Events) == 0 {
		fmt.Fprintln(env.Stdout, "\nno events")
		return nil
	}
	fmt.Fprintf(env.Stdout, "\nevents (last %d)\n", *nev)
	return printEvents(env.Stdout, "  ", info.Events, false)
}

const deviceDisableUsage = `
Usage: credloop device disable|enable --project PROJECT ID [--dir DIR]

Disable a device: the cloud refuses its handshakes, whatever credential it
presents, until it is enabled again. Its credentials are kept.

Examples:
  credloop device disable --dir ./lab --project myproject dev1
  credloop device enable --dir ./lab --project myproject dev1
`

func deviceSetDisabled(ctx context.Context, env *Env, disabled bool) (err error) {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	fs := flagSet(env, "device "+verb, deviceDisableUsage)
	dir, project := addDeviceFlags(fs)
	id, err := parseDeviceArgs(fs, env.Args, project)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	set := a.EnableDevice
	if disabled {
		set = a.DisableDevice
	}
	changed, err := set(ctx, *project, id)
	if err != nil {
		return scope{dir: *dir, project: *project, device: id}.explain(err)
	}
	if !changed {
		fmt.Fprintf(env.Stdout, "device %s of project %s is already %sd\n", id, *project, verb)
		return nil
	}
	fmt.Fprintf(env.Stdout, "device %s of project %s %sd\n", id, *project, verb)
	return nil
}

const deviceEventsUsage = `
Usage: credloop device events [--project P] [--device ID] [--kind K] [--outcome ok|fail] [--since-seq N] [--limit N] [--dir DIR] [--json]

List events of the registry's log, oldest first: authentication attempts
(auth.psk, auth.cert) with the reason of each failure, provisioning
(provision.auto), and changes made with this CLI (device.created,
credential.added, credential.revoked, device.disabled...). --kind matches
exactly, or as a prefix when it ends in "." or "*" (auth.*). --since-seq N
shows only events after sequence number N, to poll for new ones.

Examples:
  credloop device events --dir ./lab --project myproject --device dev1
  credloop device events --dir ./lab --kind 'auth.*' --outcome fail
  credloop device events --dir ./lab --since-seq 120 --json
`

func deviceEvents(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device events", deviceEventsUsage)
	dir := addDirFlag(fs)
	project := fs.String("project", "", "only events of `PROJECT`")
	device := fs.String("device", "", "only events of device `ID`")
	kind := fs.String("kind", "", "only events of `KIND` (a prefix when it ends in . or *)")
	outcome := fs.String("outcome", "", "only events with `OUTCOME` ok or fail")
	since := fs.Int64("since-seq", 0, "only events after sequence number `N`")
	limit := fs.Int("limit", 0, "at most `N` events (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	switch *outcome {
	case "", registry.OutcomeOK, registry.OutcomeFail:
	default:
		return usageErr("--outcome %q: want ok or fail", clipArg(*outcome))
	}
	if *since < 0 || *limit < 0 {
		return usageErr("--since-seq and --limit must not be negative")
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	evs, err := a.Events(ctx, registry.Filter{Project: *project, Device: *device, Kind: registry.EventKind(*kind), Outcome: *outcome, AfterSeq: *since, Limit: *limit})
	if err != nil {
		return err
	}
	infos := evInfos(evs)
	if *asJSON {
		return emitJSON(env.Stdout, infos)
	}
	if len(infos) == 0 {
		fmt.Fprintln(env.Stdout, "no events")
		return nil
	}
	return printEvents(env.Stdout, "", infos, true)
}

const deviceActivateUsage = `
Usage: credloop device activate|deactivate (--cert-id ID | --cert FILE) [--dir DIR]

Change the status of a registered certificate, as AWS IoT's
update-certificate does. activate makes it ACTIVE: a certificate that
connected under a JITR CA waits PENDING_ACTIVATION for this, and an
INACTIVE one connects again. deactivate makes it INACTIVE: the cloud
refuses it, and drops its live sessions. ID is the certificateId (SHA-256
of the certificate's DER, as 'credloop device show' and the
$aws/events/certificates/registered event give it; a unique prefix of at
least 8 hex digits will do); --cert takes it from a certificate file. A
REVOKED certificate stays revoked.

Examples:
  credloop device activate --dir ./lab --cert-id 3f9a0c1d
  credloop device deactivate --dir ./lab --cert ./dev1.crt.pem
`

// findCert resolves --cert-id (a certificateId or a unique prefix of 8+
// hex digits) or --cert FILE to the certificateId the admin takes, and
// explains the admin's errors about it.
type certRef struct{ dir, idArg, certFile, id string }

func newCertRef(dir, idArg, certFile string) (certRef, error) {
	r := certRef{dir: dir, idArg: idArg, certFile: certFile}
	if certFile != "" {
		certs, err := readCerts(certFile)
		if err != nil {
			return r, err
		}
		r.id = registry.Fingerprint(certs[0].Raw)
		return r, nil
	}
	r.id = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(idArg), ":", ""))
	return r, nil
}

func (r certRef) explain(err error) error {
	var amb *cloud.AmbiguousError
	switch {
	case errors.Is(err, cloud.ErrNoCertificate) && r.certFile != "":
		return fmt.Errorf("%s (certificateId %s) is not registered", r.certFile, r.id)
	case errors.Is(err, cloud.ErrNoCertificate) && len(r.id) == 64:
		return fmt.Errorf("no registered certificate has certificateId %s (see `credloop device show --project PROJECT ID --dir %s`)", r.id, shellArg(r.dir))
	case errors.Is(err, cloud.ErrNoCertificate):
		return fmt.Errorf("no registered certificate has a certificateId starting with %s", r.id)
	case errors.As(err, &amb):
		return fmt.Errorf("certificateId prefix %s matches %d certificates: give more digits", amb.Prefix, amb.N)
	}
	return err
}

func deviceSetCertState(ctx context.Context, env *Env, activate bool) (err error) {
	verb := "deactivate"
	if activate {
		verb = "activate"
	}
	fs := flagSet(env, "device "+verb, deviceActivateUsage)
	dir := addDirFlag(fs)
	idArg := fs.String("cert-id", "", "certificateId `ID` (hex SHA-256 of the DER), or a unique prefix of 8+ hex digits")
	certFile := fs.String("cert", "", "the certificate `FILE` (PEM or DER), instead of --cert-id")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	if (*idArg == "") == (*certFile == "") {
		return usageErr("give exactly one of --cert-id ID and --cert FILE")
	}
	if *idArg != "" {
		want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(*idArg), ":", ""))
		if len(want) < 8 || len(want) > 64 || strings.Trim(want, "0123456789abcdef") != "" {
			return usageErr("--cert-id %q: want the certificateId (64 hex digits), or a prefix of at least 8", clipArg(*idArg))
		}
	}
	ref, err := newCertRef(*dir, *idArg, *certFile)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	set := a.DeactivateCertificate
	if activate {
		set = a.ActivateCertificate
	}
	ch, err := set(ctx, ref.id)
	c := ch.Credential
	owner := c.Project + "/" + c.Device
	if c.Device == "" {
		owner = c.Project + " (not attached to a device)"
	}
	switch {
	case errors.Is(err, cloud.ErrFinal):
		return fmt.Errorf("certificate %s of %s is REVOKED, which is final", c.Fingerprint, owner)
	case err != nil:
		return ref.explain(err)
	case !ch.Changed:
		fmt.Fprintf(env.Stdout, "certificate %s of %s is already %s\n", c.Fingerprint, owner, ch.To)
	default:
		fmt.Fprintf(env.Stdout, "certificate %s of %s: %s -> %s\n", c.Fingerprint, owner, ch.From, ch.To)
	}
	return nil
}

const deviceAllowUsage = `
Usage: credloop device allow --project PROJECT --udid UDID (--pubkey FILE | --cert FILE | --csr FILE) [--dir DIR]

Put a device on the allowlist for run-time CSR provisioning (TI CC3220
style): the cloud's HTTPS endpoint signs a CSR posted to
/v1/provision/csr when its CN is a listed UDID and it carries that UDID's
public key. The key comes from a public key file (PEM "PUBLIC KEY" or
DER), or from the certificate or CSR the device made (PEM or DER). A
UDID is listed once; allowing it again with the same key is harmless.

Examples:
  credloop device allow --dir ./lab --project myproject --udid 0123456789ABCDEF --pubkey ./udid-0123.pub.pem
  openssl req -new -key dev.key -subj /CN=0123456789ABCDEF -out dev.csr
  credloop device allow --dir ./lab --project myproject --udid 0123456789ABCDEF --csr dev.csr
`

// readPublicKey reads the SubjectPublicKeyInfo DER of a public key,
// certificate or CSR file.
func readPublicKey(pubFile, certFile, csrFile string) ([]byte, error) {
	switch {
	case certFile != "":
		certs, err := readCerts(certFile)
		if err != nil {
			return nil, err
		}
		return certs[0].RawSubjectPublicKeyInfo, nil
	case csrFile != "":
		data, err := readInput(csrFile, fakeca.MaxCSRSize)
		if err != nil {
			return nil, err
		}
		csr, err := fakeca.ParseCSR(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", csrFile, err)
		}
		return csr.RawSubjectPublicKeyInfo, nil
	}
	data, err := readInput(pubFile, 64<<10)
	if err != nil {
		return nil, err
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s holds a PEM %q block, want PUBLIC KEY (openssl pkey -pubout); use --cert or --csr for those", pubFile, b.Type)
		}
		der = b.Bytes
	}
	if _, err := x509.ParsePKIXPublicKey(der); err != nil {
		return nil, fmt.Errorf("%s is not a public key (PEM PUBLIC KEY or DER SubjectPublicKeyInfo): %v", pubFile, err)
	}
	return der, nil
}

func deviceAllow(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device allow", deviceAllowUsage)
	dir := addDirFlag(fs)
	project := fs.String("project", "", "`PROJECT` the device is provisioned into")
	udid := fs.String("udid", "", "the device's `UDID` (the CN of its CSRs)")
	pubFile := fs.String("pubkey", "", "public key `FILE`, PEM or DER")
	certFile := fs.String("cert", "", "certificate `FILE` (PEM or DER) whose key to allow")
	csrFile := fs.String("csr", "", "CSR `FILE` (PEM or DER) whose key to allow")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *udid == "" {
		return usageErr("missing --udid")
	}
	if err := registry.ValidID(*udid); err != nil {
		return usageErr("--udid: %v", err)
	}
	n := 0
	for _, f := range []string{*pubFile, *certFile, *csrFile} {
		if f != "" {
			n++
		}
	}
	if n != 1 {
		return usageErr("give exactly one of --pubkey FILE, --cert FILE and --csr FILE")
	}
	key, err := readPublicKey(*pubFile, *certFile, *csrFile)
	if err != nil {
		return err
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	res, err := a.Allow(ctx, *project, *udid, key)
	e := res.Entry
	switch {
	case errors.Is(err, registry.ErrExists):
		return fmt.Errorf("UDID %s is already on the allowlist of project %s with key fp=%s (see `credloop device allowlist --dir %s`)",
			*udid, e.Project, short(e.PublicKeyFingerprint, 8), shellArg(*dir))
	case err != nil:
		return scope{dir: *dir, project: *project}.explain(err)
	case res.Already:
		fmt.Fprintf(env.Stdout, "UDID %s is already allowed in project %s with this key (%s, fp=%s)\n", e.UDID, e.Project, res.KeyType, short(e.PublicKeyFingerprint, 8))
	default:
		fmt.Fprintf(env.Stdout, "allowed UDID %s in project %s with key %s, fp=%s\n", e.UDID, e.Project, res.KeyType, short(e.PublicKeyFingerprint, 8))
	}
	return nil
}

// allowInfo is an allowlist entry for --json.
type allowInfo struct {
	UDID                 string    `json:"udid"`
	Project              string    `json:"project"`
	PublicKeyFingerprint string    `json:"public_key_fingerprint"`
	Provisioned          bool      `json:"provisioned"`
	Added                time.Time `json:"added"`
}

const deviceAllowlistUsage = `
Usage: credloop device allowlist [--project PROJECT] [--dir DIR] [--json]

List the run-time CSR provisioning allowlist, of one project or of all:
UDID, public key fingerprint (SHA-256 of the SubjectPublicKeyInfo DER),
whether a certificate was issued for it, and when it was added.

Examples:
  credloop device allowlist --dir ./lab
  credloop device allowlist --dir ./lab --project myproject --json
`

func deviceAllowlist(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device allowlist", deviceAllowlistUsage)
	lf := addListFlags(fs, "only entries of `PROJECT`")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	a, err := lf.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	es, err := a.Allowlist(ctx, *lf.project)
	if err != nil {
		return lf.scope().explain(err)
	}
	infos := make([]allowInfo, 0, len(es))
	for _, e := range es {
		infos = append(infos, allowInfo{UDID: e.UDID, Project: e.Project, PublicKeyFingerprint: e.PublicKeyFingerprint, Provisioned: e.Provisioned, Added: e.Added})
	}
	return printList(env.Stdout, *lf.json, infos,
		"the allowlist is empty: add a device with `credloop device allow --project PROJECT --udid UDID --pubkey FILE`",
		"PROJECT\tUDID\tKEY FINGERPRINT\tPROVISIONED\tADDED",
		func(w io.Writer, e allowInfo) {
			prov := "no"
			if e.Provisioned {
				prov = "yes"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Project, e.UDID, short(e.PublicKeyFingerprint, 16), prov, rfc3339(e.Added))
		})
}

const deviceExpiringUsage = `
Usage: credloop device expiring [--within DURATION] [--project PROJECT] [--dir DIR] [--json]

List the ACTIVE and PENDING_ACTIVATION certificates whose NotAfter falls
within DURATION from now (default 30d), soonest first, with the days left;
certificates already expired are listed too, with negative days. DURATION
is a number of days ("60d") or a Go duration ("36h", "90m").

Examples:
  credloop device expiring --dir ./lab --within 60d
  credloop device expiring --dir ./lab --project myproject --within 7d --json
`

// parseWithin parses "60d" (days) or a Go duration; it must be positive.
func parseWithin(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*366 {
			return 0, usageErr("--within %q: want a positive number of days like 60d, or a duration like 36h", clipArg(s))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageErr("--within %q: want a positive number of days like 60d, or a duration like 36h", clipArg(s))
	}
	return d, nil
}

// expiringInfo is an expiring certificate for --json.
type expiringInfo struct {
	Project       string    `json:"project"`
	Device        string    `json:"device,omitempty"`
	CertificateID string    `json:"certificateId"`
	Serial        string    `json:"serial"`
	State         string    `json:"state"`
	NotAfter      time.Time `json:"not_after"`
	DaysLeft      int       `json:"days_left"` // whole days, rounded toward zero; negative when expired
	expired       bool
}

func deviceExpiring(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "device expiring", deviceExpiringUsage)
	lf := addListFlags(fs, "only certificates of `PROJECT`")
	within := fs.String("within", "30d", "list certificates expiring within `DURATION` (60d, 36h)")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	d, err := parseWithin(*within)
	if err != nil {
		return err
	}
	a, err := lf.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	exp, err := a.ExpiringCertificates(ctx, *lf.project, d)
	if err != nil {
		return lf.scope().explain(err)
	}
	infos := []expiringInfo{}
	for _, c := range exp {
		infos = append(infos, expiringInfo{Project: c.Project, Device: c.Device, CertificateID: c.Fingerprint, Serial: c.Serial,
			State: string(c.State), NotAfter: c.NotAfter, DaysLeft: c.DaysLeft, expired: c.Expired})
	}
	return printList(env.Stdout, *lf.json, infos,
		"no certificate expires within "+*within,
		"PROJECT\tDEVICE\tCERTIFICATE ID\tSERIAL\tSTATE\tNOT AFTER\tDAYS LEFT",
		func(w io.Writer, e expiringInfo) {
			left := strconv.Itoa(e.DaysLeft)
			if e.expired {
				left += " (expired)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Project, dashIfEmpty(e.Device), short(e.CertificateID, 16), e.Serial, e.State, rfc3339(e.NotAfter), left)
		})
}
