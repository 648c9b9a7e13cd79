package cloud

import (
	"errors"
	"fmt"

	"github.com/credloop/credloop/cloud/internal/coap"
)

// DTLSPSKStack names the DTLS implementation that serves the CoAP
// endpoint's PSK clients. Certificate clients are always served by
// pion/dtls.
type DTLSPSKStack string

const (
	// DTLSPSKCredloop, the default: credloop's own DTLS 1.2 PSK server
	// (internal/dtlspsk) serves every PSK client whose first acceptable
	// suite is TLS_PSK_WITH_AES_128_GCM_SHA256, _CCM or _CCM_8; pion
	// serves certificates and the CBC suite. It costs the server about
	// half of pion's CPU per handshake and under half of its memory per
	// established session (see BENCHMARKS.md), and negotiates what pion
	// would.
	DTLSPSKCredloop DTLSPSKStack = "credloop"
	// DTLSPSKPion: pion/dtls serves every client, PSK included.
	DTLSPSKPion DTLSPSKStack = "pion"
)

// ErrDTLSPSKStack is returned for a DTLSPSKStack that is neither
// "credloop" nor "pion".
var ErrDTLSPSKStack = errors.New("cloud: unknown DTLS PSK stack")

// ParseDTLSPSKStack parses "credloop" or "pion"; "" is the default,
// DTLSPSKCredloop.
func ParseDTLSPSKStack(s string) (DTLSPSKStack, error) {
	switch st := DTLSPSKStack(s); st {
	case "":
		return DTLSPSKCredloop, nil
	case DTLSPSKCredloop, DTLSPSKPion:
		return st, nil
	}
	return "", fmt.Errorf("%w %q: want %q or %q", ErrDTLSPSKStack, s, DTLSPSKCredloop, DTLSPSKPion)
}

// pskStack is the CoAP endpoint's name for st.
func (st DTLSPSKStack) pskStack() (coap.PSKStack, error) {
	st, err := ParseDTLSPSKStack(string(st))
	if err != nil {
		return "", err
	}
	if st == DTLSPSKPion {
		return coap.PSKStackPion, nil
	}
	return coap.PSKStackCredloop, nil
}
