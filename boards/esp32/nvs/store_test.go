package nvs

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
)

func TestStoreBasics(t *testing.T) {
	s, err := NewStore("certs", Options{Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Keys(); len(got) != 0 {
		t.Fatalf("keys %v", got)
	}
	cert := bytes.Repeat([]byte("C"), 5000) // more than a page
	steps := []struct {
		name string
		do   func() error
		keys []string
	}{
		{"set cert", func() error { return s.Set("client_cert", cert) }, []string{"client_cert"}},
		{"set key", func() error { return s.Set("client_key", []byte("k1")) }, []string{"client_cert", "client_key"}},
		{"overwrite key", func() error { return s.Set("client_key", []byte("k2")) }, []string{"client_cert", "client_key"}},
		{"delete missing", func() error { return s.Delete("nothing") }, []string{"client_cert", "client_key"}},
		{"delete cert", func() error { return s.Delete("client_cert") }, []string{"client_key"}},
		{"set empty", func() error { return s.Set("flag", nil) }, []string{"client_key", "flag"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			if got := s.Keys(); !slices.Equal(got, st.keys) {
				t.Fatalf("keys %v, want %v", got, st.keys)
			}
			// The image always holds what the store holds, as blobs.
			p, err := Read(s.Image())
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, it := range p.Items {
				if it.Namespace != "certs" || it.Type != TypeBlob {
					t.Fatalf("item %s/%s of type %s", it.Namespace, it.Key, it.Type)
				}
				keys = append(keys, it.Key)
				v, _ := s.Get(it.Key)
				if !bytes.Equal(v, it.Data) {
					t.Fatalf("%s differs in the image", it.Key)
				}
			}
			if !slices.Equal(keys, st.keys) {
				t.Fatalf("image keys %v", keys)
			}
		})
	}
	if v, ok := s.Get("client_key"); !ok || string(v) != "k2" {
		t.Fatalf("client_key = %q %v", v, ok)
	}
	if v, ok := s.Get("flag"); !ok || v == nil || len(v) != 0 {
		t.Fatalf("flag = %v %v", v, ok)
	}
	// Get returns a copy.
	v, _ := s.Get("client_key")
	v[0] = 'X'
	if v2, _ := s.Get("client_key"); string(v2) != "k2" {
		t.Fatal("Get does not copy")
	}
	if err := s.Set("0123456789abcdef", nil); !errors.Is(err, devicemodel.ErrBadKey) {
		t.Fatalf("long key: %v", err)
	}
	if s.Namespace() != "certs" {
		t.Fatal(s.Namespace())
	}
}

func TestStoreApplyAtomic(t *testing.T) {
	s, err := NewStore("certs", Options{Size: 0x3000}) // two data pages: ~8000 bytes
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Change{Key: "a", Value: []byte("0")}, Change{Key: "a", Value: []byte("1")}, Change{Key: "b", Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get("a"); !ok || string(v) != "1" {
		t.Errorf("a = %q, want the last write", v)
	}
	before := s.Image()

	// A bad key among the changes: nothing written.
	if err := s.Apply(Change{Key: "c", Value: []byte("3")}, Change{Key: "a", Delete: true}, Change{Key: "0123456789abcdef"}); !errors.Is(err, devicemodel.ErrBadKey) {
		t.Fatalf("err = %v, want ErrBadKey", err)
	}
	// Too big for the partition: nothing written.
	if err := s.Apply(Change{Key: "a", Delete: true}, Change{Key: "big", Value: make([]byte, 9000)}); !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	// Power cut: nothing written, then it disarms.
	s.ArmPowerCut("set:client_*")
	err = s.Apply(Change{Key: "a", Delete: true}, Change{Key: "client_key", Value: []byte("new")})
	if !errors.Is(err, devicemodel.ErrPowerCut) {
		t.Fatalf("err = %v, want ErrPowerCut", err)
	}
	sameBytes(t, "image after failed updates", s.Image(), before)
	if got := s.Keys(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("keys %v", got)
	}
	if err := s.Set("client_key", []byte("new")); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	s.ArmPowerCut("any")
	if err := s.Delete("a"); !errors.Is(err, devicemodel.ErrPowerCut) {
		t.Fatal(err)
	}
	s.ArmPowerCut("delete:a")
	s.ArmPowerCut("")
	if err := s.Delete("a"); err != nil {
		t.Fatal(err)
	}
}

func TestStoreLoad(t *testing.T) {
	// An image with the Golioth namespace and strings in "certs".
	img, err := Build([]Item{
		{Namespace: "example", Key: "g_psk_id", Type: TypeString, Data: []byte("dev@proj")},
		{Namespace: "example", Key: "boot", Type: TypeU8, Uint: 3},
		{Namespace: "certs", Key: "client_cert", Type: TypeString, Data: []byte("PEM")},
		{Namespace: "certs", Key: "count", Type: TypeU16, Uint: 0x0102},
		{Namespace: "empty"},
	}, Options{Size: 0x5000})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(img, "certs")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("client_cert"); string(v) != "PEM" {
		t.Fatalf("client_cert %q", v)
	}
	if v, _ := s.Get("count"); !bytes.Equal(v, []byte{2, 1}) {
		t.Fatalf("count %v", v)
	}
	if it, ok := s.Item("client_cert"); !ok || it.Type != TypeString {
		t.Fatalf("%+v", it)
	}
	// Unchanged, the rewrite is the same image.
	sameBytes(t, "image of an unchanged store", s.Image(), img)

	if err := s.Set("client_key", []byte("KEY")); err != nil {
		t.Fatal(err)
	}
	p, err := Read(s.Image())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 5 || len(p.Namespaces) != 3 || p.Size != 0x5000 {
		t.Fatalf("%d items %v", len(p.Items), p.Namespaces)
	}
	for _, c := range []struct {
		ns, key string
		typ     Type
	}{{"example", "g_psk_id", TypeString}, {"example", "boot", TypeU8}, {"certs", "client_cert", TypeString}, {"certs", "count", TypeU16}, {"certs", "client_key", TypeBlob}} {
		if it, ok := p.Get(c.ns, c.key); !ok || it.Type != c.typ {
			t.Errorf("%s/%s: %v %v", c.ns, c.key, ok, it.Type)
		}
	}

	// A namespace the image lacks is added.
	s2, err := Load(img, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Set("x", []byte{1}); err != nil {
		t.Fatal(err)
	}
	p, _ = Read(s2.Image())
	if p.Namespaces[3].Name != "fresh" || p.Namespaces[3].Index != 4 {
		t.Fatalf("%v", p.Namespaces)
	}

	// MarshalBinary / UnmarshalBinary.
	b, _ := s.MarshalBinary()
	s3, _ := NewStore("certs", Options{})
	if err := s3.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if v, _ := s3.Get("client_key"); string(v) != "KEY" {
		t.Fatal("UnmarshalBinary")
	}
	bad := bytes.Clone(b)
	bad[4] ^= 1
	if err := s3.UnmarshalBinary(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt image: %v", err)
	}
	if v, _ := s3.Get("client_key"); string(v) != "KEY" {
		t.Fatal("a failed UnmarshalBinary changed the store")
	}
	for _, tc := range []struct {
		img []byte
		ns  string
	}{{img, ""}, {img, "0123456789abcdef"}, {img[:0x2000], "certs"}, {bad, "certs"}} {
		if _, err := Load(tc.img, tc.ns); err == nil {
			t.Errorf("Load(%d bytes, %q) succeeded", len(tc.img), tc.ns)
		}
	}
}

func TestStoreConcurrent(t *testing.T) {
	s, err := NewStore("ns", Options{Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				k := "k" + itoa(g) + "_" + itoa(i%5)
				if err := s.Set(k, []byte{byte(i)}); err != nil {
					t.Error(err)
					return
				}
				s.Get(k)
				s.Keys()
				_ = s.Image()
			}
		}()
	}
	wg.Wait()
	if n := len(s.Keys()); n != 20 {
		t.Fatalf("%d keys", n)
	}
	if _, err := Read(s.Image()); err != nil {
		t.Fatal(err)
	}
}
