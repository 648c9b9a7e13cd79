package cli

// Helpers shared by the `ca`, `project` and `device` commands: the --dir
// data directory, opening its registry and CA, positional arguments, and
// output (tables, JSON, files).

import (
	"bufio"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

// dataDirEnv names the environment variable that gives --dir its default.
const dataDirEnv = "CREDLOOP_DIR"

// dataDirDefault is the default of --dir: $CREDLOOP_DIR, else
// ./credloop-data.
func dataDirDefault() string {
	if d := os.Getenv(dataDirEnv); d != "" {
		return d
	}
	return "./credloop-data"
}

// addDirFlag registers --dir on fs.
func addDirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", dataDirDefault(), "credloop data `DIR` holding ca/ and registry.db; $"+dataDirEnv+" sets the default")
}

// checkDir rejects an empty --dir (which cloud.OpenCA would take
// to mean "in memory").
func checkDir(dir string) error {
	if strings.TrimSpace(dir) == "" {
		return usageErr("--dir is empty")
	}
	return nil
}

// checkCAName makes sure a --ca NAME stays one directory below DIR/ca.
func checkCAName(name string) error {
	if name == "." || name == ".." || registry.ValidID(name) != nil {
		return usageErr("--ca %q: a CA name is 1..64 characters of [A-Za-z0-9._:-], not . or ..", name)
	}
	return nil
}

// openAdmin opens the admin of DIR. With create, DIR is made when
// missing; without, a missing DIR is an error that says how to make one.
// It works while a `credloop cloud` runs on the same DIR. Close it with
// closeAdmin.
func openAdmin(dir string, create bool) (*cloud.Admin, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Create: create, Origin: cliEventReasonFrom})
	if errors.Is(err, cloud.ErrNoDir) {
		return nil, fmt.Errorf("no credloop directory %s: create one with `credloop project create ID --dir %s` (or `credloop ca init --dir %s`)",
			dir, shellArg(dir), shellArg(dir))
	}
	return a, err
}

// openCA opens the admin of DIR for an operation on its CA name: a
// missing DIR has no CA.
func openCA(dir, name string) (*cloud.Admin, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := checkCAName(name); err != nil {
		return nil, err
	}
	a, err := cloud.OpenAdmin(cloud.AdminOptions{Dir: dir, Origin: cliEventReasonFrom})
	if errors.Is(err, cloud.ErrNoDir) {
		return nil, noCA(dir, name)
	}
	return a, err
}

func noCA(dir, name string) error {
	return fmt.Errorf("no CA in %s: run `credloop ca init%s --dir %s`", cloud.CADir(dir, name), caNameArg(name), shellArg(dir))
}

// closeAdmin closes a when a command is done, warns about events that
// could not be recorded (the changes are made: not an error), and joins
// a failure to close to *err.
func closeAdmin(env *Env, a *cloud.Admin, err *error) {
	for _, w := range a.Warnings() {
		fmt.Fprintf(env.Stderr, "warning: %v\n", w)
	}
	*err = errors.Join(*err, a.Close())
}

// explain turns the admin's errors about what is missing into messages
// that say how to make it.
type scope struct{ dir, project, device, ca string }

func (s scope) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cloud.ErrNoDevice):
		return fmt.Errorf("device %s does not exist in project %s: add it with `credloop device add --project %s %s --dir %s` (see `credloop device list`)",
			s.device, s.project, s.project, s.device, shellArg(s.dir))
	case errors.Is(err, cloud.ErrNoProject):
		return fmt.Errorf("project %s does not exist in %s: create it with `credloop project create %s --dir %s`",
			s.project, s.dir, s.project, shellArg(s.dir))
	case errors.Is(err, cloud.ErrNoCA):
		return noCA(s.dir, s.ca)
	}
	return err
}

// caNameArg is " --ca NAME" for a CA other than the default, for hints.
func caNameArg(name string) string {
	if name == "" || name == cloud.DefaultCA {
		return ""
	}
	return " --ca " + shellArg(name)
}

// shellArg quotes s for a command shown in a hint when it needs quoting.
func shellArg(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// parseArgs parses flags that may come before, between or after the
// positional arguments, and returns the positional ones, which must be
// exactly as many as names.
func parseArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < len(names):
		return nil, usageErr("missing %s", names[len(pos)])
	case len(pos) > len(names):
		return nil, usageErr("unexpected argument %q", pos[len(names)])
	}
	return pos, nil
}

// projectArg validates a project id given with --project or as an
// argument.
func projectArg(id string) error {
	if id == "" {
		return usageErr("missing --project")
	}
	if err := registry.ValidID(id); err != nil {
		return usageErr("project: %v", err)
	}
	return nil
}

// deviceArg validates a device id.
func deviceArg(id string) error {
	if err := registry.ValidID(id); err != nil {
		return usageErr("device: %v", err)
	}
	return nil
}

// parseProjectArgs parses the flags of a command whose one argument is a
// project ID, and returns the ID, validated.
func parseProjectArgs(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args, "project ID")
	if err != nil {
		return "", err
	}
	if err := projectArg(pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// addDeviceFlags registers --dir and --project, the flags of a command
// about one device.
func addDeviceFlags(fs *flag.FlagSet) (dir, project *string) {
	return addDirFlag(fs), fs.String("project", "", "`PROJECT` of the device")
}

// parseDeviceArgs parses the flags of a command whose one argument is a
// device ID, and returns the ID; it and --project (project) are validated.
func parseDeviceArgs(fs *flag.FlagSet, args []string, project *string) (string, error) {
	pos, err := parseArgs(fs, args, "device ID")
	if err != nil {
		return "", err
	}
	if err := projectArg(*project); err != nil {
		return "", err
	}
	if err := deviceArg(pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// listFlags are the flags of a command that lists records of one project
// or of all: --dir, --project and --json.
type listFlags struct {
	dir, project *string
	json         *bool
}

// addListFlags registers --dir, --project (described by projectUsage) and
// --json on fs.
func addListFlags(fs *flag.FlagSet, projectUsage string) listFlags {
	return listFlags{
		dir:     addDirFlag(fs),
		project: fs.String("project", "", projectUsage),
		json:    fs.Bool("json", false, "print JSON"),
	}
}

// cliEventReasonFrom is the reason of the events the CLI records.
const cliEventReasonFrom = "by credloop CLI"

// open opens the admin of an existing DIR, validating --project when
// given. Close it with closeAdmin.
func (l listFlags) open() (*cloud.Admin, error) {
	if *l.project != "" {
		if err := projectArg(*l.project); err != nil {
			return nil, err
		}
	}
	return openAdmin(*l.dir, false)
}

func (l listFlags) scope() scope { return scope{dir: *l.dir, project: *l.project} }

// newTable returns a tabwriter for aligned columns; Flush it when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// emitJSON writes v as indented JSON.
func emitJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.SetEscapeHTML(false)
	return e.Encode(v)
}

// printList prints the records of a list command: as JSON with asJSON;
// else the line empty when there are none; else a table of header and
// one row per record.
func printList[T any](w io.Writer, asJSON bool, infos []T, empty, header string, row func(w io.Writer, v T)) error {
	if asJSON {
		return emitJSON(w, infos)
	}
	if len(infos) == 0 {
		fmt.Fprintln(w, empty)
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, header)
	for _, v := range infos {
		row(tw, v)
	}
	return tw.Flush()
}

// rfc3339 formats t in UTC, "-" when zero.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// short returns the first n characters of a fingerprint.
func short(fp string, n int) string {
	if len(fp) > n {
		return fp[:n]
	}
	return fp
}

// readInput reads a file given on the command line, at most limit bytes.
func readInput(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// readCerts reads the certificates (PEM or DER) of a file given on the
// command line.
func readCerts(name string) ([]*x509.Certificate, error) {
	data, err := readInput(name, fakeca.MaxCertSize)
	if err != nil {
		return nil, err
	}
	certs, err := fakeca.ParseCertPEMOrDER(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return certs, nil
}

// writeOutput writes data to the file out (mode 0644), or to standard
// output when out is "". It returns where to tell people about it:
// standard output, or standard error when standard output carries data.
func writeOutput(env *Env, out string, data []byte) (io.Writer, error) {
	if out == "" {
		if _, err := env.Stdout.Write(data); err != nil {
			return nil, err
		}
		return env.Stderr, nil
	}
	if err := writeFileAtomic(out, data, 0o644); err != nil {
		return nil, err
	}
	return env.Stdout, nil
}

// writeFileAtomic writes data to a temporary file next to name with the
// given mode and renames it over name, so a key file is never visible
// with a wider mode or half written.
func writeFileAtomic(name string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("write %s: %w", name, err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// parseHexKey decodes a PSK given in hex ("0x" prefix and ':' separators
// allowed). Errors never quote the input: it is a secret.
func parseHexKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s = s[2:]
	}
	s = strings.ReplaceAll(s, ":", "")
	switch {
	case s == "":
		return nil, errors.New("empty key")
	case len(s) > 2*registry.MaxPSKLen:
		return nil, fmt.Errorf("key is longer than %d bytes", registry.MaxPSKLen)
	case len(s)%2 != 0:
		return nil, fmt.Errorf("key has an odd number of hex digits (%d)", len(s))
	}
	b := make([]byte, len(s)/2)
	if _, err := hex.Decode(b, []byte(s)); err != nil {
		return nil, errors.New("key is not hex: use only the digits 0-9 and a-f")
	}
	return b, nil
}

// readKeyLine reads one line holding a hex key from r (for `--psk -`).
func readKeyLine(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("no standard input to read the key from")
	}
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	if sc.Scan() {
		return sc.Text(), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read key from standard input: %w", err)
	}
	return "", errors.New("standard input is empty: expected the key in hex")
}
