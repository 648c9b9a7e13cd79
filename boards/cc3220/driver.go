package cc3220

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/sim"
)

// DefaultTimeout bounds each wait for the board when Driver.Timeout is 0
// (the context bounds it too).
const DefaultTimeout = 30 * time.Second

// Credentials is what a scenario installs on a board: the device
// runtime's one credential type. A CC3220 takes none: it makes its own CSR
// with its pre-burned key, and the cloud's allowlist decides its project.
type Credentials = sim.Credential

// Driver talks to a CC3220 over its serial console.
type Driver struct {
	c *hil.Console
	// Timeout bounds each wait for the board; DefaultTimeout when 0.
	Timeout time.Duration
}

// NewDriver returns a driver for the board behind c. port is unused: a
// CC3220 is driven through its console alone (it may be nil).
func NewDriver(c *hil.Console, port io.ReadWriter) *Driver {
	_ = port
	return &Driver{c: c}
}

// Console patterns.
var (
	bootRE      = regexp.MustCompile(regexp.QuoteMeta(BootBanner) + `[^\n]*\n`)
	udidRE      = regexp.MustCompile(`(?m)^UDID: ([^\s]+)\n`)
	pubkeyRE    = regexp.MustCompile(`-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]*?-----END PUBLIC KEY-----\n`)
	provStartRE = regexp.MustCompile(`\[PROV\] provision: [^\n]*\n`)
	provDoneRE  = regexp.MustCompile(`\[PROV\] (?:Certificate stored: ([^\n]*)|Refused by the cloud: ([^\n]*)|Provisioning failed: ([^\n]*))\n`)
	resetRE     = regexp.MustCompile(`\[APP\] Reset requested[^\n]*\n`)
	onlineRE    = regexp.MustCompile(`\[MQTT\] Connected to [^\n]*\n`)
	statusRE    = regexp.MustCompile(`\[STATUS\] ([^\n]*)\n`)
)

func (d *Driver) expect(ctx context.Context, re *regexp.Regexp) (hil.Match, error) {
	t := d.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return d.c.Expect(ctx, re, hil.ExpectOptions{Timeout: t})
}

// command sends a command line and waits for re in the answer.
func (d *Driver) command(ctx context.Context, op, line string, re *regexp.Regexp) (hil.Match, error) {
	if err := d.c.Send(line); err != nil {
		return hil.Match{}, fmt.Errorf("cc3220: %s: %w", op, err)
	}
	m, err := d.expect(ctx, re)
	if err != nil {
		return m, fmt.Errorf("cc3220: %s: %w", op, err)
	}
	return m, nil
}

// WaitBoot waits for the boot banner and then the shell prompt.
func (d *Driver) WaitBoot(ctx context.Context) error {
	if _, err := d.expect(ctx, bootRE); err != nil {
		return fmt.Errorf("cc3220: wait for boot: %w", err)
	}
	if _, err := d.expect(ctx, regexp.MustCompile(regexp.QuoteMeta(Prompt))); err != nil {
		return fmt.Errorf("cc3220: wait for the prompt: %w", err)
	}
	return nil
}

// UDID reads the pre-burned UDID (the udid command).
func (d *Driver) UDID(ctx context.Context) (string, error) {
	m, err := d.command(ctx, "udid", "udid", udidRE)
	if err != nil {
		return "", err
	}
	udid := m.Groups[0]
	if err := validUDID(udid); err != nil {
		return "", fmt.Errorf("%w: udid: %q", ErrBadOutput, clip(udid, 80))
	}
	return udid, nil
}

// PublicKey reads the pre-burned public key (the pubkey command) and
// returns it as PKIX DER, what the cloud's allowlist takes
// (registry.Allow; `credloop device allow --pubkey` takes its PEM).
func (d *Driver) PublicKey(ctx context.Context) ([]byte, error) {
	m, err := d.command(ctx, "pubkey", "pubkey", pubkeyRE)
	if err != nil {
		return nil, err
	}
	return parsePublicKeyPEM(m.Text)
}

// parsePublicKeyPEM returns the PKIX DER of the PUBLIC KEY block in text.
func parsePublicKeyPEM(text string) ([]byte, error) {
	b, _ := pem.Decode([]byte(text))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: no PUBLIC KEY block", ErrBadOutput)
	}
	if _, err := x509.ParsePKIXPublicKey(b.Bytes); err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrBadOutput, err)
	}
	return b.Bytes, nil
}

// encodePublicKeyPEM is the pubkey command's PEM.
func encodePublicKeyPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Provision makes the board provision itself (the provision command): it
// builds a CSR with its UDID as CN, signed by its pre-burned key, posts
// it to the cloud's HTTPS endpoint and stores the certificate. A refusal
// is ErrRefused with the cloud's reason; other failures ErrProvision.
// The board cannot take credentials: any key, certificate or PSK in cr
// is ErrUnsupported, and nothing is sent.
func (d *Driver) Provision(ctx context.Context, cr Credentials) error {
	if !cr.IsZero() {
		return ErrUnsupported
	}
	if _, err := d.command(ctx, "provision", "provision", provStartRE); err != nil {
		return err
	}
	m, err := d.expect(ctx, provDoneRE)
	if err != nil {
		return fmt.Errorf("cc3220: provision: %w", err)
	}
	switch {
	case m.Groups[0] != "":
		return nil
	case m.Groups[1] != "":
		return fmt.Errorf("%w: %s", ErrRefused, m.Groups[1])
	}
	return fmt.Errorf("%w: %s", ErrProvision, m.Groups[2])
}

// Reset reboots the board with the reset command (the RTC survives) and
// waits for the boot banner and the prompt.
func (d *Driver) Reset(ctx context.Context) error {
	if _, err := d.command(ctx, "reset", "reset", resetRE); err != nil {
		return err
	}
	return d.WaitBoot(ctx)
}

// WaitOnline waits for the firmware's "[MQTT] Connected to ..." line and
// returns it.
func (d *Driver) WaitOnline(ctx context.Context) (string, error) {
	m, err := d.expect(ctx, onlineRE)
	if err != nil {
		return "", fmt.Errorf("cc3220: wait online: %w", err)
	}
	return strings.TrimSuffix(m.Text, "\n"), nil
}

// Status is what the status command reports.
type Status struct {
	UDID        string
	PublicKeyFP string // fingerprint of the pre-burned public key
	CertFP      string // the certificate in use, or the provisioned one; "" if none
	Project     string // from the certificate; "" if none
	NotAfter    time.Time
	Slot        string // "provisioned", "rotated" or "none"
	Online      bool
	Connects    int // MQTT connections since this boot
	BootCount   int // RTC boot counter (a rotated certificate's tries)
}

// Status asks the board for its status.
func (d *Driver) Status(ctx context.Context) (Status, error) {
	m, err := d.command(ctx, "status", "status", statusRE)
	if err != nil {
		return Status{}, err
	}
	return parseStatus(m.Groups[0])
}

// parseStatus parses the status line's key=value fields; unknown keys are
// ignored.
func parseStatus(line string) (Status, error) {
	var s Status
	seen := false
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Status{}, fmt.Errorf("%w: status field %q", ErrBadOutput, clip(f, 40))
		}
		var err error
		switch k {
		case "udid":
			s.UDID, seen = v, true
		case "pubkey_fp":
			s.PublicKeyFP = v
		case "cert_fp":
			if v != "none" {
				s.CertFP = v
			}
		case "project":
			if v != "-" {
				s.Project = v
			}
		case "not_after":
			if v != "-" {
				s.NotAfter, err = time.Parse(time.RFC3339, v)
			}
		case "slot":
			s.Slot = v
		case "mqtt":
			s.Online = v == "online"
		case "connects":
			s.Connects, err = strconv.Atoi(v)
		case "boot_count":
			s.BootCount, err = strconv.Atoi(v)
		}
		if err != nil {
			return Status{}, fmt.Errorf("%w: status field %s: %v", ErrBadOutput, k, err)
		}
	}
	if !seen {
		return Status{}, fmt.Errorf("%w: status without udid", ErrBadOutput)
	}
	return s, nil
}
