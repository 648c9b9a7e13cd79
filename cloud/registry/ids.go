package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// MaxIDLen is the longest project or device id.
const MaxIDLen = 64

// ValidID reports whether id is a valid project or device id: 1 to 64
// characters of [A-Za-z0-9._:-]. The error wraps ErrInvalid and quotes id.
func ValidID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id %q must be 1..%d characters", ErrInvalid, clip(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return fmt.Errorf("%w: id %q: character %q not in [A-Za-z0-9._:-]", ErrInvalid, clip(id), id[i])
		}
	}
	return nil
}

func idChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == ':', c == '-':
		return true
	}
	return false
}

// PSKIdentity builds the Golioth-style PSK identity "<device>@<project>"
// that ParsePSKIdentity splits: for valid ids, ParsePSKIdentity(
// PSKIdentity(d, p)) returns d and p. It does not validate; the registry
// does when the identity is stored or presented.
func PSKIdentity(device, project string) string { return device + "@" + project }

// ParsePSKIdentity splits a Golioth-style PSK identity "<device>@<project>"
// on its last '@'. Both parts must be valid ids; the error wraps ErrInvalid.
// The device part names the key rather than strictly the device: a device
// holding two PSKs has two identities.
func ParsePSKIdentity(s string) (device, project string, err error) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", "", fmt.Errorf("%w: psk identity %q has no '@'", ErrInvalid, clip(s))
	}
	device, project = s[:at], s[at+1:]
	if err := ValidID(device); err != nil {
		return "", "", fmt.Errorf("psk identity %q: device part: %w", clip(s), err)
	}
	if err := ValidID(project); err != nil {
		return "", "", fmt.Errorf("psk identity %q: project part: %w", clip(s), err)
	}
	return device, project, nil
}

// NormalizeSerial returns a certificate serial number in the registry's
// form: lowercase hex without leading zeros ("0" for zero), with an
// optional leading '-' for the negative serials some old CAs issued. It
// accepts upper case, a "0x" prefix and colon separators ("01:A2:..."),
// as openssl prints them. This is the form fmt's %x gives a *big.Int.
func NormalizeSerial(s string) (string, error) {
	in := s
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s = s[2:]
	}
	if len(s) == 0 || len(s) > 256 {
		return "", fmt.Errorf("%w: serial %q", ErrInvalid, clip(in))
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' && i > 0 && i < len(s)-1 && s[i-1] != ':':
			continue
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%w: serial %q is not hex", ErrInvalid, clip(in))
		}
		if len(b) == 0 && c == '0' {
			continue
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "0", nil
	}
	if neg {
		return "-" + string(b), nil
	}
	return string(b), nil
}

// NormalizeFingerprint returns a SHA-256 fingerprint as 64 lowercase hex
// digits; it accepts upper case and colon separators.
func NormalizeFingerprint(fp string) (string, error) {
	if len(fp) == 64 && isLowerHex(fp) {
		return fp, nil // fast path
	}
	s := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	if len(s) != 64 || !isLowerHex(s) {
		return "", fmt.Errorf("%w: fingerprint %q is not 64 hex digits", ErrInvalid, clip(fp))
	}
	return s, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Fingerprint returns the hex SHA-256 of b (a certificate's DER, or a
// key).
func Fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// clip shortens a caller- or peer-supplied string for an error message.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
