// Package archtest checks the module's layering rules.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// apiModuleRoot walks up from the test's directory to the one holding
// go.mod and returns it with the module path.
func apiModuleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.SplitSeq(string(data), "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(rest), `"`)
				}
			}
			t.Fatalf("%s/go.mod names no module", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// apiPackage is one directory's non-test Go files of one package.
type apiPackage struct {
	importPath string
	files      map[string]*ast.File // by file name relative to the module root
}

// publicPackages parses every package of the module that is neither
// internal (a path element "internal") nor a command (package main).
func publicPackages(t *testing.T) []apiPackage {
	t.Helper()
	root, module := apiModuleRoot(t)
	fset := token.NewFileSet()
	var pkgs []apiPackage
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "internal") {
			return filepath.SkipDir
		}
		if p != root {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		pkg := apiPackage{importPath: path.Join(module, filepath.ToSlash(rel)), files: map[string]*ast.File{}}
		for _, e := range entries {
			fn := e.Name()
			if e.IsDir() || !strings.HasSuffix(fn, ".go") || strings.HasSuffix(fn, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(p, fn), nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			if f.Name.Name == "main" {
				continue
			}
			pkg.files[filepath.ToSlash(filepath.Join(rel, fn))] = f
		}
		if len(pkg.files) > 0 {
			pkgs = append(pkgs, pkg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// isInternalPath reports whether an import path names an internal package.
func isInternalPath(p string) bool {
	return strings.Contains(p, "/internal/") || strings.HasSuffix(p, "/internal") || strings.HasPrefix(p, "internal/")
}

// fileImports maps the names a file refers to its imports by (the alias,
// or the last path element) to the import paths.
func fileImports(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, im := range f.Imports {
		p, err := strconv.Unquote(im.Path.Value)
		if err != nil {
			continue
		}
		name := path.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		if name == "_" || name == "." {
			continue
		}
		out[name] = p
	}
	return out
}

// internalRefs lists, in source order, the qualified identifiers (pkg.Name)
// inside expr whose package is an internal import of the file.
func internalRefs(expr ast.Node, imports map[string]string) []string {
	var refs []string
	if expr == nil {
		return nil
	}
	ast.Inspect(expr, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		if p, ok := imports[id.Name]; ok && isInternalPath(p) {
			refs = append(refs, p+"."+sel.Sel.Name)
		}
		return true
	})
	return refs
}

// exportedFieldRefs walks the exported fields (and embedded types) of a
// struct or the methods of an interface. Unexported fields are the
// package's own business.
func exportedFieldRefs(fields *ast.FieldList, imports map[string]string, report func(what string, refs []string)) {
	if fields == nil {
		return
	}
	for _, fld := range fields.List {
		if len(fld.Names) == 0 { // embedded: its name is its type's
			if refs := internalRefs(fld.Type, imports); len(refs) > 0 && embeddedExported(fld.Type) {
				report("embedded", refs)
			}
			continue
		}
		for _, n := range fld.Names {
			if n.IsExported() {
				report(n.Name, internalRefs(fld.Type, imports))
			}
		}
	}
}

// embeddedExported reports whether an embedded field's name is exported.
func embeddedExported(t ast.Expr) bool {
	switch x := t.(type) {
	case *ast.StarExpr:
		return embeddedExported(x.X)
	case *ast.SelectorExpr:
		return x.Sel.IsExported()
	case *ast.Ident:
		return x.IsExported()
	case *ast.IndexExpr:
		return embeddedExported(x.X)
	case *ast.IndexListExpr:
		return embeddedExported(x.X)
	}
	return false
}

// receiverType is the name of a method's receiver type.
func receiverType(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	t := fd.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.ParenExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// apiViolations lists every exported declaration of pkg whose type
// expressions mention an internal package, one line each.
func apiViolations(pkg apiPackage) []string {
	var out []string
	names := make([]string, 0, len(pkg.files))
	for n := range pkg.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, fn := range names {
		f := pkg.files[fn]
		imports := fileImports(f)
		add := func(decl string, refs []string) {
			for _, r := range refs {
				out = append(out, fn+": "+decl+" uses "+r)
			}
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if recv := receiverType(d); recv != "" {
					if !ast.IsExported(recv) {
						continue
					}
					name = recv + "." + name
				}
				add("func "+name, internalRefs(d.Type, imports))
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						name := s.Name.Name
						if s.TypeParams != nil {
							add("type "+name+" (type parameters)", internalRefs(s.TypeParams, imports))
						}
						switch tt := s.Type.(type) {
						case *ast.StructType:
							exportedFieldRefs(tt.Fields, imports, func(what string, refs []string) {
								add("field "+name+"."+what, refs)
							})
						case *ast.InterfaceType:
							exportedFieldRefs(tt.Methods, imports, func(what string, refs []string) {
								add("method "+name+"."+what, refs)
							})
						default:
							add("type "+name, internalRefs(s.Type, imports))
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								add("var/const "+n.Name, internalRefs(s.Type, imports))
							}
						}
					}
				}
			}
		}
	}
	return out
}

// TestNoInternalTypesInPublicAPI holds the rule that a Go developer in
// another module can use every exported name of a public package: no
// exported function, method, struct field, interface method, type or type
// alias of a non-internal package mentions a type from an internal one.
func TestNoInternalTypesInPublicAPI(t *testing.T) {
	pkgs := publicPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("found no public package")
	}
	for _, pkg := range pkgs {
		for _, v := range apiViolations(pkg) {
			t.Errorf("%s: %s", pkg.importPath, v)
		}
	}
}

// TestAPIViolationsSeen makes sure the check itself sees what it should:
// aliased imports, fields, methods, aliases, interfaces and nested types,
// and leaves unexported names and public imports alone.
func TestAPIViolationsSeen(t *testing.T) {
	const src = `package p

import (
	"example.com/m/cloud/registry"
	ca "example.com/m/internal/fakeca"
	"example.com/m/internal/devicemodel"
)

type Options struct {
	CA      *ca.Authority
	Models  map[string][]*devicemodel.Device
	Reg     *registry.Registry
	private *ca.Authority
}

type hidden struct{ M *devicemodel.Device }

type Alias = devicemodel.State

type Iface interface {
	Update(fn func(tx *devicemodel.Tx) error) error
}

func Open(kt ca.KeyType) error { return nil }
func (o *Options) Model() devicemodel.Device { return devicemodel.Device{} }
func (h hidden) Model() *devicemodel.Device  { return nil }
func open(kt ca.KeyType) error               { return nil }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := apiViolations(apiPackage{importPath: "example.com/m/p", files: map[string]*ast.File{"p.go": f}})
	want := []string{
		"p.go: field Options.CA uses example.com/m/internal/fakeca.Authority",
		"p.go: field Options.Models uses example.com/m/internal/devicemodel.Device",
		"p.go: type Alias uses example.com/m/internal/devicemodel.State",
		"p.go: method Iface.Update uses example.com/m/internal/devicemodel.Tx",
		"p.go: func Open uses example.com/m/internal/fakeca.KeyType",
		"p.go: func Options.Model uses example.com/m/internal/devicemodel.Device",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
