package registry

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPutTemplate(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))

	tests := []struct {
		name string
		in   Template
		want Template // Created: when the name was first stored
		err  error
	}{
		{"defaults", Template{Name: "fleet", Project: "p"},
			Template{Name: "fleet", Project: "p", ThingNameParam: "SerialNumber", Required: []string{"SerialNumber"}}, nil},
		{"replace", Template{Name: "fleet", Project: "p", ThingNameParam: "Mac", ThingPrefix: "esp-", Required: []string{"Model", "Mac", "Model"}, Activate: true},
			Template{Name: "fleet", Project: "p", ThingNameParam: "Mac", ThingPrefix: "esp-", Required: []string{"Mac", "Model"}, Activate: true}, nil},
		{"AWS-style parameter", Template{Name: "t2", Project: "q", Required: []string{"AWS::IoT::Certificate::Id"}},
			Template{Name: "t2", Project: "q", ThingNameParam: "SerialNumber", Required: []string{"SerialNumber", "AWS::IoT::Certificate::Id"}}, nil},
		{"36 characters", Template{Name: strings.Repeat("n", 36), Project: "p"},
			Template{Name: strings.Repeat("n", 36), Project: "p", ThingNameParam: "SerialNumber", Required: []string{"SerialNumber"}}, nil},
		{"name of another project", Template{Name: "fleet", Project: "q"}, Template{}, ErrExists},
		{"37 characters", Template{Name: strings.Repeat("n", 37), Project: "p"}, Template{}, ErrInvalid},
		{"empty name", Template{Project: "p"}, Template{}, ErrInvalid},
		{"slash in name", Template{Name: "a/b", Project: "p"}, Template{}, ErrInvalid},
		{"bad parameter", Template{Name: "x", Project: "p", Required: []string{"a b"}}, Template{}, ErrInvalid},
		{"empty parameter", Template{Name: "x", Project: "p", Required: []string{""}}, Template{}, ErrInvalid},
		{"bad prefix", Template{Name: "x", Project: "p", ThingPrefix: "a/"}, Template{}, ErrInvalid},
		{"prefix too long", Template{Name: "x", Project: "p", ThingPrefix: strings.Repeat("a", 64)}, Template{}, ErrInvalid},
		{"no project", Template{Name: "x", Project: "nope"}, Template{}, ErrNotFound},
		{"bad project", Template{Name: "x", Project: ""}, Template{}, ErrInvalid},
	}
	created := map[string]time.Time{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := created[tt.in.Name]; !ok {
				created[tt.in.Name] = c.Now()
			}
			got, err := r.PutTemplate(ctx, tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("PutTemplate = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			tt.want.Created = created[tt.in.Name]
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PutTemplate =\n%+v\nwant\n%+v", got, tt.want)
			}
			if back := must[Template](t)(r.Template(ctx, tt.in.Name)); !reflect.DeepEqual(back, got) {
				t.Errorf("Template = %+v, want %+v", back, got)
			}
		})
		c.Advance(time.Second)
	}
	if _, err := r.Template(ctx, "none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Template(none) = %v", err)
	}
	if _, err := r.Template(ctx, "a b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Template(a b) = %v", err)
	}
	names := func(ts []Template) (s []string) {
		for _, t := range ts {
			s = append(s, t.Project+"/"+t.Name)
		}
		return s
	}
	if got := names(must[[]Template](t)(r.Templates(ctx, "p"))); !reflect.DeepEqual(got, []string{"p/fleet", "p/" + strings.Repeat("n", 36)}) {
		t.Errorf("Templates(p) = %v", got)
	}
	if got := names(must[[]Template](t)(r.Templates(ctx, ""))); len(got) != 3 || got[2] != "q/t2" {
		t.Errorf("Templates() = %v", got)
	}
	if _, err := r.Templates(ctx, "p q"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Templates(p q) = %v", err)
	}
}

func TestTemplateThingName(t *testing.T) {
	tmpl := Template{Name: "t", ThingPrefix: "esp-", ThingNameParam: "Mac", Required: []string{"Model"}}
	tests := []struct {
		name   string
		tmpl   Template
		params map[string]string
		want   string
		err    error
	}{
		{"prefix", tmpl, map[string]string{"Mac": "aabb", "Model": "c3"}, "esp-aabb", nil},
		{"missing required", tmpl, map[string]string{"Mac": "aabb"}, "", ErrInvalid},
		{"missing thing name", tmpl, map[string]string{"Model": "c3"}, "", ErrInvalid},
		{"bad name", tmpl, map[string]string{"Mac": "a/b", "Model": "c3"}, "", ErrInvalid},
		{"empty value, no prefix", Template{Name: "t"}, map[string]string{"SerialNumber": ""}, "", ErrInvalid},
		{"default parameter", Template{Name: "t"}, map[string]string{"SerialNumber": "sn-1", "extra": "x"}, "sn-1", nil},
		{"nil parameters", Template{Name: "t"}, nil, "", ErrInvalid},
		{"too long", Template{Name: "t", ThingPrefix: "p"}, map[string]string{"SerialNumber": strings.Repeat("x", 64)}, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.tmpl.ThingName(tt.params)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("ThingName = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}
