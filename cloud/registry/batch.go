package registry

import (
	"context"
	"database/sql"
	"time"
)

// Group commit for the writes every authentication makes (its event and
// the device's last-seen time): concurrent callers are written in one
// transaction, so thousands of handshakes a second cost one commit per
// batch instead of two per handshake. Each caller still returns only once
// its write is committed, with its own result, so nothing a caller could
// observe changes.

// batchTimeout bounds one batch's transaction (callers' contexts are not
// used for it: one caller giving up must not fail the others).
const batchTimeout = 30 * time.Second

// maxBatch bounds the writes of one transaction.
const maxBatch = 256

// batchLinger is how long the writer waits for more writes when fewer
// than lingerBelow are pending (measured with `credloop bench dtls-psk`:
// 0 → 7,760/s and 212 µs CPU per handshake, 250 µs → 8,100/s and 190 µs;
// 1 ms lost throughput to the added latency).
const (
	batchLinger = 250 * time.Microsecond
	lingerBelow = 16
)

// inBatch gives the statement to use in a batch: st itself for a batch
// of one (SQLite commits it alone), or st bound to the batch's transaction.
type inBatch func(st *sql.Stmt) *sql.Stmt

type batchOp struct {
	run  func(in inBatch) error // one statement; an error leaves the rest of the batch alone
	err  error
	done chan struct{}
}

// batched runs op in a transaction shared with the batched writes of
// other goroutines and returns its error once the transaction committed.
// The batches are written by one long-lived goroutine, started on first
// use and ended by Close: SQLite's deep frames grow its stack once,
// instead of the stack of every short-lived handshake goroutine.
func (r *Registry) batched(ctx context.Context, run func(in inBatch) error) error {
	if err := r.check(); err != nil {
		return err
	}
	op := &batchOp{run: run, done: make(chan struct{})}
	r.bmu.Lock()
	if r.closedBatch {
		r.bmu.Unlock()
		return ErrClosed
	}
	r.pending = append(r.pending, op)
	if !r.flushing {
		r.flushing = true
		r.writers.Add(1)
		go r.writer()
	} else if len(r.pending) == 1 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	r.bmu.Unlock()
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		// The write may still happen; the caller stops waiting.
		return ctx.Err()
	}
}

// writerIdle is how long the batch writer waits for more work before it
// ends (the next write starts it again).
const writerIdle = 5 * time.Second

// writer writes pending batches until it has been idle for writerIdle or
// the registry closes.
func (r *Registry) writer() {
	defer r.writers.Done()
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		r.bmu.Lock()
		if len(r.pending) > 0 && len(r.pending) < lingerBelow {
			// A short wait lets concurrent writers join the batch: at
			// thousands of handshakes a second, fewer and larger commits
			// cost less CPU and write fewer WAL pages than the extra
			// quarter millisecond costs each write.
			r.bmu.Unlock()
			time.Sleep(batchLinger)
			r.bmu.Lock()
		}
		n := min(len(r.pending), maxBatch)
		ops := r.pending[:n:n]
		r.pending = r.pending[n:]
		if n == 0 {
			r.pending = nil
		}
		r.bmu.Unlock()
		if n > 0 {
			r.flush(ops)
			continue
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(writerIdle)
		select {
		case <-r.wake:
		case <-r.done:
			r.endWriter()
			return
		case <-idle.C:
			r.bmu.Lock()
			if len(r.pending) == 0 {
				r.flushing = false
				r.bmu.Unlock()
				return
			}
			r.bmu.Unlock()
		}
	}
}

// endWriter fails what is still pending when the registry closes.
func (r *Registry) endWriter() {
	r.bmu.Lock()
	ops := r.pending
	r.pending = nil
	r.flushing = false
	r.closedBatch = true
	r.bmu.Unlock()
	for _, op := range ops {
		op.err = ErrClosed
		close(op.done)
	}
}

// flush writes ops in one transaction and tells each its result.
func (r *Registry) flush(ops []*batchOp) {
	err := r.check()
	switch {
	case err != nil:
	case len(ops) == 1:
		// Alone: a statement outside a transaction commits by itself,
		// without the round trips of BEGIN and COMMIT.
		ops[0].err = ops[0].run(func(st *sql.Stmt) *sql.Stmt { return st })
	default:
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		defer cancel()
		var tx *sql.Tx
		if tx, err = r.w.BeginTx(ctx, nil); err != nil {
			break
		}
		for _, op := range ops {
			// A statement that fails is rolled back alone (SQLite's ON
			// CONFLICT ABORT); the transaction goes on.
			op.err = op.run(tx.Stmt)
		}
		err = tx.Commit()
	}
	wrote := false
	for _, op := range ops {
		if err != nil {
			op.err = err
		} else if op.err == nil {
			wrote = true
		}
		close(op.done)
	}
	if wrote {
		r.broadcast()
	}
}
