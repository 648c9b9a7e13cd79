package cloud

// The admin's project operations: projects, the CA certificates they
// trust, and their fleet-provisioning templates.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/credloop/credloop/cloud/registry"
)

// CreateProject creates a project (project.created).
func (a *Admin) CreateProject(ctx context.Context, id string) (registry.Project, error) {
	p, err := a.reg.CreateProject(ctx, id)
	if err != nil {
		return p, err
	}
	a.record(ctx, registry.Event{Project: id, Kind: registry.EventProjectCreated, Reason: a.reason("")})
	return p, nil
}

// ProjectSummary is a project with its device count and trusted roots.
type ProjectSummary struct {
	registry.Project
	Devices      int
	TrustedRoots []registry.TrustedRoot
}

// Projects lists the projects.
func (a *Admin) Projects(ctx context.Context) ([]ProjectSummary, error) {
	ps, err := a.reg.Projects(ctx)
	if err != nil {
		return nil, err
	}
	return a.summaries(ctx, ps)
}

// Project shows a project.
func (a *Admin) Project(ctx context.Context, id string) (ProjectSummary, error) {
	p, err := a.reg.Project(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return ProjectSummary{}, fmt.Errorf("%w: %s", ErrNoProject, id)
	}
	if err != nil {
		return ProjectSummary{}, err
	}
	out, err := a.summaries(ctx, []registry.Project{p})
	if err != nil {
		return ProjectSummary{}, err
	}
	return out[0], nil
}

func (a *Admin) summaries(ctx context.Context, ps []registry.Project) ([]ProjectSummary, error) {
	devs, err := a.reg.Devices(ctx, "")
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	for _, d := range devs {
		count[d.Project]++
	}
	out := make([]ProjectSummary, 0, len(ps))
	for _, p := range ps {
		roots, err := a.reg.TrustedRoots(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, ProjectSummary{Project: p, Devices: count[p.ID], TrustedRoots: roots})
	}
	return out, nil
}

// TrustRoots makes a project trust CA certificates (project.trust each):
// a device presenting a certificate that chains to one is accepted, and
// provisioned on its first connect. Every certificate must be a CA or
// self-signed (a *CertError wrapping ErrNotCA names the first that is
// not). Trusting a certificate again is harmless. The roots trusted
// before a failure are returned with it.
func (a *Admin) TrustRoots(ctx context.Context, project string, certs []*x509.Certificate) ([]registry.TrustedRoot, error) {
	if err := checkCAs(certs); err != nil {
		return nil, err
	}
	if err := a.needProject(ctx, project); err != nil {
		return nil, err
	}
	var out []registry.TrustedRoot
	for _, c := range certs {
		root, err := a.reg.TrustRoot(ctx, project, c.Raw)
		if err != nil {
			return out, err
		}
		out = append(out, root)
		a.record(ctx, registry.Event{Project: project, Credential: root.Fingerprint, Kind: registry.EventRootTrusted,
			Reason: a.reason("trusted %s", root.Subject)})
	}
	return out, nil
}

// UntrustRoot stops a project trusting a CA certificate
// (project.untrust): devices not yet known whose certificates chain only
// to it are refused; those registered stay. fp is its SHA-256 fingerprint
// or a unique prefix of at least 8 hex digits (colons allowed).
func (a *Admin) UntrustRoot(ctx context.Context, project, fp string) (registry.TrustedRoot, error) {
	want := hexPrefix(fp)
	if len(want) < 8 || strings.Trim(want, "0123456789abcdef") != "" {
		return registry.TrustedRoot{}, fmt.Errorf("%w: fingerprint %q: want hex SHA-256, or a prefix of at least 8 hex digits", registry.ErrInvalid, clipArg(fp))
	}
	if err := a.needProject(ctx, project); err != nil {
		return registry.TrustedRoot{}, err
	}
	roots, err := a.reg.TrustedRoots(ctx, project)
	if err != nil {
		return registry.TrustedRoot{}, err
	}
	var match []registry.TrustedRoot
	for _, r := range roots {
		if strings.HasPrefix(r.Fingerprint, want) {
			match = append(match, r)
		}
	}
	switch len(match) {
	case 0:
		return registry.TrustedRoot{}, fmt.Errorf("%w: %s of project %s", ErrNoRoot, want, project)
	case 1:
	default:
		return registry.TrustedRoot{}, &AmbiguousError{Prefix: want, N: len(match)}
	}
	r := match[0]
	if err := a.reg.UntrustRoot(ctx, project, r.Fingerprint); err != nil {
		return r, err
	}
	a.record(ctx, registry.Event{Project: project, Credential: r.Fingerprint, Kind: registry.EventRootUntrusted,
		Reason: a.reason("untrusted %s", r.Subject)})
	return r, nil
}

// PutTemplate creates or changes a fleet-provisioning template
// (project.template), as an AWS IoT provisioning template reduced to what
// devices see. created is false when it changed one. Template names are
// unique in the registry: one of another project is registry.ErrExists.
func (a *Admin) PutTemplate(ctx context.Context, t registry.Template) (_ registry.Template, created bool, err error) {
	if err := registry.ValidTemplateName(t.Name); err != nil {
		return t, false, err
	}
	params := t.Required
	if t.ThingNameParam != "" {
		params = append([]string{t.ThingNameParam}, params...)
	}
	for _, p := range params {
		if err := registry.ValidID(p); err != nil {
			return t, false, fmt.Errorf("parameter name: %w", err)
		}
	}
	if t.ThingPrefix != "" {
		if err := registry.ValidID(t.ThingPrefix); err != nil {
			return t, false, fmt.Errorf("thing prefix: %w", err)
		}
	}
	if err := a.needProject(ctx, t.Project); err != nil {
		return t, false, err
	}
	_, terr := a.reg.Template(ctx, t.Name)
	created = terr != nil
	verb := "changed"
	if created {
		verb = "created"
	}
	t, err = a.reg.PutTemplate(ctx, t)
	if err != nil {
		return t, false, err
	}
	a.record(ctx, registry.Event{Project: t.Project, Kind: registry.EventTemplatePut,
		Reason: a.reason("template %s %s", t.Name, verb)})
	return t, created, nil
}

// Templates lists the fleet-provisioning templates of a project, or of
// all when project is "".
func (a *Admin) Templates(ctx context.Context, project string) ([]registry.Template, error) {
	if project != "" {
		if err := a.needProject(ctx, project); err != nil {
			return nil, err
		}
	}
	return a.reg.Templates(ctx, project)
}
