package nvs

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"unicode/utf8"
)

// DumpOptions configures Dump and DumpJSON.
type DumpOptions struct {
	// ShowSecrets shows the values of secret keys (see SecretKey). By
	// default they show as "<N bytes fp=XXXXXXXX>".
	ShowSecrets bool
	// Full shows long strings and blobs whole; by default the text form
	// shows their first 64 bytes.
	Full bool
}

const dumpClip = 64

// Dump writes a text description of the partition: its pages, then each
// namespace with its keys, types and values.
func (p *Partition) Dump(w io.Writer, opts DumpOptions) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NVS partition: %d bytes, %d pages\n\n", p.Size, len(p.Pages))
	fmt.Fprintf(tw, "page\toffset\tstate\tseq\tversion\twritten\terased\n")
	for _, pg := range p.Pages {
		if pg.State == StateEmpty || pg.State == StateCorrupt {
			fmt.Fprintf(tw, "%d\t0x%05x\t%s\t-\t-\t-\t-\n", pg.Index, pg.Index*PageSize, pg.State)
			continue
		}
		fmt.Fprintf(tw, "%d\t0x%05x\t%s\t%d\t%s\t%d\t%d\n", pg.Index, pg.Index*PageSize, pg.State, pg.Seq, versionName(pg.Version), pg.Written, pg.Erased)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Namespaces) == 0 {
		_, err := fmt.Fprintf(w, "\nno namespaces\n")
		return err
	}
	for _, ns := range p.Namespaces {
		fmt.Fprintf(w, "\nnamespace %s (index %d)\n", strconv.Quote(ns.Name), ns.Index)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		n := 0
		for _, it := range p.Items {
			if it.Namespace != ns.Name {
				continue
			}
			n++
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", quoteKey(it.Key), it.Type, it.display(opts))
		}
		if n == 0 {
			fmt.Fprintf(tw, "  (no keys)\n")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func versionName(v uint8) string {
	switch v {
	case Version1:
		return "1"
	case Version2:
		return "2"
	}
	return fmt.Sprintf("0x%02x", v)
}

// quoteKey shows a key bare when it is plain, quoted otherwise.
func quoteKey(k string) string {
	if q := strconv.Quote(k); q[1:len(q)-1] == k && k != "" {
		for _, c := range k {
			if c == ' ' || c == '\t' {
				return q
			}
		}
		return k
	}
	return strconv.Quote(k)
}

// redacted is how a secret value shows.
func redacted(b []byte) string { return fmt.Sprintf("<%d bytes fp=%s>", len(b), Fingerprint(b)) }

// display is the value as Dump shows it.
func (it Item) display(opts DumpOptions) string {
	if it.Secret() && !opts.ShowSecrets {
		return redacted(it.Bytes())
	}
	switch t := it.Type; {
	case t.Signed():
		return strconv.FormatInt(it.Int, 10)
	case t.Primitive():
		return strconv.FormatUint(it.Uint, 10)
	case t == TypeString:
		if opts.Full || len(it.Data) <= dumpClip {
			return strconv.Quote(string(it.Data))
		}
		cut := dumpClip
		for cut > 0 && !utf8.RuneStart(it.Data[cut]) {
			cut--
		}
		return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(string(it.Data[:cut])), len(it.Data))
	default:
		if len(it.Data) == 0 {
			return "0 bytes"
		}
		if opts.Full || len(it.Data) <= dumpClip/2 {
			return fmt.Sprintf("%d bytes: %s", len(it.Data), hex.EncodeToString(it.Data))
		}
		return fmt.Sprintf("%d bytes: %s…", len(it.Data), hex.EncodeToString(it.Data[:dumpClip/2]))
	}
}

// JSON shapes of DumpJSON.
type (
	jsonPartition struct {
		Size       int             `json:"size"`
		Pages      []jsonPage      `json:"pages"`
		Namespaces []jsonNamespace `json:"namespaces"`
	}
	jsonPage struct {
		Index   int    `json:"index"`
		Offset  int    `json:"offset"`
		State   string `json:"state"`
		Seq     uint32 `json:"seq"`
		Version int    `json:"version,omitempty"`
		Written int    `json:"written"`
		Erased  int    `json:"erased"`
	}
	jsonNamespace struct {
		Name  string     `json:"name"`
		Index uint8      `json:"index"`
		Items []jsonItem `json:"items"`
	}
	jsonItem struct {
		Key  string `json:"key"`
		Type string `json:"type"`
		// Value is a number (integers) or a string (strings); Base64
		// holds a blob.
		Value    any    `json:"value,omitempty"`
		Base64   string `json:"base64,omitempty"`
		Size     int    `json:"size"`
		FP       string `json:"fp"`
		Redacted bool   `json:"redacted,omitempty"`
	}
)

// DumpJSON writes the partition as indented JSON: size, pages (index,
// offset, state, seq, version, written, erased) and namespaces (name,
// index, items). Each item has key, type, size (bytes of its value), fp
// (fingerprint of its value) and value (a number or a string) or base64
// (a blob); a secret item has "redacted": true and no value unless
// opts.ShowSecrets.
func (p *Partition) DumpJSON(w io.Writer, opts DumpOptions) error {
	out := jsonPartition{Size: p.Size, Pages: []jsonPage{}, Namespaces: []jsonNamespace{}}
	for _, pg := range p.Pages {
		jp := jsonPage{Index: pg.Index, Offset: pg.Index * PageSize, State: pg.State.String(), Seq: pg.Seq, Written: pg.Written, Erased: pg.Erased}
		switch pg.Version {
		case Version1:
			jp.Version = 1
		case Version2:
			jp.Version = 2
		}
		out.Pages = append(out.Pages, jp)
	}
	for _, ns := range p.Namespaces {
		jn := jsonNamespace{Name: ns.Name, Index: ns.Index, Items: []jsonItem{}}
		for _, it := range p.Items {
			if it.Namespace != ns.Name {
				continue
			}
			b := it.Bytes()
			ji := jsonItem{Key: it.Key, Type: it.Type.String(), Size: len(b), FP: Fingerprint(b)}
			switch t := it.Type; {
			case it.Secret() && !opts.ShowSecrets:
				ji.Redacted = true
			case t.Signed():
				ji.Value = it.Int
			case t.Primitive():
				ji.Value = it.Uint
			case t == TypeString:
				ji.Value = string(it.Data)
			default:
				ji.Base64 = base64.StdEncoding.EncodeToString(it.Data)
			}
			jn.Items = append(jn.Items, ji)
		}
		out.Namespaces = append(out.Namespaces, jn)
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.SetEscapeHTML(false)
	return e.Encode(out)
}
