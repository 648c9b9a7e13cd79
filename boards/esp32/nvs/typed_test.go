package nvs

import (
	"bytes"
	"errors"
	"testing"

	"github.com/credloop/credloop/internal/devicemodel"
)

func TestStoreSetItem(t *testing.T) {
	tests := []struct {
		name    string
		it      Item
		wantErr error
		want    []byte // Get of the key afterwards
	}{
		{"u8", Item{Key: "boots", Type: TypeU8, Uint: 7}, nil, []byte{7}},
		{"i16 negative", Item{Key: "temp", Type: TypeI16, Int: -2}, nil, []byte{0xfe, 0xff}},
		{"u64", Item{Key: "big", Type: TypeU64, Uint: 1 << 40}, nil, []byte{0, 0, 0, 0, 0, 1, 0, 0}},
		{"string", Item{Key: "g_psk_id", Type: TypeString, Data: []byte("dev1@acme")}, nil, []byte("dev1@acme")},
		{"blob", Item{Key: "client_cert", Type: TypeBlob, Data: bytes.Repeat([]byte{0xA5}, 4500)}, nil, bytes.Repeat([]byte{0xA5}, 4500)},
		{"empty blob", Item{Key: "flag", Type: TypeBlob}, nil, []byte{}},
		{"namespace ignored", Item{Namespace: "other", Key: "k", Type: TypeU8, Uint: 1}, nil, []byte{1}},
		{"u8 out of range", Item{Key: "x", Type: TypeU8, Uint: 256}, ErrBadValue, nil},
		{"key too long", Item{Key: "0123456789abcdef", Type: TypeU8}, ErrBadKey, nil},
		{"not a value type", Item{Key: "x", Type: TypeBlobIndex}, ErrBadValue, nil},
		{"too big for the partition", Item{Key: "huge", Type: TypeBlob, Data: make([]byte, 3*PageSize)}, ErrFull, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore("ns", Options{Size: 0x4000})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Set("keep", []byte("old")); err != nil {
				t.Fatal(err)
			}
			before := s.Image()
			err = s.SetItem(tt.it)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SetItem = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !bytes.Equal(s.Image(), before) {
					t.Fatal("a failed SetItem changed the image")
				}
				return
			}
			got, ok := s.Get(tt.it.Key)
			if !ok || !bytes.Equal(got, tt.want) {
				t.Fatalf("Get = %x %v, want %x", got, ok, tt.want)
			}
			// The image holds the item with its type, in the store's namespace.
			p, err := Read(s.Image())
			if err != nil {
				t.Fatal(err)
			}
			it, ok := p.Get("ns", tt.it.Key)
			if !ok || it.Type != tt.it.Type || !bytes.Equal(it.Bytes(), tt.want) {
				t.Fatalf("image item = %+v %v", it, ok)
			}
			if v, _ := p.Get("ns", "keep"); string(v.Data) != "old" {
				t.Fatal("other key lost")
			}
		})
	}
}

func TestStoreSetItemReplacesType(t *testing.T) {
	s, err := NewStore("ns", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("v", []byte("blob")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetItem(Item{Key: "v", Type: TypeU32, Uint: 9}); err != nil {
		t.Fatal(err)
	}
	it, ok := s.Item("v")
	if !ok || it.Type != TypeU32 || it.Uint != 9 {
		t.Fatalf("item = %+v", it)
	}
}

func TestStoreSetItemPowerCut(t *testing.T) {
	tests := []struct {
		name  string
		point string
		cut   bool
	}{
		{"exact point", "set:client_cert", true},
		{"prefix", "set:client*", true},
		{"any", "any", true},
		{"other key", "set:client_key", false},
		{"delete point", "delete:client_cert", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore("certs", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetItem(Item{Key: "client_cert", Type: TypeString, Data: []byte("old")}); err != nil {
				t.Fatal(err)
			}
			s.ArmPowerCut(tt.point)
			err = s.SetItem(Item{Key: "client_cert", Type: TypeString, Data: []byte("new")})
			if got := errors.Is(err, devicemodel.ErrPowerCut); got != tt.cut {
				t.Fatalf("SetItem = %v, want cut %v", err, tt.cut)
			}
			want := "new"
			if tt.cut {
				want = "old"
				// The cut disarmed: the next write goes through.
				if err := s.SetItem(Item{Key: "client_cert", Type: TypeString, Data: []byte("new")}); err != nil {
					t.Fatal(err)
				}
				if v, _ := s.Get("client_cert"); string(v) != "new" {
					t.Fatalf("after the cut: %q", v)
				}
				return
			}
			if v, _ := s.Get("client_cert"); string(v) != want {
				t.Fatalf("value %q, want %q", v, want)
			}
		})
	}
}
