package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MaxTemplateNameLen is the longest provisioning template name (AWS's
// FP_TEMPLATENAME_MAX_LENGTH).
const MaxTemplateNameLen = 36

// DefaultThingNameParam is the template parameter whose value names the
// thing when a template does not say otherwise.
const DefaultThingNameParam = "SerialNumber"

// Template is a fleet-provisioning template (AWS provisioning templates,
// reduced to what devices can observe): RegisterThing with it names the
// thing ThingPrefix + parameters[ThingNameParam].
type Template struct {
	Name           string // at most MaxTemplateNameLen characters of [A-Za-z0-9._:-]
	Project        string
	ThingNameParam string   // parameter whose value is the thing name; default "SerialNumber"
	ThingPrefix    string   // prepended to it (optional)
	Required       []string // parameters that must be present; ThingNameParam always is, and comes first
	Activate       bool     // RegisterThing sets the certificate ACTIVE (true) or INACTIVE (false)
	Created        time.Time
}

// ValidTemplateName reports whether name is a valid template name: a
// valid id (see ValidID) of at most MaxTemplateNameLen characters. The
// error wraps ErrInvalid.
func ValidTemplateName(name string) error {
	if err := ValidID(name); err != nil {
		return fmt.Errorf("template name: %w", err)
	}
	if len(name) > MaxTemplateNameLen {
		return fmt.Errorf("%w: template name %q is longer than %d characters", ErrInvalid, name, MaxTemplateNameLen)
	}
	return nil
}

// ThingName returns the thing name the template gives for the
// RegisterThing parameters: ThingPrefix + params[ThingNameParam]. It
// fails (wrapping ErrInvalid) when a required parameter is missing or
// the name is not a valid id.
func (t Template) ThingName(params map[string]string) (string, error) {
	for _, p := range t.required() {
		if _, ok := params[p]; !ok {
			return "", fmt.Errorf("%w: template %s: missing parameter %q", ErrInvalid, t.Name, p)
		}
	}
	name := t.ThingPrefix + params[t.thingParam()]
	if err := ValidID(name); err != nil {
		return "", fmt.Errorf("template %s: thing name: %w", t.Name, err)
	}
	return name, nil
}

func (t Template) thingParam() string {
	if t.ThingNameParam == "" {
		return DefaultThingNameParam
	}
	return t.ThingNameParam
}

// required returns ThingNameParam followed by Required, without
// duplicates.
func (t Template) required() []string {
	out := []string{t.thingParam()}
	for _, p := range t.Required {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// PutTemplate creates a provisioning template, or replaces the one of the
// same name in the same project (keeping Created); a name used by another
// project fails with ErrExists. Template names are unique across the
// registry. ThingNameParam defaults to "SerialNumber"; parameter names
// are valid ids; ThingPrefix is "" or id characters. The project must
// exist. It returns the template as stored (Required normalized: the
// thing-name parameter first, no duplicates).
func (r *Registry) PutTemplate(ctx context.Context, t Template) (Template, error) {
	if err := ValidTemplateName(t.Name); err != nil {
		return Template{}, fmt.Errorf("put template: %w", err)
	}
	if err := ValidID(t.Project); err != nil {
		return Template{}, fmt.Errorf("put template %s: project: %w", t.Name, err)
	}
	t.ThingNameParam = t.thingParam()
	t.Required = t.required()
	for _, p := range t.Required {
		if err := ValidID(p); err != nil {
			return Template{}, fmt.Errorf("put template %s: parameter name: %w", t.Name, err)
		}
	}
	if t.ThingPrefix != "" {
		if err := ValidID(t.ThingPrefix); err != nil || len(t.ThingPrefix) >= MaxIDLen {
			return Template{}, fmt.Errorf("put template %s: %w: thing prefix %q must be 1..%d characters of [A-Za-z0-9._:-]",
				t.Name, ErrInvalid, clip(t.ThingPrefix), MaxIDLen-1)
		}
	}
	req, err := json.Marshal(t.Required)
	if err != nil {
		return Template{}, fmt.Errorf("put template %s: %w", t.Name, err)
	}
	var out Template
	err = r.write(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, t.Project); err != nil {
			return err
		}
		var owner string
		switch err := tx.QueryRowContext(ctx, `SELECT project FROM templates WHERE name = ?`, t.Name).Scan(&owner); {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO templates (`+templateColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				t.Name, t.Project, t.ThingNameParam, t.ThingPrefix, string(req), boolInt(t.Activate), r.stamp()); err != nil {
				return err
			}
		case err != nil:
			return err
		case owner != t.Project:
			return fmt.Errorf("%w: template of project %s", ErrExists, owner)
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE templates SET thing_name_param = ?, thing_prefix = ?, required = ?, activate = ? WHERE name = ?`,
				t.ThingNameParam, t.ThingPrefix, string(req), boolInt(t.Activate), t.Name); err != nil {
				return err
			}
		}
		var err error
		out, err = scanTemplate(tx.QueryRowContext(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = ?`, t.Name))
		return err
	})
	if err != nil {
		return Template{}, fmt.Errorf("put template %s of %s: %w", t.Name, t.Project, err)
	}
	r.log.Debug("template stored", "project", out.Project, "template", out.Name)
	return out, nil
}

// Template returns the provisioning template with the name.
func (r *Registry) Template(ctx context.Context, name string) (Template, error) {
	if err := ValidTemplateName(name); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	if err := r.check(); err != nil {
		return Template{}, err
	}
	t, err := scanTemplate(r.rd.QueryRowContext(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = ?`, name))
	if err != nil {
		return Template{}, fmt.Errorf("template %s: %w", name, notFound(err))
	}
	return t, nil
}

// Templates returns the provisioning templates of a project ("" for all
// projects), ordered by project and name.
func (r *Registry) Templates(ctx context.Context, project string) ([]Template, error) {
	return ofProject(ctx, r, "templates", scanTemplate, `SELECT `+templateColumns+` FROM templates`, `project, name`, project)
}

const templateColumns = `name, project, thing_name_param, thing_prefix, required, activate, created`

func scanTemplate(s rowScanner) (Template, error) {
	var (
		t   Template
		req string
	)
	if err := s.Scan(&t.Name, &t.Project, &t.ThingNameParam, &t.ThingPrefix, &req, &t.Activate, timeScan{&t.Created}); err != nil {
		return Template{}, err
	}
	if err := json.Unmarshal([]byte(req), &t.Required); err != nil {
		return Template{}, fmt.Errorf("registry: template %s: required parameters: %w", t.Name, err)
	}
	return t, nil
}
