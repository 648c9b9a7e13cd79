package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/sim"
)

// ErrWorkload reports an unknown workload or options it cannot run with.
var ErrWorkload = errors.New("bench: workload")

// Workload names.
const (
	WorkloadSign     = "sign"
	WorkloadDTLSPSK  = "dtls-psk"
	WorkloadDTLSCert = "dtls-cert"
	WorkloadCoAP     = "coap"
	WorkloadEST      = "est"
	WorkloadMQTTMTLS = "mqtt-mtls"
)

// WorkloadInfo describes a workload for help texts.
type WorkloadInfo struct {
	Name     string
	Measures string
	Ceiling  string // Ceilings field efficiency is computed against; "" none
	External bool   // runs against --target (an external server)
}

// Workloads lists every workload in the order help shows them.
var Workloads = []WorkloadInfo{
	{WorkloadSign, "CSR -> certificate through the fake CA in-process (ParseCSR + SignCSR); no network", "csr_issue, all cores", false},
	{WorkloadDTLSPSK, "full DTLS 1.2 PSK handshake + one CoAP GET /hello + close, devices round-robin", "psk_handshake", true},
	{WorkloadDTLSCert, "full DTLS 1.2 mutual ECDHE-ECDSA handshake + one CoAP GET /hello + close", "mutual_handshake", false},
	{WorkloadCoAP, "CoAP GET /hello over DTLS sessions opened before the run (one per device)", "", true},
	{WorkloadEST, "EST-coaps sen (CSR -> certificate, registry write) over established PSK sessions", "csr_issue, all cores", false},
	{WorkloadMQTTMTLS, "TLS mutual handshake + MQTT 3.1.1 CONNECT -> CONNACK + DISCONNECT", "mutual_handshake", false},
	{WorkloadOnboard, "a new device per operation, registry writes included: --mode jitp (MQTT first connect closed, retry CONNACK 0) or est (PSK session + EST enrollment)", "mutual_handshake / 2 (jitp), csr_issue, all cores (est)", false},
}

// Project is the registry project the workloads create in an embedded cloud.
const Project = "bench"

// DefaultDevices is the device count when WorkloadOptions.Devices is 0.
const DefaultDevices = 100

// WorkloadOptions configures Prepare. Zero values mean defaults.
type WorkloadOptions struct {
	// Cloud is the embedded cloud the workload runs against; its registry
	// receives the devices. Nil means an external server at Target (only
	// dtls-psk and coap), or nothing for sign.
	Cloud *cloud.Cloud
	// Target is the external server's address (host:port); used when
	// Cloud is nil: the CoAP/DTLS endpoint, or the MQTT/TLS one for
	// mqtt-mtls and onboard jitp.
	Target string
	// Registry, with Target, is the target's registry (a cloud in another
	// process on the same database file, see --server-proc): workloads
	// register their devices there as they do in an embedded cloud's.
	Registry *registry.Registry
	// RootCAs verifies an external target's server certificate, named
	// ServerName (default "localhost"). Nil with an external target: not
	// verified.
	RootCAs    *x509.CertPool
	ServerName string
	// ClientCA issues the device certificates of dtls-cert and mqtt-mtls
	// (default: a fresh P-256 root); devices present the leaf alone. An
	// external target without Registry must trust its issuer already
	// (e.g. Mosquitto's cafile).
	ClientCA *cloud.CA
	// PSKIdentity and PSK, when both set, are what every device presents
	// (an external server's single identity); nothing is registered.
	PSKIdentity string
	PSK         []byte
	// Path is the CoAP resource GET by dtls-psk, dtls-cert and coap
	// (default "/hello"; "/" is what libcoap's coap-server answers).
	Path string
	// Devices is the fleet size (default DefaultDevices); Shard selects
	// this process's slice of it, so device names are fleet-wide.
	Devices int
	Shard   Shard
	// PrepareConcurrency bounds sessions opened at once before the run
	// (default 16).
	PrepareConcurrency int
	// PionClient makes dtls-psk handshake with pion/dtls (sim.DialDTLS)
	// instead of the load generator's own client (internal/dtlspsk),
	// which costs about half as much CPU and 1/20 of the allocations per
	// handshake, so more of the machine goes to the server under test.
	PionClient bool
	// OnboardMode is the onboard workload's mode: OnboardJITP (default)
	// or OnboardEST.
	OnboardMode string
}

// Workload is a prepared workload: Op for Options.Op, Cleanup to call
// after the run, and the ceiling efficiency is reported against.
type Workload struct {
	Name string
	// Devices is how many devices this shard drives.
	Devices int
	Op      func(ctx context.Context, i int64) error
	Cleanup func() error
	// CeilingName names the ceiling; Ceiling computes it from the ceilings
	// measured in the run. Both are empty/nil for throughput-only workloads.
	CeilingName string
	Ceiling     func(Ceilings) float64
}

// Apply records the workload's ceiling (from c) and all of c in r.
func (w *Workload) Apply(r *Result, c Ceilings) {
	r.Ceilings = &c
	if w.Ceiling != nil {
		r.SetCeiling(w.CeilingName, w.Ceiling(c))
	}
}

// Prepare builds the named workload: registry entries, keys, certificates
// and sessions are made here, before any measured operation.
func Prepare(ctx context.Context, name string, o WorkloadOptions) (*Workload, error) {
	if o.Devices <= 0 {
		o.Devices = DefaultDevices
	}
	if o.Path == "" {
		o.Path = "/hello"
	}
	if o.PrepareConcurrency <= 0 {
		o.PrepareConcurrency = 16
	}
	first, n := o.Shard.Devices(o.Devices)
	if n == 0 {
		return nil, fmt.Errorf("%w: shard %s of %d devices is empty", ErrWorkload, o.Shard, o.Devices)
	}
	p := &wlPrep{o: o, first: first, n: n}
	var (
		w   *Workload
		err error
	)
	switch name {
	case WorkloadSign:
		w, err = p.sign()
	case WorkloadDTLSPSK:
		w, err = p.dtlsPSK(ctx)
	case WorkloadDTLSCert:
		w, err = p.dtlsCert(ctx)
	case WorkloadCoAP:
		w, err = p.coap(ctx)
	case WorkloadEST:
		w, err = p.est(ctx)
	case WorkloadMQTTMTLS:
		w, err = p.mqtt(ctx)
	case WorkloadOnboard:
		mode := o.OnboardMode
		if mode == "" {
			mode = OnboardJITP
		}
		w, err = Onboard(ctx, OnboardOptions{Mode: mode, Devices: o.Devices, Shard: o.Shard, Cloud: o.Cloud, Target: o.Target,
			Registry: o.Registry, RootCAs: o.RootCAs})
	default:
		return nil, fmt.Errorf("%w: unknown workload %q", ErrWorkload, name)
	}
	if err != nil {
		return nil, err
	}
	w.Name, w.Devices = name, n
	if w.Cleanup == nil {
		w.Cleanup = func() error { return nil }
	}
	return w, nil
}

// wlPrep holds what the workload constructors share.
type wlPrep struct {
	o        WorkloadOptions
	first, n int
}

func (p *wlPrep) device(k int) string { return fmt.Sprintf("dev-%06d", p.first+k) }

// reg is the target's registry: the embedded cloud's, or Registry.
func (p *wlPrep) reg() *registry.Registry {
	if p.o.Cloud != nil {
		return p.o.Cloud.Registry
	}
	return p.o.Registry
}

func (p *wlPrep) needRegistry(name string) error {
	if p.reg() == nil {
		return fmt.Errorf("%w: %s registers its devices in the target's registry: run it against the embedded cloud (no --target) or --server-proc", ErrWorkload, name)
	}
	return nil
}

func (p *wlPrep) coapAddr() string {
	if p.o.Cloud != nil {
		return p.o.Cloud.Addrs().CoAPS
	}
	return p.o.Target
}

func (p *wlPrep) mqttAddr() string {
	if p.o.Cloud != nil {
		return p.o.Cloud.Addrs().MQTTS
	}
	return p.o.Target
}

// roots returns what verifies the server certificate and its name; nil
// roots: do not verify.
func (p *wlPrep) roots() (*x509.CertPool, string) {
	name := p.o.ServerName
	if name == "" {
		name = "localhost"
	}
	if p.o.RootCAs != nil {
		return p.o.RootCAs, name
	}
	if p.o.Cloud != nil {
		roots := x509.NewCertPool()
		roots.AddCert(p.o.Cloud.CA().Root())
		return roots, name
	}
	return nil, name
}

// clientCA returns the CA that issues device certificates.
func (p *wlPrep) clientCA() (*cloud.CA, error) {
	if p.o.ClientCA != nil {
		return p.o.ClientCA, nil
	}
	ca, err := cloud.NewCA(cloud.CAOptions{Name: "credloop bench device CA", NoIntermediate: true})
	if err != nil {
		return nil, fmt.Errorf("bench: device CA: %w", err)
	}
	return ca, nil
}

func (p *wlPrep) ensureProject(ctx context.Context) error {
	if _, err := p.reg().CreateProject(ctx, Project); err != nil && !errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("bench: create project: %w", err)
	}
	return nil
}

// csrIssueCores is the CSR issuance ceiling on every core: measured with
// every core issuing at once when the run did, else CSRIssue × Cores.
func csrIssueCores(c Ceilings) float64 {
	if c.CSRIssueAllCores > 0 {
		return c.CSRIssueAllCores
	}
	return c.CSRIssue * float64(max(c.Cores, 1))
}

func (p *wlPrep) sign() (*Workload, error) {
	ca, err := fakeca.NewRoot("credloop bench CA", fakeca.ECDSAP256, 0, fakeca.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	csrs := make([][]byte, p.n)
	for k := range csrs {
		if csrs[k], _, err = newCSR(p.device(k)); err != nil {
			return nil, err
		}
	}
	return &Workload{
		Op: func(_ context.Context, i int64) error {
			csr, err := fakeca.ParseCSR(csrs[i%int64(len(csrs))])
			if err != nil {
				return err
			}
			_, err = ca.SignParsedCSR(csr, fakeca.Policy{})
			return err
		},
		CeilingName: "csr_issue, all cores",
		Ceiling:     csrIssueCores,
	}, nil
}

// newCSR makes a P-256 key and a DER CSR for CN=device, O=Project.
func newCSR(device string) ([]byte, *ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: device, Organization: []string{Project}},
	}, k)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: csr: %w", err)
	}
	return der, k, nil
}

// pskCredentials registers one PSK device per slot in the embedded cloud,
// or returns the given identity for every slot.
func (p *wlPrep) pskCredentials(ctx context.Context) ([]sim.Credential, error) {
	if p.o.PSKIdentity != "" && len(p.o.PSK) > 0 {
		return []sim.Credential{{PSKIdentity: p.o.PSKIdentity, PSK: p.o.PSK}}, nil
	}
	if p.reg() == nil {
		return nil, fmt.Errorf("%w: an external target needs a PSK identity and key (--psk-identity, --psk)", ErrWorkload)
	}
	if err := p.ensureProject(ctx); err != nil {
		return nil, err
	}
	reg := p.reg()
	creds := make([]sim.Credential, p.n)
	for k := range creds {
		dev := p.device(k)
		key := make([]byte, 16)
		if _, err := io.ReadFull(rand.Reader, key); err != nil {
			return nil, fmt.Errorf("bench: psk: %w", err)
		}
		if _, err := reg.CreateDevice(ctx, Project, dev); err != nil && !errors.Is(err, registry.ErrExists) {
			return nil, fmt.Errorf("bench: create device %s: %w", dev, err)
		}
		id := registry.PSKIdentity(dev, Project)
		if _, err := reg.AddPSK(ctx, Project, dev, id, key); errors.Is(err, registry.ErrExists) {
			// Registered by an earlier workload of this cloud: reuse it.
			cred, _, lerr := reg.PSKByIdentity(ctx, id)
			if lerr != nil {
				return nil, fmt.Errorf("bench: psk %s: %w", id, lerr)
			}
			key = cred.PSK
		} else if err != nil {
			return nil, fmt.Errorf("bench: add psk %s: %w", id, err)
		}
		creds[k] = sim.Credential{PSKIdentity: id, PSK: key}
	}
	return creds, nil
}

// leanSuites are what the load generator's own DTLS client offers, in
// the order sim.Dial offers them.
var leanSuites = []uint16{dtlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256, dtlspsk.TLS_PSK_WITH_AES_128_CCM, dtlspsk.TLS_PSK_WITH_AES_128_CCM_8}

// leanPSKOp handshakes with the load generator's own DTLS 1.2 PSK client
// (internal/dtlspsk: no goroutine, ~30 allocations per handshake), GETs
// path and closes with close_notify.
func leanPSKOp(addr string, creds []sim.Credential, path string) func(context.Context, int64) error {
	cfgs := make([]*dtlspsk.Config, len(creds))
	for k, c := range creds {
		cfgs[k] = &dtlspsk.Config{Identity: c.PSKIdentity, Key: c.PSK, CipherSuites: leanSuites}
	}
	return func(ctx context.Context, i int64) error {
		conn, err := dtlspsk.Dial(ctx, addr, cfgs[i%int64(len(cfgs))])
		if err != nil {
			return err
		}
		var token [8]byte
		binary.BigEndian.PutUint64(token[:], uint64(i))
		err = coapGet(ctx, conn, uint16(i), token[:], path)
		if cerr := conn.Close(); err == nil && cerr != nil {
			err = cerr
		}
		return err
	}
}

// handshakeOp dials a new DTLS session with credential i, GETs path
// (CON, 2.xx expected) and closes it with close_notify.
func handshakeOp(d sim.DialOptions, creds []sim.Credential, path string) func(context.Context, int64) error {
	return func(ctx context.Context, i int64) error {
		o := d
		o.Credential = creds[i%int64(len(creds))]
		conn, err := sim.DialDTLS(ctx, o)
		if err != nil {
			return err
		}
		var token [8]byte
		binary.BigEndian.PutUint64(token[:], uint64(i))
		err = coapGet(ctx, conn, uint16(i), token[:], path)
		if cerr := conn.Close(); err == nil && cerr != nil {
			err = cerr
		}
		return err
	}
}

func (p *wlPrep) dtlsPSK(ctx context.Context) (*Workload, error) {
	creds, err := p.pskCredentials(ctx)
	if err != nil {
		return nil, err
	}
	op := leanPSKOp(p.coapAddr(), creds, p.o.Path)
	if p.o.PionClient {
		op = handshakeOp(sim.DialOptions{Addr: p.coapAddr()}, creds, p.o.Path)
	}
	return &Workload{
		Op:          op,
		CeilingName: "psk_handshake",
		Ceiling:     func(c Ceilings) float64 { return c.PSKHandshake },
	}, nil
}

func (p *wlPrep) dtlsCert(ctx context.Context) (*Workload, error) {
	if err := p.needRegistry(WorkloadDTLSCert); err != nil {
		return nil, err
	}
	if err := p.ensureProject(ctx); err != nil {
		return nil, err
	}
	own, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench: device CA: %w", err)
	}
	reg := p.reg()
	if _, err := reg.TrustRoot(ctx, Project, own.Root.Cert.Raw); err != nil && !errors.Is(err, registry.ErrExists) {
		return nil, fmt.Errorf("bench: trust root: %w", err)
	}
	creds := make([]sim.Credential, p.n)
	for k := range creds {
		dev := p.device(k)
		cert, key, err := own.Issuing.Issue(dev, Project, fakeca.ECDSAP256, 0)
		if err != nil {
			return nil, fmt.Errorf("bench: issue %s: %w", dev, err)
		}
		if _, err := reg.CreateDevice(ctx, Project, dev); err != nil && !errors.Is(err, registry.ErrExists) {
			return nil, fmt.Errorf("bench: create device %s: %w", dev, err)
		}
		if _, err := reg.AddCertificate(ctx, Project, dev, cert.Raw, registry.StateActive); err != nil {
			return nil, fmt.Errorf("bench: add certificate %s: %w", dev, err)
		}
		creds[k] = sim.Credential{Chain: [][]byte{cert.Raw, own.Issuing.Cert.Raw}, Key: key}
	}
	roots, name := p.roots()
	d := sim.DialOptions{Addr: p.coapAddr(), RootCAs: roots, ServerName: name} // nil roots: not verified
	// Verify the server's chain once, then pin its certificate: the
	// operations measure the server, not the client re-verifying the same
	// chain (a device does that once per boot, not per handshake).
	if pin, err := serverLeaf(ctx, d, creds[0]); err != nil {
		return nil, err
	} else if roots != nil {
		d.ServerCertificate = pin
	}
	return &Workload{
		Op:          handshakeOp(d, creds, p.o.Path),
		CeilingName: "mutual_handshake",
		Ceiling:     func(c Ceilings) float64 { return c.MutualHandshake },
	}, nil
}

// serverLeaf handshakes once with cred (chain verified when d has roots)
// and returns the server's certificate.
func serverLeaf(ctx context.Context, d sim.DialOptions, cred sim.Credential) ([]byte, error) {
	d.Credential = cred
	conn, err := sim.DialDTLS(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("bench: first handshake: %w", err)
	}
	defer conn.Close()
	st, ok := conn.ConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		return nil, fmt.Errorf("bench: first handshake: the server presented no certificate")
	}
	return st.PeerCertificates[0], nil
}

// sessions opens one PSK session per credential slot (at least one).
func (p *wlPrep) sessions(ctx context.Context) ([]*sim.Session, func() error, error) {
	creds, err := p.pskCredentials(ctx)
	if err != nil {
		return nil, nil, err
	}
	ss := make([]*sim.Session, p.n)
	errs := make([]error, p.n)
	sem := make(chan struct{}, p.o.PrepareConcurrency)
	var wg sync.WaitGroup
	for k := range ss {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ss[k], errs[k] = sim.Dial(ctx, sim.DialOptions{Addr: p.coapAddr(), Credential: creds[k%len(creds)]})
		}()
	}
	wg.Wait()
	closeAll := func() error {
		var errs []error
		for _, s := range ss {
			if s != nil {
				errs = append(errs, s.Close())
			}
		}
		return errors.Join(errs...)
	}
	if err := errors.Join(errs...); err != nil {
		_ = closeAll()
		return nil, nil, fmt.Errorf("bench: open sessions: %w", err)
	}
	return ss, closeAll, nil
}

func (p *wlPrep) coap(ctx context.Context) (*Workload, error) {
	ss, closeAll, err := p.sessions(ctx)
	if err != nil {
		return nil, err
	}
	path := p.o.Path
	return &Workload{
		Op: func(ctx context.Context, i int64) error {
			_, err := ss[i%int64(len(ss))].GetRaw(ctx, path)
			return err
		},
		Cleanup: closeAll,
	}, nil
}

func (p *wlPrep) est(ctx context.Context) (*Workload, error) {
	if err := p.needRegistry(WorkloadEST); err != nil {
		return nil, err
	}
	if p.o.PSKIdentity != "" {
		return nil, fmt.Errorf("%w: est registers its own devices; --psk-identity does not apply", ErrWorkload)
	}
	csrs := make([][]byte, p.n)
	for k := range csrs {
		var err error
		if csrs[k], _, err = newCSR(p.device(k)); err != nil {
			return nil, err
		}
	}
	ss, closeAll, err := p.sessions(ctx)
	if err != nil {
		return nil, err
	}
	return &Workload{
		Op: func(ctx context.Context, i int64) error {
			k := i % int64(len(ss))
			_, err := ss[k].Enroll(ctx, csrs[k], false)
			return err
		},
		Cleanup:     closeAll,
		CeilingName: "csr_issue, all cores",
		Ceiling:     csrIssueCores,
	}, nil
}

func (p *wlPrep) mqtt(ctx context.Context) (*Workload, error) {
	addr := p.mqttAddr()
	if addr == "" {
		return nil, fmt.Errorf("%w: the target has no MQTT endpoint", ErrWorkload)
	}
	ca, err := p.clientCA()
	if err != nil {
		return nil, err
	}
	reg := p.reg()
	if reg != nil {
		if err := p.ensureProject(ctx); err != nil {
			return nil, err
		}
		if _, err := reg.RegisterCA(ctx, Project, ca.Issuer().Raw, registry.CAModeNone, ""); err != nil && !errors.Is(err, registry.ErrExists) {
			return nil, fmt.Errorf("bench: register CA: %w", err)
		}
	}
	roots, name := p.roots()
	type client struct {
		cfg     *tls.Config
		connect []byte
	}
	clients := make([]client, p.n)
	for k := range clients {
		dev := p.device(k)
		dc, err := ca.IssueDevice(Project, dev)
		if err != nil {
			return nil, fmt.Errorf("bench: issue %s: %w", dev, err)
		}
		cert, key := dc.TLS.Leaf, dc.TLS.PrivateKey
		if reg != nil {
			if _, err := reg.CreateDevice(ctx, Project, dev); err != nil && !errors.Is(err, registry.ErrExists) {
				return nil, fmt.Errorf("bench: create device %s: %w", dev, err)
			}
			if _, err := reg.AddCertificate(ctx, Project, dev, cert.Raw, registry.StateActive); err != nil {
				return nil, fmt.Errorf("bench: add certificate %s: %w", dev, err)
			}
		}
		clients[k] = client{
			cfg: &tls.Config{
				Certificates:       []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
				RootCAs:            roots,
				ServerName:         name,
				InsecureSkipVerify: roots == nil,
				// TLS 1.2, what device TLS stacks (mbedTLS, WolfSSL, the
				// CC3220 network processor) speak to AWS IoT today.
				MinVersion:       tls.VersionTLS12,
				MaxVersion:       tls.VersionTLS12,
				CurvePreferences: []tls.CurveID{tls.CurveP256}, // what P-256 accelerators (CC310, ATECC608) give devices
			},
			connect: mqttConnectPkt(dev, 60),
		}
	}
	connect := func(ctx context.Context, c client) (*tls.Conn, error) {
		var dialer net.Dialer
		raw, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, c.cfg)
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		if err := conn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		if err := mqttSession(conn, c.connect); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	if roots != nil {
		// Verify the server's chain once, then pin its certificate (see
		// dtls-cert).
		conn, err := connect(ctx, clients[0])
		if err != nil {
			return nil, fmt.Errorf("bench: first connect: %w", err)
		}
		pin := conn.ConnectionState().PeerCertificates[0].Raw
		conn.Close()
		for k := range clients {
			cfg := clients[k].cfg.Clone()
			pinTLS(cfg, pin)
			clients[k].cfg = cfg
		}
	}
	return &Workload{
		Op: func(ctx context.Context, i int64) error {
			conn, err := connect(ctx, clients[i%int64(len(clients))])
			if err != nil {
				return err
			}
			// The broker may close first after DISCONNECT; a failed
			// close_notify then is not an error of the operation.
			_ = conn.Close()
			return nil
		},
		CeilingName: "mutual_handshake",
		Ceiling:     func(c Ceilings) float64 { return c.MutualHandshake },
	}, nil
}

// ErrNotPinned reports a server certificate other than the one pinned
// after the first, verified, connection.
var ErrNotPinned = errors.New("bench: server certificate is not the pinned one")

// pinTLS makes cfg accept exactly the server certificate pin (DER)
// instead of verifying a chain: the load generator verifies the chain
// once and then measures the server, not its own re-verification.
func pinTLS(cfg *tls.Config, pin []byte) {
	cfg.RootCAs, cfg.InsecureSkipVerify = nil, true
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || !bytes.Equal(raw[0], pin) {
			return ErrNotPinned
		}
		return nil
	}
}

// ErrMQTTConnect reports a CONNACK that refused the connection or was malformed.
var ErrMQTTConnect = errors.New("bench: mqtt connect refused")

// mqttSession writes CONNECT, reads CONNACK and sends DISCONNECT.
func mqttSession(conn net.Conn, connect []byte) error {
	if _, err := conn.Write(connect); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("%w: %w", ErrMQTTConnect, err)
	}
	if err := parseConnack(ack[:]); err != nil {
		return err
	}
	_, err := conn.Write([]byte{0xE0, 0x00})
	return err
}

// parseConnack checks an MQTT 3.1.1 CONNACK: 0x20 0x02 flags code.
func parseConnack(b []byte) error {
	if len(b) != 4 || b[0] != 0x20 || b[1] != 0x02 {
		return fmt.Errorf("%w: malformed packet % x", ErrMQTTConnect, b)
	}
	if b[3] != 0 {
		return fmt.Errorf("%w: refused with return code %d", ErrMQTTConnect, b[3])
	}
	return nil
}

// mqttConnectPkt encodes an MQTT 3.1.1 CONNECT with clean session.
func mqttConnectPkt(clientID string, keepalive uint16) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 4)
	body = append(body, "MQTT"...)
	body = append(body, 4, 0x02) // level 4, clean session
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	pkt := []byte{0x10}
	for n := len(body); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	return append(pkt, body...)
}

// DefaultOpTimeout is the per-operation timeout the CLI uses.
const DefaultOpTimeout = 10 * time.Second
