package nvs

import (
	"encoding/binary"
	"fmt"
)

// Options configures a Writer.
type Options struct {
	// Size is the partition size in bytes: a multiple of 4096 and at
	// least MinSize (0x3000). Zero means MinSize. The last page stays
	// blank for the firmware's garbage collection, so Size/4096 − 1 pages
	// hold data.
	Size int
}

// Writer builds an image the way nvs_partition_gen (format version 2)
// does: entries are appended in order, a page that cannot take the next
// entry is marked FULL and a new one started, the last written page stays
// ACTIVE and the remaining pages stay blank (0xFF).
//
// A failed call leaves the Writer as it was. A Writer is not safe for
// concurrent use.
type Writer struct {
	size     int
	maxPages int
	pages    []*page
	ns       map[string]uint8 // namespace name to index
	nsNames  []string         // by index − 1
	cur      uint8            // current namespace index, 0 before the first
	keys     map[nsKey]bool
}

type nsKey struct {
	ns  uint8
	key string
}

type page struct {
	buf [PageSize]byte
	n   int // entries used
}

// NewWriter returns a Writer for a partition of opts.Size bytes, with page
// 0 started.
func NewWriter(opts Options) (*Writer, error) {
	size := opts.Size
	if size == 0 {
		size = MinSize
	}
	if err := CheckSize(size); err != nil {
		return nil, err
	}
	w := &Writer{size: size, maxPages: size/PageSize - 1, ns: map[string]uint8{}, keys: map[nsKey]bool{}}
	w.pages = []*page{newPage(0)}
	return w, nil
}

// CheckSize checks a partition size: a multiple of 4096, at least MinSize.
func CheckSize(size int) error {
	if size < MinSize || size%PageSize != 0 {
		return fmt.Errorf("%w: %d (0x%x): want a multiple of 0x1000, at least 0x%x", ErrBadSize, size, size, MinSize)
	}
	return nil
}

// newPage returns a page with an ACTIVE header for sequence number seq and
// an empty entry-state bitmap.
func newPage(seq int) *page {
	p := &page{}
	for i := range p.buf {
		p.buf[i] = 0xFF
	}
	h := p.buf[:headerSize]
	binary.LittleEndian.PutUint32(h[0:], uint32(StateActive))
	binary.LittleEndian.PutUint32(h[4:], uint32(seq))
	h[8] = Version2
	binary.LittleEndian.PutUint32(h[28:], crc(h[4:28]))
	return p
}

func (w *Writer) page() *page { return w.pages[len(w.pages)-1] }

// nextPage marks the current page FULL and starts the next one.
func (w *Writer) nextPage() error {
	if len(w.pages) >= w.maxPages {
		return fmt.Errorf("%w: %d bytes (%d data pages) are not enough; increase the size", ErrFull, w.size, w.maxPages)
	}
	binary.LittleEndian.PutUint32(w.page().buf[0:], uint32(StateFull))
	w.pages = append(w.pages, newPage(len(w.pages)))
	return nil
}

// put writes entries (a multiple of 32 bytes, the last one padded with
// 0xFF) into the current page and marks them written in the bitmap.
func (p *page) put(data []byte, entries int) {
	copy(p.buf[firstEntry+p.n*EntrySize:], data)
	for range entries {
		bit := p.n * 2
		p.buf[bitmapOff+bit/8] &^= 1 << (bit % 8) // 11 (empty) becomes 10 (written)
		p.n++
	}
}

// entry returns a header entry: namespace index, type, span, chunk index
// and key set, data field 0xFF, CRC not yet computed.
func entry(ns uint8, t Type, span, chunk uint8, key string) []byte {
	e := make([]byte, EntrySize)
	for i := range e {
		e[i] = 0xFF
	}
	e[0], e[1], e[2], e[3] = ns, byte(t), span, chunk
	for i := 8; i < 24; i++ {
		e[i] = 0
	}
	copy(e[8:24], key)
	return e
}

func sealEntry(e []byte) []byte {
	binary.LittleEndian.PutUint32(e[4:], entryCRC(e))
	return e
}

// snapshot saves what a failed write must restore.
type snapshot struct {
	pages int
	last  page
}

func (w *Writer) save() snapshot { return snapshot{pages: len(w.pages), last: *w.page()} }

func (w *Writer) restore(s snapshot) {
	w.pages = w.pages[:s.pages]
	*w.page() = s.last
}

// Namespace makes name the namespace of the values added next. The first
// time a name is used its namespace entry is written (namespace index 0,
// type U8, value the next free index from 1).
func (w *Writer) Namespace(name string) error {
	if err := checkName("namespace", name); err != nil {
		return err
	}
	if idx, ok := w.ns[name]; ok {
		w.cur = idx
		return nil
	}
	if len(w.nsNames) >= MaxNamespaces {
		return fmt.Errorf("%w: more than %d namespaces", ErrFull, MaxNamespaces)
	}
	idx := uint8(len(w.nsNames) + 1)
	s := w.save()
	if err := w.primitive(0, TypeU8, name, uint64(idx)); err != nil {
		w.restore(s)
		return err
	}
	w.ns[name] = idx
	w.nsNames = append(w.nsNames, name)
	w.cur = idx
	return nil
}

// Add writes an item. Its Namespace, when not empty, is made current
// first (see Namespace); an empty Namespace means the current one. An
// item whose Key is empty only selects its namespace, as a namespace row
// of a CSV file does. A key may appear once per namespace.
func (w *Writer) Add(it Item) error {
	if it.Namespace == "" {
		if it.Key == "" {
			return nil
		}
		if w.cur == 0 {
			return fmt.Errorf("%w: %q: no namespace yet; the first item must name one", ErrBadKey, it.Key)
		}
		it.Namespace = w.nsNames[w.cur-1]
	}
	if it.Key == "" {
		return w.Namespace(it.Namespace)
	}
	if err := it.validate(); err != nil {
		return err
	}
	s, cur, names := w.save(), w.cur, len(w.nsNames)
	err := w.Namespace(it.Namespace)
	if err == nil {
		err = w.add(it)
	}
	if err != nil {
		// A failed call changes nothing, the namespace entry included.
		w.restore(s)
		for _, n := range w.nsNames[names:] {
			delete(w.ns, n)
		}
		w.nsNames, w.cur = w.nsNames[:names], cur
	}
	return err
}

// add writes a validated item into the current namespace.
func (w *Writer) add(it Item) error {
	k := nsKey{w.cur, it.Key}
	if w.keys[k] {
		return fmt.Errorf("%w: key %q appears twice in namespace %q", ErrBadKey, it.Key, it.Namespace)
	}
	s := w.save()
	var err error
	switch {
	case it.Type.Primitive():
		err = w.primitive(w.cur, it.Type, it.Key, it.raw())
	case it.Type == TypeString:
		err = w.str(w.cur, it.Key, append(append([]byte(nil), it.Data...), 0))
	default:
		err = w.blob(w.cur, it.Key, it.Data)
	}
	if err != nil {
		w.restore(s)
		return fmt.Errorf("%s %q: %w", it.Type, it.Key, err)
	}
	w.keys[k] = true
	return nil
}

// primitive writes a one-entry integer: the value little-endian at the
// start of the data field, the rest 0xFF.
func (w *Writer) primitive(ns uint8, t Type, key string, v uint64) error {
	if w.page().n >= EntriesPerPage {
		if err := w.nextPage(); err != nil {
			return err
		}
	}
	e := entry(ns, t, 1, chunkAny, key)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	copy(e[24:], b[:t.Width()])
	w.page().put(sealEntry(e), 1)
	return nil
}

// str writes a string, data including its NUL, in one page: a header
// entry (size u16, 0xFFFF, CRC of the data) and the data entries.
//
// Like the generator, it starts a new page when the string would fill the
// current one exactly (entries used + span >= 126). The generator then
// fails on strings of 3969..4000 bytes, whose span is 126 even on a fresh
// page; this writer puts them on a fresh page, as the firmware accepts.
func (w *Writer) str(ns uint8, key string, data []byte) error {
	span := 1 + (len(data)+EntrySize-1)/EntrySize
	if p := w.page(); p.n >= EntriesPerPage || (p.n > 0 && p.n+span >= EntriesPerPage) {
		if err := w.nextPage(); err != nil {
			return err
		}
	}
	w.chunk(ns, TypeString, uint8(span), chunkAny, key, data)
	return nil
}

// chunk writes a string or BLOB_DATA header and its data entries into the
// current page, which has room for them.
func (w *Writer) chunk(ns uint8, t Type, span, index uint8, key string, data []byte) {
	e := entry(ns, t, span, index, key)
	binary.LittleEndian.PutUint16(e[24:], uint16(len(data)))
	binary.LittleEndian.PutUint32(e[28:], crc(data))
	p := w.page()
	p.put(sealEntry(e), 1)
	p.put(data, int(span)-1)
}

// blob writes a version 2 blob as nvs_partition_gen does: chunk after
// chunk, each as large as the current page allows ((126 − used − 1) × 32
// bytes; this may be 0 on a page with one entry left), a new page after a
// chunk when data remains or no entry is left, then one BLOB_IDX entry
// (size u32, chunk count, chunk start 0, 0xFFFF).
func (w *Writer) blob(ns uint8, key string, data []byte) error {
	if w.page().n >= EntriesPerPage {
		if err := w.nextPage(); err != nil {
			return err
		}
	}
	count := 0
	for rest := data; ; {
		p := w.page()
		tailroom := (EntriesPerPage - p.n - 1) * EntrySize
		n := min(tailroom, len(rest))
		if count >= maxChunks {
			return fmt.Errorf("%w: %d bytes need more than %d chunks", ErrBadValue, len(data), maxChunks)
		}
		span := 1 + (n+EntrySize-1)/EntrySize
		w.chunk(ns, TypeBlobData, uint8(span), uint8(count), key, rest[:n])
		count++
		rest = rest[n:]
		if len(rest) > 0 || tailroom-n < EntrySize {
			if err := w.nextPage(); err != nil {
				return err
			}
		}
		if len(rest) == 0 {
			break
		}
	}
	e := entry(ns, TypeBlobIndex, 1, chunkAny, key)
	binary.LittleEndian.PutUint32(e[24:], uint32(len(data)))
	e[28], e[29] = uint8(count), 0
	w.page().put(sealEntry(e), 1)
	return nil
}

// Bytes returns the image: the written pages (the last one ACTIVE, the
// others FULL) followed by blank pages up to the partition size. The
// Writer stays usable.
func (w *Writer) Bytes() []byte {
	out := make([]byte, w.size)
	for i := range out {
		out[i] = 0xFF
	}
	for i, p := range w.pages {
		copy(out[i*PageSize:], p.buf[:])
	}
	return out
}

// Build writes items into a new image of opts.Size bytes (see Writer.Add
// for how namespaces are chosen).
func Build(items []Item, opts Options) ([]byte, error) {
	w, err := NewWriter(opts)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if err := w.Add(it); err != nil {
			return nil, err
		}
	}
	return w.Bytes(), nil
}
