// Package httpapi is the cloud's HTTPS endpoint: run-time CSR provisioning against an allowlist, and CRL and CA distribution.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/cloud/internal/endpoint"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/crl"
	"github.com/credloop/credloop/internal/fakeca"
)

// DefaultCA is the name under which Options.Authority is served.
const DefaultCA = "default"

// MaxBody is the largest request body accepted (a CSR, PEM or DER).
const MaxBody = fakeca.MaxCSRSize

// Options configures a Server. The zero value of every field but Registry
// and Authority means a sensible default.
type Options struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0".
	Addr string
	// Registry holds the allowlist, devices, credentials, revocations and
	// the event log.
	Registry *registry.Registry
	// Authority signs the server certificate and provisioned devices'
	// certificates; its CRLs and chain are served as "default".
	Authority *fakeca.Authority
	// CAs are other CAs of the directory by name (DIR/ca/<name>), whose
	// CRLs and chains are served too. Optional.
	CAs map[string]*fakeca.Authority
	// Hosts are the names and addresses put in the server certificate's
	// SANs, in addition to localhost, 127.0.0.1 and ::1.
	Hosts []string
	// CertValidity is the validity of provisioned certificates; default
	// 365 days.
	CertValidity time.Duration
	// CRLNext is the nextUpdate interval of served CRLs; default 7 days.
	// A CRL is rebuilt when its revocations change or half of it passed.
	CRLNext time.Duration
	// Now is the clock for events and TLS; certificates and CRLs take
	// their times from the Authority's clock. Default time.Now.
	Now func() time.Time
	// Rand is the TLS randomness; default crypto/rand.Reader.
	Rand   io.Reader
	Logger *slog.Logger
}

// Server is a running HTTPS endpoint.
type Server struct {
	opts  Options
	reg   *registry.Registry
	log   *slog.Logger
	mux   *http.ServeMux
	cas   map[string]*fakeca.Authority
	crls  map[*fakeca.CA]*crl.Cache
	ln    net.Listener
	srv   *http.Server
	url   string
	done  chan struct{}
	close sync.Once
	err   error
}

// Listen binds the endpoint and starts serving HTTPS. Close stops it.
func Listen(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	opts = s.opts
	cert, err := endpoint.ServerCert(opts.Authority.Issuing, opts.Addr, opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("httpapi: server certificate: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	s.ln = ln
	s.url = "https://" + ln.Addr().String()
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		Time:         opts.Now,
		Rand:         opts.Rand,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// Clients that fail the TLS handshake are logged at debug level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(tls.NewListener(ln, tlsConf)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("listening", "url", s.url)
	return s, nil
}

// newServer checks opts, fills in defaults and builds the routes; it
// does not listen.
func newServer(opts Options) (*Server, error) {
	if opts.Registry == nil || opts.Authority == nil || opts.Authority.Root == nil || opts.Authority.Issuing == nil {
		return nil, errors.New("httpapi: Options.Registry and Options.Authority are required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = 365 * 24 * time.Hour
	}
	if opts.CRLNext <= 0 {
		opts.CRLNext = crl.DefaultNext
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts: opts,
		reg:  opts.Registry,
		log:  opts.Logger.With("endpoint", "https"),
		cas:  map[string]*fakeca.Authority{},
		crls: map[*fakeca.CA]*crl.Cache{},
		done: make(chan struct{}),
	}
	for name, a := range opts.CAs {
		if a == nil || a.Root == nil || a.Issuing == nil {
			return nil, fmt.Errorf("httpapi: Options.CAs[%q] is incomplete", name)
		}
		s.cas[name] = a
	}
	s.cas[DefaultCA] = opts.Authority
	for _, a := range s.cas {
		for _, ca := range []*fakeca.CA{a.Issuing, a.Root} {
			if s.crls[ca] == nil {
				s.crls[ca] = crl.NewCache(opts.Registry, ca, opts.CRLNext)
			}
		}
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/provision/csr", s.provisionCSR)
	s.mux.HandleFunc("GET /crl/{file}", s.serveCRL)
	s.mux.HandleFunc("GET /ca/{file}", s.serveCA)
	s.mux.HandleFunc("/v1/provision/csr", onlyMethods("POST"))
	s.mux.HandleFunc("/crl/{file}", onlyMethods("GET, HEAD"))
	s.mux.HandleFunc("/ca/{file}", onlyMethods("GET, HEAD"))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such resource")
	})
	return s, nil
}

// ServeHTTP serves the endpoint's routes (what Listen serves over TLS).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Addr returns the bound TCP address (nil before Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns the base URL, "https://127.0.0.1:port".
func (s *Server) URL() string { return s.url }

// Close stops the endpoint: it stops accepting, lets requests in
// progress finish (for at most 5 s) and waits. It is idempotent.
func (s *Server) Close() error {
	s.close.Do(func() {
		if s.srv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.err = errors.Join(err, s.srv.Close())
		}
		<-s.done
	})
	return s.err
}

func (s *Server) record(e registry.Event) { endpoint.Record(s.reg, s.log, e) }

// onlyMethods answers 405 for a path served with other methods.
func onlyMethods(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed, use "+allow)
	}
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// lookupCA resolves "<name>" (the issuing CA) or "<name>-root" (the root
// of the CA) to a CA; an exact name wins.
func (s *Server) lookupCA(name string) (*fakeca.Authority, *fakeca.CA, bool) {
	if a, ok := s.cas[name]; ok {
		return a, a.Issuing, true
	}
	if base, ok := strings.CutSuffix(name, "-root"); ok {
		if a, ok := s.cas[base]; ok {
			return a, a.Root, true
		}
	}
	return nil, nil, false
}
