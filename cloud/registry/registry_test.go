package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
		want error
	}{
		{"empty path", "", ErrInvalid},
		{"directory does not exist", filepath.Join(t.TempDir(), "no", "such", "dir", "r.db"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(tt.path, Options{})
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMemoryDatabasesAreSeparate(t *testing.T) {
	a, b := openMem(t, nil), openMem(t, nil)
	ctx := ctxT(t)
	must[Project](t)(a.CreateProject(ctx, "p"))
	if _, err := b.Project(ctx, "p"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second memory registry sees the first's project: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := tempDB(t)
	r := openFile(t, path, nil)
	if _, err := r.w.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r2, err := Open(path, Options{}); err == nil {
		r2.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestClose(t *testing.T) {
	r, err := Open(tempDB(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := r.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	ctx := ctxT(t)
	calls := map[string]func() error{
		"CreateProject": func() error { _, err := r.CreateProject(ctx, "p"); return err },
		"Project":       func() error { _, err := r.Project(ctx, "p"); return err },
		"Devices":       func() error { _, err := r.Devices(ctx, ""); return err },
		"PSKByIdentity": func() error { _, _, err := r.PSKByIdentity(ctx, "d@p"); return err },
		"CertificateByFingerprint": func() error {
			_, err := r.CertificateByFingerprint(ctx, Fingerprint(nil))
			return err
		},
		"Record":      func() error { _, err := r.Record(ctx, Event{Kind: "x"}); return err },
		"Events":      func() error { _, err := r.Events(ctx, Filter{}); return err },
		"WaitEvent":   func() error { _, err := r.WaitEvent(ctx, Filter{}); return err },
		"TouchDevice": func() error { return r.TouchDevice(ctx, "p", "d", time.Now()) },
		"IsRevoked":   func() error { _, err := r.IsRevoked(ctx, Fingerprint(nil), "1"); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", name, err)
			}
		})
	}
}

// TestPersistence fills a file registry, closes it, reopens it and finds
// everything again.
func TestPersistence(t *testing.T) {
	path := tempDB(t)
	c := newClock()
	ctx := ctxT(t)
	root := newCA(t, "root", nil)
	leaf := root.leaf(t, "p", "d1", 99, t0.Add(time.Hour))

	r := openFile(t, path, c)
	seed(t, r)
	must[TrustedRoot](t)(r.TrustRoot(ctx, "p", root.cert.Raw))
	psk := must[Credential](t)(r.AddPSK(ctx, "p", "d1", "d1@p", []byte("key")))
	cert := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", leaf, StateActive))
	must[Revocation](t)(r.Revoke(ctx, root.fp, "63", 1))
	must[int64](t)(r.NextCRLNumber(ctx, root.fp))
	if err := r.PutState(ctx, "p", "d2", "a/b", []byte(`"v"`)); err != nil {
		t.Fatal(err)
	}
	if err := r.TouchDevice(ctx, "p", "d2", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ev := must[Event](t)(r.Record(ctx, Event{Kind: "auth.psk", Project: "p", Device: "d1", Credential: "d1@p"}))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}

	r = openFile(t, path, c)
	var v int
	if err := r.rd.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("user_version = %d, %v", v, err)
	}
	var mode string
	if err := r.rd.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	checks := []struct {
		name  string
		check func() error
	}{
		{"project", func() error { _, err := r.Project(ctx, "p"); return err }},
		{"root", func() error {
			roots, err := r.TrustedRoots(ctx, "p")
			if err == nil && (len(roots) != 1 || !bytes.Equal(roots[0].DER, root.cert.Raw)) {
				err = fmt.Errorf("roots %+v", roots)
			}
			return err
		}},
		{"device", func() error {
			d, err := r.Device(ctx, "p", "d2")
			if err == nil && !d.LastSeen.Equal(t0.Add(time.Minute)) {
				err = fmt.Errorf("LastSeen %v", d.LastSeen)
			}
			return err
		}},
		{"psk", func() error {
			got, _, err := r.PSKByIdentity(ctx, "d1@p")
			if err == nil && (got.ID != psk.ID || string(got.PSK) != "key") {
				err = fmt.Errorf("psk %v", got)
			}
			return err
		}},
		{"certificate revoked", func() error {
			got, err := r.CertificateByFingerprint(ctx, cert.Fingerprint)
			if err == nil && (got.State != StateRevoked || !bytes.Equal(got.DER, leaf)) {
				err = fmt.Errorf("cert %v", got)
			}
			return err
		}},
		{"revocation", func() error {
			ok, err := r.IsRevoked(ctx, root.fp, "63")
			if err == nil && !ok {
				err = errors.New("not revoked")
			}
			return err
		}},
		{"crl number", func() error {
			n, err := r.NextCRLNumber(ctx, root.fp)
			if err == nil && n != 2 {
				err = fmt.Errorf("crl number %d", n)
			}
			return err
		}},
		{"state", func() error {
			b, err := r.GetState(ctx, "p", "d2", "a")
			if err == nil && string(b) != `{"b":"v"}` {
				err = fmt.Errorf("state %s", b)
			}
			return err
		}},
		{"events", func() error {
			evs, err := r.Events(ctx, Filter{})
			if err == nil && (len(evs) != 1 || evs[0] != ev) {
				err = fmt.Errorf("events %+v", evs)
			}
			return err
		}},
	}
	for _, tt := range checks {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Sequence numbers continue.
	if e := must[Event](t)(r.Record(ctx, Event{Kind: "x"})); e.Seq != ev.Seq+1 {
		t.Errorf("seq after reopen = %d, want %d", e.Seq, ev.Seq+1)
	}
}

// TestTwoHandlesConcurrentWrites plays the cloud and the CLI: two handles
// on one file, each writing from several goroutines at once. No write may
// fail with "database is locked".
func TestTwoHandlesConcurrentWrites(t *testing.T) {
	path := tempDB(t)
	cloud := openFile(t, path, nil)
	cli := openFile(t, path, nil)
	ctx := ctxT(t)
	must[Project](t)(cloud.CreateProject(ctx, "p"))
	const (
		workers = 3
		ops     = 15
	)
	var wg sync.WaitGroup
	for h, r := range []*Registry{cloud, cli} {
		for w := range workers {
			wg.Go(func() {
				for i := range ops {
					dev := fmt.Sprintf("h%d-w%d-%d", h, w, i)
					if err := concurrentOp(ctx, r, dev); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, r := range []*Registry{cloud, cli} {
		ds := must[[]Device](t)(r.Devices(ctx, "p"))
		if len(ds) != 2*workers*ops+1 { // + "shared"
			t.Errorf("%d devices, want %d", len(ds), 2*workers*ops+1)
		}
		evs := must[[]Event](t)(r.Events(ctx, Filter{Kind: "device.created"}))
		if len(evs) != 2*workers*ops {
			t.Errorf("%d events, want %d", len(evs), 2*workers*ops)
		}
	}
}

func concurrentOp(ctx context.Context, r *Registry, dev string) error {
	if _, err := r.CreateDevice(ctx, "p", dev); err != nil {
		return err
	}
	if _, err := r.AddPSK(ctx, "p", dev, dev+"@p", []byte(dev)); err != nil {
		return err
	}
	if _, _, err := r.PSKByIdentity(ctx, dev+"@p"); err != nil {
		return err
	}
	if err := r.TouchDevice(ctx, "p", dev, time.Now()); err != nil {
		return err
	}
	if _, err := r.Record(ctx, Event{Kind: "device.created", Project: "p", Device: dev}); err != nil {
		return err
	}
	_, _, err := r.EnsureDevice(ctx, "p", "shared", true)
	return err
}

// TestFileURIEscaping opens a path with characters that mean something
// in a URI.
func TestFileURIEscaping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "reg.db")
	r := openFile(t, path, nil)
	must[Project](t)(r.CreateProject(ctxT(t), "p"))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
}

// TestTwoProcesses runs a second process (this test binary, as
// TestHelperProcess) writing to the same file while this one writes and
// waits for the child's last event.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	path := tempDB(t)
	r := openFile(t, path, nil)
	r.poll = 10 * time.Millisecond
	ctx := ctxT(t)
	must[Project](t)(r.CreateProject(ctx, "p"))

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REGISTRY_HELPER_DB="+path)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	for i := range helperOps {
		if err := concurrentOp(ctx, r, fmt.Sprintf("parent-%d", i)); err != nil {
			t.Error(err)
			break
		}
	}
	e, err := r.WaitEvent(ctx, Filter{Kind: "helper.done"})
	if err != nil {
		t.Fatalf("waiting for the child's event: %v\nchild output:\n%s", err, out)
	}
	if e.Reason != "ok" {
		t.Errorf("child reported %q", e.Reason)
	}
	if err := <-waited; err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if ds := must[[]Device](t)(r.Devices(ctx, "p")); len(ds) != 2*helperOps+1 {
		t.Errorf("%d devices, want %d", len(ds), 2*helperOps+1)
	}
}

const helperOps = 20

// TestHelperProcess is the child of TestTwoProcesses.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("REGISTRY_HELPER_DB")
	if path == "" {
		t.Skip("run by TestTwoProcesses")
	}
	r := openFile(t, path, nil)
	ctx := ctxT(t)
	reason := "ok"
	for i := range helperOps {
		if err := concurrentOp(ctx, r, fmt.Sprintf("child-%d", i)); err != nil {
			reason = err.Error()
			break
		}
	}
	if _, err := r.Record(ctx, Event{Kind: "helper.done", Reason: reason}); err != nil {
		t.Fatal(err)
	}
}
