package registry

import (
	"context"
	"crypto/x509"
	"fmt"
)

// StillValid reports why an established session may no longer stay
// connected — the device disabled, its credential no longer ACTIVE, a
// certificate of its chain (leaf first) revoked by the certificate above
// it — or "" when it may. Endpoints call it when a session becomes visible
// and after revocations.
func (r *Registry) StillValid(ctx context.Context, project, device string, credentialID int64, chain []*x509.Certificate) string {
	if project != "" && device != "" {
		if d, err := r.Device(ctx, project, device); err == nil && d.Disabled {
			return "device disabled"
		}
	}
	if credentialID != 0 {
		if c, err := r.Credential(ctx, credentialID); err == nil && c.State != StateActive {
			return "credential " + string(c.State)
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		revoked, err := r.IsRevoked(ctx, Fingerprint(chain[i+1].Raw), fmt.Sprintf("%x", chain[i].SerialNumber))
		if err == nil && revoked {
			if i == 0 {
				return "certificate revoked"
			}
			return "issuing CA certificate revoked: " + chain[i].Subject.CommonName
		}
	}
	return ""
}
