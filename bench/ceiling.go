package bench

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"time"
)

// Ceilings are crypto throughputs measured on one goroutine (ops/s), and
// what they allow for whole handshakes and issuance on this machine. See
// docs/benchmarks.md ("Ceilings").
type Ceilings struct {
	ECDSAP256Sign   float64 `json:"ecdsa_p256_sign"`
	ECDSAP256Verify float64 `json:"ecdsa_p256_verify"`
	ECDHP256        float64 `json:"ecdh_p256"`        // shared secret from a peer public key
	ECDHP256KeyGen  float64 `json:"ecdh_p256_keygen"` // ephemeral key generation
	PSKKeySchedule  float64 `json:"psk_key_schedule"` // TLS 1.2 PRF: master secret + key block from a PSK premaster
	Issue           float64 `json:"issue"`            // x509.CreateCertificate, P-256 CA and subject

	// Cores is runtime.GOMAXPROCS(0) at measurement time.
	Cores int `json:"cores"`

	// MutualHandshake: mutual ECDHE-ECDSA handshake pairs/s with client and
	// server in one process. Each side does 1 key generation, 1 ECDH, 1 sign
	// and 2 verifies (peer certificate + peer CertificateVerify or
	// ServerKeyExchange); a pair is two sides, spread over Cores cores:
	// Cores / (2 × side time). About 4,300/s on 2 cores.
	MutualHandshake float64 `json:"mutual_handshake"`
	// PSKHandshake: PSK handshake pairs/s co-located. Crypto is one key
	// schedule a side plus 4 Finished PRFs per pair (≈ 2 key schedules); a
	// pair also costs 6 datagrams at UDPDatagramCost each (UDP loopback send
	// + receive, not measured here): Cores / (2 key schedules + 2 × PRF
	// side + 6 datagrams). About 20k pairs/s per core.
	PSKHandshake float64 `json:"psk_handshake"`
	// CSRIssue: CSR signature check (one verify) + CreateCertificate on one
	// core: 1 / (1/ECDSAP256Verify + 1/Issue). docs/benchmarks.md cites 5.2k/s
	// for parse + check + create, of which parsing is a few µs.
	CSRIssue float64 `json:"csr_issue"`
	// CSRIssueAllCores is the same issuance (verify + CreateCertificate)
	// measured on Cores goroutines at once: what the machine gives when
	// every core issues, shared caches, SMT siblings and clock included,
	// rather than CSRIssue × Cores.
	CSRIssueAllCores float64 `json:"csr_issue_all_cores,omitempty"`
}

// UDPDatagramCost is the cost of one UDP loopback datagram (send +
// receive) used by the PSK handshake ceiling (docs/benchmarks.md).
const UDPDatagramCost = 5 * time.Microsecond

// MeasureCeilings runs each crypto operation on one goroutine for d, and
// CSR issuance on every core at once for d, and returns the rates and the
// derived ceilings. It takes about 7 × d.
func MeasureCeilings(ctx context.Context, d time.Duration) (Ceilings, error) {
	if d <= 0 {
		return Ceilings{}, fmt.Errorf("%w: ceiling duration must be > 0", ErrOptions)
	}
	var c Ceilings
	sig, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, fmt.Errorf("bench: ceiling key: %w", err)
	}
	digest := sha256.Sum256([]byte("credloop ceiling"))
	signature, err := ecdsa.SignASN1(rand.Reader, sig, digest[:])
	if err != nil {
		return c, fmt.Errorf("bench: ceiling sign: %w", err)
	}
	ours, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return c, fmt.Errorf("bench: ceiling key: %w", err)
	}
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return c, fmt.Errorf("bench: ceiling key: %w", err)
	}
	ca, caCert, subject, err := ceilingCA()
	if err != nil {
		return c, err
	}
	psk := make([]byte, 16)
	var cr, sr [32]byte
	_, _ = rand.Read(psk)
	_, _ = rand.Read(cr[:])
	_, _ = rand.Read(sr[:])

	steps := []struct {
		dst *float64
		op  func() error
	}{
		{&c.ECDSAP256Sign, func() error { _, err := ecdsa.SignASN1(rand.Reader, sig, digest[:]); return err }},
		{&c.ECDSAP256Verify, func() error {
			if !ecdsa.VerifyASN1(&sig.PublicKey, digest[:], signature) {
				return fmt.Errorf("bench: ceiling verify failed")
			}
			return nil
		}},
		{&c.ECDHP256, func() error { _, err := ours.ECDH(peer.PublicKey()); return err }},
		{&c.ECDHP256KeyGen, func() error { _, err := ecdh.P256().GenerateKey(rand.Reader); return err }},
		{&c.PSKKeySchedule, func() error { pskKeySchedule(psk, cr[:], sr[:]); return nil }},
		{&c.Issue, issuer(ca, caCert, subject)},
	}
	for _, s := range steps {
		r, err := opsPerSecond(ctx, d, s.op)
		if err != nil {
			return Ceilings{}, err
		}
		*s.dst = r
	}
	c.Cores = runtime.GOMAXPROCS(0)
	r, err := parallelOpsPerSecond(ctx, d, c.Cores, func() (func() error, error) {
		ca, caCert, subject, err := ceilingCA()
		if err != nil {
			return nil, err
		}
		issue := issuer(ca, caCert, subject)
		return func() error {
			if !ecdsa.VerifyASN1(&sig.PublicKey, digest[:], signature) {
				return fmt.Errorf("bench: ceiling verify failed")
			}
			return issue()
		}, nil
	})
	if err != nil {
		return Ceilings{}, err
	}
	c.CSRIssueAllCores = r
	c.derive()
	return c, nil
}

// derive computes the handshake and issuance ceilings from the measured
// rates (see the field comments).
func (c *Ceilings) derive() {
	inv := func(r float64) float64 {
		if r <= 0 {
			return 0
		}
		return 1 / r
	}
	cores := float64(max(c.Cores, 1))
	if side := inv(c.ECDHP256KeyGen) + inv(c.ECDHP256) + inv(c.ECDSAP256Sign) + 2*inv(c.ECDSAP256Verify); side > 0 &&
		c.ECDHP256KeyGen > 0 && c.ECDHP256 > 0 && c.ECDSAP256Sign > 0 && c.ECDSAP256Verify > 0 {
		c.MutualHandshake = cores / (2 * side)
	}
	if c.PSKKeySchedule > 0 {
		// Two sides × (key schedule + ≈ one key schedule of Finished PRFs).
		pair := 4*inv(c.PSKKeySchedule) + 6*UDPDatagramCost.Seconds()
		c.PSKHandshake = cores / pair
	}
	if c.Issue > 0 && c.ECDSAP256Verify > 0 {
		c.CSRIssue = 1 / (inv(c.ECDSAP256Verify) + inv(c.Issue))
	}
}

// opsPerSecond runs op repeatedly for at least d (and at least 3 times).
func opsPerSecond(ctx context.Context, d time.Duration, op func() error) (float64, error) {
	start := time.Now()
	var n int
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		// Check the time every few operations only.
		for range 4 {
			if err := op(); err != nil {
				return 0, err
			}
			n++
		}
		if el := time.Since(start); el >= d && n >= 3 {
			return float64(n) / el.Seconds(), nil
		}
	}
}

// parallelOpsPerSecond runs n goroutines, each with its own op from
// mk, for at least d and returns their summed rate.
func parallelOpsPerSecond(ctx context.Context, d time.Duration, n int, mk func() (func() error, error)) (float64, error) {
	ops := make([]func() error, max(n, 1))
	for i := range ops {
		op, err := mk()
		if err != nil {
			return 0, err
		}
		ops[i] = op
	}
	rates := make([]float64, len(ops))
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rates[i], errs[i] = opsPerSecond(ctx, d, op)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return sum, nil
}

// issuer returns an operation that issues one client certificate for
// subject from the CA (each call a new serial), as the Issue ceiling and
// the all-core CSR ceiling measure it.
func issuer(ca *ecdsa.PrivateKey, caCert *x509.Certificate, subject *ecdsa.PublicKey) func() error {
	var serial int64
	return func() error {
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "ceiling-device"},
			NotBefore:    caCert.NotBefore,
			NotAfter:     caCert.NotAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		_, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, subject, ca)
		return err
	}
}

// ceilingCA returns a P-256 CA key and certificate and a subject public key.
func ceilingCA() (*ecdsa.PrivateKey, *x509.Certificate, *ecdsa.PublicKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench: ceiling CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "credloop ceiling CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench: ceiling CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench: ceiling CA: %w", err)
	}
	dev, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench: ceiling device key: %w", err)
	}
	return key, cert, &dev.PublicKey, nil
}

// pskKeySchedule derives what a DTLS 1.2 PSK handshake derives: the
// premaster secret of RFC 4279 section 2 (uint16 N, N zero bytes, uint16 N,
// PSK), the master secret (RFC 5246 section 8.1) and a key block for
// TLS_PSK_WITH_AES_128_CCM_8 (2 × (16-byte key + 4-byte IV)).
func pskKeySchedule(psk, clientRandom, serverRandom []byte) []byte {
	n := len(psk)
	pms := make([]byte, 0, 4+2*n)
	pms = append(pms, byte(n>>8), byte(n))
	pms = append(pms, make([]byte, n)...)
	pms = append(pms, byte(n>>8), byte(n))
	pms = append(pms, psk...)
	seed := make([]byte, 0, 64)
	seed = append(append(seed, clientRandom...), serverRandom...)
	master := prf12(pms, "master secret", seed, 48)
	seed = append(append(seed[:0], serverRandom...), clientRandom...)
	return prf12(master, "key expansion", seed, 40)
}

// prf12 is the TLS 1.2 PRF with SHA-256: P_SHA256(secret, label + seed).
func prf12(secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	mac := hmac.New(sha256.New, secret)
	out := make([]byte, 0, n+sha256.Size)
	mac.Write(ls)
	a := mac.Sum(nil) // A(1)
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n]
}
