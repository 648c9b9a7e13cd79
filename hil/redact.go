package hil

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MinSecretLen is the shortest text a Redactor will look for: shorter
// ones would blank out ordinary log text.
const MinSecretLen = 6

// Redactor errors.
var (
	ErrSecretTooShort = errors.New("hil: secret too short to redact")
	ErrSecretMarker   = errors.New("hil: secret looks like a redaction marker")
)

// Fingerprint names a secret without revealing it: the first 8 hex digits
// of its SHA-256, as devicemodel.Fingerprint and the registry show them.
func Fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:4])
}

// marker is what a secret becomes: <redacted fp=XXXXXXXX>.
func marker(fp string) string { return "<redacted fp=" + fp + ">" }

// markerTemplate is the shape of every marker; the '#' stand for the 8
// lower-case hex digits of a fingerprint.
const markerTemplate = "<redacted fp=########>"

// A Redactor rewrites text before it reaches a log, an error message or a
// report: every registered secret, in every encoding it was registered
// in, becomes <redacted fp=XXXXXXXX>, the fingerprint of the secret.
// Matching ignores ASCII case, so hex is caught in upper and lower case.
//
// A nil *Redactor redacts nothing. Methods are safe for concurrent use;
// a secret must be added before it can appear in the text.
type Redactor struct {
	mu     sync.RWMutex
	byKey  map[uint16][]*pattern // by the first two folded bytes, longest first
	all    map[string]*pattern   // folded text → pattern
	maxLen int
}

// pattern is one form of a secret, folded to lower case.
type pattern struct {
	b  []byte
	fp string
}

// NewRedactor returns an empty Redactor.
func NewRedactor() *Redactor { return &Redactor{} }

func fold(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func foldBytes(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = fold(c)
	}
	return out
}

func key2(a, b byte) uint16 { return uint16(fold(a))<<8 | uint16(fold(b)) }

// Add registers secret as it is and as hex, and returns its fingerprint.
func (r *Redactor) Add(secret []byte) (string, error) {
	fp := Fingerprint(secret)
	return fp, r.add(fp, secret, [][]byte{[]byte(hex.EncodeToString(secret))})
}

// AddPSK registers a pre-shared key: raw, as hex (also with ':' or ' '
// between bytes) and as base64. It returns the key's fingerprint.
func (r *Redactor) AddPSK(psk []byte) (string, error) {
	fp := Fingerprint(psk)
	h := hex.EncodeToString(psk)
	pairs := make([]string, len(psk))
	for i := range psk {
		pairs[i] = h[2*i : 2*i+2]
	}
	forms := [][]byte{
		[]byte(h),
		[]byte(strings.Join(pairs, ":")),
		[]byte(strings.Join(pairs, " ")),
		[]byte(base64.StdEncoding.EncodeToString(psk)),
		[]byte(base64.RawStdEncoding.EncodeToString(psk)),
	}
	return fp, r.add(fp, psk, forms)
}

// AddToken registers a token (an ownership token, a password) as it is.
func (r *Redactor) AddToken(token string) (string, error) {
	fp := Fingerprint([]byte(token))
	return fp, r.add(fp, []byte(token), nil)
}

// AddPrivateKey registers a private key given as PEM (every PRIVATE KEY
// block in it) or DER. Each key is registered as DER, hex, base64 on one
// line, PEM and PEM's 64-column lines, and in the other usual encoding of
// the same key (PKCS #8 and SEC 1 or PKCS #1), so a board that is given
// one and prints the other is still covered; base64 runs of 16 characters
// from the key are caught on their own, which covers a key wrapped at
// another width or carried in SMP frames. The fingerprint, returned, is
// that of the DER as given (of the first key of a PEM).
func (r *Redactor) AddPrivateKey(key []byte) (string, error) {
	var ders [][]byte
	var types []string
	if rest := key; strings.Contains(string(key), "-----BEGIN") {
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if strings.Contains(b.Type, "PRIVATE KEY") {
				ders = append(ders, b.Bytes)
				types = append(types, b.Type)
			}
		}
		if len(ders) == 0 {
			return "", errors.New("hil: no PRIVATE KEY block in PEM")
		}
	} else {
		ders, types = [][]byte{key}, []string{""}
	}
	fp := Fingerprint(ders[0])
	for i, der := range ders {
		kfp := Fingerprint(der)
		var forms [][]byte
		for _, enc := range keyEncodings(der, types[i]) {
			forms = append(forms, derForms(enc.der, enc.typ)...)
		}
		if err := r.add(kfp, der, forms); err != nil {
			return "", err
		}
	}
	return fp, nil
}

type keyEncoding struct {
	der []byte
	typ string
}

// keyEncodings returns der and, when it parses, the same key in the other
// usual DER encoding, each with its PEM type.
func keyEncodings(der []byte, typ string) []keyEncoding {
	out := []keyEncoding{{der, typ}}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if out[0].typ == "" {
			out[0].typ = "PRIVATE KEY"
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			if ec, err := x509.MarshalECPrivateKey(k); err == nil {
				out = append(out, keyEncoding{ec, "EC PRIVATE KEY"})
			}
		case *rsa.PrivateKey:
			out = append(out, keyEncoding{x509.MarshalPKCS1PrivateKey(k), "RSA PRIVATE KEY"})
		}
		return out
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		if out[0].typ == "" {
			out[0].typ = "EC PRIVATE KEY"
		}
		if p8, err := x509.MarshalPKCS8PrivateKey(k); err == nil {
			out = append(out, keyEncoding{p8, "PRIVATE KEY"})
		}
		return out
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		if out[0].typ == "" {
			out[0].typ = "RSA PRIVATE KEY"
		}
		if p8, err := x509.MarshalPKCS8PrivateKey(k); err == nil {
			out = append(out, keyEncoding{p8, "PRIVATE KEY"})
		}
	}
	return out
}

// derForms returns the text forms of one DER encoding (the raw DER itself
// is the caller's).
func derForms(der []byte, typ string) [][]byte {
	forms := [][]byte{der, []byte(hex.EncodeToString(der)), []byte(base64.StdEncoding.EncodeToString(der))}
	if typ != "" {
		forms = append(forms, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	// 16-character runs of the base64 at each of the three byte
	// alignments, on 4-character group boundaries.
	const win = 16
	for a := 0; a < 3 && a < len(der); a++ {
		enc := base64.StdEncoding.EncodeToString(der[a:])
		for k := 0; k+win <= len(enc); k += 4 {
			w := enc[k : k+win]
			if !strings.Contains(w, "=") {
				forms = append(forms, []byte(w))
			}
		}
	}
	return forms
}

// add registers raw and forms under fp. Forms shorter than MinSecretLen
// are skipped; raw must be long enough. Nothing is registered on error.
func (r *Redactor) add(fp string, raw []byte, forms [][]byte) error {
	if r == nil {
		return errors.New("hil: nil Redactor")
	}
	if len(raw) < MinSecretLen {
		return fmt.Errorf("%w: %d bytes (fp %s), at least %d", ErrSecretTooShort, len(raw), fp, MinSecretLen)
	}
	set := map[string]bool{}
	if err := closure(foldBytes(raw), set, 0); err != nil {
		return fmt.Errorf("secret fp %s: %w", fp, err)
	}
	all := append([][]byte{raw}, forms...)
	for i, f := range all {
		if i > 0 && len(f) >= MinSecretLen {
			if err := closure(foldBytes(f), set, 0); err != nil {
				return fmt.Errorf("secret fp %s: %w", fp, err)
			}
		}
		// Pieces between line breaks, so a secret with a line break in
		// it is still caught by code that redacts a line at a time.
		if strings.ContainsAny(string(f), "\r\n") {
			for _, piece := range strings.FieldsFunc(string(f), func(c rune) bool { return c == '\r' || c == '\n' }) {
				if len(piece) >= MinSecretLen && !strings.HasPrefix(piece, "-----") {
					sub := map[string]bool{}
					if closure(foldBytes([]byte(piece)), sub, 0) == nil {
						for k := range sub {
							set[k] = true
						}
					}
				}
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.all == nil {
		r.all = map[string]*pattern{}
		r.byKey = map[uint16][]*pattern{}
	}
	for s := range set {
		if _, ok := r.all[s]; ok {
			continue
		}
		p := &pattern{b: []byte(s), fp: fp}
		r.all[s] = p
		k := key2(s[0], s[1])
		list := append(r.byKey[k], p)
		slices.SortStableFunc(list, func(a, b *pattern) int { return len(b.b) - len(a.b) })
		r.byKey[k] = list
		r.maxLen = max(r.maxLen, len(s))
	}
	return nil
}

// consistent reports whether folded x can sit in a marker at offset off.
func consistent(x []byte, off int) bool {
	if off < 0 || off+len(x) > len(markerTemplate) {
		return false
	}
	for k, c := range x {
		t := markerTemplate[off+k]
		if t == '#' {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		} else if c != t {
			return false
		}
	}
	return true
}

// closure adds folded x to set together with the fragments of x that must
// also be redacted so that no marker, next to the text around it, ever
// spells x: if x ends with the start of a marker ("...<red"), the text
// before that ending is registered too, and likewise for an x that starts
// with the end of a marker. An x that fits inside a marker, or contains a
// whole one, is refused. With that, redacted output never contains a
// registered form (FuzzRedact checks it).
func closure(x []byte, set map[string]bool, depth int) error {
	if set[string(x)] {
		return nil
	}
	if len(x) < MinSecretLen {
		return fmt.Errorf("%w: a part of it next to a marker is %d bytes", ErrSecretTooShort, len(x))
	}
	if depth > 64 {
		return ErrSecretMarker
	}
	n := len(markerTemplate)
	for off := 0; off+len(x) <= n; off++ {
		if consistent(x, off) {
			return ErrSecretMarker
		}
	}
	for i := 0; i+n <= len(x); i++ {
		if consistent(x[i:i+n], 0) {
			return ErrSecretMarker
		}
	}
	set[string(x)] = true
	for i := 1; i < len(x); i++ {
		if x[i] == '<' && len(x)-i < n && consistent(x[i:], 0) {
			if err := closure(x[:i], set, depth+1); err != nil {
				return err
			}
		}
	}
	for j := 1; j < len(x); j++ {
		if x[j-1] == '>' && j < n && consistent(x[:j], n-j) {
			if err := closure(x[j:], set, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

type region struct {
	start, end int
	fp         string
}

// regions finds secrets in b, leftmost first and the longest at each
// position, starting the search at positions before limit.
func (r *Redactor) regions(b []byte, limit int) []region {
	var regs []region
	for s := 0; s < limit && s+1 < len(b); {
		var best *pattern
		for _, p := range r.byKey[key2(b[s], b[s+1])] {
			if len(p.b) <= len(b)-s && equalFold(b[s:s+len(p.b)], p.b) {
				best = p
				break
			}
		}
		if best == nil {
			s++
			continue
		}
		regs = append(regs, region{s, s + len(best.b), best.fp})
		s += len(best.b)
	}
	return regs
}

// equalFold compares b with folded p.
func equalFold(b, p []byte) bool {
	for i, c := range p {
		if fold(b[i]) != c {
			return false
		}
	}
	return true
}

func render(b []byte, regs []region) []byte {
	if len(regs) == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+len(regs)*len(markerTemplate))
	at := 0
	for _, g := range regs {
		out = append(out, b[at:g.start]...)
		out = append(out, marker(g.fp)...)
		at = g.end
	}
	return append(out, b[at:]...)
}

// RedactBytes returns b with every registered secret replaced by its
// marker. It returns b itself when there is nothing to replace.
func (r *Redactor) RedactBytes(b []byte) []byte {
	if r == nil {
		return b
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return render(b, r.regions(b, len(b)))
}

// Redact is RedactBytes for a string.
func (r *Redactor) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	b := []byte(s)
	out := r.RedactBytes(b)
	if len(out) == len(b) && &out[0] == &b[0] {
		return s
	}
	return string(out)
}

// RedactError returns an error whose message is err's redacted; errors.Is
// and errors.As still see err. It returns err itself when nothing in its
// message is secret, and nil for nil.
func (r *Redactor) RedactError(err error) error {
	if err == nil || r == nil {
		return err
	}
	msg := err.Error()
	red := r.Redact(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// MaxLen is the length of the longest registered form: how much text a
// stream holds back so that a secret split between writes is still caught.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.maxLen
}

// cut splits b where no secret can cross: it returns the redacted text of
// b[:n] and n. Everything from n on may still be the start of a secret.
// With final set, all of b is redacted.
func (r *Redactor) cut(b []byte, final bool) ([]byte, int) {
	if r == nil {
		return b, len(b)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if final || r.maxLen == 0 {
		return render(b, r.regions(b, len(b))), len(b)
	}
	// A secret starting before limit lies wholly within b.
	limit := len(b) - r.maxLen + 1
	if limit <= 0 {
		return nil, 0
	}
	regs := r.regions(b, limit)
	n := limit
	if len(regs) > 0 && regs[len(regs)-1].end > n {
		n = regs[len(regs)-1].end
	}
	return render(b[:n], regs), n
}

// RedactStream redacts a stream written in pieces, catching secrets split
// between writes: it holds back up to MaxLen()-1 bytes until the next
// Write or Flush. The concatenated output equals the Redactor's output for
// the concatenated input. It is not safe for concurrent use.
type RedactStream struct {
	r       *Redactor
	pending []byte
}

// NewStream starts a RedactStream.
func (r *Redactor) NewStream() *RedactStream { return &RedactStream{r: r} }

// Write takes the next piece and returns the redacted text that is ready.
func (s *RedactStream) Write(p []byte) []byte {
	s.pending = append(s.pending, p...)
	out, n := s.r.cut(s.pending, false)
	out = slices.Clone(out)
	s.pending = append(s.pending[:0], s.pending[n:]...)
	return out
}

// Flush returns the rest, redacted, and empties the stream.
func (s *RedactStream) Flush() []byte {
	out, _ := s.r.cut(s.pending, true)
	out = slices.Clone(out)
	s.pending = s.pending[:0]
	return out
}
