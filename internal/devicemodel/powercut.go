package devicemodel

import (
	"fmt"
	"strings"
)

// PowerCut is the fault injection every emulated non-volatile store
// shares (MemStore, the board emulators' flash and NVS stores): a point
// armed to lose power at the next write that matches it. Points name
// writes: "set:<key>" and "delete:<key>" (Op.Point), or a store's own
// ("write:<file>"); a pattern is a point, a prefix ending in "*"
// ("set:psk_*"), or "any". The zero value is disarmed. A PowerCut is not
// safe for concurrent use: the store guards it with its own lock.
type PowerCut struct {
	armed string
}

// Arm makes the next write whose point matches pattern lose power; an
// empty pattern disarms.
func (c *PowerCut) Arm(pattern string) { c.armed = pattern }

// Disarm clears the armed point.
func (c *PowerCut) Disarm() { c.armed = "" }

// Armed returns the armed pattern, "" when disarmed.
func (c *PowerCut) Armed() string { return c.armed }

// Check is called before a store applies writes named by points, all or
// nothing. If the armed pattern matches one of them, the cut fires: it
// disarms and returns the first matching point and an error wrapping
// ErrPowerCut that names it, and the store must change nothing. Otherwise
// it returns "" and nil.
func (c *PowerCut) Check(points ...string) (string, error) {
	for _, p := range points {
		if matchPoint(c.armed, p) {
			c.armed = ""
			return p, fmt.Errorf("%s: %w", p, ErrPowerCut)
		}
	}
	return "", nil
}

// CheckOps is Check for the points of ops.
func (c *PowerCut) CheckOps(ops []Op) (string, error) {
	for _, op := range ops {
		if p, err := c.Check(op.Point()); err != nil {
			return p, err
		}
	}
	return "", nil
}

// matchPoint reports whether pattern (a point, a prefix ending in "*", or
// "any") matches point. An empty pattern matches nothing.
func matchPoint(pattern, point string) bool {
	switch {
	case pattern == "":
		return false
	case pattern == "any":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(point, strings.TrimSuffix(pattern, "*"))
	default:
		return pattern == point
	}
}
