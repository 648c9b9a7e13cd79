package esp32

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
)

// Driver timeouts; a context deadline that comes first wins.
const (
	// DefaultCommandTimeout bounds the answer to one console command.
	DefaultCommandTimeout = 10 * time.Second
	// DefaultBootTimeout bounds a boot, from reset to the prompt.
	DefaultBootTimeout = 20 * time.Second
	// DefaultOnlineTimeout bounds the wait for the firmware to connect.
	DefaultOnlineTimeout = hil.DefaultExpectTimeout
)

// Patterns of the firmware's console.
var (
	// resetRE is the ROM's first line after any reset.
	resetRE = regexp.MustCompile(`rst:0x[0-9a-f]+ \(([A-Z_]+)\)`)
	// replRE is the console REPL starting, up to its first prompt.
	replRE = regexp.MustCompile(`Type 'help' to get the list of commands\.[\s\S]*?` + regexp.QuoteMeta(Prompt))
	// onlineRE is the firmware's "connected" line.
	onlineRE = regexp.MustCompile(`(?m)^I \(\d+\) \S+: (?:` + connectedGolioth + `|` + connectedMQTT + `)[^\n]*`)
	// noCredsRE is the firmware saying it has nothing to connect with.
	noCredsRE = regexp.MustCompile(`(?m)^E \(\d+\) \S+: No credentials[^\n]*`)
	// panicRE are crashes (pytest-embedded's usual must-not-match).
	panicRE = regexp.MustCompile(`Guru Meditation Error|abort\(\) was called|Backtrace: 0x`)
	// espErrRE is an ESP_LOGE line with an ESP-IDF error name.
	espErrRE = `E \(\d+\) cmd_nvs: (ESP_[A-Z_]+|[^\n]*)\n`
)

// Driver talks to an ESP32 running the ESP-IDF console firmware over its
// serial console: it provisions credentials with console commands (nvs
// console commands and Golioth's settings), resets the board with the
// restart command and watches its log. The same driver runs a real board
// and the Emulator.
type Driver struct {
	c   *hil.Console
	red *hil.Redactor

	// CommandTimeout, BootTimeout and OnlineTimeout override the
	// defaults when positive.
	CommandTimeout, BootTimeout, OnlineTimeout time.Duration
}

// NewDriver returns a driver for the board on console c. The port is not
// needed for an ESP32 (the console carries everything); it may be nil.
// The console's Redactor, when it exposes one, gets every secret before
// it is sent; otherwise call UseRedactor.
func NewDriver(c *hil.Console, port io.ReadWriter) *Driver {
	d := &Driver{c: c}
	if r, ok := any(c).(interface{ Redactor() *hil.Redactor }); ok {
		d.red = r.Redactor()
	}
	return d
}

// UseRedactor sets the Redactor of the console's log (the one in its
// ConsoleOptions): secrets are registered with it before they are sent.
func (d *Driver) UseRedactor(r *hil.Redactor) { d.red = r }

func (d *Driver) timeout(t, def time.Duration) time.Duration {
	if t > 0 {
		return t
	}
	return def
}

// WaitBoot waits for the board to boot up to the console prompt.
func (d *Driver) WaitBoot(ctx context.Context) error {
	_, err := d.c.Expect(ctx, replRE, hil.ExpectOptions{Timeout: d.timeout(d.BootTimeout, DefaultBootTimeout), NotMatch: []*regexp.Regexp{panicRE}})
	if err != nil {
		return fmt.Errorf("esp32: wait for boot: %w", err)
	}
	return nil
}

// Reset restarts the board with the console's restart command and waits
// for it to boot. Output not consumed before is dropped.
func (d *Driver) Reset(ctx context.Context) error {
	d.c.Discard()
	if err := d.c.Send("restart"); err != nil {
		return fmt.Errorf("esp32: reset: %w", err)
	}
	m, err := d.c.Expect(ctx, resetRE, hil.ExpectOptions{Timeout: d.timeout(d.CommandTimeout, DefaultCommandTimeout), NotMatch: []*regexp.Regexp{panicRE}})
	if err != nil {
		return fmt.Errorf("esp32: reset: %w", err)
	}
	d.c.Note("board reset (%s)", m.Groups[0])
	return d.WaitBoot(ctx)
}

// WaitOnline waits for the firmware's connected line ("Golioth client
// connected" over CoAP, "MQTT client connected" over MQTT) and returns
// it. It fails at once when the firmware says it has no credentials.
func (d *Driver) WaitOnline(ctx context.Context) (string, error) {
	m, err := d.c.Expect(ctx, onlineRE, hil.ExpectOptions{Timeout: d.timeout(d.OnlineTimeout, DefaultOnlineTimeout),
		NotMatch: []*regexp.Regexp{panicRE, noCredsRE}})
	if err != nil {
		if errors.Is(err, hil.ErrMustNotMatch) {
			var ee *hil.ExpectError
			if errors.As(err, &ee) && noCredsRE.MatchString(ee.Found) {
				return "", fmt.Errorf("%w: %w", ErrNoCredentials, err)
			}
		}
		return "", fmt.Errorf("esp32: wait online: %w", err)
	}
	return strings.TrimSpace(m.Text), nil
}

// Run sends one console command line and returns what the board printed
// in answer, up to its next prompt. line must hold no secret.
func (d *Driver) Run(ctx context.Context, line string) (string, error) {
	name := commandName(line)
	if err := d.send(ctx, line); err != nil {
		return "", fmt.Errorf("esp32: %s: %w", name, err)
	}
	m, err := d.c.Expect(ctx, regexp.QuoteMeta(Prompt), hil.ExpectOptions{Timeout: d.timeout(d.CommandTimeout, DefaultCommandTimeout),
		NotMatch: []*regexp.Regexp{resetRE, panicRE}})
	if err != nil {
		return "", d.commandError(name, err)
	}
	return m.Before, nil
}

// send writes a command line and waits for its echo.
func (d *Driver) send(ctx context.Context, line string) error {
	if err := d.c.Send(line); err != nil {
		return err
	}
	_, err := d.c.Expect(ctx, regexp.QuoteMeta(line)+`\n`, hil.ExpectOptions{Timeout: d.timeout(d.CommandTimeout, DefaultCommandTimeout),
		NotMatch: []*regexp.Regexp{resetRE, panicRE}})
	return err
}

// command sends line and waits for ok; an ESP-IDF error logged by the
// command fails it. what names the command in errors (never a secret).
func (d *Driver) command(ctx context.Context, what, line string, ok string) error {
	if err := d.send(ctx, line); err != nil {
		return d.commandError(what, err)
	}
	re := regexp.MustCompile(`(?:` + ok + `)|` + espErrRE + `|(Command returned non-zero error code[^\n]*|Unrecognized command|Failed to save setting[^\n]*)`)
	m, err := d.c.Expect(ctx, re, hil.ExpectOptions{Timeout: d.timeout(d.CommandTimeout, DefaultCommandTimeout),
		NotMatch: []*regexp.Regexp{resetRE, panicRE}})
	if err != nil {
		return d.commandError(what, err)
	}
	if n := len(m.Groups); n >= 2 && (m.Groups[n-2] != "" || m.Groups[n-1] != "") {
		return &CommandError{Command: what, Message: strings.TrimSpace(m.Groups[n-2] + m.Groups[n-1])}
	}
	return nil
}

// CommandError is a console command the firmware refused: an ESP-IDF
// error it logged (ESP_ERR_NVS_NOT_FOUND, ...) or the console's own
// complaint. It matches ErrCommand.
type CommandError struct {
	Command string // the command's name, never a secret
	Message string // the error name or the console's line
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrCommand, e.Command, e.Message)
}

// Is makes a CommandError match ErrCommand.
func (e *CommandError) Is(target error) bool { return target == ErrCommand }

// IsESPError reports whether err is a CommandError for the ESP-IDF error
// name (e.g. "ESP_ERR_NVS_NOT_FOUND").
func IsESPError(err error, name string) bool {
	var ce *CommandError
	return errors.As(err, &ce) && ce.Message == name
}

func (d *Driver) commandError(what string, err error) error {
	var ee *hil.ExpectError
	if errors.As(err, &ee) && errors.Is(err, hil.ErrMustNotMatch) && resetRE.MatchString(ee.Found) {
		return fmt.Errorf("%w during %s (%s): %w", ErrBoardReset, what, ee.Found, err)
	}
	return fmt.Errorf("esp32: %s: %w", what, err)
}

func commandName(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "(empty line)"
	}
	return f[0]
}

// Provision installs credentials the board's own way, then restarts it
// and waits for the prompt: a PSK with Golioth's settings shell
// (golioth/psk-id, golioth/psk: NVS namespace example), a certificate
// with the nvs console commands in namespace certs (client_cert: the chain
// as PEM, client_key: the key as PKCS #8 PEM, both as blobs; client_ok,
// the firmware's "this certificate connected" mark, erased). With both,
// the firmware prefers the PSK. Every secret is registered with the
// console's Redactor before it is sent.
func (d *Driver) Provision(ctx context.Context, cr Credentials) error {
	if !cr.HasPSK() && !cr.HasCert() {
		return ErrNoCredentials
	}
	if d.red == nil {
		return ErrNoRedactor
	}
	if cr.HasPSK() {
		psk, err := pskCredential(cr)
		if err != nil {
			return err
		}
		if _, err := d.red.AddPSK(psk.PSK); err != nil {
			return fmt.Errorf("esp32: PSK fp=%s: %w", devicemodel.Fingerprint(psk.PSK), err)
		}
		if q := quoteArg(string(psk.PSK)); strings.ContainsAny(string(psk.PSK), `"\`) {
			// Escapes break the key up: hide the escaped form too.
			if _, err := d.red.AddToken(q); err != nil {
				return fmt.Errorf("esp32: PSK fp=%s: %w", devicemodel.Fingerprint(psk.PSK), err)
			}
		}
		if err := d.command(ctx, "settings set golioth/psk-id", "settings set golioth/psk-id "+quoteArg(psk.PSKIdentity), `Setting golioth/psk-id saved`); err != nil {
			return err
		}
		if err := d.command(ctx, "settings set golioth/psk", "settings set golioth/psk "+quoteArg(string(psk.PSK)), `Setting golioth/psk saved`); err != nil {
			return err
		}
	}
	if cr.HasCert() {
		cert, err := certCredential(cr)
		if err != nil {
			return err
		}
		kp, err := keyPEM(cert.KeyDER)
		if err != nil {
			return err
		}
		if _, err := d.red.AddPrivateKey(cert.KeyDER); err != nil {
			return fmt.Errorf("esp32: private key fp=%s: %w", cert.KeyFingerprint(), err)
		}
		// What is sent: the PEM as hex.
		if _, err := d.red.Add(kp); err != nil {
			return fmt.Errorf("esp32: private key fp=%s: %w", cert.KeyFingerprint(), err)
		}
		line := fmt.Sprintf("nvs_set %s blob -v %s", devicemodel.KeyRotatedCert, hex.EncodeToString(chainPEM(cert.CertChainDER)))
		keyLine := fmt.Sprintf("nvs_set %s blob -v %s", devicemodel.KeyRotatedKey, hex.EncodeToString(kp))
		if len(line) > MaxLine || len(keyLine) > MaxLine {
			return fmt.Errorf("%w: the certificate chain is too long for one console line (%d bytes, limit %d)", ErrBadCredential, len(line), MaxLine)
		}
		steps := []struct{ what, line, ok string }{
			{"nvs_namespace " + nsCerts, "nvs_namespace " + nsCerts, `Namespace set to '` + nsCerts + `'`},
			{"nvs_set " + devicemodel.KeyRotatedCert, line, `Value stored under key '` + devicemodel.KeyRotatedCert + `'`},
			{"nvs_set " + devicemodel.KeyRotatedKey, keyLine, `Value stored under key '` + devicemodel.KeyRotatedKey + `'`},
		}
		for _, s := range steps {
			if err := d.command(ctx, s.what, s.line, s.ok); err != nil {
				return err
			}
		}
		// A new certificate starts unconfirmed; a missing mark is fine.
		err = d.command(ctx, "nvs_erase "+devicemodel.KeyRotatedOK, "nvs_erase "+devicemodel.KeyRotatedOK, `Value with key '`+devicemodel.KeyRotatedOK+`' erased`)
		if err != nil && !IsESPError(err, errNotFound) {
			return err
		}
	}
	return d.Reset(ctx)
}
