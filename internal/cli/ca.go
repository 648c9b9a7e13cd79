package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

func init() {
	register(command{name: "ca", summary: "manage the fake CA: init, import, issue, sign, revoke, crl, show, register", run: runCA})
}

const caUsage = `
Usage: credloop ca <subcommand> [flags]

Manage a certificate authority of a credloop directory. A CA lives in
DIR/ca/NAME (--ca NAME, default "default"): a root and, usually, an
intermediate that issues device certificates. The cloud (credloop cloud)
uses the CA "default" of its DIR. Revocations are kept in DIR/registry.db.

Subcommands:
  init     create a root and an intermediate CA
  import   bring your own root (made with openssl, say)
  issue    issue a device certificate and its key
  sign     sign a device's certificate signing request (CSR)
  revoke   revoke a certificate by serial
  crl      write a certificate revocation list (CRL)
  show     show the CA's certificates
  register register a CA certificate with a project for MQTT (JITP, JITR,
           fleet-provisioning claim certificates)
  registrations
           list the registered CA certificates

Examples:
  credloop ca init --dir ./lab
  credloop ca issue --dir ./lab --cn dev1 --org myproject --out ./certs
  credloop ca revoke --dir ./lab --serial 4f2a9c... --reason keyCompromise

Run 'credloop ca <subcommand> --help' for its flags and examples.
`

func runCA(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "ca", caUsage, map[string]func(context.Context, *Env) error{
		"init":   caInit,
		"import": caImport,
		"issue":  caIssue,
		"sign":   caSign,
		"revoke": caRevoke,
		"crl":    caCRL,
		"show":   caShow,

		"register":      caRegister,
		"registrations": caRegistrations,
	})
}

// caFlags are the flags every `ca` subcommand has.
type caFlags struct {
	dir  *string
	name *string
}

func addCAFlags(fs *flag.FlagSet) caFlags {
	return caFlags{
		dir:  addDirFlag(fs),
		name: fs.String("ca", cloud.DefaultCA, "`NAME` of the CA, kept in DIR/ca/NAME"),
	}
}

// parse parses the flags of a `ca` subcommand, which takes no arguments,
// and checks --dir and --ca.
func (c caFlags) parse(fs *flag.FlagSet, args []string) error {
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := checkDir(*c.dir); err != nil {
		return err
	}
	return checkCAName(*c.name)
}

func (c caFlags) caDir() string { return cloud.CADir(*c.dir, *c.name) }

// open opens the admin of DIR for the CA. Close it with closeAdmin.
func (c caFlags) open() (*cloud.Admin, error) { return openCA(*c.dir, *c.name) }

func (c caFlags) scope() scope { return scope{dir: *c.dir, ca: *c.name} }

// certInfo describes a certificate for people (printCertInfo) and --json.
type certInfo struct {
	Role        string    `json:"role,omitempty"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint"`
	KeyType     string    `json:"key_type"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	CertFile    string    `json:"cert_file,omitempty"`
	KeyFile     string    `json:"key_file,omitempty"`
}

func infoOf(role string, c *x509.Certificate) certInfo {
	kt, _ := fakeca.KeyTypeOf(c.PublicKey)
	return certInfo{
		Role:        role,
		Subject:     c.Subject.String(),
		Issuer:      c.Issuer.String(),
		Serial:      fmt.Sprintf("%x", c.SerialNumber),
		Fingerprint: fakeca.Fingerprint(c.Raw),
		KeyType:     string(kt),
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
	}
}

// printCertInfo prints ci as an indented block of aligned fields.
func printCertInfo(w io.Writer, title string, ci certInfo) {
	fmt.Fprintln(w, title)
	tw := newTable(w)
	fmt.Fprintf(tw, "  subject\t%s\n", ci.Subject)
	fmt.Fprintf(tw, "  issuer\t%s\n", ci.Issuer)
	fmt.Fprintf(tw, "  serial\t%s\n", ci.Serial)
	fmt.Fprintf(tw, "  fingerprint\t%s\n", ci.Fingerprint)
	fmt.Fprintf(tw, "  key\t%s\n", ci.KeyType)
	fmt.Fprintf(tw, "  valid\t%s to %s\n", rfc3339(ci.NotBefore), rfc3339(ci.NotAfter))
	if ci.CertFile != "" {
		fmt.Fprintf(tw, "  cert file\t%s\n", ci.CertFile)
	}
	if ci.KeyFile != "" {
		fmt.Fprintf(tw, "  key file\t%s\n", ci.KeyFile)
	}
	tw.Flush()
}

// authorityInfo describes a CA of DIR.
type authorityInfo struct {
	Name         string    `json:"name"`
	Dir          string    `json:"dir"`
	Root         certInfo  `json:"root"`
	Intermediate *certInfo `json:"intermediate,omitempty"`
}

func authorityInfoOf(ca cloud.CAInfo) authorityInfo {
	ai := authorityInfo{Name: ca.Name, Dir: ca.Dir, Root: infoOf("root", ca.Root)}
	ai.Root.CertFile = filepath.Join(ca.Dir, fakeca.RootCertFile)
	ai.Root.KeyFile = filepath.Join(ca.Dir, fakeca.RootKeyFile)
	if ca.Intermediate != nil {
		in := infoOf("intermediate", ca.Intermediate)
		in.CertFile = filepath.Join(ca.Dir, fakeca.IntermediateCertFile)
		in.KeyFile = filepath.Join(ca.Dir, fakeca.IntermediateKeyFile)
		ai.Intermediate = &in
	}
	return ai
}

func printAuthority(w io.Writer, ai authorityInfo) {
	printCertInfo(w, "root", ai.Root)
	if ai.Intermediate != nil {
		printCertInfo(w, "intermediate (issues device certificates)", *ai.Intermediate)
	} else {
		fmt.Fprintln(w, "no intermediate: the root issues device certificates")
	}
}

// createCA makes the CA of --ca in DIR with create, then says so with
// format (which takes the name and the directory) and shows it.
func createCA(env *Env, c caFlags, format string, create func(*cloud.Admin) (cloud.CAInfo, error)) (err error) {
	a, err := openAdmin(*c.dir, true)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	info, err := create(a)
	if errors.Is(err, cloud.ErrCAExists) {
		return fmt.Errorf("a CA already exists in %s: use --force to replace it (certificates it issued will no longer verify; projects trusting its root must trust the new one); see it with `credloop ca show%s --dir %s`",
			c.caDir(), caNameArg(*c.name), shellArg(*c.dir))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, format, *c.name, c.caDir())
	printAuthority(env.Stdout, authorityInfoOf(info))
	return nil
}

const caInitUsage = `
Usage: credloop ca init [--dir DIR] [--ca NAME] [--key TYPE] [--force]

Create a new certificate authority in DIR/ca/NAME: a self-signed root
"credloop Root CA" (10 years) and an intermediate "credloop Intermediate CA"
(5 years) signed by it, which issues the device certificates. Keys are
written 0600. An existing CA is kept unless --force is given. Let a project
accept devices with certificates from this CA with
'credloop project trust PROJECT --ca NAME'.

Examples:
  credloop ca init --dir ./lab
  credloop ca init --dir ./lab --ca factory --key ecdsa-p384
  credloop ca init --dir ./lab --force      # replace the default CA
`

func caInit(ctx context.Context, env *Env) error {
	fs := flagSet(env, "ca init", caInitUsage)
	c := addCAFlags(fs)
	keyType := fs.String("key", string(fakeca.ECDSAP256), "key `TYPE` of the root and intermediate: ecdsa-p256, ecdsa-p384 or rsa-2048")
	force := fs.Bool("force", false, "replace an existing CA of that name")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	kt, err := fakeca.ParseKeyType(*keyType)
	if err != nil {
		return usageErr("--key: %v", err)
	}
	return createCA(env, c, "created CA %q in %s\n", func(a *cloud.Admin) (cloud.CAInfo, error) {
		return a.InitCA(ctx, cloud.InitCAOptions{Name: *c.name, KeyType: cloud.KeyType(kt), Force: *force})
	})
}

const caImportUsage = `
Usage: credloop ca import --cert ROOT.pem --key ROOT.key [--no-intermediate] [--dir DIR] [--ca NAME] [--force]

Bring your own root: store an existing self-signed CA certificate and its
private key (PEM or DER; SEC1, PKCS#8 or PKCS#1; not encrypted) as the CA
NAME of DIR. Unless --no-intermediate is given, a new intermediate with a
key of the root's type is made under it and issues the device
certificates; with it, the root itself issues them. A root made by openssl
as in the Golioth documentation works as it is.

Examples:
  openssl ecparam -name prime256v1 -genkey -noout -out root.key
  openssl req -x509 -new -nodes -key root.key -sha256 -subj "/C=BR/CN=Root lab" -days 1024 -out root.pem
  credloop ca import --dir ./lab --cert root.pem --key root.key --no-intermediate
`

func caImport(ctx context.Context, env *Env) error {
	fs := flagSet(env, "ca import", caImportUsage)
	c := addCAFlags(fs)
	certFile := fs.String("cert", "", "`FILE` with the root CA certificate (PEM or DER)")
	keyFile := fs.String("key", "", "`FILE` with the root's private key (PEM or DER)")
	noInter := fs.Bool("no-intermediate", false, "let the root issue device certificates itself")
	force := fs.Bool("force", false, "replace an existing CA of that name")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	if *certFile == "" || *keyFile == "" {
		return usageErr("--cert and --key are both required")
	}
	certPEM, err := readInput(*certFile, fakeca.MaxCertSize)
	if err != nil {
		return err
	}
	keyPEM, err := readInput(*keyFile, fakeca.MaxKeySize)
	if err != nil {
		return err
	}
	return createCA(env, c, "imported CA %q into %s\n", func(a *cloud.Admin) (cloud.CAInfo, error) {
		info, err := a.ImportCA(ctx, cloud.InitCAOptions{Name: *c.name, Force: *force}, certPEM, keyPEM, *noInter)
		if err != nil && !errors.Is(err, cloud.ErrCAExists) {
			return info, fmt.Errorf("import %s with %s: %w", *certFile, *keyFile, err)
		}
		return info, err
	})
}

const caIssueUsage = `
Usage: credloop ca issue --cn DEVICE --org PROJECT [flags]

Issue a device (client) certificate with subject O=PROJECT, CN=DEVICE from
the CA's intermediate, with a new key. Writes, in --out (default the current
directory): NAME.crt.pem and NAME.crt.der (the certificate), NAME.key.pem
and NAME.key.der (the key, mode 0600) and NAME.chain.pem (the certificate
and the intermediate, as a device presents them); NAME is the CN unless
--name is given. --not-before and --not-after make expired or not yet valid
certificates for tests. No policy is applied and nothing is registered: a
project trusting the CA's root provisions the device on first connect.

Examples:
  credloop ca issue --dir ./lab --cn dev1 --org myproject --out ./certs
  credloop ca issue --dir ./lab --cn dev2 --org myproject --key rsa-2048 --days 30
  credloop ca issue --dir ./lab --cn old --org myproject --not-after 2024-01-01T00:00:00Z
`

func caIssue(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca issue", caIssueUsage)
	c := addCAFlags(fs)
	cn := fs.String("cn", "", "common name: the device `ID`")
	org := fs.String("org", "", "organization: the `PROJECT` id (give --org '' for a certificate without O)")
	keyType := fs.String("key", string(fakeca.ECDSAP256), "key `TYPE` of the device: ecdsa-p256, ecdsa-p384 or rsa-2048")
	days := fs.Int("days", 365, "validity in `DAYS`")
	notBefore := fs.String("not-before", "", "start of validity, an RFC 3339 `TIME` (e.g. 2030-01-01T00:00:00Z)")
	notAfter := fs.String("not-after", "", "end of validity, an RFC 3339 `TIME`")
	out := fs.String("out", ".", "`DIR` to write the files to")
	name := fs.String("name", "", "base `NAME` of the files (default: the CN)")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *cn == "" {
		return usageErr("missing --cn (the device id)")
	}
	if !given["org"] {
		return usageErr("missing --org (the project id; --org '' for none)")
	}
	kt, err := fakeca.ParseKeyType(*keyType)
	if err != nil {
		return usageErr("--key: %v", err)
	}
	if *days <= 0 {
		return usageErr("--days %d: must be positive", *days)
	}
	base := *name
	if base == "" {
		base = *cn
	}
	if err := checkFileBase(base); err != nil {
		if *name == "" {
			return usageErr("the CN %q cannot name files (%v): give --name", *cn, err)
		}
		return usageErr("--name: %v", err)
	}
	o := cloud.IssueOptions{CA: *c.name, CN: *cn, Org: *org, KeyType: string(kt), Validity: time.Duration(*days) * 24 * time.Hour}
	if o.NotBefore, err = parseTimeFlag("not-before", *notBefore); err != nil {
		return err
	}
	if o.NotAfter, err = parseTimeFlag("not-after", *notAfter); err != nil {
		return err
	}
	if !o.NotBefore.IsZero() && !o.NotAfter.IsZero() {
		if given["days"] {
			return usageErr("--days cannot be combined with both --not-before and --not-after")
		}
		if o.NotAfter.Before(o.NotBefore) {
			return usageErr("--not-after %s is before --not-before %s", rfc3339(o.NotAfter), rfc3339(o.NotBefore))
		}
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	is, err := a.Issue(ctx, o)
	if err != nil {
		return c.scope().explain(err)
	}
	cert := is.Cert
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	files := []struct {
		label, suffix string
		data          []byte
		mode          os.FileMode
	}{
		{"certificate (PEM)", ".crt.pem", is.CertPEM, 0o644},
		{"certificate (DER)", ".crt.der", cert.Raw, 0o644},
		{"key (PEM)", ".key.pem", is.KeyPEM, 0o600},
		{"key (DER)", ".key.der", is.KeyDER, 0o600},
		{"chain (PEM)", ".chain.pem", is.ChainPEM, 0o644},
	}
	ci := infoOf("", cert)
	printCertInfo(env.Stdout, "issued certificate", ci)
	fmt.Fprintln(env.Stdout, "files")
	tw := newTable(env.Stdout)
	for _, f := range files {
		path := filepath.Join(*out, base+f.suffix)
		if err := writeFileAtomic(path, f.data, f.mode); err != nil {
			return err
		}
		fmt.Fprintf(tw, "  %s\t%s\n", f.label, path)
	}
	return tw.Flush()
}

// checkFileBase makes sure s is a plain file name.
func checkFileBase(s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return errors.New("not a file name")
	case strings.ContainsAny(s, `/\`+"\x00"):
		return errors.New("contains a path separator")
	}
	return nil
}

// parseTimeFlag parses an RFC 3339 time flag; "" is the zero time.
func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErr("--%s %q: want an RFC 3339 time like 2030-01-02T15:04:05Z", name, s)
	}
	return t, nil
}

const caSignUsage = `
Usage: credloop ca sign --csr FILE [--org PROJECT] [--days N] [--out FILE] [--chain]

Sign a device's certificate signing request (PKCS#10, PEM or DER) with the
CA's intermediate, after checking its signature and the policy: the key is
ecdsa-p256, ecdsa-p384 or rsa-2048, the subject has one printable CN, and,
with --org, its O is exactly PROJECT. A refused CSR gets an error naming the
rule it broke. The certificate (PEM) goes to --out, or to standard output.

Examples:
  openssl req -new -key dev1.key -subj "/C=BR/O=myproject/CN=dev1" -out dev1.csr
  credloop ca sign --dir ./lab --csr dev1.csr --org myproject --out dev1.crt.pem
  credloop ca sign --dir ./lab --csr dev1.csr --days 30 --chain > dev1.chain.pem
`

func caSign(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca sign", caSignUsage)
	c := addCAFlags(fs)
	csrFile := fs.String("csr", "", "`FILE` with the CSR (PEM or DER)")
	org := fs.String("org", "", "require the subject O to be exactly `PROJECT`")
	days := fs.Int("days", 365, "validity in `DAYS`")
	out := fs.String("out", "", "`FILE` to write the certificate to (default: standard output)")
	withChain := fs.Bool("chain", false, "append the intermediate to the certificate")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	if *csrFile == "" {
		return usageErr("missing --csr")
	}
	if *days <= 0 {
		return usageErr("--days %d: must be positive", *days)
	}
	data, err := readInput(*csrFile, fakeca.MaxCSRSize)
	if err != nil {
		return err
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	signed, err := a.SignCSR(ctx, cloud.SignOptions{CA: *c.name, CSR: data, Org: *org, Validity: time.Duration(*days) * 24 * time.Hour, Chain: *withChain})
	var ce *cloud.CSRError
	switch {
	case errors.As(err, &ce) && ce.Subject != "":
		return fmt.Errorf("CSR %s (subject %q) refused: %w", *csrFile, ce.Subject, ce.Err)
	case errors.As(err, &ce):
		return fmt.Errorf("CSR %s refused: %w", *csrFile, ce.Err)
	case err != nil:
		return c.scope().explain(err)
	}
	cert, pemData := signed.Cert, signed.PEM
	info, err := writeOutput(env, *out, pemData)
	if err != nil {
		return err
	}
	ci := infoOf("", cert)
	ci.CertFile = *out
	printCertInfo(info, "signed certificate", ci)
	return nil
}

// clipArg shortens an argument quoted in an error message.
func clipArg(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkIssuer validates --issuer.
func checkIssuer(which string) error {
	switch which {
	case "", cloud.IssuerIntermediate, cloud.IssuerRoot:
		return nil
	}
	return usageErr("--issuer %q: want intermediate or root", clipArg(which))
}

// explainIssuer turns the admin's errors about the issuer into messages.
func (c caFlags) explainIssuer(err error) error {
	if errors.Is(err, cloud.ErrNoIntermediate) {
		return usageErr("CA %q has no intermediate (it was imported with --no-intermediate): use --issuer root", *c.name)
	}
	return c.scope().explain(err)
}

const caRevokeUsage = `
Usage: credloop ca revoke (--serial HEX | --cert FILE) [--reason REASON] [--issuer intermediate|root] [flags]

Revoke a certificate: record in DIR/registry.db that the issuer (the CA's
intermediate unless --issuer root) revoked the serial, and mark REVOKED
every registered device certificate with that issuer and serial. The cloud
refuses it from the next handshake on, and 'credloop ca crl' lists it. The
serial is hex as 'ca issue' or 'openssl x509 -serial' print it (colons and
0x allowed); --cert takes it, and the issuer, from the certificate.
REASON is an RFC 5280 name (unspecified, keyCompromise, cACompromise,
affiliationChanged, superseded, cessationOfOperation, certificateHold,
removeFromCRL, privilegeWithdrawn, aACompromise) or its number.

Examples:
  credloop ca revoke --dir ./lab --serial 4f2a9c0d11 --reason keyCompromise
  credloop ca revoke --dir ./lab --cert ./certs/dev1.crt.pem --reason superseded
  credloop ca revoke --dir ./lab --issuer root --serial 01:a2:b3
`

func caRevoke(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca revoke", caRevokeUsage)
	c := addCAFlags(fs)
	serialArg := fs.String("serial", "", "serial number in `HEX`")
	certFile := fs.String("cert", "", "`FILE` with the certificate to revoke (instead of --serial)")
	reasonArg := fs.String("reason", "unspecified", "RFC 5280 revocation `REASON`, name or number")
	issuerArg := fs.String("issuer", "", "`CA` that issued the certificate: intermediate or root (default: the CA that issues device certificates)")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	if (*serialArg == "") == (*certFile == "") {
		return usageErr("give exactly one of --serial and --cert")
	}
	reason, err := cloud.ParseRevocationReason(*reasonArg)
	if err != nil {
		return usageErr("--reason: %v", err)
	}
	if err := checkIssuer(*issuerArg); err != nil {
		return err
	}
	o := cloud.RevokeOptions{CA: *c.name, Issuer: *issuerArg, Serial: *serialArg, Reason: reason}
	if *certFile != "" {
		certs, err := readCerts(*certFile)
		if err != nil {
			return err
		}
		o.Cert = certs[0]
	} else if _, err := registry.NormalizeSerial(*serialArg); err != nil {
		return usageErr("--serial: %v", err)
	}
	a, err := openAdmin(*c.dir, true)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	rev, err := a.Revoke(ctx, o)
	var ni *cloud.NotIssuedError
	if errors.As(err, &ni) {
		return fmt.Errorf("%s (subject %q) was not issued by the %s of CA %q (%s)", *certFile, ni.Subject, ni.Role, ni.CA, ni.Issuer)
	}
	if err != nil {
		return c.explainIssuer(err)
	}
	serial := rev.Serial
	if rev.Already {
		fmt.Fprintf(env.Stdout, "serial %s of %s was already revoked at %s (reason %s)\n", serial, rev.IssuerRole, rfc3339(rev.Time), cloud.RevocationReasonName(rev.Reason))
	} else {
		fmt.Fprintf(env.Stdout, "revoked serial %s\n", serial)
	}
	tw := newTable(env.Stdout)
	fmt.Fprintf(tw, "  issuer\t%s (%s of CA %q)\n", rev.Issuer.Subject.String(), rev.IssuerRole, *c.name)
	fmt.Fprintf(tw, "  issuer fingerprint\t%s\n", rev.IssuerFingerprint)
	fmt.Fprintf(tw, "  reason\t%s (%d)\n", cloud.RevocationReasonName(rev.Reason), rev.Reason)
	fmt.Fprintf(tw, "  time\t%s\n", rfc3339(rev.Time))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, cr := range rev.Deactivated {
		fmt.Fprintf(env.Stdout, "CA registration %.16s (%s, project %s) deactivated: certificates under it are refused\n", cr.ID, caCN(cr), cr.Project)
	}
	if len(rev.Credentials) == 0 {
		fmt.Fprintln(env.Stdout, "no registered credential changed state (devices presenting this certificate are refused from their next handshake)")
		return nil
	}
	fmt.Fprintln(env.Stdout, "credentials now REVOKED:")
	tw = newTable(env.Stdout)
	fmt.Fprintln(tw, "  PROJECT\tDEVICE\tSUBJECT\tFINGERPRINT")
	for _, cr := range rev.Credentials {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cr.Project, cr.Device, cr.Subject, short(cr.Fingerprint, 16))
	}
	return tw.Flush()
}

// caCN is the common name of a registered CA certificate.
func caCN(cr registry.CARegistration) string {
	if c, err := x509.ParseCertificate(cr.DER); err == nil {
		return c.Subject.CommonName
	}
	return cr.Subject
}

const caCRLUsage = `
Usage: credloop ca crl [--issuer intermediate|root] [--out FILE] [--days N] [flags]

Write a certificate revocation list (X.509 v2 CRL, PEM "X509 CRL") signed
by the issuer (the CA's intermediate unless --issuer root), listing the
revocations recorded in DIR/registry.db for it, with the issuer's next CRL
number (kept in the registry) and a next update N days ahead. The CRL goes
to --out, or to standard output. 'openssl crl -in FILE -noout -text' reads
it.

Examples:
  credloop ca crl --dir ./lab --out crl.pem
  credloop ca crl --dir ./lab --issuer root --days 30 --out root-crl.pem
  credloop ca crl --dir ./lab | openssl crl -noout -text
`

func caCRL(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca crl", caCRLUsage)
	c := addCAFlags(fs)
	issuerArg := fs.String("issuer", "", "`CA` whose revocations to list: intermediate or root (default: the CA that issues device certificates)")
	out := fs.String("out", "", "`FILE` to write the CRL to (default: standard output)")
	days := fs.Int("days", 7, "next update in `DAYS`")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	if *days <= 0 {
		return usageErr("--days %d: must be positive", *days)
	}
	if err := checkIssuer(*issuerArg); err != nil {
		return err
	}
	a, err := openAdmin(*c.dir, true)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	list, err := a.CRL(ctx, cloud.CRLOptions{CA: *c.name, Issuer: *issuerArg, NextUpdate: time.Duration(*days) * 24 * time.Hour})
	if err != nil {
		return c.explainIssuer(err)
	}
	issuer, role := list.Issuer, list.IssuerRole
	info, err := writeOutput(env, *out, list.PEM)
	if err != nil {
		return err
	}
	fmt.Fprintf(info, "CRL number %d of %s (%s), %d revoked, next update %s", list.Number, issuer.Subject.String(), role, list.Revoked, rfc3339(list.NextUpdate))
	if *out != "" {
		fmt.Fprintf(info, ", written to %s", *out)
	}
	fmt.Fprintln(info)
	return nil
}

const caShowUsage = `
Usage: credloop ca show [--dir DIR] [--ca NAME] [--json]

Show the CA NAME of DIR: for the root and the intermediate, the subject,
serial, SHA-256 fingerprint (what 'credloop project untrust' takes),
validity, key type and file paths.

Examples:
  credloop ca show --dir ./lab
  credloop ca show --dir ./lab --ca factory --json
`

func caShow(_ context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca show", caShowUsage)
	c := addCAFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	info, err := a.CA(*c.name)
	if err != nil {
		return c.scope().explain(err)
	}
	ai := authorityInfoOf(info)
	if *asJSON {
		return emitJSON(env.Stdout, ai)
	}
	fmt.Fprintf(env.Stdout, "CA %q in %s\n", *c.name, c.caDir())
	printAuthority(env.Stdout, ai)
	return nil
}

const caRegisterUsage = `
Usage: credloop ca register --project PROJECT --mode jitp|jitr|claim|none [--cert FILE | --ca NAME] [--template NAME] [--inactive] [--dir DIR]

Register a CA certificate with a project, as AWS IoT's
register-ca-certificate does: a device certificate presented over MQTT
must chain to an ACTIVE registered CA. --cert takes the CA certificate(s)
from a file (PEM or DER; every certificate of a bundle is registered);
--ca NAME registers the certificate that issues device certificates of the
CA NAME of DIR (its intermediate, or its root when it has none; default
"default"). The mode says what happens to a certificate the registry does
not know yet:

  jitp   just-in-time provisioning: registered PENDING_ACTIVATION, the
         registration event published, the connection closed, then the
         thing created and the certificate made ACTIVE; the device's retry
         connects
  jitr   just-in-time registration: as jitp, but the certificate stays
         PENDING_ACTIVATION until 'credloop device activate'
  claim  certificates under this CA are fleet-provisioning claim
         (bootstrap) certificates, allowed to use the template --template
  none   no auto-registration: only certificates already registered connect

The caCertificateId printed is the SHA-256 of the CA certificate's DER.
Registering a CA again changes its mode and template. It is ACTIVE unless
--inactive.

Examples:
  credloop ca register --dir ./lab --project myproject --ca default --mode jitp
  credloop ca init --dir ./lab --ca claim
  credloop project template --dir ./lab --project myproject fleet
  credloop ca register --dir ./lab --project myproject --ca claim --mode claim --template fleet
  credloop ca register --dir ./lab --project myproject --cert ./vendor-ca.pem --mode jitr
`

func caRegister(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca register", caRegisterUsage)
	c := addCAFlags(fs)
	project := fs.String("project", "", "`PROJECT` to register the CA with")
	certFile := fs.String("cert", "", "`FILE` with the CA certificate(s), PEM or DER (instead of --ca)")
	modeArg := fs.String("mode", "", "what happens to unknown certificates: `MODE` jitp, jitr, claim or none")
	template := fs.String("template", "", "provisioning template `NAME` (claim: the one claim certificates may use; jitp: optional)")
	inactive := fs.Bool("inactive", false, "register the CA INACTIVE (its certificates are refused)")
	if err := c.parse(fs, env.Args); err != nil {
		return err
	}
	if err := projectArg(*project); err != nil {
		return err
	}
	if *modeArg == "" {
		return usageErr("missing --mode (jitp, jitr, claim or none)")
	}
	mode, err := registry.ParseCAMode(*modeArg)
	if err != nil {
		return usageErr("--mode %q: want jitp, jitr, claim or none", clipArg(*modeArg))
	}
	if *template != "" {
		if err := registry.ValidTemplateName(*template); err != nil {
			return usageErr("--template: %v", err)
		}
	}
	caSet := false
	fs.Visit(func(f *flag.Flag) { caSet = caSet || f.Name == "ca" })
	if caSet && *certFile != "" {
		return usageErr("give either --cert FILE or --ca NAME, not both")
	}
	var (
		certs  []*x509.Certificate
		source string
	)
	if *certFile != "" {
		if certs, err = readCerts(*certFile); err != nil {
			return err
		}
		source = *certFile
	}
	a, err := openAdmin(*c.dir, false)
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	sc := scope{dir: *c.dir, project: *project, ca: *c.name}
	if *certFile == "" {
		info, err := a.CA(*c.name)
		if err != nil {
			return sc.explain(err)
		}
		certs = []*x509.Certificate{info.Issuing()}
		source = fmt.Sprintf("%s of CA %q", info.IssuingRole(), *c.name)
	}
	res, err := a.RegisterCA(ctx, cloud.RegisterCAOptions{Project: *project, Certs: certs, Mode: mode, Template: *template, Inactive: *inactive})
	var ce *cloud.CertError
	switch {
	case errors.As(err, &ce) && errors.Is(err, cloud.ErrNotCA):
		what := *certFile
		if ce.Count > 1 {
			what = fmt.Sprintf("%s (certificate %d of %d)", *certFile, ce.Index+1, ce.Count)
		}
		return fmt.Errorf("%s: %q is a device certificate, neither a CA nor self-signed: register the CA that issued it", what, ce.Subject)
	case errors.Is(err, cloud.ErrTemplateProject):
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), cloud.ErrTemplateProject.Error()+": "))
	case errors.Is(err, cloud.ErrNoProject):
		return sc.explain(err)
	}
	if res.TemplateMissing {
		fmt.Fprintf(env.Stderr, "note: template %s does not exist yet: create it with `credloop project template --project %s %s --dir %s`\n",
			*template, *project, *template, shellArg(*c.dir))
	}
	status := "ACTIVE"
	if *inactive {
		status = "INACTIVE"
	}
	fmt.Fprintf(env.Stdout, "registered with project %s (%s), mode %s, %s:\n", *project, source, mode, status)
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "  CA CERTIFICATE ID\tSUBJECT\tTEMPLATE")
	for _, cr := range res.Registrations {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", cr.ID, cr.Subject, dashIfEmpty(*template))
	}
	tw.Flush()
	switch {
	case errors.As(err, &ce) && errors.Is(err, registry.ErrExists):
		return fmt.Errorf("%s is registered with another project (see `credloop ca registrations --dir %s`): %w", ce.Subject, shellArg(*c.dir), ce.Err)
	case err != nil:
		return err
	}
	return nil
}

// dashIfEmpty shows "-" for an empty table cell.
func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// caRegInfo is a CA registration for --json.
type caRegInfo struct {
	ID       string    `json:"caCertificateId"`
	Project  string    `json:"project"`
	Subject  string    `json:"subject"`
	Mode     string    `json:"mode"`
	Template string    `json:"template,omitempty"`
	Status   string    `json:"status"` // ACTIVE or INACTIVE
	Created  time.Time `json:"created"`
}

const caRegistrationsUsage = `
Usage: credloop ca registrations [--project PROJECT] [--dir DIR] [--json]

List the CA certificates registered with 'credloop ca register', of one
project or of all: caCertificateId (SHA-256 of the DER), subject, mode
(jitp, jitr, claim, none), template and status (ACTIVE or INACTIVE).

Examples:
  credloop ca registrations --dir ./lab
  credloop ca registrations --dir ./lab --project myproject --json
`

func caRegistrations(ctx context.Context, env *Env) (err error) {
	fs := flagSet(env, "ca registrations", caRegistrationsUsage)
	lf := addListFlags(fs, "only registrations of `PROJECT`")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	a, err := lf.open()
	if err != nil {
		return err
	}
	defer closeAdmin(env, a, &err)
	regs, err := a.CARegistrations(ctx, *lf.project)
	if err != nil {
		return lf.scope().explain(err)
	}
	infos := make([]caRegInfo, 0, len(regs))
	for _, r := range regs {
		status := "ACTIVE"
		if !r.Active {
			status = "INACTIVE"
		}
		infos = append(infos, caRegInfo{ID: r.ID, Project: r.Project, Subject: r.Subject, Mode: string(r.Mode), Template: r.TemplateName, Status: status, Created: r.Created})
	}
	return printList(env.Stdout, *lf.json, infos,
		"no registered CA certificates: register one with `credloop ca register --project PROJECT --mode jitp`",
		"PROJECT\tCA CERTIFICATE ID\tSUBJECT\tMODE\tTEMPLATE\tSTATUS\tREGISTERED",
		func(w io.Writer, r caRegInfo) {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Project, short(r.ID, 16), r.Subject, r.Mode, dashIfEmpty(r.Template), r.Status, rfc3339(r.Created))
		})
}
