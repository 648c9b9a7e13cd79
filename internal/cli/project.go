package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud/registry"
)

func init() {
	register(command{name: "project", summary: "create projects and choose the CA roots they trust", run: runProject})
}

const projectUsage = `
Usage: credloop project <subcommand> [flags]

Manage the projects of a credloop directory's registry (DIR/registry.db).
A project is a namespace of devices, like a Golioth project: PSK identities
end in @PROJECT, and a device whose certificate chains to one of the
project's trusted roots is provisioned on its first connect.

Subcommands:
  create   create a project
  list     list the projects
  show     show a project: trusted roots, device count
  trust    trust a root or intermediate CA certificate
  untrust  stop trusting a certificate
  template create or change a fleet-provisioning template
  templates
           list the fleet-provisioning templates

Examples:
  credloop project create myproject --dir ./lab
  credloop project trust myproject --ca default --dir ./lab
  credloop project show myproject --dir ./lab

Run 'credloop project <subcommand> --help' for its flags and examples.
`

func runProject(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "project", projectUsage, map[string]func(context.Context, *Env) error{
		"create":  projectCreate,
		"list":    projectList,
		"show":    projectShow,
		"trust":   projectTrust,
		"untrust": projectUntrust,

		"template":  projectTemplate,
		"templates": projectTemplates,
	})
}

const projectCreateUsage = `
Usage: credloop project create ID [--dir DIR]

Create a project. ID is 1 to 64 characters of letters, digits and . _ : -.
DIR and its registry are created when missing.

Examples:
  credloop project create myproject --dir ./lab
  CREDLOOP_DIR=./lab credloop project create factory-line-2
`

func projectCreate(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project create", projectCreateUsage)
	dir := addDirFlag(fs)
	id, err := parseProjectArgs(fs, env.Args)
	if err != nil {
		return err
	}
	reg, err := openRegistryAt(*dir, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	p, err := reg.CreateProject(ctx, id)
	if errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("project %s already exists in %s (see `credloop project show %s --dir %s`)", id, *dir, id, shellArg(*dir))
	}
	if err != nil {
		return err
	}
	recordEvent(ctx, env, reg, registry.Event{Project: id, Kind: registry.EventProjectCreated, Reason: cliEventReasonFrom})
	fmt.Fprintf(env.Stdout, "created project %s in %s at %s\n", p.ID, *dir, rfc3339(p.Created))
	return nil
}

// projectInfo is a project for --json.
type projectInfo struct {
	ID           string     `json:"id"`
	Created      time.Time  `json:"created"`
	Devices      int        `json:"devices"`
	TrustedRoots []rootInfo `json:"trusted_roots"`
}

// rootInfo is a trusted root for --json.
type rootInfo struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after"`
	Added       time.Time `json:"added"`
}

func rootInfos(roots []registry.TrustedRoot) []rootInfo {
	out := make([]rootInfo, 0, len(roots))
	for _, r := range roots {
		out = append(out, rootInfo{Fingerprint: r.Fingerprint, Subject: r.Subject, NotAfter: r.NotAfter, Added: r.Added})
	}
	return out
}

// projectInfos gathers the projects with their device counts and roots.
func projectInfos(ctx context.Context, reg *registry.Registry, ps []registry.Project) ([]projectInfo, error) {
	devs, err := reg.Devices(ctx, "")
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	for _, d := range devs {
		count[d.Project]++
	}
	out := make([]projectInfo, 0, len(ps))
	for _, p := range ps {
		roots, err := reg.TrustedRoots(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, projectInfo{ID: p.ID, Created: p.Created, Devices: count[p.ID], TrustedRoots: rootInfos(roots)})
	}
	return out, nil
}

const projectListUsage = `
Usage: credloop project list [--dir DIR] [--json]

List the projects with their number of devices and trusted roots.

Examples:
  credloop project list --dir ./lab
  credloop project list --dir ./lab --json
`

func projectList(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project list", projectListUsage)
	dir := addDirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	reg, err := openRegistryAt(*dir, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	ps, err := reg.Projects(ctx)
	if err != nil {
		return err
	}
	infos, err := projectInfos(ctx, reg, ps)
	if err != nil {
		return err
	}
	return printList(env.Stdout, *asJSON, infos,
		fmt.Sprintf("no projects in %s: create one with `credloop project create ID --dir %s`", *dir, shellArg(*dir)),
		"ID\tCREATED\tDEVICES\tTRUSTED ROOTS",
		func(w io.Writer, p projectInfo) {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", p.ID, rfc3339(p.Created), p.Devices, len(p.TrustedRoots))
		})
}

const projectShowUsage = `
Usage: credloop project show ID [--dir DIR] [--json]

Show a project: when it was created, how many devices it has, and the CA
certificates it trusts (fingerprint, subject, expiry).

Examples:
  credloop project show myproject --dir ./lab
  credloop project show myproject --dir ./lab --json
`

func projectShow(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project show", projectShowUsage)
	dir := addDirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	id, err := parseProjectArgs(fs, env.Args)
	if err != nil {
		return err
	}
	reg, err := openProject(ctx, *dir, id)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	p, err := reg.Project(ctx, id)
	if err != nil {
		return err
	}
	infos, err := projectInfos(ctx, reg, []registry.Project{p})
	if err != nil {
		return err
	}
	info := infos[0]
	if *asJSON {
		return emitJSON(env.Stdout, info)
	}
	tw := newTable(env.Stdout)
	fmt.Fprintf(tw, "project\t%s\n", info.ID)
	fmt.Fprintf(tw, "created\t%s\n", rfc3339(info.Created))
	fmt.Fprintf(tw, "devices\t%d\n", info.Devices)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.TrustedRoots) == 0 {
		fmt.Fprintf(env.Stdout, "\nno trusted roots: devices need a PSK (`credloop device add`), or trust a CA with `credloop project trust %s --ca default --dir %s`\n", id, shellArg(*dir))
		return nil
	}
	fmt.Fprintln(env.Stdout, "\ntrusted roots")
	tw = newTable(env.Stdout)
	fmt.Fprintln(tw, "  FINGERPRINT\tSUBJECT\tNOT AFTER\tADDED")
	for _, r := range info.TrustedRoots {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Fingerprint, r.Subject, rfc3339(r.NotAfter), rfc3339(r.Added))
	}
	return tw.Flush()
}

const projectTrustUsage = `
Usage: credloop project trust ID (--cert FILE | --ca NAME) [--dir DIR]

Make the project trust a CA certificate: a device presenting a certificate
that chains to it is accepted, and provisioned on its first connect if the
registry does not know it yet. --cert uploads a root or intermediate CA
certificate (PEM or DER; every certificate of a PEM bundle is trusted), as
you upload a root to a cloud console; --ca NAME trusts the root of the CA
NAME of DIR (see 'credloop ca init'). Trusting a certificate twice is
harmless.

Examples:
  credloop project trust myproject --ca default --dir ./lab
  credloop project trust myproject --cert ./golioth.crt.pem --dir ./lab
`

func projectTrust(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project trust", projectTrustUsage)
	dir := addDirFlag(fs)
	certFile := fs.String("cert", "", "`FILE` with the CA certificate(s) to trust, PEM or DER")
	caName := fs.String("ca", "", "trust the root of the CA `NAME` of DIR")
	id, err := parseProjectArgs(fs, env.Args)
	if err != nil {
		return err
	}
	if (*certFile == "") == (*caName == "") {
		return usageErr("give exactly one of --cert FILE and --ca NAME")
	}
	var ders [][]byte
	source := *certFile
	if *caName != "" {
		a, err := loadAuthorityAt(*dir, *caName)
		if err != nil {
			return err
		}
		ders = [][]byte{a.Root.Cert.Raw}
		source = fmt.Sprintf("root of CA %q", *caName)
	} else {
		certs, err := readCerts(*certFile)
		if err != nil {
			return err
		}
		for i, c := range certs {
			if !isCACert(c) {
				what := *certFile
				if len(certs) > 1 {
					what = fmt.Sprintf("%s (certificate %d of %d)", *certFile, i+1, len(certs))
				}
				return fmt.Errorf("%s: %q is a device certificate, neither a CA nor self-signed: trust the root or intermediate that issued it", what, c.Subject.String())
			}
			ders = append(ders, c.Raw)
		}
	}
	reg, err := openProject(ctx, *dir, id)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	fmt.Fprintf(env.Stdout, "project %s now trusts (%s):\n", id, source)
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "  FINGERPRINT\tSUBJECT\tNOT AFTER")
	for _, der := range ders {
		root, err := reg.TrustRoot(ctx, id, der)
		if err != nil {
			tw.Flush()
			return err
		}
		recordEvent(ctx, env, reg, registry.Event{Project: id, Credential: root.Fingerprint, Kind: registry.EventRootTrusted,
			Reason: fmt.Sprintf("trusted %s %s", root.Subject, cliEventReasonFrom)})
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", root.Fingerprint, root.Subject, rfc3339(root.NotAfter))
	}
	return tw.Flush()
}

const projectUntrustUsage = `
Usage: credloop project untrust ID --fingerprint FP [--dir DIR]

Stop trusting a CA certificate: devices not yet known whose certificates
chain only to it are refused. Devices and certificates already registered
stay. FP is the SHA-256 fingerprint 'credloop project show' prints; a
unique prefix of at least 8 hex digits will do, colons are allowed.

Examples:
  credloop project untrust myproject --fingerprint 3f9a0c1d --dir ./lab
  credloop project untrust myproject --fingerprint "$(credloop ca show --dir ./lab --json | jq -r .root.fingerprint)"
`

func projectUntrust(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project untrust", projectUntrustUsage)
	dir := addDirFlag(fs)
	fpArg := fs.String("fingerprint", "", "SHA-256 `FP` of the certificate, or a unique prefix of 8+ hex digits")
	id, err := parseProjectArgs(fs, env.Args)
	if err != nil {
		return err
	}
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(*fpArg), ":", ""))
	if len(want) < 8 || strings.Trim(want, "0123456789abcdef") != "" {
		return usageErr("--fingerprint %q: want the SHA-256 fingerprint in hex, or a prefix of at least 8 hex digits", clipArg(*fpArg))
	}
	reg, err := openProject(ctx, *dir, id)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	roots, err := reg.TrustedRoots(ctx, id)
	if err != nil {
		return err
	}
	var match []registry.TrustedRoot
	for _, r := range roots {
		if strings.HasPrefix(r.Fingerprint, want) {
			match = append(match, r)
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("project %s trusts no certificate with fingerprint %s (see `credloop project show %s --dir %s`)", id, want, id, shellArg(*dir))
	case 1:
	default:
		return fmt.Errorf("fingerprint prefix %s matches %d trusted certificates of project %s: give more digits", want, len(match), id)
	}
	r := match[0]
	if err := reg.UntrustRoot(ctx, id, r.Fingerprint); err != nil {
		return err
	}
	recordEvent(ctx, env, reg, registry.Event{Project: id, Credential: r.Fingerprint, Kind: registry.EventRootUntrusted,
		Reason: fmt.Sprintf("untrusted %s %s", r.Subject, cliEventReasonFrom)})
	fmt.Fprintf(env.Stdout, "project %s no longer trusts %s (%s)\n", id, r.Subject, r.Fingerprint)
	return nil
}

const projectTemplateUsage = `
Usage: credloop project template --project PROJECT NAME [--thing-name-param PARAM] [--thing-prefix PREFIX] [--require A,B] [--inactive] [--dir DIR]

Create (or change) the fleet-provisioning template NAME of a project, as
an AWS IoT provisioning template reduced to what devices see. A device
holding a claim certificate (see 'credloop ca register --mode claim')
calls RegisterThing on $aws/provisioning-templates/NAME/provision/json
with its ownership token and parameters; the thing is named PREFIX +
the value of PARAM (default SerialNumber), every parameter of --require
must be present, and the new certificate becomes ACTIVE (INACTIVE with
--inactive). NAME is at most 36 characters of letters, digits and . _ : -.
Template names are unique in the registry.

Examples:
  credloop project template --dir ./lab --project myproject fleet
  credloop project template --dir ./lab --project myproject esp32 --thing-name-param Mac --thing-prefix esp- --require Mac,Model
  credloop project template --dir ./lab --project myproject quarantine --inactive
`

func projectTemplate(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project template", projectTemplateUsage)
	dir := addDirFlag(fs)
	project := fs.String("project", "", "`PROJECT` of the template")
	param := fs.String("thing-name-param", registry.DefaultThingNameParam, "`PARAM` whose value names the thing")
	prefix := fs.String("thing-prefix", "", "`PREFIX` prepended to the thing name")
	require := fs.String("require", "", "comma-separated `PARAMS` RegisterThing must carry")
	inactive := fs.Bool("inactive", false, "RegisterThing leaves the certificate INACTIVE instead of ACTIVE")
	pos, err := parseArgs(fs, env.Args, "template NAME")
	if err != nil {
		return err
	}
	name := pos[0]
	if err := projectArg(*project); err != nil {
		return err
	}
	if err := registry.ValidTemplateName(name); err != nil {
		return usageErr("%v", err)
	}
	t := registry.Template{Name: name, Project: *project, ThingNameParam: *param, ThingPrefix: *prefix, Activate: !*inactive}
	for _, p := range strings.Split(*require, ",") {
		if p = strings.TrimSpace(p); p != "" {
			t.Required = append(t.Required, p)
		}
	}
	for _, p := range append([]string{t.ThingNameParam}, t.Required...) {
		if err := registry.ValidID(p); err != nil {
			return usageErr("parameter name: %v", err)
		}
	}
	if t.ThingPrefix != "" {
		if err := registry.ValidID(t.ThingPrefix); err != nil {
			return usageErr("--thing-prefix: %v", err)
		}
	}
	reg, err := openProject(ctx, *dir, *project)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	_, terr := reg.Template(ctx, name)
	verb := "created"
	if terr == nil {
		verb = "changed"
	}
	t, err = reg.PutTemplate(ctx, t)
	if errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("template %s belongs to another project (template names are unique; see `credloop project templates --dir %s`)", name, shellArg(*dir))
	}
	if err != nil {
		return err
	}
	recordEvent(ctx, env, reg, registry.Event{Project: *project, Kind: registry.EventTemplatePut,
		Reason: fmt.Sprintf("template %s %s %s", name, verb, cliEventReasonFrom)})
	fmt.Fprintf(env.Stdout, "%s template %s of project %s\n", verb, t.Name, t.Project)
	printTemplate(env.Stdout, templateInfoOf(t))
	fmt.Fprintf(env.Stdout, "devices provision on $aws/provisioning-templates/%s/provision/json (or /cbor)\n", t.Name)
	return nil
}

// templateInfo is a provisioning template for --json.
type templateInfo struct {
	Name           string    `json:"name"`
	Project        string    `json:"project"`
	ThingNameParam string    `json:"thing_name_param"`
	ThingPrefix    string    `json:"thing_prefix,omitempty"`
	Required       []string  `json:"required"`
	Certificate    string    `json:"certificate_status"` // ACTIVE or INACTIVE after RegisterThing
	Created        time.Time `json:"created"`
}

func templateInfoOf(t registry.Template) templateInfo {
	status := "ACTIVE"
	if !t.Activate {
		status = "INACTIVE"
	}
	return templateInfo{Name: t.Name, Project: t.Project, ThingNameParam: t.ThingNameParam, ThingPrefix: t.ThingPrefix,
		Required: t.Required, Certificate: status, Created: t.Created}
}

func printTemplate(w io.Writer, t templateInfo) {
	tw := newTable(w)
	fmt.Fprintf(tw, "  thing name\t%s<%s>\n", t.ThingPrefix, t.ThingNameParam)
	fmt.Fprintf(tw, "  required parameters\t%s\n", strings.Join(t.Required, ", "))
	fmt.Fprintf(tw, "  certificate after RegisterThing\t%s\n", t.Certificate)
	tw.Flush()
}

const projectTemplatesUsage = `
Usage: credloop project templates [--project PROJECT] [--dir DIR] [--json]

List the fleet-provisioning templates, of one project or of all.

Examples:
  credloop project templates --dir ./lab
  credloop project templates --dir ./lab --project myproject --json
`

func projectTemplates(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "project templates", projectTemplatesUsage)
	lf := addListFlags(fs, "only templates of `PROJECT`")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	reg, err := lf.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	ts, err := reg.Templates(ctx, *lf.project)
	if err != nil {
		return err
	}
	infos := make([]templateInfo, 0, len(ts))
	for _, t := range ts {
		infos = append(infos, templateInfoOf(t))
	}
	return printList(env.Stdout, *lf.json, infos,
		"no templates: create one with `credloop project template --project PROJECT NAME`",
		"PROJECT\tTEMPLATE\tTHING NAME\tREQUIRED\tCERTIFICATE\tCREATED",
		func(w io.Writer, t templateInfo) {
			fmt.Fprintf(w, "%s\t%s\t%s<%s>\t%s\t%s\t%s\n", t.Project, t.Name, t.ThingPrefix, t.ThingNameParam, strings.Join(t.Required, ","), t.Certificate, rfc3339(t.Created))
		})
}
