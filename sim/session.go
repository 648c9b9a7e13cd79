package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/dtls/v3"
	dtlselliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/credloop/credloop/internal/est"
)

// ErrHandshake wraps every failure to establish a DTLS session.
var ErrHandshake = errors.New("sim: dtls handshake failed")

// DialOptions configures one DTLS/CoAP session.
type DialOptions struct {
	// Addr is the cloud's coaps address, host:port.
	Addr string
	// Credential is what the device presents.
	Credential Credential
	// RootCAs verifies the server certificate in certificate mode. When
	// nil the server certificate is not verified (as with PSK).
	RootCAs *x509.CertPool
	// ServerName, when set with RootCAs, is checked against the server
	// certificate's names; empty, only its chain is verified.
	ServerName string
	// ServerCertificate, when set, pins the server: its leaf certificate
	// must be exactly these DER bytes, and RootCAs is not consulted (a
	// load generator verifies the chain once, then pins it).
	ServerCertificate []byte
	// HandshakeTimeout bounds the handshake; default 5 s.
	HandshakeTimeout time.Duration
	// CipherSuites overrides the suites offered.
	CipherSuites []dtls.CipherSuiteID
	// BlockSize is the block-wise transfer size: 16, 32, ..., 1024
	// (default 1024).
	BlockSize int
}

// Session is an established DTLS session with a CoAP client on top.
type Session struct {
	cc   *udpClient.Conn
	dtls *dtls.Conn
}

// Dial performs the DTLS handshake and returns a CoAP session.
func Dial(ctx context.Context, o DialOptions) (*Session, error) {
	szx := blockwise.SZX1024
	if o.BlockSize > 0 {
		found := false
		for z := blockwise.SZX16; z <= blockwise.SZX1024; z++ {
			if z.Size() == int64(o.BlockSize) {
				szx, found = z, true
			}
		}
		if !found {
			return nil, fmt.Errorf("sim: block size %d is not a power of two from 16 to 1024", o.BlockSize)
		}
	}
	conn, err := DialDTLS(ctx, o)
	if err != nil {
		return nil, err
	}
	cc := coapdtls.Client(conn,
		options.WithBlockwise(true, szx, 30*time.Second),
		options.WithCloseSocket(),
	)
	return &Session{cc: cc, dtls: conn}, nil
}

// DialDTLS performs the DTLS handshake of Dial over a connected UDP
// socket (so an ICMP port unreachable fails it at once) and returns the
// bare DTLS connection, without a CoAP client on top: for callers that
// speak CoAP themselves, like the load generator. Closing it sends
// close_notify and closes the socket.
func DialDTLS(ctx context.Context, o DialOptions) (*dtls.Conn, error) {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 5 * time.Second
	}
	suites := o.CipherSuites
	opts := []dtls.ClientOption{
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithServerName(o.ServerName),
		dtls.WithRootCAs(o.RootCAs),
		dtls.WithInsecureSkipVerify(o.RootCAs == nil),
		dtls.WithMTU(1200),
		// P-256 first, as devices with crypto accelerators (nRF CC310,
		// ESP32, CC3220) offer it; X25519 and P-384 remain acceptable.
		dtls.WithEllipticCurves(dtlselliptic.P256, dtlselliptic.X25519, dtlselliptic.P384),
	}
	if pin := o.ServerCertificate; pin != nil {
		// Options apply in order: these override RootCAs and
		// InsecureSkipVerify above.
		opts = append(opts,
			dtls.WithRootCAs(nil),
			dtls.WithInsecureSkipVerify(true),
			dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], pin) {
					return errors.New("sim: server certificate is not the pinned one")
				}
				return nil
			}))
	}
	c := o.Credential
	switch {
	case c.PSKIdentity != "":
		key := c.PSK
		opts = append(opts,
			dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			dtls.WithPSKIdentityHint([]byte(c.PSKIdentity)))
		if suites == nil {
			suites = []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CCM, dtls.TLS_PSK_WITH_AES_128_CCM_8}
		}
	case len(c.Chain) > 0 && (c.Key != nil || len(c.KeyDER) > 0):
		key, err := c.Signer()
		if err != nil {
			return nil, err
		}
		opts = append(opts, dtls.WithCertificates(tls.Certificate{Certificate: c.Chain, PrivateKey: key}))
		if suites == nil {
			suites = []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}
		}
	default:
		return nil, errors.New("sim: credential has neither a PSK nor a certificate and key")
	}
	if len(suites) > 0 {
		opts = append(opts, dtls.WithCipherSuites(suites...))
	}
	raddr, err := net.ResolveUDPAddr("udp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("sim: resolve %q: %w", o.Addr, err)
	}
	uc, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	conn, err := dtls.ClientWithOptions(&connectedPacketConn{uc}, raddr, opts...)
	if err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	return conn, nil
}

// connectedPacketConn lets pion use a connected UDP socket.
type connectedPacketConn struct{ *net.UDPConn }

func (c *connectedPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }
func (c *connectedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.RemoteAddr(), err
}

// Close ends the session.
func (s *Session) Close() error { return s.cc.Close() }

// Done is closed when the session ends (closed by either side).
func (s *Session) Done() <-chan struct{} { return s.cc.Done() }

// CipherSuite is the negotiated suite.
func (s *Session) CipherSuite() string {
	st, ok := s.dtls.ConnectionState()
	if !ok {
		return ""
	}
	return dtls.CipherSuiteName(st.CipherSuiteID)
}

// StatusError is a CoAP response other than success, with the server's
// diagnostic payload.
type StatusError struct {
	Code codes.Code
	Diag string
}

func (e *StatusError) Error() string {
	if e.Diag == "" {
		return "coap " + e.Code.String()
	}
	return "coap " + e.Code.String() + ": " + e.Diag
}

func check(resp *pool.Message, want ...codes.Code) ([]byte, error) {
	body, _ := resp.ReadBody()
	for _, w := range want {
		if resp.Code() == w {
			return body, nil
		}
	}
	return nil, &StatusError{Code: resp.Code(), Diag: string(body)}
}

// Hello is the cloud's answer to GET /hello.
type Hello struct {
	Device     string `json:"device"`
	Project    string `json:"project"`
	Method     string `json:"method"`
	Credential string `json:"credential"`
}

// Hello asks the cloud who it thinks this device is.
func (s *Session) Hello(ctx context.Context) (Hello, error) {
	var h Hello
	resp, err := s.cc.Get(ctx, "/hello")
	if err != nil {
		return h, fmt.Errorf("sim: hello: %w", err)
	}
	body, err := check(resp, codes.Content)
	if err != nil {
		return h, fmt.Errorf("sim: hello: %w", err)
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return h, fmt.Errorf("sim: hello: %w", err)
	}
	return h, nil
}

// PutState stores a JSON document under .d/<path>.
func (s *Session) PutState(ctx context.Context, path string, doc []byte) error {
	resp, err := s.cc.Post(ctx, "/.d/"+path, message.AppJSON, bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("sim: put state: %w", err)
	}
	if _, err := check(resp, codes.Changed, codes.Created); err != nil {
		return fmt.Errorf("sim: put state: %w", err)
	}
	return nil
}

// GetState reads the JSON document under .d/<path>.
func (s *Session) GetState(ctx context.Context, path string) ([]byte, error) {
	resp, err := s.cc.Get(ctx, "/.d/"+path)
	if err != nil {
		return nil, fmt.Errorf("sim: get state: %w", err)
	}
	body, err := check(resp, codes.Content)
	if err != nil {
		return nil, fmt.Errorf("sim: get state: %w", err)
	}
	return body, nil
}

// Keepalive sends the Golioth liveness message: a CON DELETE with no path
// (libcoap-based SDKs); any response proves the session is alive.
func (s *Session) Keepalive(ctx context.Context) error {
	req, err := s.cc.NewDeleteRequest(ctx, "")
	if err != nil {
		return err
	}
	defer s.cc.ReleaseMessage(req)
	req.Remove(message.URIPath)
	resp, err := s.cc.Do(req)
	if err != nil {
		return fmt.Errorf("sim: keepalive: %w", err)
	}
	if _, err := check(resp, codes.Deleted); err != nil {
		return fmt.Errorf("sim: keepalive: %w", err)
	}
	return nil
}

// CACerts fetches /.well-known/est/crts.
func (s *Session) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	resp, err := s.cc.Get(ctx, "/.well-known/est/crts")
	if err != nil {
		return nil, fmt.Errorf("sim: est crts: %w", err)
	}
	body, err := check(resp, codes.Content)
	if err != nil {
		return nil, fmt.Errorf("sim: est crts: %w", err)
	}
	return est.ParseCertsOnly(body)
}

// Enroll posts a DER CSR to /.well-known/est/sen (or sren when reenroll)
// and returns the issued certificate.
func (s *Session) Enroll(ctx context.Context, csrDER []byte, reenroll bool) (*x509.Certificate, error) {
	path := "/.well-known/est/sen"
	if reenroll {
		path = "/.well-known/est/sren"
	}
	resp, err := s.cc.Post(ctx, path, message.MediaType(est.CFPKCS10), bytes.NewReader(csrDER))
	if err != nil {
		return nil, fmt.Errorf("sim: est %s: %w", path, err)
	}
	body, err := check(resp, codes.Changed)
	if err != nil {
		return nil, fmt.Errorf("sim: est %s: %w", path, err)
	}
	certs, err := est.ParseCertsOnly(body)
	if err != nil {
		return nil, fmt.Errorf("sim: est %s: %w", path, err)
	}
	return certs[0], nil
}

// GetRaw performs a GET and returns the body of a 2.05 response.
func (s *Session) GetRaw(ctx context.Context, path string) ([]byte, error) {
	resp, err := s.cc.Get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("sim: get %s: %w", path, err)
	}
	body, err := check(resp, codes.Content)
	if err != nil {
		return nil, fmt.Errorf("sim: get %s: %w", path, err)
	}
	return body, nil
}

// PostRaw performs a POST of body in content format cf (block-wise when
// it is larger than a block) and returns the body of a 2.01 or 2.04
// response.
func (s *Session) PostRaw(ctx context.Context, path string, cf message.MediaType, body []byte) ([]byte, error) {
	resp, err := s.cc.Post(ctx, path, cf, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sim: post %s: %w", path, err)
	}
	out, err := check(resp, codes.Changed, codes.Created)
	if err != nil {
		return nil, fmt.Errorf("sim: post %s: %w", path, err)
	}
	return out, nil
}
