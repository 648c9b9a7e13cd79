package scenario

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/hil"
)

// Options tunes Params.
type Options struct {
	// Exe, when set, is linked into each scenario's $PATH as `credloop`,
	// so that `exec credloop ...` runs the same binary. Under `go test`,
	// testscript.Main provides the command instead.
	Exe string
	// WorkdirRoot keeps work directories under this directory.
	WorkdirRoot string
	// Hardware is the hardware map: boards it names run for real, the
	// others are emulated.
	Hardware *hil.Map
	// DTLSPSKStack is the DTLS PSK stack of every cloud the scenarios
	// start (`cloud start`); empty means the cloud's default.
	DTLSPSKStack cloud.DTLSPSKStack
}

// Params returns the testscript parameters for the scenarios in dir (or
// the given files).
func Params(dir string, files []string, o Options) testscript.Params {
	p := testscript.Params{
		Dir:                 dir,
		Files:               files,
		Cmds:                Commands(),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		WorkdirRoot:         o.WorkdirRoot,
		Condition:           func(cond string) (bool, error) { return condition(cond, o.Hardware) },
		Setup: func(env *testscript.Env) error {
			if err := setup(env, o.Hardware, o.DTLSPSKStack); err != nil {
				return err
			}
			passFirmwareEnv(env, os.Environ())
			if o.Exe == "" {
				return nil
			}
			bin := filepath.Join(env.WorkDir, ".bin")
			if err := os.MkdirAll(bin, 0o700); err != nil {
				return err
			}
			if err := os.Symlink(o.Exe, filepath.Join(bin, "credloop")); err != nil {
				return err
			}
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			return nil
		},
	}
	if len(files) > 0 {
		p.Dir = ""
	}
	return p
}

// Result is the outcome of one scenario.
type Result struct {
	Name     string
	File     string
	Passed   bool
	Skipped  bool
	Duration time.Duration
	Log      string
}

// RunOptions configures Run.
type RunOptions struct {
	// Paths are scenario files or directories of them.
	Paths []string
	// Match keeps only scenarios whose name matches.
	Match *regexp.Regexp
	// Exe is the credloop executable put on each scenario's $PATH.
	Exe string
	// Out receives one line per scenario and a summary.
	Out io.Writer
	// Verbose prints every scenario's log, not only failures'.
	Verbose bool
	// KeepWork keeps work directories under this directory.
	KeepWork string
	// Hardware is the hardware map (real boards); nil: all emulated.
	Hardware *hil.Map
	// DTLSPSKStack is the DTLS PSK stack of every cloud the scenarios
	// start; empty means the cloud's default.
	DTLSPSKStack cloud.DTLSPSKStack
}

// Run runs the scenarios one after another and reports each as it ends.
func Run(o RunOptions) ([]Result, error) {
	var files []string
	for _, p := range o.Paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".txtar") || strings.HasSuffix(e.Name(), ".txt")) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(files)
	var kept []string
	for _, f := range files {
		if o.Match == nil || o.Match.MatchString(scriptName(f)) {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("no scenarios (*.txtar) found in %s", strings.Join(o.Paths, ", "))
	}
	root := &runT{opts: &o, byName: map[string]string{}}
	for _, f := range kept {
		root.byName[scriptName(f)] = f
	}
	params := Params("", kept, Options{Exe: o.Exe, WorkdirRoot: o.KeepWork, Hardware: o.Hardware, DTLSPSKStack: o.DTLSPSKStack})
	done := make(chan struct{})
	go func() {
		defer close(done)
		testscript.RunT(root, params)
	}()
	<-done
	if root.fatal != "" {
		return root.results, fmt.Errorf("%s", root.fatal)
	}
	return root.results, nil
}

func scriptName(file string) string {
	b := filepath.Base(file)
	b = strings.TrimSuffix(b, ".txtar")
	return strings.TrimSuffix(b, ".txt")
}

// runT implements testscript.T for running outside `go test`. FailNow and
// Skip end the calling goroutine like the testing package does, so every
// scenario runs on a goroutine of its own.
type runT struct {
	opts   *RunOptions
	byName map[string]string
	name   string
	parent *runT

	mu      sync.Mutex
	log     bytes.Buffer
	failed  bool
	skipped bool

	results []Result
	fatal   string
}

func (t *runT) Skip(args ...any) {
	t.Log(args...)
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Fatal(args ...any) {
	t.Log(args...)
	t.FailNow()
}

func (t *runT) FailNow() {
	t.mu.Lock()
	t.failed = true
	if t.parent == nil {
		t.fatal = strings.TrimSpace(t.log.String())
	}
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Parallel() {}

func (t *runT) Log(args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := fmt.Sprintln(args...)
	t.log.WriteString(s)
}

func (t *runT) Verbose() bool { return t.opts.Verbose }

func (t *runT) Run(name string, f func(testscript.T)) {
	sub := &runT{opts: t.opts, name: name, parent: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(sub)
	}()
	<-done
	r := Result{Name: name, File: t.byName[name], Duration: time.Since(start), Log: sub.log.String()}
	r.Passed = !sub.failed
	r.Skipped = sub.skipped && !sub.failed
	t.results = append(t.results, r)
	status := "PASS"
	switch {
	case sub.failed:
		status = "FAIL"
	case r.Skipped:
		status = "SKIP"
	}
	out := t.opts.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "%-4s  %-44s %6.2fs\n", status, name, r.Duration.Seconds())
	if sub.failed || t.opts.Verbose {
		for _, line := range strings.Split(strings.TrimRight(r.Log, "\n"), "\n") {
			fmt.Fprintf(out, "      %s\n", line)
		}
	}
}

// Summary is the closing line: "N passed, N failed" (and skipped).
func Summary(results []Result) string {
	var passed, failed, skipped int
	for _, r := range results {
		switch {
		case r.Skipped:
			skipped++
		case r.Passed:
			passed++
		default:
			failed++
		}
	}
	s := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		s += fmt.Sprintf(", %d skipped", skipped)
	}
	return s
}

// WriteJUnit writes results as JUnit XML, the format CI systems read.
func WriteJUnit(w io.Writer, suite string, results []Result) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type testcase struct {
		Name      string    `xml:"name,attr"`
		Classname string    `xml:"classname,attr"`
		File      string    `xml:"file,attr,omitempty"`
		Time      string    `xml:"time,attr"`
		Failure   *failure  `xml:"failure,omitempty"`
		Skipped   *struct{} `xml:"skipped,omitempty"`
		SystemOut string    `xml:"system-out,omitempty"`
	}
	type testsuite struct {
		XMLName  xml.Name   `xml:"testsuite"`
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Skipped  int        `xml:"skipped,attr"`
		Time     string     `xml:"time,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	ts := testsuite{Name: suite, Tests: len(results)}
	var total time.Duration
	for _, r := range results {
		total += r.Duration
		tc := testcase{Name: r.Name, Classname: suite, File: r.File, Time: fmt.Sprintf("%.3f", r.Duration.Seconds())}
		switch {
		case r.Skipped:
			ts.Skipped++
			tc.Skipped = &struct{}{}
		case !r.Passed:
			ts.Failures++
			tc.Failure = &failure{Message: lastLine(r.Log), Text: r.Log}
		default:
			tc.SystemOut = r.Log
		}
		ts.Cases = append(ts.Cases, tc)
	}
	ts.Time = fmt.Sprintf("%.3f", total.Seconds())
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(struct {
		XMLName xml.Name `xml:"testsuites"`
		Suite   testsuite
	}{Suite: ts}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && l != "FAIL" {
			return l
		}
	}
	return "failed"
}

// condition evaluates the scenario conditions testscript does not know.
// An unknown condition is an error, so a typo cannot silently skip lines.
func condition(cond string, hw *hil.Map) (bool, error) {
	if kind, ok := strings.CutPrefix(cond, "board:"); ok {
		return boardCondition(hw, kind)
	}
	if bin, ok := strings.CutPrefix(cond, "have:"); ok {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				return false, fmt.Errorf("%s is not installed and CI is set: .ci/run must install it", bin)
			}
			return false, nil
		}
		return true, nil
	}
	if lib, ok := strings.CutPrefix(cond, "pkgconfig:"); ok {
		return pkgConfigCondition(lib)
	}
	if name, ok := strings.CutPrefix(cond, "env:"); ok {
		if name == "" {
			return false, fmt.Errorf("[env:]: name a variable")
		}
		return os.Getenv(name) != "", nil
	}
	return false, fmt.Errorf("unknown condition [%s]", cond)
}

// pkgConfigCondition reports whether pkg-config knows the library lib
// (its development files are installed), as the scenarios that build a
// host firmware need; like [have:BIN], under CI a missing library fails
// the scenario instead of skipping it.
func pkgConfigCondition(lib string) (bool, error) {
	if lib == "" {
		return false, fmt.Errorf("[pkgconfig:]: name a library")
	}
	bin, err := exec.LookPath("pkg-config")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = exec.CommandContext(ctx, bin, "--exists", lib).Run()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			return false, fmt.Errorf("pkg-config does not know %s and CI is set: .ci/run must install it: %w", lib, err)
		}
		return false, nil
	}
	return true, nil
}

// passFirmwareEnv hands the scenario the host's variables whose names end
// in _FW: paths to firmware built on the host (Golioth's examples and HIL
// tests built for Linux, say), which scenarios run as linux boards.
// testscript gives a scenario a minimal environment; nothing else of the
// host's passes.
func passFirmwareEnv(env *testscript.Env, environ []string) {
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && v != "" && strings.HasSuffix(k, "_FW") {
			env.Setenv(k, v)
		}
	}
}
