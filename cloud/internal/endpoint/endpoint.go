// Package endpoint holds what the cloud's endpoints (CoAP, MQTT, HTTPS) share: their server certificate, event recording and the cleaning of peer-supplied strings.
package endpoint

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// ServerCertValidity is the validity of an endpoint's server certificate.
const ServerCertValidity = 90 * 24 * time.Hour

// recordTimeout bounds the write of one event.
const recordTimeout = 5 * time.Second

// ServerHosts lists the SANs of the server certificate of an endpoint
// bound to addr: localhost, 127.0.0.1 and ::1, then hosts, then the host
// of addr unless it is empty or a wildcard (0.0.0.0, ::).
func ServerHosts(addr string, hosts []string) []string {
	out := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		out = append(out, h)
	}
	return out
}

// ServerCert issues, with ca, the server certificate of an endpoint bound
// to addr, for ServerHosts(addr, hosts), valid for ServerCertValidity.
func ServerCert(ca *fakeca.CA, addr string, hosts []string) (tls.Certificate, error) {
	return ca.ServerCert(ServerHosts(addr, hosts), ServerCertValidity)
}

// Record appends e to the registry's event log. The endpoint's work is
// done whatever happens here, so a failure is logged, not returned.
func Record(reg *registry.Registry, log *slog.Logger, e registry.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if _, err := reg.Record(ctx, e); err != nil {
		log.Error("record event", "kind", e.Kind, "err", err)
	}
}

// Printable makes a peer-supplied string safe for logs and events: it
// keeps at most 128 bytes and replaces control characters by '?'.
func Printable(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
