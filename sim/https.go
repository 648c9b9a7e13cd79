package sim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// HTTPSProvisionOptions configures run-time CSR provisioning (the TI
// CC3220 flow of TI's CC3220 run-time provisioning).
type HTTPSProvisionOptions struct {
	// URL is the cloud's HTTPS base URL, e.g. https://127.0.0.1:8443.
	URL string
	// UDID goes into the CSR's subject CN.
	UDID string
	// Key is the device's pre-burned key pair; it signs the CSR and never
	// leaves the device.
	Key crypto.Signer
	// RootCAs verifies the provisioning server (server authentication
	// only, as in TI's flow). Nil skips verification.
	RootCAs *x509.CertPool
	// Timeout bounds the whole exchange (default 10 s).
	Timeout time.Duration
}

// RefusedError is the cloud refusing a provisioning request: its HTTP
// status and the reason it gave.
type RefusedError struct {
	Status string // "403 Forbidden"
	Reason string // the answer's "error", or its body
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("sim: provision refused: %s: %s", e.Status, e.Reason)
}

// ProvisionHTTPS builds a CSR with the UDID in its subject, signed by the
// pre-burned key, posts it to /v1/provision/csr and returns the issued
// certificate chain (DER, leaf first). A refusal by the cloud is a
// *RefusedError.
func ProvisionHTTPS(ctx context.Context, o HTTPSProvisionOptions) ([][]byte, error) {
	if o.Key == nil || o.UDID == "" {
		return nil, errors.New("sim: https provisioning needs a UDID and a key")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: o.UDID}}, o.Key)
	if err != nil {
		return nil, fmt.Errorf("sim: csr: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.URL, "/")+"/v1/provision/csr",
		bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})))
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-pem-file")
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: o.RootCAs, InsecureSkipVerify: o.RootCAs == nil, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sim: provision: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("sim: provision: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, &RefusedError{Status: resp.Status, Reason: msg}
	}
	var chain [][]byte
	for rest := body; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("sim: provision: no certificate in the answer")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("sim: provision: %w", err)
	}
	if leaf.Subject.CommonName != o.UDID {
		return nil, fmt.Errorf("sim: provision: certificate is for %q, not %q", leaf.Subject.CommonName, o.UDID)
	}
	if pub, ok := o.Key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("sim: provision: certificate is for another key")
	}
	return chain, nil
}
