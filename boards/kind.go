package boards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credloop/credloop/hil"
)

// Kind errors.
var (
	ErrUnknownKind = errors.New("boards: unknown board kind")
	ErrNoEmulator  = errors.New("boards: this kind of board has no emulator")
)

// Kind is a kind of board: how to drive one, how to emulate one, and how
// to recognise one on a bench. Each kind's package registers its Kind
// from init (package boards/all imports them all), so that adding a kind
// is adding a package: nothing here or in the command line switches on
// kinds. A new kind's package needs a Driver for its console, usually an
// Emulator serving a hil.OpenPTY pseudo-terminal, a kind.go that calls
// Register, and its import in boards/all.
type Kind struct {
	// Name is what the hardware map's kind field says ("esp32").
	Name string
	// Summary says in a few words what the kind is, for help texts.
	Summary string
	// USB lists the USB adapters the kind's boards sit behind, for
	// `credloop board list` (GuessKind).
	USB []USBID
	// Reset is how a board of the kind resets when its hardware map
	// entry does not say (a hil reset: a DTR/RTS sequence,
	// "console:<command>", or "power", which applies only to a board
	// with a power command); empty means none.
	Reset string
	// SelfProvisioning says that the board makes its own credentials
	// (a CSR with a pre-burned key, say): Provision takes none.
	SelfProvisioning bool
	// Open makes the kind's driver for a board on console c. port is
	// the board's serial port (c's connection); red is the console log's
	// Redactor, with which a driver registers every secret it sends.
	Open func(c *hil.Console, port io.ReadWriter, red *hil.Redactor) (Driver, error)
	// Emulate starts an emulator of the kind on a pseudo-terminal (nil:
	// the kind has none). ctx bounds the start only.
	Emulate func(ctx context.Context, o EmulatorOptions) (Emulator, error)
	// Launch starts a host board: the user's firmware built for this
	// machine, run as a process (the hardware map's exec). It returns
	// the console's connection, which Open then gets as its port; nil:
	// the kind's boards sit behind serial ports. A kind with Launch
	// needs exec in every map entry, and its driver handles power
	// (PowerDriver).
	Launch func(ctx context.Context, o LaunchOptions) (io.ReadWriteCloser, error)
}

// LaunchOptions configures a Kind's Launch.
type LaunchOptions struct {
	// Spec is the board's hardware map entry (exec, args, env, ...).
	Spec hil.BoardSpec
	// RunDir holds the default working directory,
	// <RunDir>/boards/<name>/.
	RunDir string
	// Cloud is where the firmware connects, when it takes it at run
	// time.
	Cloud Endpoints
	// ServerCA is the PEM the firmware trusts for the cloud ({ca}).
	ServerCA []byte
	// Log receives the kind's own debug log (never a secret).
	Log io.Writer
}

// PowerDriver is a Driver that handles power itself (a host board's
// process): Board's PowerCycle and CutPowerAt go to it.
type PowerDriver interface {
	// PowerCycle removes and restores power and returns once the board
	// has started again.
	PowerCycle(ctx context.Context) error
	// CutPowerAt removes power at point (the kind documents its points).
	CutPowerAt(point string) error
}

// USBID is a USB adapter: a vendor id and a product id (4 hex digits,
// upper case; an empty PID matches any product of the vendor) and what
// the adapter is.
type USBID struct {
	VID, PID string
	Why      string
}

// Driver drives one kind of board over its console. Board wraps it with
// what every kind shares (the hardware map's reset and power commands,
// the emulator's power).
type Driver interface {
	// WaitBoot waits for the board's boot banner and prompt.
	WaitBoot(ctx context.Context) error
	// WaitOnline waits for the firmware's "connected" line and returns
	// it.
	WaitOnline(ctx context.Context) (string, error)
	// Provision installs credentials the kind's own way.
	Provision(ctx context.Context, cr Credentials) error
	// Reset restarts the board from its console and waits for it to
	// boot.
	Reset(ctx context.Context) error
	// Close releases what the driver holds besides the console, which
	// stays open.
	Close() error
}

// Identifier is a Driver of a board with a pre-burned identity (a
// CC3220's UDID and key pair).
type Identifier interface {
	// UDID reads the board's unique device id.
	UDID(ctx context.Context) (string, error)
	// PublicKey reads the board's public key, PKIX DER.
	PublicKey(ctx context.Context) ([]byte, error)
}

// Emulator is an emulated board behind a pseudo-terminal.
type Emulator interface {
	// PortPath is the pseudo-terminal's path: a driver opens it with
	// hil.OpenPort, as it opens a USB serial port.
	PortPath() string
	// PowerCycle removes and restores power (the RTC state is lost, the
	// flash kept) and returns once the board has booted again.
	PowerCycle()
	// Close stops the emulator and waits for it; it may be called
	// again.
	Close() error
}

// PowerCutter is an Emulator that injects power cuts at flash writes.
type PowerCutter interface {
	// CutPowerAt makes the board lose power at its next flash write
	// matching point ("set:<key>", a prefix ending in "*", "any"; the
	// kind's documentation lists its points); "" disarms.
	CutPowerAt(point string)
}

// EmulatorOptions configures an emulator. A kind uses what applies to it
// and ignores the rest.
type EmulatorOptions struct {
	// Name is the board's name, for its logs.
	Name string
	// FlashPath keeps the board's flash, so that it survives resets and
	// restarts; created when missing.
	FlashPath string
	// Cloud is where the firmware connects; empty addresses leave it
	// offline.
	Cloud Endpoints
	// Now is the board's clock (default time.Now).
	Now func() time.Time
	// Log receives the emulator's own debug log (never the console,
	// never a secret).
	Log io.Writer
	// DeviceID and Project name the board in certificate mode (ESP32).
	DeviceID, Project string
	// Factory is the certificate compiled into the firmware: what it
	// falls back to after a failed rotation (ESP32).
	Factory Credentials
	// UDID and KeyFile are a pre-burned identity, generated once when
	// empty (CC3220).
	UDID, KeyFile string
}

// kinds is the registry Register fills from the kinds' init functions.
var kinds struct {
	sync.RWMutex
	m map[string]Kind
}

// Register makes a kind of board known. It panics when the name is taken
// or invalid, Open is missing or a USB id is not hex: a kind registers
// once, from init.
func Register(k Kind) {
	kinds.Lock()
	defer kinds.Unlock()
	if k.Name == "" || k.Name != strings.ToLower(strings.TrimSpace(k.Name)) || k.Open == nil {
		panic(fmt.Sprintf("boards: Register of kind %q: a lower-case name and Open are required", k.Name))
	}
	if _, dup := kinds.m[k.Name]; dup {
		panic(fmt.Sprintf("boards: kind %q registered twice", k.Name))
	}
	if kinds.m == nil {
		kinds.m = map[string]Kind{}
	}
	k.USB = slices.Clone(k.USB)
	for i, u := range k.USB {
		k.USB[i].VID, k.USB[i].PID = normUSBID(u.VID), normUSBID(u.PID)
		if k.USB[i].VID == "" || u.PID != "" && k.USB[i].PID == "" {
			panic(fmt.Sprintf("boards: Register of kind %q: USB id %q:%q is not hex", k.Name, u.VID, u.PID))
		}
	}
	kinds.m[k.Name] = k
}

// Lookup returns the kind called name.
func Lookup(name string) (Kind, error) {
	kinds.RLock()
	k, ok := kinds.m[name]
	kinds.RUnlock()
	if !ok {
		return Kind{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownKind, name, KindList())
	}
	return k, nil
}

// Kinds returns the registered kinds, by name.
func Kinds() []Kind {
	kinds.RLock()
	defer kinds.RUnlock()
	out := make([]Kind, 0, len(kinds.m))
	for _, k := range kinds.m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Kind) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// KindList names the registered kinds for a message: "cc3220, esp32, nrf"
// ("none" without any).
func KindList() string {
	var names []string
	for _, k := range Kinds() {
		names = append(names, k.Name)
	}
	if len(names) == 0 {
		return "none registered"
	}
	return strings.Join(names, ", ")
}

// defaults returns spec with the kind's defaults filled in: its reset
// method when the map gives none.
func (k Kind) defaults(spec hil.BoardSpec) hil.BoardSpec {
	if spec.Reset == "" && k.Reset != "" {
		if r, err := hil.ParseReset(k.Reset); err == nil && (r.Method != hil.ResetPower || strings.TrimSpace(spec.Power) != "") {
			spec.Reset = k.Reset
		}
	}
	return spec
}
