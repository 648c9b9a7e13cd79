package nrf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Where the firmware keeps things (Golioth's forum guide and
// certificate_provisioning sample and its settings).
const (
	MountPoint     = "/lfs1"
	CredentialsDir = "/lfs1/credentials"
	CertPath       = "/lfs1/credentials/crt.der"
	KeyPath        = "/lfs1/credentials/key.der"
	SettingPSKID   = "golioth/psk-id"
	SettingPSK     = "golioth/psk"
)

// Flash limits.
const (
	// FSCapacity is how many file bytes the LittleFS partition holds
	// (8 blocks of 4 KiB, as on the nRF52840 DK sample).
	FSCapacity = 32 << 10
	// MaxPathLen is the longest file or directory name (LFS_NAME_MAX).
	MaxPathLen = 255
	// MaxSettingNameLen is the longest settings name.
	MaxSettingNameLen = 255
	maxImageEntries   = 4096
	maxImageSize      = 4 << 20
)

// Flash errors.
var (
	ErrFlashCorrupt = errors.New("nrf: corrupt flash image")
	ErrNoSpace      = errors.New("nrf: no space left on the filesystem")
)

// Flash image format (integers big-endian):
//
//	magic   "CLNRFLS" and version 1 (8 bytes)
//	count   uint32
//	count × { kind 'd' | 'f' | 's'  nameLen uint16  name  valLen uint32  value }
//	crc     uint32, CRC-32 (IEEE) of everything before it
//
// Entries are sorted by kind, then name: directories (without the mount
// point), files, settings. A directory comes before what it holds.
const imageMagic = "CLNRFLS\x01"

const (
	kindDir     = 'd'
	kindFile    = 'f'
	kindSetting = 's'
)

// kindRank orders entry kinds in an image; -1 for an unknown kind.
func kindRank(k byte) int {
	return strings.IndexByte(string([]byte{kindDir, kindFile, kindSetting}), k)
}

// flashImage is the content of the board's flash: the LittleFS files under
// /lfs1 and the settings partition.
type flashImage struct {
	dirs     map[string]bool
	files    map[string][]byte
	settings map[string][]byte
}

func newImage() flashImage {
	return flashImage{dirs: map[string]bool{}, files: map[string][]byte{}, settings: map[string][]byte{}}
}

func (im flashImage) used() int {
	n := 0
	for _, b := range im.files {
		n += len(b)
	}
	return n
}

func (im flashImage) marshal() []byte {
	b := []byte(imageMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(len(im.dirs)+len(im.files)+len(im.settings)))
	put := func(kind byte, name string, val []byte) {
		b = append(b, kind)
		b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(val)))
		b = append(b, val...)
	}
	for _, d := range slices.Sorted(maps.Keys(im.dirs)) {
		put(kindDir, d, nil)
	}
	for _, f := range slices.Sorted(maps.Keys(im.files)) {
		put(kindFile, f, im.files[f])
	}
	for _, s := range slices.Sorted(maps.Keys(im.settings)) {
		put(kindSetting, s, im.settings[s])
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// parseImage decodes a flash image. Anything malformed, inconsistent or
// over a limit is ErrFlashCorrupt.
func parseImage(data []byte) (flashImage, error) {
	bad := func(format string, args ...any) (flashImage, error) {
		return flashImage{}, fmt.Errorf("%w: %s", ErrFlashCorrupt, fmt.Sprintf(format, args...))
	}
	if len(data) > maxImageSize {
		return bad("%d bytes is too large", len(data))
	}
	if len(data) < len(imageMagic)+8 {
		return bad("%d bytes is too short", len(data))
	}
	if string(data[:len(imageMagic)]) != imageMagic {
		return bad("bad magic")
	}
	body := data[:len(data)-4]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return bad("checksum mismatch")
	}
	rest := body[len(imageMagic):]
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if count > maxImageEntries {
		return bad("%d entries", count)
	}
	im := newImage()
	var prevKind byte
	prevName := ""
	used := 0
	for i := range int(count) {
		if len(rest) < 3 {
			return bad("entry %d truncated", i)
		}
		kind := rest[0]
		nl := int(binary.BigEndian.Uint16(rest[1:3]))
		rest = rest[3:]
		if len(rest) < nl+4 {
			return bad("entry %d truncated", i)
		}
		name := string(rest[:nl])
		vl := binary.BigEndian.Uint32(rest[nl:])
		rest = rest[nl+4:]
		if uint64(vl) > uint64(len(rest)) {
			return bad("entry %d: value of %d bytes truncated", i, vl)
		}
		val := bytes.Clone(rest[:vl])
		rest = rest[vl:]
		ko := kindRank(kind)
		if ko < 0 {
			return bad("entry %d: unknown kind %#x", i, kind)
		}
		if i > 0 && (ko < kindRank(prevKind) || ko == kindRank(prevKind) && name <= prevName) {
			return bad("entry %d: out of order", i)
		}
		prevKind, prevName = kind, name
		switch kind {
		case kindDir:
			if checkPath(name) != nil || !strings.HasPrefix(name, MountPoint+"/") || vl != 0 {
				return bad("entry %d: bad directory", i)
			}
			if !im.isDir(path.Dir(name)) {
				return bad("entry %d: directory outside a directory", i)
			}
			im.dirs[name] = true
		case kindFile:
			if checkPath(name) != nil || !strings.HasPrefix(name, MountPoint+"/") || !im.isDir(path.Dir(name)) {
				return bad("entry %d: bad file name", i)
			}
			used += len(val)
			if used > FSCapacity {
				return bad("files exceed the %d-byte filesystem", FSCapacity)
			}
			im.files[name] = val
		case kindSetting:
			if checkSettingName(name) != nil || len(val) > devicemodel.MaxValueLen {
				return bad("entry %d: bad setting", i)
			}
			im.settings[name] = val
		}
	}
	if len(rest) != 0 {
		return bad("%d trailing bytes", len(rest))
	}
	return im, nil
}

func (im flashImage) isDir(name string) bool {
	return name == "/" || name == MountPoint || im.dirs[name]
}

// checkPath accepts absolute, clean slash-separated names.
func checkPath(name string) error {
	if name == "" || name[0] != '/' || len(name) > MaxPathLen || path.Clean(name) != name ||
		strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("nrf: file name %q: %w", name, fs.ErrInvalid)
	}
	return nil
}

func checkSettingName(name string) error {
	if name == "" || len(name) > MaxSettingNameLen ||
		strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '=' }) {
		return fmt.Errorf("nrf: setting name %q: %w", name, fs.ErrInvalid)
	}
	return nil
}

// flash is the board's flash: a LittleFS-like filesystem mounted at /lfs1
// (an smp.FS) and the settings partition (a devicemodel.Store), kept in
// one file that is replaced atomically (temp file + rename) on every
// change. Writes can be armed to lose power. It is safe for concurrent use.
type flash struct {
	path string // "" keeps the flash in memory

	mu  sync.Mutex
	im  flashImage
	cut devicemodel.PowerCut
	off bool // power was cut; writes fail until powerOn
	// onCut is called (without mu held) when an armed write loses power.
	onCut func(point string)
}

// openFlash loads the flash kept in path, or formats a new one when the
// file is missing or its content is corrupt (a corrupt file is kept next
// to it with the suffix ".corrupt"). formatted says why it was formatted,
// if it was.
func openFlash(p string) (f *flash, formatted error, err error) {
	f = &flash{path: p, im: newImage()}
	if p == "" {
		return f, errors.New("blank flash"), nil
	}
	data, err := readLimited(p, maxImageSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		formatted = errors.New("blank flash")
	case err != nil:
		return nil, nil, fmt.Errorf("nrf: flash: %w", err)
	default:
		im, perr := parseImage(data)
		if perr == nil {
			f.im = im
			return f, nil, nil
		}
		formatted = perr
		if werr := os.WriteFile(p+".corrupt", data, 0o600); werr != nil {
			return nil, nil, fmt.Errorf("nrf: flash: keeping corrupt image: %w", werr)
		}
	}
	if err := f.persist(f.im); err != nil {
		return nil, nil, err
	}
	return f, formatted, nil
}

func readLimited(p string, limit int64) ([]byte, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	return data, nil
}

// persist writes im to the flash file atomically.
func (f *flash) persist(im flashImage) error {
	if f.path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("nrf: flash: %w", err)
	}
	_, err = tmp.Write(im.marshal())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("nrf: flash: %w", err)
	}
	return nil
}

// arm makes the next write matching point lose power.
func (f *flash) arm(point string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut.Arm(point)
}

// powerOn lets writes through again after a cut.
func (f *flash) powerOn() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.off = false
}

// commit applies change to a copy of the image and persists it, unless
// one of points is armed (then power is lost and nothing changes). change
// returns the error of the operation itself.
func (f *flash) commit(points []string, change func(im *flashImage) error) error {
	f.mu.Lock()
	if f.off {
		f.mu.Unlock()
		return fmt.Errorf("%s: %w", strings.Join(points, ","), devicemodel.ErrPowerCut)
	}
	if p, err := f.cut.Check(points...); err != nil {
		f.off = true
		cut := f.onCut
		f.mu.Unlock()
		if cut != nil {
			cut(p)
		}
		return err
	}
	defer f.mu.Unlock()
	next := flashImage{dirs: maps.Clone(f.im.dirs), files: maps.Clone(f.im.files), settings: maps.Clone(f.im.settings)}
	if err := change(&next); err != nil {
		return err
	}
	if err := f.persist(next); err != nil {
		return err
	}
	f.im = next
	return nil
}

// --- filesystem (smp.FS and the shell's fs commands) ---

// Mkdir creates a directory inside the mount point.
func (f *flash) Mkdir(name string) error {
	if err := checkPath(name); err != nil {
		return err
	}
	return f.commit([]string{"mkdir:" + name}, func(im *flashImage) error {
		switch {
		case im.isDir(name) || im.files[name] != nil:
			return fmt.Errorf("nrf: mkdir %s: %w", name, fs.ErrExist)
		case path.Dir(name) == "/" || !im.isDir(path.Dir(name)):
			return fmt.Errorf("nrf: mkdir %s: %w", name, fs.ErrNotExist)
		}
		im.dirs[name] = true
		return nil
	})
}

// Remove deletes a file or an empty directory.
func (f *flash) Remove(name string) error {
	if err := checkPath(name); err != nil {
		return err
	}
	return f.commit([]string{"rm:" + name}, func(im *flashImage) error {
		if _, ok := im.files[name]; ok {
			delete(im.files, name)
			return nil
		}
		if name == "/" || name == MountPoint {
			return fmt.Errorf("nrf: remove %s: mount point: %w", name, fs.ErrInvalid)
		}
		if !im.dirs[name] {
			return fmt.Errorf("nrf: remove %s: %w", name, fs.ErrNotExist)
		}
		for p := range im.files {
			if path.Dir(p) == name {
				return fmt.Errorf("nrf: remove %s: %w", name, smp.ErrNotEmpty)
			}
		}
		for p := range im.dirs {
			if path.Dir(p) == name {
				return fmt.Errorf("nrf: remove %s: %w", name, smp.ErrNotEmpty)
			}
		}
		delete(im.dirs, name)
		return nil
	})
}

// ReadDir lists a directory, sorted; directories end in "/".
func (f *flash) ReadDir(name string) ([]string, error) {
	if err := checkPath(name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "/" {
		return []string{strings.TrimPrefix(MountPoint, "/") + "/"}, nil
	}
	if !f.im.isDir(name) {
		if _, ok := f.im.files[name]; ok {
			return nil, fmt.Errorf("nrf: read dir %s: not a directory: %w", name, fs.ErrInvalid)
		}
		return nil, fmt.Errorf("nrf: read dir %s: %w", name, fs.ErrNotExist)
	}
	var out []string
	for p := range f.im.dirs {
		if path.Dir(p) == name {
			out = append(out, path.Base(p)+"/")
		}
	}
	for p := range f.im.files {
		if path.Dir(p) == name {
			out = append(out, path.Base(p))
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadFile returns a copy of a file.
func (f *flash) ReadFile(name string) ([]byte, error) {
	if err := checkPath(name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.im.files[name]
	if !ok {
		if f.im.isDir(name) {
			return nil, fmt.Errorf("nrf: read %s: %w", name, smp.ErrIsDir)
		}
		return nil, fmt.Errorf("nrf: read %s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// Stat implements smp.FS.
func (f *flash) Stat(name string) (int64, error) {
	if err := checkPath(name); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.im.files[name]; ok {
		return int64(len(b)), nil
	}
	if f.im.isDir(name) {
		return 0, fmt.Errorf("nrf: stat %s: %w", name, smp.ErrIsDir)
	}
	return 0, fmt.Errorf("nrf: stat %s: %w", name, fs.ErrNotExist)
}

// ReadAt implements smp.FS.
func (f *flash) ReadAt(name string, p []byte, off int64) (int, error) {
	if err := checkPath(name); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.im.files[name]
	switch {
	case !ok:
		return 0, fmt.Errorf("nrf: read %s: %w", name, fs.ErrNotExist)
	case off < 0:
		return 0, fmt.Errorf("nrf: read %s at %d: %w", name, off, fs.ErrInvalid)
	case off >= int64(len(b)):
		return 0, nil
	}
	return copy(p, b[off:]), nil
}

// Create implements smp.FS.
func (f *flash) Create(name string) error {
	if err := checkPath(name); err != nil {
		return err
	}
	f.mu.Lock()
	_, exists := f.im.files[name]
	f.mu.Unlock()
	if exists {
		return nil
	}
	return f.commit([]string{"write:" + name}, func(im *flashImage) error {
		if _, ok := im.files[name]; ok {
			return nil
		}
		if im.isDir(name) {
			return fmt.Errorf("nrf: create %s: %w", name, smp.ErrIsDir)
		}
		if path.Dir(name) == "/" || !im.isDir(path.Dir(name)) {
			return fmt.Errorf("nrf: create %s: %w", name, fs.ErrNotExist)
		}
		im.files[name] = []byte{}
		return nil
	})
}

// Truncate implements smp.FS.
func (f *flash) Truncate(name string, size int64) error {
	if err := checkPath(name); err != nil {
		return err
	}
	return f.commit([]string{"write:" + name}, func(im *flashImage) error {
		b, ok := im.files[name]
		switch {
		case !ok:
			return fmt.Errorf("nrf: truncate %s: %w", name, fs.ErrNotExist)
		case size < 0 || size > FSCapacity:
			return fmt.Errorf("nrf: truncate %s to %d: %w", name, size, fs.ErrInvalid)
		case size > int64(len(b)) && im.used()+int(size)-len(b) > FSCapacity:
			return fmt.Errorf("nrf: truncate %s: %w", name, ErrNoSpace)
		}
		nb := make([]byte, size)
		copy(nb, b)
		im.files[name] = nb
		return nil
	})
}

// WriteAt implements smp.FS.
func (f *flash) WriteAt(name string, p []byte, off int64) error {
	if err := checkPath(name); err != nil {
		return err
	}
	return f.commit([]string{"write:" + name}, func(im *flashImage) error {
		b, ok := im.files[name]
		if !ok {
			return fmt.Errorf("nrf: write %s: %w", name, fs.ErrNotExist)
		}
		if off < 0 || off > FSCapacity || int64(len(p)) > FSCapacity {
			return fmt.Errorf("nrf: write %s at %d: %w", name, off, fs.ErrInvalid)
		}
		end := int(off) + len(p)
		if end > len(b) && im.used()+end-len(b) > FSCapacity {
			return fmt.Errorf("nrf: write %s: %w", name, ErrNoSpace)
		}
		nb := make([]byte, max(end, len(b)))
		copy(nb, b)
		copy(nb[off:], p)
		im.files[name] = nb
		return nil
	})
}

// --- settings (devicemodel.Store) ---

// settingsStore is the settings partition as a devicemodel.Store.
type settingsStore struct{ f *flash }

var _ devicemodel.Store = settingsStore{}

// Get implements devicemodel.Store.
func (s settingsStore) Get(key string) ([]byte, bool) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	v, ok := s.f.im.settings[key]
	return bytes.Clone(v), ok
}

// Set implements devicemodel.Store.
func (s settingsStore) Set(key string, val []byte) error {
	return s.Update(func(tx *devicemodel.Tx) error { return tx.Set(key, val) })
}

// Delete implements devicemodel.Store.
func (s settingsStore) Delete(key string) error {
	return s.Update(func(tx *devicemodel.Tx) error { return tx.Delete(key) })
}

// Keys implements devicemodel.Store.
func (s settingsStore) Keys() []string {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return slices.Sorted(maps.Keys(s.f.im.settings))
}

// Update implements devicemodel.Store: all writes or none, one flash
// commit.
func (s settingsStore) Update(fn func(tx *devicemodel.Tx) error) error {
	tx := devicemodel.NewTx(s.Get)
	if err := fn(tx); err != nil {
		return err
	}
	return s.apply(tx.Ops())
}

// apply commits ops. Names are checked against the settings rules, which
// are wider than the model's NVS-style keys (the shell writes
// "golioth/psk-id").
func (s settingsStore) apply(ops []devicemodel.Op) error {
	if len(ops) == 0 {
		return nil
	}
	points := make([]string, len(ops))
	for i, op := range ops {
		if err := checkSettingName(op.Key); err != nil {
			return err
		}
		if len(op.Value) > devicemodel.MaxValueLen {
			return fmt.Errorf("%w: %q", devicemodel.ErrValueTooLarge, op.Key)
		}
		points[i] = op.Point()
	}
	return s.f.commit(points, func(im *flashImage) error {
		for _, op := range ops {
			if op.Delete {
				delete(im.settings, op.Key)
			} else {
				im.settings[op.Key] = bytes.Clone(op.Value)
			}
		}
		return nil
	})
}

// setRaw stores one setting from the shell (any valid settings name).
func (s settingsStore) setRaw(key string, val []byte) error {
	return s.apply([]devicemodel.Op{{Key: key, Value: val}})
}

// deleteRaw removes one setting from the shell.
func (s settingsStore) deleteRaw(key string) error {
	return s.apply([]devicemodel.Op{{Key: key, Delete: true}})
}
