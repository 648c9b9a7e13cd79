package cli

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
	"github.com/credloop/credloop/internal/peer"
)

func TestCAInitIssueVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	out := filepath.Join(t.TempDir(), "certs")
	caDir := cloud.CADir(dir, cloud.DefaultCA)
	root := filepath.Join(caDir, fakeca.RootCertFile)
	inter := filepath.Join(caDir, fakeca.IntermediateCertFile)

	r := mustCLI(t, "ca", "init", "--dir", dir)
	for _, want := range []string{"CN=credloop Root CA", "CN=credloop Intermediate CA", root, inter, fakeca.Fingerprint(readCert(t, root).Raw)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ca init output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, f := range []string{fakeca.RootKeyFile, fakeca.IntermediateKeyFile} {
		if m := fileMode(t, filepath.Join(caDir, f)); m != 0o600 {
			t.Errorf("%s mode %o, want 600", f, m)
		}
	}
	rootFP := fakeca.Fingerprint(readCert(t, root).Raw)

	// An existing CA is kept unless --force.
	failCLI(t, 1, []string{"already exists", "--force"}, "ca", "init", "--dir", dir)
	if got := fakeca.Fingerprint(readCert(t, root).Raw); got != rootFP {
		t.Fatal("ca init without --force replaced the root")
	}
	mustCLI(t, "ca", "init", "--dir", dir, "--force", "--key", "p384")
	if got := readCert(t, root); fakeca.Fingerprint(got.Raw) == rootFP {
		t.Fatal("ca init --force kept the old root")
	} else if kt, _ := fakeca.KeyTypeOf(got.PublicKey); kt != fakeca.ECDSAP384 {
		t.Fatalf("root key %s, want ecdsa-p384", kt)
	}

	r = mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", out)
	cert := readCert(t, filepath.Join(out, "dev1.crt.pem"))
	if cert.Subject.CommonName != "dev1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "proj" {
		t.Fatalf("subject %s", cert.Subject)
	}
	for _, want := range []string{"CN=dev1,O=proj", fmt.Sprintf("%x", cert.SerialNumber), fakeca.Fingerprint(cert.Raw), filepath.Join(out, "dev1.chain.pem")} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ca issue output lacks %q:\n%s", want, r.stdout)
		}
	}
	modes := map[string]os.FileMode{"dev1.crt.pem": 0o644, "dev1.crt.der": 0o644, "dev1.key.pem": 0o600, "dev1.key.der": 0o600, "dev1.chain.pem": 0o644}
	for f, want := range modes {
		if m := fileMode(t, filepath.Join(out, f)); m != want {
			t.Errorf("%s mode %o, want %o", f, m, want)
		}
	}
	if der := readCert(t, filepath.Join(out, "dev1.crt.der")); !der.Equal(cert) {
		t.Error("dev1.crt.der differs from dev1.crt.pem")
	}
	for _, f := range []string{"dev1.key.pem", "dev1.key.der"} {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		key, err := fakeca.ParseKey(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
			t.Errorf("%s does not match the certificate", f)
		}
		if strings.Contains(r.stdout+r.stderr, strings.TrimSpace(string(data))) {
			t.Errorf("output shows the private key %s", f)
		}
	}

	// Key files are replaced with mode 0600 even if a wider file was there.
	if err := os.Chmod(filepath.Join(out, "dev1.key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", out)
	if m := fileMode(t, filepath.Join(out, "dev1.key.pem")); m != 0o600 {
		t.Errorf("reissued key mode %o, want 600", m)
	}

	peer.Require(t, "openssl")
	openssl(t, out, true, "verify", "-CAfile", root, "-untrusted", inter, "dev1.crt.pem")
	openssl(t, out, true, "verify", "-CAfile", root, "-untrusted", "dev1.chain.pem", "dev1.crt.pem")
	openssl(t, out, true, "ec", "-in", "dev1.key.der", "-inform", "DER", "-noout")
	openssl(t, out, false, "verify", "-CAfile", root, "dev1.crt.pem") // the intermediate is needed
}

func TestCAIssueValidity(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "ca", "init", "--dir", dir)
	day := 24 * time.Hour
	nb := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	na := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name           string
		args           []string
		wantNB, wantNA time.Time
		key            fakeca.KeyType
	}{
		{"both", []string{"--not-before", "2020-01-01T00:00:00Z", "--not-after", "2021-06-01T00:00:00Z"}, nb, na, fakeca.ECDSAP256},
		{"expired", []string{"--not-after", "2021-06-01T00:00:00Z", "--days", "10"}, na.Add(-10 * day), na, fakeca.ECDSAP256},
		{"future", []string{"--not-before", "2020-01-01T00:00:00Z", "--days", "2", "--key", "rsa-2048"}, nb, nb.Add(2 * day), fakeca.RSA2048},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			mustCLI(t, append([]string{"ca", "issue", "--dir", dir, "--cn", "d-" + tt.name, "--org", "p", "--out", out}, tt.args...)...)
			c := readCert(t, filepath.Join(out, "d-"+tt.name+".crt.pem"))
			if !c.NotBefore.Equal(tt.wantNB) || !c.NotAfter.Equal(tt.wantNA) {
				t.Fatalf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, tt.wantNB, tt.wantNA)
			}
			if kt, _ := fakeca.KeyTypeOf(c.PublicKey); kt != tt.key {
				t.Fatalf("key %s, want %s", kt, tt.key)
			}
		})
	}
	t.Run("no O", func(t *testing.T) {
		out := t.TempDir()
		mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "bare", "--org", "", "--out", out)
		if c := readCert(t, filepath.Join(out, "bare.crt.pem")); len(c.Subject.Organization) != 0 {
			t.Fatalf("subject %s has an O", c.Subject)
		}
	})
	t.Run("name", func(t *testing.T) {
		out := t.TempDir()
		mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "a/b", "--org", "p", "--name", "ab", "--out", out)
		if c := readCert(t, filepath.Join(out, "ab.crt.pem")); c.Subject.CommonName != "a/b" {
			t.Fatalf("CN %q", c.Subject.CommonName)
		}
	})
}

func TestCAImportGoliothRoot(t *testing.T) {
	peer.Require(t, "openssl")
	work := t.TempDir()
	// Exactly as Golioth's certificate guide makes a root.
	openssl(t, work, true, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
	openssl(t, work, true, "req", "-x509", "-new", "-nodes", "-key", "k.pem", "-sha256", "-subj", "/C=BR/CN=Root x", "-days", "1024", "-out", "c.pem")
	openssl(t, work, true, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "other.pem")
	rootPEM := filepath.Join(work, "c.pem")

	tests := []struct {
		name  string
		extra []string
		inter bool
	}{
		{"no-intermediate", []string{"--no-intermediate"}, false},
		{"with-intermediate", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := mustCLI(t, append([]string{"ca", "import", "--dir", dir, "--cert", rootPEM, "--key", filepath.Join(work, "k.pem")}, tt.extra...)...)
			if !strings.Contains(r.stdout, "CN=Root x,C=BR") {
				t.Errorf("import output lacks the root subject:\n%s", r.stdout)
			}
			caDir := cloud.CADir(dir, cloud.DefaultCA)
			if _, err := os.Stat(filepath.Join(caDir, fakeca.IntermediateCertFile)); (err == nil) != tt.inter {
				t.Fatalf("intermediate present = %v, want %v", err == nil, tt.inter)
			}
			r = mustCLI(t, "ca", "show", "--dir", dir, "--json")
			var ai authorityInfo
			if err := json.Unmarshal([]byte(r.stdout), &ai); err != nil {
				t.Fatalf("ca show --json: %v\n%s", err, r.stdout)
			}
			if ai.Root.Fingerprint != fakeca.Fingerprint(readCert(t, rootPEM).Raw) || (ai.Intermediate != nil) != tt.inter {
				t.Fatalf("ca show: %+v", ai)
			}
			out := t.TempDir()
			mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", out)
			args := []string{"verify", "-CAfile", rootPEM}
			if tt.inter {
				args = append(args, "-untrusted", filepath.Join(caDir, fakeca.IntermediateCertFile))
			}
			openssl(t, out, true, append(args, "dev1.crt.pem")...)
			// ca revoke/crl work with the root as issuer, too.
			mustCLI(t, "ca", "revoke", "--dir", dir, "--cert", filepath.Join(out, "dev1.crt.pem"))
			mustCLI(t, "ca", "crl", "--dir", dir, "--out", filepath.Join(out, "crl.pem"))
			openssl(t, out, true, "crl", "-in", "crl.pem", "-noout", "-text")
			if !tt.inter {
				failCLI(t, 2, []string{"no intermediate", "--issuer root"}, "ca", "crl", "--dir", dir, "--issuer", "intermediate")
			}
		})
	}
	t.Run("key mismatch", func(t *testing.T) {
		failCLI(t, 1, []string{"does not match"}, "ca", "import", "--dir", t.TempDir(), "--cert", rootPEM, "--key", filepath.Join(work, "other.pem"))
	})
	t.Run("leaf refused", func(t *testing.T) {
		dir := t.TempDir()
		mustCLI(t, "ca", "init", "--dir", dir)
		out := t.TempDir()
		mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "leaf", "--org", "p", "--out", out)
		failCLI(t, 1, []string{"CA"}, "ca", "import", "--dir", t.TempDir(), "--cert", filepath.Join(out, "leaf.crt.pem"), "--key", filepath.Join(out, "leaf.key.pem"))
	})
	t.Run("exists", func(t *testing.T) {
		dir := t.TempDir()
		mustCLI(t, "ca", "init", "--dir", dir)
		failCLI(t, 1, []string{"already exists", "--force"}, "ca", "import", "--dir", dir, "--cert", rootPEM, "--key", filepath.Join(work, "k.pem"))
		mustCLI(t, "ca", "import", "--dir", dir, "--cert", rootPEM, "--key", filepath.Join(work, "k.pem"), "--force")
	})
}

func TestCASignCSR(t *testing.T) {
	peer.Require(t, "openssl")
	dir := t.TempDir()
	work := t.TempDir()
	mustCLI(t, "ca", "init", "--dir", dir)
	caDir := cloud.CADir(dir, cloud.DefaultCA)
	openssl(t, work, true, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
	openssl(t, work, true, "req", "-new", "-key", "k.pem", "-subj", "/C=BR/O=proj/CN=dev1", "-out", "dev1.csr")
	openssl(t, work, true, "req", "-new", "-key", "k.pem", "-subj", "/C=BR/O=proj", "-out", "nocn.csr")
	openssl(t, work, true, "ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out", "k521.pem")
	openssl(t, work, true, "req", "-new", "-key", "k521.pem", "-subj", "/O=proj/CN=dev1", "-out", "p521.csr")

	tests := []struct {
		name    string
		csr     string
		args    []string
		wantErr string // "" for success
	}{
		{"org ok", "dev1.csr", []string{"--org", "proj"}, ""},
		{"no org check", "dev1.csr", nil, ""},
		{"org other", "dev1.csr", []string{"--org", "other"}, `want exactly "other"`},
		{"no CN", "nocn.csr", nil, "no CN"},
		{"P-521 key", "p521.csr", nil, "key type ecdsa-p521 not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dev1.crt.pem")
			args := append([]string{"ca", "sign", "--dir", dir, "--csr", filepath.Join(work, tt.csr), "--out", out, "--days", "30"}, tt.args...)
			if tt.wantErr != "" {
				failCLI(t, 1, []string{"refused", tt.wantErr}, args...)
				if _, err := os.Stat(out); err == nil {
					t.Fatal("a refused CSR left a certificate")
				}
				return
			}
			mustCLI(t, args...)
			c := readCert(t, out)
			if c.Subject.CommonName != "dev1" || c.NotAfter.Sub(c.NotBefore) < 29*24*time.Hour || c.NotAfter.Sub(c.NotBefore) > 31*24*time.Hour {
				t.Fatalf("certificate %s %s..%s", c.Subject, c.NotBefore, c.NotAfter)
			}
			openssl(t, filepath.Dir(out), true, "verify", "-CAfile", filepath.Join(caDir, fakeca.RootCertFile),
				"-untrusted", filepath.Join(caDir, fakeca.IntermediateCertFile), out)
		})
	}
	t.Run("stdout", func(t *testing.T) {
		r := mustCLI(t, "ca", "sign", "--dir", dir, "--csr", filepath.Join(work, "dev1.csr"), "--chain")
		certs, err := fakeca.ParseCertPEMOrDER([]byte(r.stdout))
		if err != nil || len(certs) != 2 {
			t.Fatalf("stdout holds %d certificates (%v):\n%s", len(certs), err, r.stdout)
		}
		if !strings.Contains(r.stderr, "signed certificate") {
			t.Fatalf("summary not on stderr: %q", r.stderr)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.csr")
		if err := os.WriteFile(bad, []byte("not a csr"), 0o600); err != nil {
			t.Fatal(err)
		}
		failCLI(t, 1, []string{"bad certificate request"}, "ca", "sign", "--dir", dir, "--csr", bad)
	})
}

func TestCARevokeCRL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	out := t.TempDir()
	mustCLI(t, "ca", "init", "--dir", dir)
	mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", out)
	mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev2", "--org", "proj", "--out", out)
	mustCLI(t, "project", "create", "proj", "--dir", dir)
	mustCLI(t, "device", "add", "--dir", dir, "--project", "proj", "dev1")
	caDir := cloud.CADir(dir, cloud.DefaultCA)
	inter := readCert(t, filepath.Join(caDir, fakeca.IntermediateCertFile))
	cert1 := readCert(t, filepath.Join(out, "dev1.crt.pem"))
	cert2 := readCert(t, filepath.Join(out, "dev2.crt.pem"))

	// Register dev1's certificate as the cloud would after a handshake,
	// and keep the registry open meanwhile, as a running cloud does.
	reg := openTestRegistry(t, dir)
	cred, err := reg.AddCertificate(ctx, "proj", "dev1", cert1.Raw, registry.StateActive)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.SetIssuerFingerprint(ctx, cred.ID, fakeca.Fingerprint(inter.Raw)); err != nil {
		t.Fatal(err)
	}

	serial1 := fmt.Sprintf("%x", cert1.SerialNumber)
	r := mustCLI(t, "ca", "revoke", "--dir", dir, "--serial", strings.ToUpper(serial1), "--reason", "keyCompromise")
	for _, want := range []string{"revoked serial " + serial1, "keyCompromise", "credentials now REVOKED", "dev1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("revoke output lacks %q:\n%s", want, r.stdout)
		}
	}
	if c, err := reg.Credential(ctx, cred.ID); err != nil || c.State != registry.StateRevoked {
		t.Fatalf("credential after revoke: %v, %v", c.State, err)
	}
	if evs, err := reg.Events(ctx, registry.Filter{Kind: registry.EventCredentialRevoked, Device: "dev1"}); err != nil || len(evs) != 1 {
		t.Fatalf("credential.revoked events: %d, %v", len(evs), err)
	}
	r = mustCLI(t, "ca", "revoke", "--dir", dir, "--serial", serial1)
	if !strings.Contains(r.stdout, "already revoked") {
		t.Errorf("second revoke: %s", r.stdout)
	}
	r = mustCLI(t, "ca", "revoke", "--dir", dir, "--cert", filepath.Join(out, "dev2.crt.pem"), "--reason", "4")
	if !strings.Contains(r.stdout, "no registered credential") || !strings.Contains(r.stdout, "superseded") {
		t.Errorf("revoke --cert output:\n%s", r.stdout)
	}

	crlPath := filepath.Join(out, "crl.pem")
	for number := int64(1); number <= 2; number++ {
		r = mustCLI(t, "ca", "crl", "--dir", dir, "--out", crlPath, "--days", "3")
		if !strings.Contains(r.stdout, fmt.Sprintf("CRL number %d", number)) {
			t.Errorf("crl output: %s", r.stdout)
		}
		data, err := os.ReadFile(crlPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "-----BEGIN X509 CRL-----") {
			t.Fatalf("not a PEM CRL:\n%s", data)
		}
		crl := parseCRLPEM(t, data)
		if err := crl.CheckSignatureFrom(inter); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		if crl.Number.Int64() != number || len(crl.RevokedCertificateEntries) != 2 {
			t.Fatalf("CRL number %v with %d entries", crl.Number, len(crl.RevokedCertificateEntries))
		}
		got := map[string]int{}
		for _, e := range crl.RevokedCertificateEntries {
			got[fmt.Sprintf("%x", e.SerialNumber)] = e.ReasonCode
		}
		if got[serial1] != 1 || got[fmt.Sprintf("%x", cert2.SerialNumber)] != 4 {
			t.Fatalf("CRL entries %v", got)
		}
		if d := crl.NextUpdate.Sub(crl.ThisUpdate); d != 72*time.Hour {
			t.Fatalf("next update after %s", d)
		}
	}
	// The root has revoked nothing: its CRL is empty.
	r = mustCLI(t, "ca", "crl", "--dir", dir, "--issuer", "root")
	if crl := parseCRLPEM(t, []byte(r.stdout)); len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("root CRL lists %d", len(crl.RevokedCertificateEntries))
	}

	t.Run("errors", func(t *testing.T) {
		failCLI(t, 2, []string{"unknown reason", "keyCompromise"}, "ca", "revoke", "--dir", dir, "--serial", "01", "--reason", "lost")
		failCLI(t, 2, []string{"not an RFC 5280 CRLReason"}, "ca", "revoke", "--dir", dir, "--serial", "01", "--reason", "7")
		failCLI(t, 2, []string{"not hex"}, "ca", "revoke", "--dir", dir, "--serial", "xyz")
		failCLI(t, 2, []string{"exactly one of --serial and --cert"}, "ca", "revoke", "--dir", dir)
		failCLI(t, 2, []string{"--issuer"}, "ca", "revoke", "--dir", dir, "--serial", "01", "--issuer", "ca")
		failCLI(t, 1, []string{"was not issued by"}, "ca", "revoke", "--dir", dir, "--cert", filepath.Join(caDir, fakeca.RootCertFile), "--issuer", "intermediate")
	})

	peer.Require(t, "openssl")
	text := openssl(t, out, true, "crl", "-in", "crl.pem", "-noout", "-text")
	for _, want := range []string{strings.ToUpper(serial1), "Key Compromise", "CRL Number", "Superseded"} {
		if !strings.Contains(strings.ToUpper(text), strings.ToUpper(want)) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, text)
		}
	}
	openssl(t, out, true, "crl", "-in", "crl.pem", "-noout", "-CAfile", filepath.Join(caDir, fakeca.IntermediateCertFile))
}

func parseCRLPEM(t *testing.T, data []byte) *x509.RevocationList {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "X509 CRL" {
		t.Fatalf("no X509 CRL PEM block:\n%s", data)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func TestCAShowAndMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	failCLI(t, 1, []string{"no CA in " + cloud.CADir(dir, cloud.DefaultCA), "credloop ca init --dir " + dir}, "ca", "show", "--dir", dir)
	failCLI(t, 1, []string{"credloop ca init --ca other --dir " + dir}, "ca", "issue", "--dir", dir, "--ca", "other", "--cn", "x", "--org", "p")
	failCLI(t, 2, []string{"--ca"}, "ca", "show", "--dir", dir, "--ca", "..")
	mustCLI(t, "ca", "init", "--dir", dir, "--ca", "factory", "--key", "rsa-2048")
	r := mustCLI(t, "ca", "show", "--dir", dir, "--ca", "factory")
	for _, want := range []string{"rsa-2048", "CN=credloop Root CA", "CN=credloop Intermediate CA", filepath.Join(cloud.CADir(dir, "factory"), fakeca.RootKeyFile), "valid"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ca show lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Error("ca show prints a private key")
	}
}

func TestCARegister(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := newProjectDir(t)
	work := t.TempDir()
	mustCLI(t, "project", "create", "other", "--dir", dir)
	mustCLI(t, "ca", "init", "--dir", dir)
	mustCLI(t, "ca", "init", "--dir", dir, "--ca", "claim")
	mustCLI(t, "ca", "init", "--dir", dir, "--ca", "vendor")
	mustCLI(t, "ca", "issue", "--dir", dir, "--cn", "dev1", "--org", "proj", "--out", work)
	reg := openTestRegistry(t, dir)
	inter := readCert(t, filepath.Join(cloud.CADir(dir, cloud.DefaultCA), fakeca.IntermediateCertFile))
	interID := fakeca.Fingerprint(inter.Raw)
	claimID := fakeca.Fingerprint(readCert(t, filepath.Join(cloud.CADir(dir, "claim"), fakeca.IntermediateCertFile)).Raw)
	vendorRoot := filepath.Join(cloud.CADir(dir, "vendor"), fakeca.RootCertFile)
	vendorID := fakeca.Fingerprint(readCert(t, vendorRoot).Raw)

	steps := []struct {
		name   string
		args   []string
		id     string
		mode   registry.CAMode
		tmpl   string
		active bool
		out    []string
	}{
		{"default CA, jitp", []string{"--mode", "jitp"}, interID, registry.CAModeJITP, "", true, []string{interID, "intermediate of CA \"default\"", "mode jitp, ACTIVE"}},
		{"again, jitr, inactive", []string{"--mode", "jitr", "--ca", "default", "--inactive"}, interID, registry.CAModeJITR, "", false, []string{"INACTIVE"}},
		{"claim with a template", []string{"--ca", "claim", "--mode", "claim", "--template", "fleet"}, claimID, registry.CAModeClaim, "fleet", true, []string{claimID, "fleet"}},
		{"a root from a file", []string{"--cert", vendorRoot, "--mode", "none"}, vendorID, registry.CAModeNone, "", true, []string{vendorID, "mode none"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := mustCLI(t, append([]string{"ca", "register", "--dir", dir, "--project", "proj"}, st.args...)...)
			for _, want := range st.out {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, r.stdout)
				}
			}
			got, err := reg.CARegistrationByID(ctx, st.id)
			if err != nil || got.Mode != st.mode || got.TemplateName != st.tmpl || got.Active != st.active || got.Project != "proj" {
				t.Fatalf("registration %+v, %v", got, err)
			}
		})
	}
	r := runCLI(t, "ca", "register", "--dir", dir, "--project", "proj", "--ca", "claim", "--mode", "claim", "--template", "fleet")
	if !strings.Contains(r.stderr, "template fleet does not exist yet") {
		t.Errorf("no note about the missing template:\n%v", r)
	}
	if evs, err := reg.Events(ctx, registry.Filter{Kind: "ca.register"}); err != nil || len(evs) != 5 || evs[0].Credential != interID {
		t.Errorf("ca.register events: %d %v", len(evs), err)
	}

	for _, tt := range []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"no mode", 2, []string{"missing --mode"}, []string{"--project", "proj"}},
		{"bad mode", 2, []string{"want jitp, jitr, claim or none"}, []string{"--project", "proj", "--mode", "auto"}},
		{"no project", 2, []string{"missing --project"}, []string{"--mode", "jitp"}},
		{"cert and ca", 2, []string{"not both"}, []string{"--project", "proj", "--mode", "jitp", "--ca", "claim", "--cert", vendorRoot}},
		{"bad template", 2, []string{"--template"}, []string{"--project", "proj", "--mode", "claim", "--template", "a/b"}},
		{"leaf", 1, []string{"device certificate"}, []string{"--project", "proj", "--mode", "jitp", "--cert", filepath.Join(work, "dev1.crt.pem")}},
		{"unknown project", 1, []string{"project nope does not exist"}, []string{"--project", "nope", "--mode", "jitp"}},
		{"other project", 1, []string{"registered with another project"}, []string{"--project", "other", "--mode", "jitp"}},
		{"no CA", 1, []string{"no CA in"}, []string{"--project", "proj", "--mode", "jitp", "--ca", "missing"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failCLI(t, tt.code, tt.want, append([]string{"ca", "register", "--dir", dir}, tt.args...)...)
		})
	}

	r = mustCLI(t, "ca", "registrations", "--dir", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "PROJECT") || !strings.Contains(r.stdout, interID[:16]) || !strings.Contains(r.stdout, "INACTIVE") {
		t.Errorf("registrations:\n%s", r.stdout)
	}
	r = mustCLI(t, "ca", "registrations", "--dir", dir, "--project", "proj", "--json")
	var infos []caRegInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 3 || infos[0].ID != interID || infos[0].Status != "INACTIVE" || infos[1].Template != "fleet" {
		t.Errorf("registrations --json: %v\n%s", err, r.stdout)
	}
	if r := mustCLI(t, "ca", "registrations", "--dir", dir, "--project", "other"); !strings.Contains(r.stdout, "no registered CA") {
		t.Errorf("registrations of other:\n%s", r.stdout)
	}
	failCLI(t, 1, []string{"does not exist"}, "ca", "registrations", "--dir", dir, "--project", "nope")
}

// TestCRLMatchesCRLPackage: `ca crl` writes what cloud/crl builds: the same
// entries, the next CRL number.
func TestCRLMatchesCRLPackage(t *testing.T) {
	dir := newProjectDir(t)
	mustCLI(t, "ca", "init", "--dir", dir)
	mustCLI(t, "ca", "revoke", "--dir", dir, "--serial", "0abc", "--reason", "superseded")
	r := mustCLI(t, "ca", "crl", "--dir", dir)
	crl := parseCRLPEM(t, []byte(r.stdout))
	if !strings.Contains(r.stderr, "CRL number 1 of CN=credloop Intermediate CA (intermediate), 1 revoked, next update ") {
		t.Errorf("crl info line:\n%s", r.stderr)
	}
	if crl.Number.Int64() != 1 || len(crl.RevokedCertificateEntries) != 1 || fmt.Sprintf("%x", crl.RevokedCertificateEntries[0].SerialNumber) != "abc" ||
		crl.RevokedCertificateEntries[0].ReasonCode != 4 {
		t.Errorf("CRL %v %+v", crl.Number, crl.RevokedCertificateEntries)
	}
	if !strings.Contains(r.stderr, rfc3339(crl.NextUpdate)) {
		t.Errorf("info line does not give the CRL's nextUpdate %s:\n%s", rfc3339(crl.NextUpdate), r.stderr)
	}
}
