package nrf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/credloop/credloop/boards/nrf/smp"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/sim"
)

// Driver defaults.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultBootTimeout    = 30 * time.Second
	DefaultOnlineTimeout  = 60 * time.Second
)

// Driver errors.
var (
	ErrCommand        = errors.New("nrf: shell command failed")
	ErrNoCredentials  = errors.New("nrf: no credentials to provision")
	ErrBadCredential  = errors.New("nrf: credential cannot be provisioned")
	ErrNotProvisioned = errors.New("nrf: the board has no credentials")
	ErrNoRedactor     = errors.New("nrf: no redactor for the secrets sent to the board")
)

var (
	bannerRE   = regexp.MustCompile(`\*\*\* Booting (?:nRF Connect SDK|Zephyr OS)[^\n]*\*\*\*`)
	onlineRE   = regexp.MustCompile(`[^\n]*Golioth client connected[^\n]*\n`)
	noCredsRE  = regexp.MustCompile(`Error reading certificate credentials from filesystem\n[^\n]*No PSK credentials|Failed to load certificate credentials[^\n]*`)
	shellErrRE = regexp.MustCompile(`: command not found|: unknown parameter: |: wrong parameter count|: missing subcommand|Unterminated quote|Too many parameters`)
)

// Credentials are what Provision installs: the device runtime's one
// credential type. A certificate (Chain, leaf first, and Key) goes to
// /lfs1/credentials over SMP; a PSK (PSKIdentity "<device>@<project>" and
// a printable key, as Golioth's PSKs are) goes to the golioth/psk-id and
// golioth/psk settings. With both, both are installed (the firmware
// prefers the certificate).
type Credentials = sim.Credential

// Driver talks to an nRF board running Zephyr and the Golioth firmware
// over its serial port: the Zephyr shell through a hil.Console, and
// mcumgr SMP on the same UART. It never logs a secret; each secret it sends
// is registered with the console's Redactor first, and without one it
// sends none (ErrNoRedactor).
type Driver struct {
	// CommandTimeout bounds one shell command; DefaultCommandTimeout when 0.
	CommandTimeout time.Duration
	// BootTimeout bounds waiting for the banner and prompt;
	// DefaultBootTimeout when 0.
	BootTimeout time.Duration
	// OnlineTimeout bounds WaitOnline; DefaultOnlineTimeout when 0.
	OnlineTimeout time.Duration
	// MTU is the SMP packet size for uploads; smp.DefaultMTU (256) when 0.
	MTU int

	c   *hil.Console
	red *hil.Redactor
	smp *smp.Client
	tap *hil.Tap
}

// NewDriver returns a driver for the board on console c. SMP goes over
// port; when port is nil or the console's own connection (which the
// console reads), the driver reads SMP answers from a c.Tap() instead,
// which Close releases. The console's Redactor, when it exposes one, gets
// every secret before it is sent; otherwise call UseRedactor.
func NewDriver(c *hil.Console, port io.ReadWriter) *Driver {
	d := &Driver{c: c}
	if r, ok := any(c).(interface{ Redactor() *hil.Redactor }); ok {
		d.red = r.Redactor()
	}
	if rwc, ok := port.(io.ReadWriteCloser); port == nil || ok && sameConn(rwc, c.Conn()) {
		d.tap = c.Tap()
		port = d.tap
	}
	d.smp = &smp.Client{Port: port}
	return d
}

// sameConn reports whether a and b are the same connection, without
// comparing values of a type that is not comparable.
func sameConn(a, b io.ReadWriteCloser) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta != nil && ta == tb && ta.Comparable() && a == b
}

// UseRedactor sets the Redactor of the console's log (the one in its
// ConsoleOptions): secrets are registered with it before they are sent.
func (d *Driver) UseRedactor(r *hil.Redactor) { d.red = r }

// SMP is the driver's mcumgr client (fs download, hash, echo ...).
func (d *Driver) SMP() *smp.Client { return d.smp }

// Close releases the console tap NewDriver made; the console stays open.
func (d *Driver) Close() error {
	if d.tap != nil {
		return d.tap.Close()
	}
	return nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// redact hides registered secrets in text for error messages.
func (d *Driver) redact(s string) string { return d.red.Redact(s) }

// WaitBoot waits for the boot banner and then the shell prompt.
func (d *Driver) WaitBoot(ctx context.Context) error {
	if _, err := d.c.Expect(ctx, bannerRE, hil.ExpectOptions{Timeout: orDefault(d.BootTimeout, DefaultBootTimeout)}); err != nil {
		return fmt.Errorf("nrf: waiting for the boot banner: %w", err)
	}
	if _, err := d.c.Expect(ctx, Prompt, hil.ExpectOptions{Literal: true, Timeout: orDefault(d.CommandTimeout, DefaultCommandTimeout)}); err != nil {
		return fmt.Errorf("nrf: waiting for the shell prompt: %w", err)
	}
	return nil
}

// Exec runs one shell command and returns what it printed (log lines that
// came meanwhile included). It fails when the shell rejects the command,
// and at once when the board reboots instead of answering.
func (d *Driver) Exec(ctx context.Context, cmd string) (string, error) {
	shown := d.redact(cmd)
	return d.exec(ctx, cmd, regexp.MustCompile(regexp.QuoteMeta(cmd)+"\n"), shown)
}

// exec runs cmd, recognising its echo by echo and naming it shown in
// errors, so that a command carrying a secret never appears in a pattern
// or an error.
func (d *Driver) exec(ctx context.Context, cmd string, echo *regexp.Regexp, shown string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") || len(cmd) >= maxLine {
		return "", fmt.Errorf("%w: %q is not one shell line shorter than %d bytes", ErrCommand, shown, maxLine)
	}
	timeout := orDefault(d.CommandTimeout, DefaultCommandTimeout)
	if err := d.c.Send(cmd); err != nil {
		return "", fmt.Errorf("nrf: %s: %w", shown, err)
	}
	// The echo, then the prompt: the shell redraws the prompt around log
	// lines only while it waits for input, so the first prompt after
	// the echoed line ends the command's output.
	if _, err := d.c.Expect(ctx, echo, hil.ExpectOptions{Timeout: timeout}); err != nil {
		return "", fmt.Errorf("nrf: %s: %w", shown, err)
	}
	m, err := d.c.Expect(ctx, Prompt, hil.ExpectOptions{Literal: true, Timeout: timeout, NotMatch: []*regexp.Regexp{bannerRE}})
	if err != nil {
		return "", fmt.Errorf("nrf: %s: %w", shown, err)
	}
	out := strings.TrimSuffix(m.Before, "\n")
	if loc := shellErrRE.FindStringIndex(out); loc != nil {
		return out, fmt.Errorf("%w: %s: %s", ErrCommand, shown, d.redact(lineAt(out, loc[0])))
	}
	return out, nil
}

// lineAt returns the line of s that holds offset i.
func lineAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}

// Reset reboots the board from the shell (kernel reboot cold) and waits
// for it to boot.
func (d *Driver) Reset(ctx context.Context) error {
	if err := d.c.Send("kernel reboot cold"); err != nil {
		return fmt.Errorf("nrf: reset: %w", err)
	}
	return d.WaitBoot(ctx)
}

// WaitOnline waits for the firmware's "Golioth client connected" line and
// returns it. It fails at once if the board reports it has no
// credentials.
func (d *Driver) WaitOnline(ctx context.Context) (string, error) {
	m, err := d.c.Expect(ctx, onlineRE, hil.ExpectOptions{Timeout: orDefault(d.OnlineTimeout, DefaultOnlineTimeout), NotMatch: []*regexp.Regexp{noCredsRE}})
	if err != nil {
		if errors.Is(err, hil.ErrMustNotMatch) {
			return "", fmt.Errorf("%w: %w", ErrNotProvisioned, err)
		}
		return "", fmt.Errorf("nrf: waiting to get online: %w", err)
	}
	line := strings.TrimSpace(m.Text)
	if i := strings.LastIndex(line, Prompt); i >= 0 {
		line = line[i+len(Prompt):]
	}
	return line, nil
}

// Upload writes a file to the board over SMP (fs upload), as mcumgr does.
func (d *Driver) Upload(ctx context.Context, name string, data []byte) error {
	if err := d.smp.Upload(ctx, name, data, d.MTU); err != nil {
		return fmt.Errorf("nrf: %w", d.red.RedactError(err))
	}
	return nil
}

// Provision installs credentials the board's own way and reboots it:
//
//   - a PSK: settings set golioth/psk-id and golioth/psk; without a
//     certificate, the files of an earlier certificate are removed (fs rm)
//     since the firmware would prefer them;
//   - a certificate: fs mkdir /lfs1/credentials, log halt, SMP upload of
//     crt.der (the chain, leaf first) and key.der, log go (Golioth's forum guide);
//
// then kernel reboot cold, returning once the board has booted.
func (d *Driver) Provision(ctx context.Context, cr Credentials) error {
	hasCert, hasPSK := cr.HasCert(), cr.HasPSK()
	if !hasCert && !hasPSK {
		return ErrNoCredentials
	}
	identity := cr.PSKIdentity
	if hasPSK {
		if err := settingText("PSK identity", []byte(identity)); err != nil {
			return err
		}
		if err := settingText(fmt.Sprintf("PSK (fp %s)", devicemodel.Fingerprint(cr.PSK)), cr.PSK); err != nil {
			return err
		}
	}
	var keyDER []byte
	if hasCert {
		if len(cr.Chain) == 0 || (cr.Key == nil && len(cr.KeyDER) == 0) {
			return fmt.Errorf("%w: a certificate needs both a chain and a key", ErrBadCredential)
		}
		var err error
		if keyDER, err = cr.EncodedKey(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadCredential, err)
		}
	}
	if d.red == nil {
		return ErrNoRedactor
	}
	if hasPSK {
		if _, err := d.red.AddPSK(cr.PSK); err != nil {
			return fmt.Errorf("%w: PSK fp %s cannot be redacted: %w", ErrBadCredential, devicemodel.Fingerprint(cr.PSK), err)
		}
	}
	if hasCert {
		if _, err := d.red.AddPrivateKey(keyDER); err != nil {
			return fmt.Errorf("%w: key fp %s cannot be redacted: %w", ErrBadCredential, devicemodel.Fingerprint(keyDER), err)
		}
	}
	d.c.Note("provisioning %s", cr)
	if hasPSK {
		if err := d.setSetting(ctx, SettingPSKID, identity); err != nil {
			return err
		}
		if err := d.setSetting(ctx, SettingPSK, string(cr.PSK)); err != nil {
			return err
		}
	}
	if hasCert {
		if err := d.installCert(ctx, cr.Chain, keyDER); err != nil {
			return err
		}
	} else {
		for _, p := range []string{CertPath, KeyPath} {
			out, err := d.Exec(ctx, "fs rm "+p)
			if err != nil {
				return err
			}
			if strings.Contains(out, "Failed to remove") && !strings.Contains(out, "(-2)") {
				return fmt.Errorf("%w: fs rm %s: %s", ErrCommand, p, firstLine(out))
			}
		}
	}
	return d.Reset(ctx)
}

// settingText checks that v can be typed into the Golioth settings shell.
func settingText(what string, v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: empty %s", ErrBadCredential, what)
	}
	if len(v) > 128 {
		return fmt.Errorf("%w: %s longer than 128 bytes", ErrBadCredential, what)
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: %s is not printable text (the Golioth settings shell stores text)", ErrBadCredential, what)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimLeft(s, "\n")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (d *Driver) setSetting(ctx context.Context, name, value string) error {
	prefix := "settings set " + name + " "
	cmd := prefix + QuoteArg(value)
	shown := cmd
	echo := regexp.QuoteMeta(cmd) + "\n"
	if isSecretSetting(name) {
		// The echo is recognised by its length, so that the secret is
		// in no pattern.
		shown = prefix + "[fp " + devicemodel.Fingerprint([]byte(value)) + "]"
		echo = regexp.QuoteMeta(prefix) + fmt.Sprintf(`[^\n]{%d}\n`, len(QuoteArg(value)))
	}
	out, err := d.exec(ctx, cmd, regexp.MustCompile(echo), shown)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Setting "+name+" saved") {
		return fmt.Errorf("%w: %s: %s", ErrCommand, shown, d.redact(firstLine(out)))
	}
	return nil
}

func (d *Driver) installCert(ctx context.Context, chain [][]byte, keyDER []byte) (err error) {
	out, err := d.Exec(ctx, "fs mkdir "+CredentialsDir)
	if err != nil {
		return err
	}
	if strings.Contains(out, "Error creating dir") && !strings.Contains(out, "[-17]") {
		return fmt.Errorf("%w: fs mkdir %s: %s", ErrCommand, CredentialsDir, firstLine(out))
	}
	if _, err := d.Exec(ctx, "log halt"); err != nil {
		return err
	}
	defer func() {
		if _, gerr := d.Exec(ctx, "log go"); err == nil {
			err = gerr
		}
	}()
	if err := d.Upload(ctx, CertPath, bytes.Join(chain, nil)); err != nil {
		return err
	}
	return d.Upload(ctx, KeyPath, keyDER)
}
