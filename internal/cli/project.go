package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud"
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
	a, err := openAdmin(*dir, true)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	p, err := a.CreateProject(ctx, id)
	if errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("project %s already exists in %s (see `credloop project show %s --dir %s`)", id, *dir, id, shellArg(*dir))
	}
	if err != nil {
		return err
	}
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

// projectInfos converts the admin's project summaries.
func projectInfos(ps []cloud.ProjectSummary) []projectInfo {
	out := make([]projectInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, projectInfo{ID: p.ID, Created: p.Created, Devices: p.Devices, TrustedRoots: rootInfos(p.TrustedRoots)})
	}
	return out
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
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	ps, err := a.Projects(ctx)
	if err != nil {
		return err
	}
	infos := projectInfos(ps)
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
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	p, err := a.Project(ctx, id)
	if err != nil {
		return scope{dir: *dir, project: id}.explain(err)
	}
	info := projectInfos([]cloud.ProjectSummary{p})[0]
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
	var certs []*x509.Certificate
	source := *certFile
	if *certFile != "" {
		if certs, err = readCerts(*certFile); err != nil {
			return err
		}
	}
	if *caName != "" {
		if err := checkCAName(*caName); err != nil {
			return err
		}
	}
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	sc := scope{dir: *dir, project: id, ca: *caName}
	if *caName != "" {
		info, err := a.CA(*caName)
		if err != nil {
			return sc.explain(err)
		}
		certs = []*x509.Certificate{info.Root}
		source = fmt.Sprintf("root of CA %q", *caName)
	}
	roots, err := a.TrustRoots(ctx, id, certs)
	var ce *cloud.CertError
	switch {
	case errors.As(err, &ce) && errors.Is(err, cloud.ErrNotCA):
		what := *certFile
		if ce.Count > 1 {
			what = fmt.Sprintf("%s (certificate %d of %d)", *certFile, ce.Index+1, ce.Count)
		}
		return fmt.Errorf("%s: %q is a device certificate, neither a CA nor self-signed: trust the root or intermediate that issued it", what, ce.Subject)
	case errors.Is(err, cloud.ErrNoProject):
		return sc.explain(err)
	}
	fmt.Fprintf(env.Stdout, "project %s now trusts (%s):\n", id, source)
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "  FINGERPRINT\tSUBJECT\tNOT AFTER")
	for _, root := range roots {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", root.Fingerprint, root.Subject, rfc3339(root.NotAfter))
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
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
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	r, err := a.UntrustRoot(ctx, id, want)
	var amb *cloud.AmbiguousError
	switch {
	case errors.Is(err, cloud.ErrNoRoot):
		return fmt.Errorf("project %s trusts no certificate with fingerprint %s (see `credloop project show %s --dir %s`)", id, want, id, shellArg(*dir))
	case errors.As(err, &amb):
		return fmt.Errorf("fingerprint prefix %s matches %d trusted certificates of project %s: give more digits", want, amb.N, id)
	case err != nil:
		return scope{dir: *dir, project: id}.explain(err)
	}
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
	a, err := openAdmin(*dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	t, created, err := a.PutTemplate(ctx, t)
	if errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("template %s belongs to another project (template names are unique; see `credloop project templates --dir %s`)", name, shellArg(*dir))
	}
	if err != nil {
		return scope{dir: *dir, project: *project}.explain(err)
	}
	verb := "changed"
	if created {
		verb = "created"
	}
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
	a, err := lf.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	ts, err := a.Templates(ctx, *lf.project)
	if err != nil {
		return lf.scope().explain(err)
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
