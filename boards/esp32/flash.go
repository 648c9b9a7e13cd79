package esp32

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/internal/devicemodel"
)

// DefaultFlashSize is the size of the NVS partition the emulator creates
// (the ESP-IDF default partition table's nvs partition).
const DefaultFlashSize = 0x6000

// flash is the board's NVS partition, kept as an image in a file that is
// rewritten atomically (temporary file, then rename) on every change, so
// a killed emulator loses nothing committed. Every write is one atomic NVS
// commit; an armed power cut makes the matching write fail with
// devicemodel.ErrPowerCut, changing nothing, and calls cut.
type flash struct {
	path string // "" keeps the image in memory only
	cut  func(point string)
	logf func(format string, args ...any)

	mu    sync.Mutex
	image []byte
	part  *nvs.Partition
	armed string
}

// openFlash loads the image in path, or creates a blank partition of size
// bytes there when the file does not exist. An unreadable image is erased,
// as ESP-IDF's nvs_flash_init callers do; erased reports it.
func openFlash(path string, size int, cut func(string), logf func(string, ...any)) (f *flash, erased error, err error) {
	f = &flash{path: path, cut: cut, logf: logf}
	if size == 0 {
		size = DefaultFlashSize
	}
	if err := nvs.CheckSize(size); err != nil {
		return nil, nil, fmt.Errorf("esp32: flash size: %w", err)
	}
	var img []byte
	if path != "" {
		img, err = os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("esp32: flash: %w", err)
		}
	}
	if img == nil {
		f.image, f.part = blankImage(size), &nvs.Partition{Size: size}
		if path != "" {
			if err := f.save(f.image); err != nil {
				return nil, nil, err
			}
		}
		return f, nil, nil
	}
	if err := nvs.CheckSize(len(img)); err != nil {
		return nil, nil, fmt.Errorf("esp32: flash image %s: %w", path, err)
	}
	p, rerr := nvs.Read(img)
	if rerr != nil {
		// nvs_flash_init fails; the firmware erases the partition.
		img = blankImage(len(img))
		if err := f.save(img); err != nil {
			return nil, nil, err
		}
		f.image, f.part = img, &nvs.Partition{Size: len(img)}
		return f, rerr, nil
	}
	f.image, f.part = img, p
	return f, nil, nil
}

func blankImage(size int) []byte { return bytes.Repeat([]byte{0xFF}, size) }

// save writes img to the file atomically: a killed emulator leaves the
// old image or the new one, never a mix.
func (f *flash) save(img []byte) error {
	if f.path == "" {
		return nil
	}
	dir, base := filepath.Split(f.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("esp32: flash: %w", err)
	}
	_, err = tmp.Write(img)
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("esp32: flash: %w", err)
	}
	return nil
}

// arm arms a power cut at the next write matching point (see
// nvs.Store.ArmPowerCut); "" disarms.
func (f *flash) arm(point string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = point
}

// item returns the value of key in namespace ns.
func (f *flash) item(ns, key string) (nvs.Item, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.part.Get(ns, key)
	it.Data = bytes.Clone(it.Data)
	return it, ok
}

// items returns every item, in image order.
func (f *flash) items() []nvs.Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]nvs.Item, len(f.part.Items))
	for i, it := range f.part.Items {
		it.Data = bytes.Clone(it.Data)
		out[i] = it
	}
	return out
}

// hasNamespace reports whether the image holds namespace ns.
func (f *flash) hasNamespace(ns string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.part.Namespaces {
		if n.Name == ns {
			return true
		}
	}
	return false
}

// size is the partition size.
func (f *flash) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.image)
}

// snapshot returns the image.
func (f *flash) snapshot() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.image)
}

// write runs one NVS commit on namespace ns: op gets a store over the
// current image with the armed cut, and its result is saved.
func (f *flash) write(ns string, op func(s *nvs.Store) error) error {
	f.mu.Lock()
	s, err := nvs.Load(f.image, ns)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	s.ArmPowerCut(f.armed)
	err = op(s)
	if errors.Is(err, devicemodel.ErrPowerCut) {
		point := f.armed
		f.armed = ""
		f.mu.Unlock()
		if f.logf != nil {
			f.logf("power cut at %s (armed %q): the write is lost", ns, point)
		}
		if f.cut != nil {
			f.cut(point)
		}
		return err
	}
	if err != nil {
		f.mu.Unlock()
		return err
	}
	defer f.mu.Unlock()
	img := s.Image()
	if bytes.Equal(img, f.image) {
		return nil
	}
	p, err := nvs.Read(img)
	if err != nil {
		return fmt.Errorf("esp32: flash: rewritten image does not read back: %w", err)
	}
	if err := f.save(img); err != nil {
		return err
	}
	f.image, f.part = img, p
	return nil
}

// nsStore is a devicemodel.Store over one namespace of the flash: what the
// firmware's credential logic reads and writes.
type nsStore struct {
	f  *flash
	ns string
}

var _ devicemodel.Store = nsStore{}

func (s nsStore) Get(key string) ([]byte, bool) {
	it, ok := s.f.item(s.ns, key)
	if !ok {
		return nil, false
	}
	return it.Bytes(), true
}

func (s nsStore) Set(key string, val []byte) error {
	return s.Update(func(tx *devicemodel.Tx) error { return tx.Set(key, val) })
}

func (s nsStore) Delete(key string) error {
	return s.Update(func(tx *devicemodel.Tx) error { return tx.Delete(key) })
}

func (s nsStore) Keys() []string {
	keys := map[string]bool{}
	for _, it := range s.f.items() {
		if it.Namespace == s.ns {
			keys[it.Key] = true
		}
	}
	return slices.Sorted(maps.Keys(keys))
}

func (s nsStore) Update(fn func(tx *devicemodel.Tx) error) error {
	// Run fn first, reading the flash as it is, then commit its writes
	// in one go; a transaction without writes touches nothing.
	tx := devicemodel.NewTx(s.Get)
	if err := fn(tx); err != nil {
		return err
	}
	ops := tx.Ops()
	if len(ops) == 0 {
		return nil
	}
	changes := make([]nvs.Change, len(ops))
	for i, op := range ops {
		changes[i] = nvs.Change{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return s.f.write(s.ns, func(st *nvs.Store) error { return st.Apply(changes...) })
}
