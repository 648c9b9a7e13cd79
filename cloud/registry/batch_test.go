package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Concurrent Records and TouchDevices share transactions; each caller
// gets its own result, and a failing write does not fail its batch.
func TestBatchedWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *Registry
	}{
		{"memory", func(t *testing.T) *Registry { return openMem(t, nil) }},
		{"file", func(t *testing.T) *Registry { return openFile(t, tempDB(t), nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.open(t)
			ctx := ctxT(t)
			must[Project](t)(r.CreateProject(ctx, "p"))
			must[Device](t)(r.CreateDevice(ctx, "p", "d"))
			const n = 200
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				seqs     = map[int64]bool{}
				notFound int
			)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e, err := r.Record(ctx, Event{Kind: "auth.psk", Device: fmt.Sprint(i)})
					if err != nil {
						t.Error(err)
						return
					}
					terr := r.TouchDevice(ctx, "p", "d", time.Unix(int64(i), 0))
					gerr := r.TouchDevice(ctx, "p", "ghost", time.Unix(1, 0))
					mu.Lock()
					defer mu.Unlock()
					if seqs[e.Seq] || e.Seq <= 0 {
						t.Errorf("seq %d given twice or not at all", e.Seq)
					}
					seqs[e.Seq] = true
					if terr != nil {
						t.Error(terr)
					}
					if errors.Is(gerr, ErrNotFound) {
						notFound++
					}
				}()
			}
			wg.Wait()
			if notFound != n {
				t.Errorf("touching an unknown device: %d ErrNotFound of %d", notFound, n)
			}
			evs := must[[]Event](t)(r.Events(ctx, Filter{Kind: "auth.psk"}))
			if len(evs) != n || len(seqs) != n {
				t.Fatalf("%d events stored, %d seqs returned; want %d", len(evs), len(seqs), n)
			}
			for _, e := range evs {
				if !seqs[e.Seq] {
					t.Fatalf("stored event %d was not returned to its caller", e.Seq)
				}
			}
			if d := must[Device](t)(r.Device(ctx, "p", "d")); d.LastSeen.IsZero() {
				t.Fatal("last seen not written")
			}
			// After Close, a batched write fails cleanly.
			r.Close()
			if _, err := r.Record(ctx, Event{Kind: "auth.psk"}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Record after Close: %v", err)
			}
		})
	}
}
