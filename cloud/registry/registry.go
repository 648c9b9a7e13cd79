// Package registry stores projects, devices and their credentials.
package registry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Sentinel errors. Errors returned by the registry wrap one of these (or a
// context error) with details.
var (
	ErrNotFound    = errors.New("registry: not found")
	ErrExists      = errors.New("registry: already exists")
	ErrInvalid     = errors.New("registry: invalid argument")
	ErrTooManyPSKs = errors.New("registry: too many PSKs")
	ErrClosed      = errors.New("registry: closed")
)

// SchemaVersion is the database schema version this package writes
// (stored in PRAGMA user_version).
const SchemaVersion = 3

// MaxPSKsPerDevice is how many PSK credentials that are not REVOKED a
// device may hold: a main and a backup key, for rotation.
const MaxPSKsPerDevice = 2

// busyTimeout is how long a connection waits for another process's write
// lock before giving up with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// pollInterval is how often WaitEvent re-queries the database to see
// events written by another process.
const pollInterval = 100 * time.Millisecond

// Options configure a Registry. The zero value is ready to use.
type Options struct {
	// Now returns the current time; it stamps Created, Added and event
	// times. Default time.Now.
	Now func() time.Time
	// Logger receives debug logs of changes. Default: discard.
	Logger *slog.Logger
	// Rand supplies ownership tokens. Default crypto/rand.Reader; it
	// must be safe for concurrent use.
	Rand io.Reader
}

// Registry is a handle on a registry database. It is safe for concurrent
// use. Close it when done.
//
// The database is SQLite (modernc.org/sqlite, pure Go). A file database
// runs in WAL mode with a 5 s busy timeout and foreign keys on, so several
// processes (the `credloop cloud` server and a `credloop device add` CLI,
// say) can use the same file at once. Inside one process all writes go
// through a single connection and every transaction starts with BEGIN
// IMMEDIATE, so writers queue instead of failing with "database is
// locked"; reads use a pool of read-only connections and do not wait for
// writers.
//
// The registry is a store: it records no events on its own. Callers
// (endpoints, the CLI) record authentication attempts and state changes
// with Record.
//
// Times are stored with microsecond precision and returned in UTC.
type Registry struct {
	w    *sql.DB // writes: one connection, BEGIN IMMEDIATE
	rd   *sql.DB // reads: read-only pool (== w for ":memory:")
	now  func() time.Time
	log  *slog.Logger
	rand io.Reader
	path string

	// Hot-path statements.
	stPSK     *sql.Stmt
	stCertFP  *sql.Stmt
	stRecord  *sql.Stmt
	stTouch   *sql.Stmt
	stRevoked *sql.Stmt
	stDevice  *sql.Stmt
	stCred    *sql.Stmt
	stLastSeq *sql.Stmt
	stAllCAs  *sql.Stmt
	stAddLog  *sql.Stmt // a device's log message (logs.go)

	bmu         sync.Mutex
	pending     []*batchOp     // batched writes waiting for a transaction
	flushing    bool           // the writer goroutine runs
	closedBatch bool           // Close ended the writer: batched writes fail
	wake        chan struct{}  // tells an idle writer there is work
	writers     sync.WaitGroup // the writer goroutine, for Close

	mu      sync.Mutex
	eventCh chan struct{} // closed and replaced on every in-process event
	poll    time.Duration // WaitEvent's re-query interval
	onWait  func()        // test hook: WaitEvent is about to block

	closeOnce sync.Once
	closed    atomic.Bool
	done      chan struct{}
	closeErr  error
}

// Open opens (creating if needed) the registry database at path, creating
// or migrating its schema. The path ":memory:" opens a private in-memory
// database, for tests; it goes away on Close.
func Open(path string, opts Options) (*Registry, error) {
	if path == "" {
		return nil, fmt.Errorf("open registry: %w: empty path", ErrInvalid)
	}
	r := &Registry{
		now:     opts.Now,
		log:     opts.Logger,
		rand:    opts.Rand,
		path:    path,
		eventCh: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		poll:    pollInterval,
		done:    make(chan struct{}),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.rand == nil {
		r.rand = rand.Reader
	}
	if err := r.open(path); err != nil {
		r.closeDBs()
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	return r, nil
}

func (r *Registry) open(path string) error {
	var err error
	if path == ":memory:" {
		// Every connection to ":memory:" is its own database: keep exactly
		// one, forever, and use it for reads and writes alike.
		r.w, err = sql.Open("sqlite", ":memory:?_pragma=foreign_keys(1)&_txlock=immediate")
		if err != nil {
			return err
		}
		r.w.SetMaxOpenConns(1)
		r.w.SetMaxIdleConns(1)
		r.w.SetConnMaxLifetime(0)
		r.w.SetConnMaxIdleTime(0)
		r.rd = r.w
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		base := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
		bt := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds())
		r.w, err = sql.Open("sqlite", base+"?"+bt+
			"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate")
		if err != nil {
			return err
		}
		r.w.SetMaxOpenConns(1)
		r.w.SetMaxIdleConns(1)
		r.w.SetConnMaxLifetime(0)
		r.w.SetConnMaxIdleTime(0)
		if err := r.w.Ping(); err != nil {
			return err
		}
		// The read pool opens after the writer has switched the file to WAL.
		r.rd, err = sql.Open("sqlite", base+"?"+bt+"&_pragma=foreign_keys(1)&_pragma=query_only(1)")
		if err != nil {
			return err
		}
		n := max(4, runtime.GOMAXPROCS(0))
		r.rd.SetMaxOpenConns(n)
		r.rd.SetMaxIdleConns(n)
	}
	if err := r.migrate(context.Background()); err != nil {
		return err
	}
	return r.prepare(context.Background())
}

// Path returns the path the registry was opened with.
func (r *Registry) Path() string { return r.path }

// Close closes the database. It wakes WaitEvent callers (they return
// ErrClosed) and waits for queries in progress. Calling it again returns
// the first result.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		close(r.done)
		r.writers.Wait() // the batch writer ends on done
		r.closeErr = r.closeDBs()
	})
	return r.closeErr
}

func (r *Registry) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{r.stPSK, r.stCertFP, r.stRecord, r.stTouch, r.stRevoked, r.stDevice, r.stCred, r.stLastSeq, r.stAllCAs, r.stAddLog} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if r.rd != nil && r.rd != r.w {
		errs = append(errs, r.rd.Close())
	}
	if r.w != nil {
		errs = append(errs, r.w.Close())
	}
	return errors.Join(errs...)
}

func (r *Registry) check() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// write runs fn in an IMMEDIATE transaction on the write connection. If fn
// or the commit fails, the transaction is rolled back.
func (r *Registry) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return r.writeEvents(ctx, nil, fn)
}

// writeEvents is write that also appends evs to the event log in the same
// transaction: the change and the events that tell of it are committed
// together or not at all. WaitEvent callers are woken after the commit.
func (r *Registry) writeEvents(ctx context.Context, evs []Event, fn func(tx *sql.Tx) error) error {
	if err := r.check(); err != nil {
		return err
	}
	for i := range evs {
		e, err := r.prepareEvent(evs[i])
		if err != nil {
			return err
		}
		evs[i] = e
	}
	tx, err := r.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	if len(evs) > 0 {
		st := tx.StmtContext(ctx, r.stRecord)
		for _, e := range evs {
			if _, err := st.ExecContext(ctx, dbTime(e.Time), e.Project, e.Device, e.Credential, e.Kind, e.Outcome, e.Reason); err != nil {
				return errors.Join(fmt.Errorf("record event %s: %w", e.Kind, err), ignoreDone(tx.Rollback()))
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(evs) > 0 {
		r.broadcast()
	}
	return nil
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

func (r *Registry) stamp() any { return dbTime(r.now()) }

// dbTime converts t for storage as INTEGER microseconds since the Unix
// epoch; the zero time is stored as NULL.
func dbTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeScan scans what dbTime stored back into a time.Time (UTC).
type timeScan struct{ t *time.Time }

func (s timeScan) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s.t = time.Time{}
	case int64:
		*s.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("registry: time column holds %T", v)
	}
	return nil
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
