package nvs

import (
	"bytes"
	"maps"

	"github.com/credloop/credloop/internal/devicemodel"
)

// SetItem stores a typed value under it.Key in the store's namespace (what
// nvs_set_u8, nvs_set_str, nvs_set_blob, … and nvs_commit do), replacing
// any earlier value of that key whatever its type. it.Namespace is ignored.
// It is one write at point "set:<key>" (see ArmPowerCut): an armed cut
// that matches, an invalid item or a partition too small for the result
// changes nothing.
func (s *Store) SetItem(it Item) error {
	it.Namespace = s.ns
	it.Data = bytes.Clone(it.Data)
	if it.Type == TypeBlob && it.Data == nil {
		it.Data = []byte{}
	}
	if err := it.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.cut.CheckOps([]devicemodel.Op{{Key: it.Key}}); err != nil {
		return err
	}
	m := maps.Clone(s.m)
	m[it.Key] = it
	img, err := s.build(m)
	if err != nil {
		return err
	}
	s.m, s.image = m, img
	return nil
}
