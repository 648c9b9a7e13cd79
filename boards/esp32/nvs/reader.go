package nvs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

// Page describes one page of a parsed image.
type Page struct {
	Index   int // position in the image
	State   PageState
	Seq     uint32 // sequence number; 0 for EMPTY and CORRUPT pages
	Version uint8
	Written int // entries in state written
	Erased  int // entries in state erased
}

// Namespace is a namespace entry.
type Namespace struct {
	Name  string
	Index uint8
}

// Partition is a parsed image.
type Partition struct {
	Size  int
	Pages []Page
	// Namespaces are sorted by index.
	Namespaces []Namespace
	// Items are the live values, in the order the firmware sees them
	// (pages by sequence number, then entries), a version 2 blob at its
	// BLOB_IDX entry. When a key appears more than once, as after a power
	// cut between writing a new value and erasing the old one, the later
	// value wins. BLOB_DATA chunks that no BLOB_IDX claims are ignored, as
	// the firmware erases them.
	Items []Item
}

// Get returns the item of key in namespace ns.
func (p *Partition) Get(ns, key string) (Item, bool) {
	for _, it := range p.Items {
		if it.Namespace == ns && it.Key == key {
			return it, true
		}
	}
	return Item{}, false
}

// raw is a written entry found while scanning.
type raw struct {
	where string // "page 1 entry 5"
	e     []byte // the header entry
	data  []byte // the data entries after it (span − 1 of them)
}

func (r raw) ns() uint8        { return r.e[0] }
func (r raw) typ() Type        { return Type(r.e[1]) }
func (r raw) chunk() uint8     { return r.e[3] }
func (r raw) key() string      { return string(r.e[8 : bytes.IndexByte(r.e[8:24], 0)+8]) }
func (r raw) size() int        { return int(binary.LittleEndian.Uint16(r.e[24:])) }
func (r raw) u32(o int) uint32 { return binary.LittleEndian.Uint32(r.e[o:]) }

func corrupt(where, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, where, fmt.Sprintf(format, args...))
}

// Read parses an image, checking its page headers, entry-state bitmaps,
// spans and every CRC (page header, entry and data). Anything that does not
// hold is an error wrapping ErrCorrupt that names the page and entry.
// EMPTY pages must be blank; CORRUPT pages are skipped as the firmware
// skips them; ACTIVE, FULL and FREEING pages are read. Version 1 (BLOB) and
// version 2 (BLOB_DATA + BLOB_IDX) blobs are both read.
func Read(data []byte) (*Partition, error) {
	if len(data) == 0 || len(data)%PageSize != 0 {
		return nil, fmt.Errorf("%w: size %d is not a positive multiple of %d (truncated?)", ErrCorrupt, len(data), PageSize)
	}
	p := &Partition{Size: len(data)}
	type pageEntries struct {
		seq     uint32
		entries []raw
	}
	var live []pageEntries
	for pi := 0; pi < len(data)/PageSize; pi++ {
		buf := data[pi*PageSize:][:PageSize]
		pg := Page{Index: pi, State: PageState(binary.LittleEndian.Uint32(buf))}
		where := fmt.Sprintf("page %d (offset 0x%x)", pi, pi*PageSize)
		switch pg.State {
		case StateEmpty:
			if !blank(buf) {
				return nil, corrupt(where, "state EMPTY but the page is not blank")
			}
			p.Pages = append(p.Pages, pg)
			continue
		case StateCorrupt:
			p.Pages = append(p.Pages, pg)
			continue
		case StateActive, StateFull, StateFreeing:
		default:
			return nil, corrupt(where, "unknown page state 0x%08x", uint32(pg.State))
		}
		if got, want := binary.LittleEndian.Uint32(buf[28:]), crc(buf[4:28]); got != want {
			return nil, corrupt(where, "header CRC 0x%08x, computed 0x%08x", got, want)
		}
		pg.Seq = binary.LittleEndian.Uint32(buf[4:])
		pg.Version = buf[8]
		if pg.Version != Version1 && pg.Version != Version2 {
			return nil, corrupt(where, "unknown format version 0x%02x", pg.Version)
		}
		entries, err := readEntries(pi, buf, &pg)
		if err != nil {
			return nil, err
		}
		p.Pages = append(p.Pages, pg)
		live = append(live, pageEntries{pg.Seq, entries})
	}
	// The firmware orders pages by sequence number.
	sort.SliceStable(live, func(i, j int) bool { return live[i].seq < live[j].seq })
	var all []raw
	for _, l := range live {
		all = append(all, l.entries...)
	}
	if err := p.resolve(all); err != nil {
		return nil, err
	}
	return p, nil
}

func blank(b []byte) bool {
	for _, c := range b {
		if c != 0xFF {
			return false
		}
	}
	return true
}

// Entry states in the bitmap.
const (
	esEmpty   = 3
	esWritten = 2
	esErased  = 0
)

func entryState(buf []byte, i int) int {
	bit := i * 2
	return int(buf[bitmapOff+bit/8]>>(bit%8)) & 3
}

// readEntries returns the written items of a page, checked.
func readEntries(pi int, buf []byte, pg *Page) ([]raw, error) {
	var out []raw
	for i := 0; i < EntriesPerPage; {
		where := fmt.Sprintf("page %d entry %d (offset 0x%x)", pi, i, pi*PageSize+firstEntry+i*EntrySize)
		switch entryState(buf, i) {
		case esEmpty:
			i++
			continue
		case esWritten:
		default: // erased, or the illegal 01 that the firmware treats as erased
			pg.Erased++
			i++
			continue
		}
		e := buf[firstEntry+i*EntrySize:][:EntrySize]
		if got, want := binary.LittleEndian.Uint32(e[4:]), entryCRC(e); got != want {
			return nil, corrupt(where, "entry CRC 0x%08x, computed 0x%08x", got, want)
		}
		r := raw{where: where, e: e}
		span := int(e[2])
		if span < 1 || i+span > EntriesPerPage {
			return nil, corrupt(where, "span %d overruns the page (%d entries left)", span, EntriesPerPage-i)
		}
		if bytes.IndexByte(e[8:24], 0) < 1 {
			return nil, corrupt(where, "key is empty or not NUL-terminated")
		}
		t := r.typ()
		switch {
		case t.Primitive(), t == TypeBlobIndex:
			if span != 1 {
				return nil, corrupt(where, "%s entry with span %d, want 1", t, span)
			}
		case t == TypeString, t == TypeBlob, t == TypeBlobData:
			n := r.size()
			if want := 1 + (n+EntrySize-1)/EntrySize; span != want {
				return nil, corrupt(where, "%s of %d bytes with span %d, want %d", t, n, span, want)
			}
			if t == TypeBlobData && pg.Version == Version1 {
				return nil, corrupt(where, "BLOB_DATA in a version 1 page")
			}
			for j := i + 1; j < i+span; j++ {
				if entryState(buf, j) != esWritten {
					return nil, corrupt(where, "data entry %d of %q is not marked written", j, r.key())
				}
			}
			r.data = buf[firstEntry+(i+1)*EntrySize:][:n]
			if got, want := r.u32(28), crc(r.data); got != want {
				return nil, corrupt(where, "data CRC of %q 0x%08x, computed 0x%08x", r.key(), got, want)
			}
		default:
			return nil, corrupt(where, "unknown entry type 0x%02x", uint8(t))
		}
		if r.ns() == 0 && t != TypeU8 {
			return nil, corrupt(where, "namespace entry %q of type %s, want u8", r.key(), t)
		}
		if t == TypeBlobData && r.chunk() == chunkAny {
			return nil, corrupt(where, "BLOB_DATA %q without a chunk index", r.key())
		}
		pg.Written += span
		out = append(out, r)
		i += span
	}
	return out, nil
}

// resolve turns the written entries, in firmware order, into namespaces
// and items.
func (p *Partition) resolve(all []raw) error {
	names := map[uint8]string{}
	for _, r := range all {
		if r.ns() != 0 {
			continue
		}
		idx, name := r.e[24], r.key()
		if idx == 0 || idx == 0xFF {
			return corrupt(r.where, "namespace %q has index %d", name, idx)
		}
		if old, ok := names[idx]; ok && old != name {
			return corrupt(r.where, "namespace index %d names both %q and %q", idx, old, name)
		}
		for i, n := range names {
			if n == name && i != idx {
				return corrupt(r.where, "namespace %q has indexes %d and %d", name, i, idx)
			}
		}
		if _, ok := names[idx]; !ok {
			names[idx] = name
			p.Namespaces = append(p.Namespaces, Namespace{Name: name, Index: idx})
		}
	}
	sort.Slice(p.Namespaces, func(i, j int) bool { return p.Namespaces[i].Index < p.Namespaces[j].Index })

	type chunkKey struct {
		ns    uint8
		key   string
		index uint8
	}
	chunks := map[chunkKey][]byte{}
	for _, r := range all {
		if r.typ() == TypeBlobData {
			chunks[chunkKey{r.ns(), r.key(), r.chunk()}] = r.data // a later duplicate wins
		}
	}
	pos := map[nsKey]int{}
	var items []Item
	var dead []bool
	for _, r := range all {
		if r.ns() == 0 || r.typ() == TypeBlobData {
			continue
		}
		ns, ok := names[r.ns()]
		if !ok {
			return corrupt(r.where, "%q is in namespace index %d, which no namespace entry defines", r.key(), r.ns())
		}
		it := Item{Namespace: ns, Key: r.key(), Type: r.typ()}
		switch t := r.typ(); {
		case t.Primitive():
			v := binary.LittleEndian.Uint64(r.e[24:])
			if w := t.Width(); w < 8 {
				v &= 1<<(8*w) - 1
			}
			if t.Signed() {
				sh := 64 - 8*t.Width()
				it.Int = int64(v<<sh) >> sh
			} else {
				it.Uint = v
			}
		case t == TypeString:
			it.Data = bytes.Clone(bytes.TrimSuffix(r.data, []byte{0}))
		case t == TypeBlob:
			it.Data = bytes.Clone(r.data)
		case t == TypeBlobIndex:
			it.Type = TypeBlob
			size, count, start := int(r.u32(24)), int(r.e[28]), int(r.e[29])
			if start+count > 0xFF {
				return corrupt(r.where, "blob %q: chunks %d..%d run past 254", it.Key, start, start+count-1)
			}
			if size > count*maxChunkLen {
				return corrupt(r.where, "blob %q: %d bytes cannot fit in %d chunks", it.Key, size, count)
			}
			it.Data = make([]byte, 0, size)
			for c := start; c < start+count; c++ {
				d, ok := chunks[chunkKey{r.ns(), it.Key, uint8(c)}]
				if !ok {
					return corrupt(r.where, "blob %q: chunk %d of %d..%d is missing", it.Key, c, start, start+count-1)
				}
				it.Data = append(it.Data, d...)
			}
			if len(it.Data) != size {
				return corrupt(r.where, "blob %q: index says %d bytes, chunks hold %d", it.Key, size, len(it.Data))
			}
		}
		k := nsKey{r.ns(), it.Key}
		if i, ok := pos[k]; ok {
			dead[i] = true // a later duplicate wins
		}
		pos[k] = len(items)
		items = append(items, it)
		dead = append(dead, false)
	}
	for i, it := range items {
		if !dead[i] {
			p.Items = append(p.Items, it)
		}
	}
	return nil
}
