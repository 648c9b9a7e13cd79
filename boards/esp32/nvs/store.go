package nvs

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/credloop/credloop/internal/devicemodel"
)

// Store is a key-value store over one namespace of an NVS image, for the
// board emulator: what the firmware would read with nvs_get_blob (or
// nvs_get_str, nvs_get_u8, …) from that namespace. Values it sets are
// blobs. The other namespaces of the image are kept as they are.
//
// Every write rebuilds the image (compacted, laid out as Writer lays it
// out) and fails with ErrFull, changing nothing, when it would not fit.
// Store is safe for concurrent use; Apply is atomic (all or nothing) but
// not isolated from concurrent writers.
type Store struct {
	mu     sync.Mutex
	size   int
	ns     string
	order  []string             // namespaces in index order, ns included
	others []Item               // items of the other namespaces, in image order
	m      map[string]Item      // items of ns
	image  []byte               // the image of the current contents
	cut    devicemodel.PowerCut // see ArmPowerCut
}

// NewStore returns an empty store over namespace ns of a blank image of
// opts.Size bytes.
func NewStore(ns string, opts Options) (*Store, error) {
	size := sizeOrMin(opts.Size)
	if err := CheckSize(size); err != nil {
		return nil, err
	}
	if err := checkName("namespace", ns); err != nil {
		return nil, err
	}
	s := &Store{size: size, ns: ns, order: []string{ns}, m: map[string]Item{}}
	img, err := s.build(s.m)
	if err != nil {
		return nil, err
	}
	s.image = img
	return s, nil
}

// Load returns a store over namespace ns of image (see Read), which keeps
// its size. The namespace is added when the image lacks it. The image is
// rewritten at once (see Store), so Load fails when its contents would not
// fit once laid out by Writer, or hold a key Writer refuses (not 1..15
// bytes of printable ASCII).
func Load(image []byte, ns string) (*Store, error) {
	if err := checkName("namespace", ns); err != nil {
		return nil, err
	}
	s := &Store{ns: ns}
	if err := s.load(image); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) load(image []byte) error {
	if err := CheckSize(len(image)); err != nil {
		return err
	}
	p, err := Read(image)
	if err != nil {
		return err
	}
	var order []string
	for _, n := range p.Namespaces {
		order = append(order, n.Name)
	}
	if !slices.Contains(order, s.ns) {
		order = append(order, s.ns)
	}
	m := map[string]Item{}
	var others []Item
	for _, it := range p.Items {
		if it.Namespace == s.ns {
			m[it.Key] = it
		} else {
			others = append(others, it)
		}
	}
	s.size, s.order, s.others = len(image), order, others
	img, err := s.build(m)
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	s.m, s.image = m, img
	s.cut.Disarm()
	return nil
}

// build writes an image of the namespaces in order, each namespace entry
// followed by its items: the other namespaces' in image order, this one's
// (m) sorted by key.
func (s *Store) build(m map[string]Item) ([]byte, error) {
	w, err := NewWriter(Options{Size: s.size})
	if err != nil {
		return nil, err
	}
	for _, ns := range s.order {
		if err := w.Namespace(ns); err != nil {
			return nil, err
		}
		if ns == s.ns {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				if err := w.Add(m[k]); err != nil {
					return nil, err
				}
			}
			continue
		}
		for _, it := range s.others {
			if it.Namespace == ns {
				if err := w.Add(it); err != nil {
					return nil, err
				}
			}
		}
	}
	return w.Bytes(), nil
}

// Namespace is the store's namespace.
func (s *Store) Namespace() string { return s.ns }

// Get returns the value of a blob or string (without
// its NUL), or an integer little-endian at its width.
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.m[key]
	if !ok {
		return nil, false
	}
	return it.Bytes(), true
}

// Item returns the typed item of key.
func (s *Store) Item(key string) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.m[key]
	it.Data = bytes.Clone(it.Data)
	return it, ok
}

// Set stores val under key, as a blob.
func (s *Store) Set(key string, val []byte) error {
	return s.Apply(Change{Key: key, Value: val})
}

// Delete removes key.
func (s *Store) Delete(key string) error {
	return s.Apply(Change{Key: key, Delete: true})
}

// Keys lists the keys of the store's namespace, sorted.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

// Change is one write of Apply: Value (stored as a blob) under Key or,
// with Delete, the removal of Key.
type Change struct {
	Key    string
	Value  []byte
	Delete bool
}

// Apply makes changes, in order, all or nothing: a key that is not 1..15
// bytes of printable ASCII, a value too large, an armed power cut that
// matches one of them (see ArmPowerCut), or a partition too small for the
// result, changes nothing.
func (s *Store) Apply(changes ...Change) error {
	tx := devicemodel.NewTx(s.Get)
	for _, c := range changes {
		var err error
		if c.Delete {
			err = tx.Delete(c.Key)
		} else {
			err = tx.Set(c.Key, c.Value)
		}
		if err != nil {
			return err
		}
	}
	ops := tx.Ops()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.cut.CheckOps(ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	m := maps.Clone(s.m)
	for _, op := range ops {
		if op.Delete {
			delete(m, op.Key)
		} else {
			m[op.Key] = Item{Namespace: s.ns, Key: op.Key, Type: TypeBlob, Data: op.Value}
		}
	}
	img, err := s.build(m)
	if err != nil {
		return err
	}
	s.m, s.image = m, img
	return nil
}

// ArmPowerCut makes the next write whose point matches fail with
// devicemodel.ErrPowerCut without changing anything; the cut then
// disarms. Points are as for devicemodel.MemStore.ArmPowerCut:
// "set:<key>", "delete:<key>", a prefix ending in "*", or "any"; an empty
// point disarms.
func (s *Store) ArmPowerCut(point string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut.Arm(point)
}

// Image returns the NVS image of the current contents, as large as the
// partition.
func (s *Store) Image() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.image)
}

// MarshalBinary returns Image.
func (s *Store) MarshalBinary() ([]byte, error) { return s.Image(), nil }

// UnmarshalBinary replaces the contents with those of an NVS image (see
// Load), keeping the namespace. It disarms any power cut. On error the
// store is unchanged.
func (s *Store) UnmarshalBinary(image []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Store{ns: s.ns}
	if err := t.load(image); err != nil {
		return err
	}
	s.size, s.order, s.others, s.m, s.image = t.size, t.order, t.others, t.m, t.image
	s.cut.Disarm()
	return nil
}
