package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/credloop/credloop/boards"
	"github.com/credloop/credloop/hil"
)

// init registers the linux kind with package boards (boards/all imports
// this package for it).
func init() {
	boards.Register(boards.Kind{
		Name:    "linux",
		Summary: "the user's firmware built for this host, run as a process on a pseudo-terminal (Golioth's SDK Linux port, Zephyr native_sim)",
		Launch:  Launch,
		Open: func(c *hil.Console, port io.ReadWriter, red *hil.Redactor) (boards.Driver, error) {
			p, ok := port.(*Process)
			if !ok {
				return nil, fmt.Errorf("linux: the console's connection is a %T, not a linux board's process", port)
			}
			return NewDriver(c, p, red)
		},
	})
}

// Launch is the kind's boards.Kind.Launch: it makes the board's Process
// from its hardware map entry and starts it, unless it waits for the
// credentials its env, args or files name (then `board provision` starts
// it).
func Launch(_ context.Context, o boards.LaunchOptions) (io.ReadWriteCloser, error) {
	opts := OptionsFromSpec(o.Spec, o.RunDir)
	opts.ServerCA = o.ServerCA
	p, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil && !isWaiting(err) {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// Driver drives a linux board: boot is the process started, online a
// console line matching the online pattern, provisioning is storing the
// credentials and restarting the process with them.
type Driver struct {
	c      *hil.Console
	p      *Process
	red    *hil.Redactor
	online *regexp.Regexp
}

// NewDriver drives the firmware p on console c; red learns the secrets
// Provision installs.
func NewDriver(c *hil.Console, p *Process, red *hil.Redactor) (*Driver, error) {
	online := p.o.Online
	if online == "" {
		online = DefaultOnline
	}
	// The whole line that matches, once it has ended.
	re, err := regexp.Compile(`[^\n]*(?:` + online + `)[^\n]*\n`)
	if err != nil {
		return nil, fmt.Errorf("linux: online pattern: %w", err)
	}
	if red == nil {
		red = hil.NewRedactor()
	}
	return &Driver{c: c, p: p, red: red, online: re}, nil
}

// Process is the firmware's process.
func (d *Driver) Process() *Process { return d.p }

// WaitBoot returns nil once the process has started (or waits for its
// credentials), the *ExitError of a firmware that stopped on its own.
func (d *Driver) WaitBoot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.p.State()
}

// WaitOnline waits for the console line matching the online pattern and
// returns it; a firmware that exits first fails it with its exit status.
func (d *Driver) WaitOnline(ctx context.Context) (string, error) {
	m, err := d.c.Expect(ctx, d.online, hil.ExpectOptions{Timeout: remaining(ctx)})
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(m.Text), nil
}

// Provision stores the credentials in the working directory (the
// placeholders' values) and restarts the firmware with them.
func (d *Driver) Provision(ctx context.Context, cr boards.Credentials) error {
	if len(cr.PSK) > 0 {
		if _, err := d.red.AddPSK(cr.PSK); err != nil {
			return err
		}
	}
	if len(cr.KeyDER) > 0 {
		if _, err := d.red.AddPrivateKey(cr.KeyDER); err != nil {
			return err
		}
	}
	if err := d.p.SetCredentials(cr); err != nil {
		return fmt.Errorf("linux: board %s: storing credentials: %w", d.c.Name(), err)
	}
	switch {
	case cr.HasPSK():
		d.c.Note("provisioned PSK %s (fp=%s); restarting the firmware", cr.PSKIdentity, hil.Fingerprint(cr.PSK))
	default:
		d.c.Note("provisioned a certificate; restarting the firmware")
	}
	if err := d.p.Restart(ctx, "provisioning", false, false); err != nil {
		return err
	}
	if err := d.p.Waiting(); err != nil {
		return fmt.Errorf("linux: board %s: still not started: %w", d.c.Name(), err)
	}
	return nil
}

// Reset stops the firmware (SIGTERM, SIGKILL after the grace period) and
// starts it again in the same working directory.
func (d *Driver) Reset(ctx context.Context) error {
	d.c.Note("reset: SIGTERM, SIGKILL after %v, start again", d.p.o.StopGrace)
	return d.p.Restart(ctx, "reset", false, false)
}

// PowerCycle kills the firmware at once (power goes without warning),
// removes the volatile paths and starts it again.
func (d *Driver) PowerCycle(ctx context.Context) error {
	d.c.Note("power cycle: SIGKILL, volatile paths cleared, start again")
	return d.p.Restart(ctx, "power cycle", true, true)
}

// CutPowerAt cuts the power at point, which must be PowerCutNow: the
// process group is killed at once and stays off until a reset or power
// cycle.
func (d *Driver) CutPowerAt(point string) error {
	if point != PowerCutNow {
		return fmt.Errorf("%w: a linux board's power cut is immediate: point %q, not %q", boards.ErrUnsupported, PowerCutNow, point)
	}
	d.c.Note("power cut: SIGKILL")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.p.CutPower(ctx)
}

// Close does nothing: the process goes with the console's connection.
func (d *Driver) Close() error { return nil }

func isWaiting(err error) bool { return errors.Is(err, ErrNoCredential) }

func remaining(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 0
}
