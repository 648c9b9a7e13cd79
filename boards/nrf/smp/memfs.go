package smp

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
)

// Filesystem errors an FS returns besides fs.ErrNotExist, fs.ErrExist and
// fs.ErrInvalid.
var (
	ErrIsDir    = errors.New("smp: is a directory")
	ErrNotEmpty = errors.New("smp: directory not empty")
	ErrReadOnly = errors.New("smp: read-only file system")
)

// FS is the filesystem the fs group serves. Names are absolute
// slash-separated paths such as /lfs1/credentials/crt.der. Errors wrap
// fs.ErrNotExist, fs.ErrInvalid, ErrIsDir or ErrReadOnly where those apply;
// the Server turns them into the fs group's error codes.
type FS interface {
	// Stat returns the size of a file; ErrIsDir for a directory.
	Stat(name string) (size int64, err error)
	// ReadAt reads up to len(p) bytes at off. It returns 0 and no error
	// at or past the end of the file.
	ReadAt(name string, p []byte, off int64) (n int, err error)
	// Create opens a file for writing, creating it empty if it does not
	// exist and leaving it as it is if it does. A missing parent
	// directory or mount point is fs.ErrNotExist.
	Create(name string) error
	// Truncate sets the size of an existing file.
	Truncate(name string, size int64) error
	// WriteAt writes p at off of an existing file, growing it (with
	// zeros if off is past the end).
	WriteAt(name string, p []byte, off int64) error
}

// MemFS is an in-memory FS laid out like Zephyr's virtual filesystem: "/"
// holds only mount points (such as /lfs1), and files and directories live
// inside those. It is safe for concurrent use.
type MemFS struct {
	mu     sync.Mutex
	mounts map[string]bool
	dirs   map[string]bool
	files  map[string][]byte
}

// NewMemFS returns a MemFS with the given mount points, each a single path
// element under "/" (e.g. "/lfs1").
func NewMemFS(mounts ...string) (*MemFS, error) {
	m := &MemFS{mounts: map[string]bool{}, dirs: map[string]bool{}, files: map[string][]byte{}}
	for _, mp := range mounts {
		if err := checkName(mp); err != nil || path.Dir(mp) != "/" || mp == "/" {
			return nil, fmt.Errorf("smp: mount point %q: %w", mp, fs.ErrInvalid)
		}
		m.mounts[mp] = true
		m.dirs[mp] = true
	}
	return m, nil
}

func checkName(name string) error {
	if name == "" || name[0] != '/' || path.Clean(name) != name || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("smp: file name %q: %w", name, fs.ErrInvalid)
	}
	return nil
}

// parentOK reports whether name's directory exists inside a mount point.
func (m *MemFS) parentOK(name string) bool {
	dir := path.Dir(name)
	return dir != "/" && m.dirs[dir]
}

// Mkdir creates a directory, like the Zephyr shell's "fs mkdir"; its
// parent must exist.
func (m *MemFS) Mkdir(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.dirs[name] || m.files[name] != nil:
		return fmt.Errorf("smp: mkdir %s: %w", name, fs.ErrExist)
	case !m.parentOK(name):
		return fmt.Errorf("smp: mkdir %s: %w", name, fs.ErrNotExist)
	}
	m.dirs[name] = true
	return nil
}

// Remove deletes a file or an empty directory, like "fs rm".
func (m *MemFS) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		delete(m.files, name)
		return nil
	}
	if !m.dirs[name] || m.mounts[name] {
		if m.mounts[name] {
			return fmt.Errorf("smp: remove %s: mount point: %w", name, fs.ErrInvalid)
		}
		return fmt.Errorf("smp: remove %s: %w", name, fs.ErrNotExist)
	}
	for p := range m.files {
		if path.Dir(p) == name {
			return fmt.Errorf("smp: remove %s: %w", name, ErrNotEmpty)
		}
	}
	for p := range m.dirs {
		if path.Dir(p) == name {
			return fmt.Errorf("smp: remove %s: %w", name, ErrNotEmpty)
		}
	}
	delete(m.dirs, name)
	return nil
}

// ReadDir lists the entries of a directory, sorted; directories end in "/".
func (m *MemFS) ReadDir(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if name != "/" && !m.dirs[name] {
		return nil, fmt.Errorf("smp: read dir %s: %w", name, fs.ErrNotExist)
	}
	var out []string
	for p := range m.dirs {
		if p != name && path.Dir(p) == name {
			out = append(out, path.Base(p)+"/")
		}
	}
	for p := range m.files {
		if path.Dir(p) == name {
			out = append(out, path.Base(p))
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadFile returns a copy of a file's contents.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		if m.dirs[name] || name == "/" {
			return nil, fmt.Errorf("smp: read %s: %w", name, ErrIsDir)
		}
		return nil, fmt.Errorf("smp: read %s: %w", name, fs.ErrNotExist)
	}
	return slices.Clone(b), nil
}

// WriteFile replaces a file's contents, creating it if needed.
func (m *MemFS) WriteFile(name string, data []byte) error {
	if err := m.Create(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = append(make([]byte, 0, len(data)), data...)
	return nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.files[name]; ok {
		return int64(len(b)), nil
	}
	if m.dirs[name] || name == "/" {
		return 0, fmt.Errorf("smp: stat %s: %w", name, ErrIsDir)
	}
	return 0, fmt.Errorf("smp: stat %s: %w", name, fs.ErrNotExist)
}

// ReadAt implements FS.
func (m *MemFS) ReadAt(name string, p []byte, off int64) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return 0, fmt.Errorf("smp: read %s: %w", name, fs.ErrNotExist)
	}
	if off < 0 {
		return 0, fmt.Errorf("smp: read %s at %d: %w", name, off, fs.ErrInvalid)
	}
	if off >= int64(len(b)) {
		return 0, nil
	}
	return copy(p, b[off:]), nil
}

// Create implements FS.
func (m *MemFS) Create(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirs[name] || name == "/" {
		return fmt.Errorf("smp: create %s: %w", name, ErrIsDir)
	}
	if !m.parentOK(name) {
		return fmt.Errorf("smp: create %s: %w", name, fs.ErrNotExist)
	}
	if _, ok := m.files[name]; !ok {
		m.files[name] = []byte{}
	}
	return nil
}

// Truncate implements FS.
func (m *MemFS) Truncate(name string, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return fmt.Errorf("smp: truncate %s: %w", name, fs.ErrNotExist)
	}
	if size < 0 || size > 1<<30 {
		return fmt.Errorf("smp: truncate %s to %d: %w", name, size, fs.ErrInvalid)
	}
	if size <= int64(len(b)) {
		m.files[name] = b[:size:size]
	} else {
		m.files[name] = append(b, make([]byte, size-int64(len(b)))...)
	}
	return nil
}

// WriteAt implements FS.
func (m *MemFS) WriteAt(name string, p []byte, off int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return fmt.Errorf("smp: write %s: %w", name, fs.ErrNotExist)
	}
	end := off + int64(len(p))
	if off < 0 || end > 1<<30 {
		return fmt.Errorf("smp: write %s at %d: %w", name, off, fs.ErrInvalid)
	}
	if end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[off:], p)
	m.files[name] = b
	return nil
}
