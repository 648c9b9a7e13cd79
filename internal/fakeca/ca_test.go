package fakeca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in   string
		want KeyType
		err  bool
	}{
		{"", ECDSAP256, false},
		{"p256", ECDSAP256, false},
		{"P-256", ECDSAP256, false},
		{"ecdsa-p256", ECDSAP256, false},
		{"ECDSA", ECDSAP256, false},
		{"prime256v1", ECDSAP256, false},
		{" secp256r1 ", ECDSAP256, false},
		{"p384", ECDSAP384, false},
		{"ecdsa-p384", ECDSAP384, false},
		{"secp384r1", ECDSAP384, false},
		{"rsa", RSA2048, false},
		{"RSA-2048", RSA2048, false},
		{"rsa:2048", RSA2048, false},
		{"rsa-4096", "", true},
		{"p521", "", true},
		{"ed25519", "", true},
		{"bogus", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if tt.err {
				if !errors.Is(err, ErrKeyType) {
					t.Fatalf("ParseKeyType(%q) = %q, %v; want ErrKeyType", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKeyType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestKeyTypes builds root, intermediate and leaf of each key type and
// checks key types, signature algorithms and the resulting chain.
func TestKeyTypes(t *testing.T) {
	tests := []struct {
		kt      KeyType
		sigAlg  x509.SignatureAlgorithm
		wantKT  KeyType
		keySize int
	}{
		{"", x509.ECDSAWithSHA256, ECDSAP256, 256},
		{ECDSAP256, x509.ECDSAWithSHA256, ECDSAP256, 256},
		{ECDSAP384, x509.ECDSAWithSHA384, ECDSAP384, 384},
		{RSA2048, x509.SHA256WithRSA, RSA2048, 2048},
	}
	for _, tt := range tests {
		t.Run(string(tt.wantKT)+"/"+string(tt.kt), func(t *testing.T) {
			a, err := Init(tt.kt, vopts())
			if err != nil {
				t.Fatal(err)
			}
			leaf, key, err := a.Issuing.Issue("dev1", "proj", tt.kt, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*x509.Certificate{a.Root.Cert, a.Issuing.Cert, leaf} {
				if got, err := KeyTypeOf(c.PublicKey); err != nil || got != tt.wantKT {
					t.Errorf("%s: KeyTypeOf = %q, %v; want %q", c.Subject.CommonName, got, err, tt.wantKT)
				}
				if c != leaf && c.SignatureAlgorithm != tt.sigAlg {
					t.Errorf("%s: signature %v, want %v", c.Subject.CommonName, c.SignatureAlgorithm, tt.sigAlg)
				}
			}
			if !publicKeyEqual(leaf.PublicKey, key) {
				t.Error("leaf key does not match certificate")
			}
			if _, err := VerifyClient([]*x509.Certificate{leaf, a.Issuing.Cert}, []*x509.Certificate{a.Root.Cert}, t0); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		if _, err := GenerateKey("rsa-1024", nil); !errors.Is(err, ErrKeyType) {
			t.Fatalf("GenerateKey(rsa-1024) = %v; want ErrKeyType", err)
		}
		if _, _, err := mustRoot(t).Issue("x", "", "dsa", 0); !errors.Is(err, ErrKeyType) {
			t.Fatalf("Issue with dsa = %v; want ErrKeyType", err)
		}
	})
	t.Run("KeyTypeOf", func(t *testing.T) {
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		if kt, err := KeyTypeOf(p521.Public()); kt != "ecdsa-p521" || !errors.Is(err, ErrKeyType) {
			t.Errorf("KeyTypeOf(P-521) = %q, %v", kt, err)
		}
		if kt, err := KeyTypeOf(nil); !errors.Is(err, ErrKeyType) {
			t.Errorf("KeyTypeOf(nil) = %q, %v", kt, err)
		}
	})
}

func mustRoot(t testing.TB) *CA {
	t.Helper()
	ca, err := NewRoot("Test Root", ECDSAP256, 0, vopts())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// zeroThenReader yields n zero bytes, then r.
type zeroThenReader struct {
	n int
	r io.Reader
}

func (z *zeroThenReader) Read(p []byte) (int, error) {
	if z.n > 0 {
		k := min(len(p), z.n)
		clear(p[:k])
		z.n -= k
		return k, nil
	}
	return z.r.Read(p)
}

func TestSerial(t *testing.T) {
	tests := []struct {
		name string
		rnd  io.Reader
		err  bool
	}{
		{"crypto/rand", nil, false},
		{"first draw zero", &zeroThenReader{n: 16, r: rand.Reader}, false},
		{"all ones", bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)), false},
		{"always zero", &zeroThenReader{n: 1 << 20}, true},
		{"short", bytes.NewReader(make([]byte, 5)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSerial(tt.rnd)
			if tt.err {
				if err == nil {
					t.Fatalf("NewSerial = %v; want error", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Sign() <= 0 || s.BitLen() > 128 {
				t.Fatalf("serial %x: sign %d, %d bits", s, s.Sign(), s.BitLen())
			}
		})
	}
	t.Run("distinct", func(t *testing.T) {
		ca := mustRoot(t)
		seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
		for range 4 {
			c, _, err := ca.Issue("dev", "", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			s := c.SerialNumber
			if s.Sign() <= 0 || s.BitLen() > 128 || seen[s.String()] {
				t.Fatalf("serial %x: positive, at most 128 bits and new expected", s)
			}
			seen[s.String()] = true
		}
	})
}

func TestProfiles(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	root, inter := a.Root, a.Issuing
	leaf, _, err := inter.Issue("dev1", "proj", "", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("root", func(t *testing.T) {
		c := root.Cert
		if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != -1 {
			t.Errorf("root: IsCA %v, pathlen %d; want CA without pathlen", c.IsCA, c.MaxPathLen)
		}
		if c.Subject.CommonName != InitRootCN || !selfSigned(c) {
			t.Errorf("root %q: self-signed %v", c.Subject.CommonName, selfSigned(c))
		}
		if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
			t.Errorf("root SKI %x AKI %x", c.SubjectKeyId, c.AuthorityKeyId)
		}
		if !c.NotBefore.Equal(t0.Add(-time.Minute)) || !c.NotAfter.Equal(t0.Add(DefaultRootValidity)) {
			t.Errorf("root validity %s..%s", c.NotBefore, c.NotAfter)
		}
		if root.Root() != c || len(root.Chain) != 0 {
			t.Error("root.Root() is not its own certificate")
		}
	})
	t.Run("intermediate", func(t *testing.T) {
		c := inter.Cert
		if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
			t.Errorf("intermediate: IsCA %v pathlen %d zero %v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
		}
		if c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("intermediate key usage %b", c.KeyUsage)
		}
		if !bytes.Equal(c.AuthorityKeyId, root.Cert.SubjectKeyId) {
			t.Error("intermediate AKI is not the root SKI")
		}
		if err := c.CheckSignatureFrom(root.Cert); err != nil {
			t.Error(err)
		}
		if inter.Root() != root.Cert || len(inter.Chain) != 1 {
			t.Error("intermediate chain wrong")
		}
		if !c.NotAfter.Equal(t0.Add(DefaultIntermediateValidity)) {
			t.Errorf("intermediate NotAfter %s", c.NotAfter)
		}
		if _, err := inter.NewIntermediate("sub", "", 0); !errors.Is(err, ErrNotCA) {
			t.Errorf("intermediate under pathlen 0 = %v; want ErrNotCA", err)
		}
	})
	t.Run("leaf", func(t *testing.T) {
		c := leaf
		if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("leaf IsCA %v KeyUsage %b", c.IsCA, c.KeyUsage)
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("leaf EKU %v", c.ExtKeyUsage)
		}
		if c.Subject.CommonName != "dev1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "proj" {
			t.Errorf("leaf subject %s", c.Subject)
		}
		if len(c.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, inter.Cert.SubjectKeyId) {
			t.Errorf("leaf SKI %x AKI %x", c.SubjectKeyId, c.AuthorityKeyId)
		}
		if !c.NotBefore.Equal(t0.Add(-time.Minute)) || !c.NotAfter.Equal(t0.Add(48*time.Hour)) {
			t.Errorf("leaf validity %s..%s", c.NotBefore, c.NotAfter)
		}
		noOrg, _, err := inter.Issue("dev2", "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(noOrg.Subject.Organization) != 0 || !noOrg.NotAfter.Equal(t0.Add(DefaultLeafValidity)) {
			t.Errorf("Issue without org: subject %s, NotAfter %s", noOrg.Subject, noOrg.NotAfter)
		}
	})
	t.Run("options", func(t *testing.T) {
		t1 := t0.Add(1000 * time.Hour)
		inter.SetOptions(Options{Now: clock(t1)})
		defer inter.SetOptions(vopts())
		if got := inter.Options().now(); !got.Equal(t1) {
			t.Fatalf("Options().Now() = %s", got)
		}
		c, _, err := inter.Issue("later", "", "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !c.NotAfter.Equal(t1.Add(time.Hour)) {
			t.Errorf("NotAfter %s, want %s", c.NotAfter, t1.Add(time.Hour))
		}
	})
}

func TestIssueWith(t *testing.T) {
	ca := mustRoot(t)
	key := mustKey(t, ECDSAP384)
	nb, na := t0.Add(24*time.Hour), t0.Add(48*time.Hour)
	c, k, err := ca.IssueWith(Template{CN: "future", Org: "o", NotBefore: nb, NotAfter: na, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if k != key || !publicKeyEqual(c.PublicKey, key) {
		t.Error("IssueWith did not use the given key")
	}
	if !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) {
		t.Errorf("validity %s..%s", c.NotBefore, c.NotAfter)
	}
	if _, _, err := ca.IssueWith(Template{CN: "x", NotBefore: na, NotAfter: nb}); err == nil {
		t.Error("NotAfter before NotBefore accepted")
	}
}

func TestServerCert(t *testing.T) {
	a, err := Init(ECDSAP256, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1", "cloud.test"}
	for _, tt := range []struct {
		name      string
		ca        *CA
		chainLen  int
		wantInter bool
	}{
		{"via intermediate", a.Issuing, 2, true},
		{"root", a.Root, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tt.ca.ServerCert(hosts, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.Certificate) != tt.chainLen {
				t.Fatalf("chain has %d certificates, want %d", len(tc.Certificate), tt.chainLen)
			}
			leaf := tc.Leaf
			if len(leaf.DNSNames) != 2 || len(leaf.IPAddresses) != 2 || leaf.Subject.CommonName != "localhost" {
				t.Errorf("SANs DNS %v IP %v CN %q", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("EKU %v", leaf.ExtKeyUsage)
			}
			if tt.wantInter && !bytes.Equal(tc.Certificate[1], a.Issuing.Cert.Raw) {
				t.Error("second certificate is not the intermediate")
			}
			handshake(t, tc, a)
		})
	}
	if _, err := a.Issuing.ServerCert(nil, 0); err == nil {
		t.Error("ServerCert without hosts accepted")
	}
}

// handshake runs a mutual TLS handshake over a pipe: the server presents
// tc and asks for a client certificate issued by a.
func handshake(t *testing.T, tc tls.Certificate, a *Authority) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(a.Root.Cert)
	leaf, key, err := a.Issuing.Issue("dev1", "proj", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{tc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots})
	cli := tls.Client(cc, &tls.Config{
		RootCAs:      roots,
		ServerName:   "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, a.Issuing.Cert.Raw}, PrivateKey: key}},
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(ctx) }()
	if err := cli.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got := srv.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "dev1" {
		t.Errorf("server saw client %q", got)
	}
}

func TestCRL(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	entries := []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(42), RevocationTime: t0.Add(-time.Hour)},
		{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 127), RevocationTime: t0.Add(-2 * time.Hour), ReasonCode: 1},
	}
	tests := []struct {
		name    string
		ca      *CA
		entries []x509.RevocationListEntry
		number  *big.Int
		next    time.Duration
		wantNum *big.Int
		err     bool
	}{
		{"intermediate", a.Issuing, entries, big.NewInt(7), 24 * time.Hour, big.NewInt(7), false},
		{"root", a.Root, entries[:1], big.NewInt(1), time.Hour, big.NewInt(1), false},
		{"empty", a.Issuing, nil, big.NewInt(8), time.Hour, big.NewInt(8), false},
		{"nil number", a.Issuing, nil, nil, time.Hour, big.NewInt(t0.Unix()), false},
		{"bad next", a.Issuing, nil, big.NewInt(9), 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := tt.ca.CRL(tt.entries, tt.number, tt.next)
			if tt.err {
				if err == nil {
					t.Fatal("CRL accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.CheckSignatureFrom(tt.ca.Cert); err != nil {
				t.Fatal(err)
			}
			if rl.Number.Cmp(tt.wantNum) != 0 || !rl.ThisUpdate.Equal(t0) || !rl.NextUpdate.Equal(t0.Add(tt.next)) {
				t.Errorf("number %v thisUpdate %s nextUpdate %s", rl.Number, rl.ThisUpdate, rl.NextUpdate)
			}
			if len(rl.RevokedCertificateEntries) != len(tt.entries) {
				t.Fatalf("%d entries, want %d", len(rl.RevokedCertificateEntries), len(tt.entries))
			}
			for i, e := range rl.RevokedCertificateEntries {
				w := tt.entries[i]
				if e.SerialNumber.Cmp(w.SerialNumber) != 0 || !e.RevocationTime.Equal(w.RevocationTime) || e.ReasonCode != w.ReasonCode {
					t.Errorf("entry %d = %v %s %d, want %v %s %d", i, e.SerialNumber, e.RevocationTime, e.ReasonCode, w.SerialNumber, w.RevocationTime, w.ReasonCode)
				}
			}
			if !bytes.Equal(rl.AuthorityKeyId, tt.ca.Cert.SubjectKeyId) {
				t.Error("CRL AKI is not the issuer SKI")
			}
		})
	}
}

func TestVerifyClient(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewRoot("Other Root", ECDSAP256, 0, vopts())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *CA, nb, na time.Time) *x509.Certificate {
		t.Helper()
		c, _, err := ca.IssueWith(Template{CN: "dev", NotBefore: nb, NotAfter: na})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := issue(a.Issuing, t0.Add(-time.Hour), t0.Add(time.Hour))
	direct := issue(a.Root, t0.Add(-time.Hour), t0.Add(time.Hour))
	expired := issue(a.Issuing, t0.Add(-2*time.Hour), t0.Add(-time.Hour))
	future := issue(a.Issuing, t0.Add(time.Hour), t0.Add(2*time.Hour))
	foreign := issue(other, t0.Add(-time.Hour), t0.Add(time.Hour))
	longLived := issue(a.Issuing, t0, t0.Add(20*DefaultIntermediateValidity))
	srv, err := a.Issuing.ServerCert([]string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	inter, roots := a.Issuing.Cert, []*x509.Certificate{a.Root.Cert}

	tests := []struct {
		name    string
		certs   []*x509.Certificate
		roots   []*x509.Certificate
		now     time.Time
		want    error // nil: verifies
		wantLen int
		msg     string
	}{
		{"good through intermediate", []*x509.Certificate{good, inter}, roots, t0, nil, 3, ""},
		{"good from root", []*x509.Certificate{direct}, roots, t0, nil, 2, ""},
		{"good, two roots", []*x509.Certificate{good, inter}, []*x509.Certificate{other.Cert, a.Root.Cert}, t0, nil, 3, ""},
		{"expired", []*x509.Certificate{expired, inter}, roots, t0, ErrExpired, 0, "expired at"},
		{"virtual clock past NotAfter", []*x509.Certificate{good, inter}, roots, t0.Add(2 * time.Hour), ErrExpired, 0, `"dev"`},
		{"not yet valid", []*x509.Certificate{future, inter}, roots, t0, ErrNotYetValid, 0, "valid from"},
		{"intermediate expired", []*x509.Certificate{longLived, inter}, roots, t0.Add(6 * DefaultIntermediateValidity / 5), ErrExpired, 0, InitIntermediateCN},
		{"unknown root", []*x509.Certificate{foreign}, roots, t0, ErrUnknownAuthority, 0, ""},
		{"missing intermediate", []*x509.Certificate{good}, roots, t0, ErrUnknownAuthority, 0, ""},
		{"no roots", []*x509.Certificate{good, inter}, nil, t0, ErrUnknownAuthority, 0, ""},
		{"server certificate", []*x509.Certificate{srv.Leaf, inter}, roots, t0, ErrVerify, 0, "usage"},
		{"empty", nil, roots, t0, ErrVerify, 0, ""},
		{"nil leaf", []*x509.Certificate{nil}, roots, t0, ErrVerify, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := VerifyClient(tt.certs, tt.roots, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(chain) != tt.wantLen || chain[0] != tt.certs[0] {
					t.Fatalf("chain of %d, want %d starting with the leaf", len(chain), tt.wantLen)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyClient = %v; want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestParseChain(t *testing.T) {
	a, err := Init(ECDSAP256, vopts())
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := a.Issuing.IssueWith(Template{CN: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	inter := a.Issuing.Cert
	tests := []struct {
		name string
		raw  [][]byte
		want error // nil: parses
		msg  string
	}{
		{"leaf", [][]byte{leaf.Raw}, nil, ""},
		{"leaf and intermediate", [][]byte{leaf.Raw, inter.Raw}, nil, ""},
		{"nil", nil, ErrNoCert, ""},
		{"empty", [][]byte{}, ErrNoCert, ""},
		{"garbage leaf", [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}, ErrBadCert, "certificate 1 of 1"},
		{"empty intermediate", [][]byte{leaf.Raw, {}}, ErrBadCert, "certificate 2 of 2"},
		{"truncated intermediate", [][]byte{leaf.Raw, inter.Raw[:len(inter.Raw)-1]}, ErrBadCert, "certificate 2 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := ParseChain(tt.raw)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(certs) != len(tt.raw) {
					t.Fatalf("%d certificates, want %d", len(certs), len(tt.raw))
				}
				for i, c := range certs {
					if !bytes.Equal(c.Raw, tt.raw[i]) {
						t.Errorf("certificate %d is not the one given", i)
					}
				}
				return
			}
			if !errors.Is(err, tt.want) || certs != nil {
				t.Fatalf("ParseChain = %d certificates, %v; want %v", len(certs), err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestNewRootSubject(t *testing.T) {
	ca, err := NewRoot("Root x", ECDSAP256, time.Hour, vopts())
	if err != nil {
		t.Fatal(err)
	}
	want := pkix.Name{CommonName: "Root x"}.String()
	if got := ca.Cert.Subject.String(); got != want || !ca.Cert.NotAfter.Equal(t0.Add(time.Hour)) {
		t.Errorf("subject %q NotAfter %s", got, ca.Cert.NotAfter)
	}
}
