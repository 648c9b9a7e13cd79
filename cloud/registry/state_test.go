package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestState(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	seed(t, r)
	big := []byte(`"` + strings.Repeat("x", MaxStateValue-2) + `"`)
	// Steps run in order against d1's state; get checks the whole
	// document after each step.
	steps := []struct {
		name    string
		op      string // put, get, del
		device  string
		path    string
		value   string
		want    string // get: the value; put/del: the whole document after
		wantErr error
	}{
		{name: "get before any", op: "get", device: "d1", path: "", wantErr: ErrNotFound},
		{name: "put leaf", op: "put", device: "d1", path: "counter", value: `42`, want: `{"counter":42}`},
		{name: "put nested creates objects", op: "put", device: "d1", path: "/env/temp/", value: `21.50`, want: `{"counter":42,"env":{"temp":21.50}}`},
		{name: "put sibling", op: "put", device: "d1", path: "env/hum", value: ` {"v": 40, "u": "%<&>"} `, want: `{"counter":42,"env":{"hum":{"u":"%<&>","v":40},"temp":21.50}}`},
		{name: "get leaf keeps number text", op: "get", device: "d1", path: "env/temp", want: `21.50`},
		{name: "get subtree", op: "get", device: "d1", path: "env//hum", want: `{"u":"%<&>","v":40}`},
		{name: "get missing", op: "get", device: "d1", path: "env/pressure", wantErr: ErrNotFound},
		{name: "get through a leaf", op: "get", device: "d1", path: "counter/x", wantErr: ErrNotFound},
		{name: "put replaces leaf with object", op: "put", device: "d1", path: "counter/x", value: `true`, want: `{"counter":{"x":true},"env":{"hum":{"u":"%<&>","v":40},"temp":21.50}}`},
		{name: "delete subtree", op: "del", device: "d1", path: "env", want: `{"counter":{"x":true}}`},
		{name: "delete missing", op: "del", device: "d1", path: "nope/deeper", want: `{"counter":{"x":true}}`},
		{name: "put root object", op: "put", device: "d1", path: "", value: `{"a":[1,2,null]}`, want: `{"a":[1,2,null]}`},
		{name: "put root non-object", op: "put", device: "d1", path: "/", value: `1`, wantErr: ErrInvalid},
		{name: "put invalid JSON", op: "put", device: "d1", path: "a", value: `{"a":`, wantErr: ErrInvalid},
		{name: "put two values", op: "put", device: "d1", path: "a", value: `1 2`, wantErr: ErrInvalid},
		{name: "put empty", op: "put", device: "d1", path: "a", value: ``, wantErr: ErrInvalid},
		{name: "put too big", op: "put", device: "d1", path: "a", value: string(big) + " ", wantErr: ErrInvalid},
		{name: "put max size", op: "put", device: "d1", path: "a", value: string(big), want: `{"a":` + string(big) + `}`},
		{name: "unknown device", op: "put", device: "d9", path: "a", value: `1`, wantErr: ErrNotFound},
		{name: "unknown device get", op: "get", device: "d9", path: "a", wantErr: ErrNotFound},
		{name: "bad path", op: "put", device: "d1", path: "a\x00b", value: `1`, wantErr: ErrInvalid},
		{name: "long path", op: "get", device: "d1", path: strings.Repeat("a", MaxStatePath+1), wantErr: ErrInvalid},
		{name: "bad device id", op: "get", device: "d 1", path: "a", wantErr: ErrInvalid},
		{name: "delete all", op: "del", device: "d1", path: "", wantErr: nil},
		{name: "gone", op: "get", device: "d1", path: "", wantErr: ErrNotFound},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			var (
				got []byte
				err error
			)
			switch tt.op {
			case "put":
				err = r.PutState(ctx, "p", tt.device, tt.path, []byte(tt.value))
			case "get":
				got, err = r.GetState(ctx, "p", tt.device, tt.path)
			case "del":
				err = r.DeleteState(ctx, "p", tt.device, tt.path)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s %q = %v, want %v", tt.op, tt.path, err, tt.wantErr)
			}
			if err != nil || tt.want == "" {
				return
			}
			if tt.op != "get" {
				got = must[[]byte](t)(r.GetState(ctx, "p", tt.device, ""))
			}
			if string(got) != tt.want {
				t.Errorf("got %.200s, want %.200s", got, tt.want)
			}
		})
	}
	// d2's state is its own.
	if _, err := r.GetState(ctx, "p", "d2", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("d2 state = %v", err)
	}
}

func TestStateDocumentLimit(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	seed(t, r)
	v := []byte(`"` + strings.Repeat("x", MaxStateValue-10) + `"`)
	var err error
	for i := 0; i < MaxStateDoc/MaxStateValue+2 && err == nil; i++ {
		err = r.PutState(ctx, "p", "d1", string(rune('a'+i)), v)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("filling the document: %v, want ErrInvalid", err)
	}
	doc := must[[]byte](t)(r.GetState(ctx, "p", "d1", ""))
	if len(doc) > MaxStateDoc {
		t.Errorf("document is %d bytes", len(doc))
	}
}

func FuzzStatePath(f *testing.F) {
	for _, s := range []string{"", "/", "a", "a/b", "/a//b/", "a\x00", "é/ü", "\xff", strings.Repeat("a/", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		segs, err := statePath(path)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, s := range segs {
			if s == "" || strings.Contains(s, "/") {
				t.Fatalf("statePath(%q) = %q", path, segs)
			}
		}
		if got, want := strings.Join(segs, "/"), strings.Join(strings.FieldsFunc(path, func(r rune) bool { return r == '/' }), "/"); got != want {
			t.Fatalf("statePath(%q) = %q", path, segs)
		}
	})
}
