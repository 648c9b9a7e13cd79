package boards

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/credloop/credloop/hil"
)

// LoadMap reads a hardware map (hil.LoadMap) and checks it against the
// registered kinds (CheckMap), filling in each kind's defaults.
func LoadMap(path string) (*hil.Map, error) {
	m, err := hil.LoadMap(path)
	if err != nil {
		return nil, err
	}
	// A host board's relative exec and workdir are the map file's.
	for i, b := range m.Boards {
		if b.Exec != "" && strings.ContainsRune(b.Exec, filepath.Separator) && !filepath.IsAbs(b.Exec) {
			m.Boards[i].Exec = filepath.Join(filepath.Dir(path), b.Exec)
		}
		if b.Workdir != "" && !filepath.IsAbs(b.Workdir) {
			m.Boards[i].Workdir = filepath.Join(filepath.Dir(path), b.Workdir)
		}
	}
	if err := CheckMap(m); err != nil {
		for _, e := range unjoin(err) {
			var fe *hil.FieldError
			if errors.As(e, &fe) {
				fe.File = path
			}
		}
		return nil, err
	}
	return m, nil
}

// CheckMap checks that every board of m is of a registered kind, and
// that an emulated one's kind has an emulator; it fills in the kinds'
// defaults (the reset method of a board whose entry gives none). Every
// problem is a *hil.FieldError (matching hil.ErrInvalidMap) at the
// board's line, joined with errors.Join.
func CheckMap(m *hil.Map) error {
	var errs []error
	for i, b := range m.Boards {
		k, err := Lookup(b.Kind)
		if err != nil {
			errs = append(errs, &hil.FieldError{Line: b.Line, Board: b.Name, Field: "kind",
				Err: fmt.Errorf("%w: %q (want %s)", hil.ErrInvalidValue, b.Kind, KindList())})
			continue
		}
		switch {
		case k.Launch != nil && b.Exec == "":
			errs = append(errs, &hil.FieldError{Line: b.Line, Board: b.Name, Field: "exec",
				Err: fmt.Errorf("%w: a %s board is firmware run on this host: give its executable", hil.ErrMissingField, k.Name)})
			continue
		case k.Launch == nil && b.Exec != "":
			errs = append(errs, &hil.FieldError{Line: b.Line, Board: b.Name, Field: "exec",
				Err: fmt.Errorf("%w: a %s board does not run on this host (kind linux does)", hil.ErrInvalidValue, k.Name)})
			continue
		}
		if b.Emulate && k.Emulate == nil {
			errs = append(errs, &hil.FieldError{Line: b.Line, Board: b.Name, Field: "emulate",
				Err: fmt.Errorf("%w: the %s kind has no emulator", hil.ErrInvalidValue, k.Name)})
			continue
		}
		m.Boards[i] = k.defaults(b)
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
