package cc3220

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
)

// Flash keys of the board's own files. The keys of internal/devicemodel
// (client_cert, client_key, client_ok, csr_key: a rotated certificate)
// share the same flash.
const (
	// KeyUDID is the pre-burned unique device id, as text.
	KeyUDID = "udid"
	// KeyDeviceKey is the pre-burned private key (key index 0), PKCS #8
	// DER. It never leaves the board.
	KeyDeviceKey = "devkey"
	// KeyDeviceCert is the certificate chain the cloud issued at run-time
	// provisioning, PEM, leaf first (SimpleLink's /cert/device.crt),
	// written by devicemodel.Device.InstallCertificate.
	KeyDeviceCert = devicemodel.KeyDeviceCert
)

// maxUDIDLen is the registry's limit on ids.
const maxUDIDLen = 64

// flash is the board's non-volatile storage: a devicemodel.Store kept in
// a file (devicemodel's CRC-checked image format), rewritten atomically
// (temporary file, fsync, rename) on every change, with power-cut
// injection. An empty path keeps it in memory.
type flash struct {
	path string

	mu    sync.Mutex
	mem   *devicemodel.MemStore
	cut   devicemodel.PowerCut
	onCut func(point string) // called with mu held, before the write fails
}

// openFlash loads the flash file at path, or starts an empty flash if the
// file does not exist yet (it is created at the first write).
func openFlash(path string) (*flash, error) {
	f := &flash{path: path, mem: devicemodel.NewMemStore()}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("cc3220: flash: %w", err)
	}
	if err := f.mem.UnmarshalBinary(data); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFlash, path, err)
	}
	return f, nil
}

// armCut makes the next write whose point matches fail as a power cut:
// "set:<key>", "delete:<key>", a prefix ending in "*", or "any". An empty
// point disarms.
func (f *flash) armCut(point string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut.Arm(point)
}

// Get implements devicemodel.Store.
func (f *flash) Get(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mem.Get(key)
}

// Set implements devicemodel.Store.
func (f *flash) Set(key string, val []byte) error {
	return f.Update(func(tx *devicemodel.Tx) error { return tx.Set(key, val) })
}

// Delete implements devicemodel.Store.
func (f *flash) Delete(key string) error {
	return f.Update(func(tx *devicemodel.Tx) error { return tx.Delete(key) })
}

// Keys implements devicemodel.Store.
func (f *flash) Keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mem.Keys()
}

// Update implements devicemodel.Store: the writes of fn land in the file
// all together or not at all. An armed power cut that matches one of them
// fails the whole update with devicemodel.ErrPowerCut.
func (f *flash) Update(fn func(tx *devicemodel.Tx) error) error {
	tx := devicemodel.NewTx(f.Get)
	if err := fn(tx); err != nil {
		return err
	}
	ops := tx.Ops()
	if len(ops) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if point, err := f.cut.CheckOps(ops); err != nil {
		if f.onCut != nil {
			f.onCut(point)
		}
		return err
	}
	img, err := f.mem.MarshalBinary()
	if err != nil {
		return fmt.Errorf("cc3220: flash: %w", err)
	}
	next := devicemodel.NewMemStore()
	if err := next.UnmarshalBinary(img); err != nil {
		return fmt.Errorf("cc3220: flash: %w", err)
	}
	err = next.Update(func(ntx *devicemodel.Tx) error {
		for _, op := range ops {
			var err error
			if op.Delete {
				err = ntx.Delete(op.Key)
			} else {
				err = ntx.Set(op.Key, op.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if img, err = next.MarshalBinary(); err != nil {
		return fmt.Errorf("cc3220: flash: %w", err)
	}
	if err := writeAtomic(f.path, img); err != nil {
		return err
	}
	f.mem = next
	return nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over path. The file holds the board's
// private key, so it is private (0600).
func writeAtomic(path string, data []byte) error {
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cc3220: flash: %w", err)
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("cc3220: flash: %w", werr)
	}
	return nil
}

// identity is what the board's ROM holds from the factory.
type identity struct {
	udid   string
	key    crypto.Signer
	keyDER []byte // PKCS #8 (secret)
	pubDER []byte // PKIX SubjectPublicKeyInfo
}

// pubFP is the fingerprint of the public key (as the cloud's events show
// it).
func (id identity) pubFP() string { return devicemodel.Fingerprint(id.pubDER) }

// validUDID checks a UDID against the registry's id rule.
func validUDID(s string) error {
	if s == "" || len(s) > maxUDIDLen {
		return fmt.Errorf("%w: UDID must be 1..%d characters", ErrFlash, maxUDIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("%w: UDID %q: character %q not in [A-Za-z0-9._:-]", ErrFlash, s, c)
		}
	}
	return nil
}

// newIdentity builds an identity from a UDID and a private key.
func newIdentity(udid string, key crypto.Signer) (identity, error) {
	if err := validUDID(udid); err != nil {
		return identity{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return identity{}, fmt.Errorf("%w: private key: %w", ErrFlash, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return identity{}, fmt.Errorf("%w: public key: %w", ErrFlash, err)
	}
	return identity{udid: udid, key: key, keyDER: keyDER, pubDER: pubDER}, nil
}

// decodeIdentity reads the pre-burned identity out of flash contents.
// ok is false when the flash holds none (a blank board); a half-written
// or unreadable identity is an error.
func decodeIdentity(get func(string) ([]byte, bool)) (identity, bool, error) {
	udid, hasUDID := get(KeyUDID)
	keyDER, hasKey := get(KeyDeviceKey)
	switch {
	case !hasUDID && !hasKey:
		return identity{}, false, nil
	case !hasUDID || !hasKey:
		return identity{}, false, fmt.Errorf("%w: UDID and key must both be present", ErrFlash)
	}
	key, err := fakeca.ParseKey(keyDER)
	if err != nil {
		return identity{}, false, fmt.Errorf("%w: pre-burned key (fp=%s) unreadable", ErrFlash, devicemodel.Fingerprint(keyDER))
	}
	id, err := newIdentity(string(udid), key)
	if err != nil {
		return identity{}, false, err
	}
	return id, true, nil
}

// decodeFlash checks a flash image: it must decode and, unless blank,
// hold a complete identity. It is what StartEmulator does with the file.
func decodeFlash(data []byte) (identity, bool, error) {
	m := devicemodel.NewMemStore()
	if err := m.UnmarshalBinary(data); err != nil {
		return identity{}, false, fmt.Errorf("%w: %w", ErrFlash, err)
	}
	return decodeIdentity(m.Get)
}

// burn returns the board's identity: the one in flash, or, on a blank
// board, one made now from the options (UDID, KeyFile) or from rnd, and
// written to flash. Options that disagree with the flash are an error:
// the flash belongs to another board.
func (f *flash) burn(o EmulatorOptions, rnd io.Reader) (identity, error) {
	var want crypto.Signer
	if o.KeyFile != "" {
		data, err := os.ReadFile(o.KeyFile)
		if err != nil {
			return identity{}, fmt.Errorf("cc3220: key file: %w", err)
		}
		if want, err = fakeca.ParseKey(data); err != nil {
			return identity{}, fmt.Errorf("cc3220: key file %s: %w", o.KeyFile, err)
		}
	}
	if o.UDID != "" {
		if err := validUDID(o.UDID); err != nil {
			return identity{}, err
		}
	}
	id, ok, err := decodeIdentity(f.Get)
	if err != nil {
		return identity{}, err
	}
	if ok {
		if o.UDID != "" && o.UDID != id.udid {
			return identity{}, fmt.Errorf("%w: UDID is %s, not %s", ErrFlashMismatch, id.udid, o.UDID)
		}
		if want != nil {
			pub, err := x509.MarshalPKIXPublicKey(want.Public())
			if err != nil || !bytes.Equal(pub, id.pubDER) {
				return identity{}, fmt.Errorf("%w: pre-burned key fp=%s is not the key file's", ErrFlashMismatch, id.pubFP())
			}
		}
		return id, nil
	}
	udid := o.UDID
	if udid == "" {
		b := make([]byte, 16)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return identity{}, fmt.Errorf("cc3220: make UDID: %w", err)
		}
		udid = strings.ToUpper(hex.EncodeToString(b))
	}
	if want == nil {
		if want, err = generateP256(rnd); err != nil {
			return identity{}, err
		}
	}
	if id, err = newIdentity(udid, want); err != nil {
		return identity{}, err
	}
	err = f.Update(func(tx *devicemodel.Tx) error {
		return errors.Join(tx.Set(KeyUDID, []byte(id.udid)), tx.Set(KeyDeviceKey, id.keyDER))
	})
	if err != nil {
		return identity{}, err
	}
	return id, nil
}

// generateP256 derives a P-256 key from rnd alone (rejection sampling), so
// a deterministic reader makes a deterministic board.
func generateP256(rnd io.Reader) (*ecdsa.PrivateKey, error) {
	buf := make([]byte, 32)
	for range 64 {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, fmt.Errorf("cc3220: make key: %w", err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), buf); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("cc3220: random source yields no valid P-256 key")
}

// seedReader is a deterministic byte stream: SHA-256(seed || counter).
// It makes test boards reproducible; it is not a source for real keys.
type seedReader struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (r *seedReader) Read(p []byte) (int, error) {
	for i := range p {
		if len(r.buf) == 0 {
			h := sha256.New()
			h.Write([]byte("credloop cc3220 seed\x00"))
			h.Write(r.seed)
			h.Write(binary.BigEndian.AppendUint64(nil, r.n))
			r.n++
			r.buf = h.Sum(nil)
		}
		p[i] = r.buf[0]
		r.buf = r.buf[1:]
	}
	return len(p), nil
}
