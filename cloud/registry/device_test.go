package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestCreateDevice(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	must[Project](t)(r.CreateProject(ctx, "p"))
	tests := []struct {
		name, project, id string
		want              error
	}{
		{"ok", "p", "d1", nil},
		{"duplicate", "p", "d1", ErrExists},
		{"unknown project", "nope", "d1", ErrNotFound},
		{"bad device id", "p", "d 1", ErrInvalid},
		{"bad project id", "", "d1", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := r.CreateDevice(ctx, tt.project, tt.id)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateDevice = %v, want %v", err, tt.want)
			}
			if err == nil {
				want := Device{Project: "p", ID: "d1", Created: t0}
				if d != want {
					t.Errorf("CreateDevice = %+v, want %+v", d, want)
				}
			}
		})
	}
}

func TestDevices(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	for _, p := range []string{"p", "q"} {
		must[Project](t)(r.CreateProject(ctx, p))
	}
	must[Device](t)(r.CreateDevice(ctx, "q", "b"))
	must[Device](t)(r.CreateDevice(ctx, "p", "b"))
	must[Device](t)(r.CreateDevice(ctx, "p", "a"))

	list := []struct {
		project string
		want    []string
		err     error
	}{
		{"", []string{"p/a", "p/b", "q/b"}, nil},
		{"p", []string{"p/a", "p/b"}, nil},
		{"nope", nil, nil},
		{"bad id", nil, ErrInvalid},
	}
	for _, tt := range list {
		t.Run("list "+tt.project, func(t *testing.T) {
			ds, err := r.Devices(ctx, tt.project)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Devices = %v, want %v", err, tt.err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.Project+"/"+d.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Devices(%q) = %v, want %v", tt.project, got, tt.want)
			}
		})
	}

	get := []struct {
		project, id string
		want        error
	}{
		{"p", "a", nil},
		{"q", "a", ErrNotFound},
		{"p", "", ErrInvalid},
	}
	for _, tt := range get {
		t.Run("get "+tt.project+"/"+tt.id, func(t *testing.T) {
			if _, err := r.Device(ctx, tt.project, tt.id); !errors.Is(err, tt.want) {
				t.Fatalf("Device = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("disable", func(t *testing.T) {
		if err := r.SetDeviceDisabled(ctx, "p", "a", true); err != nil {
			t.Fatal(err)
		}
		if d := must[Device](t)(r.Device(ctx, "p", "a")); !d.Disabled {
			t.Errorf("not disabled: %+v", d)
		}
		if err := r.SetDeviceDisabled(ctx, "p", "a", false); err != nil {
			t.Fatal(err)
		}
		if d := must[Device](t)(r.Device(ctx, "p", "a")); d.Disabled {
			t.Errorf("still disabled: %+v", d)
		}
		if err := r.SetDeviceDisabled(ctx, "p", "zz", true); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetDeviceDisabled(missing) = %v", err)
		}
		if err := r.SetDeviceDisabled(ctx, "p", "z z", true); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetDeviceDisabled(bad id) = %v", err)
		}
	})

	t.Run("touch", func(t *testing.T) {
		if d := must[Device](t)(r.Device(ctx, "p", "b")); !d.LastSeen.IsZero() {
			t.Fatalf("LastSeen of a new device = %v", d.LastSeen)
		}
		seen := t0.Add(90 * time.Minute).Add(123456 * time.Nanosecond)
		if err := r.TouchDevice(ctx, "p", "b", seen); err != nil {
			t.Fatal(err)
		}
		if d := must[Device](t)(r.Device(ctx, "p", "b")); !d.LastSeen.Equal(seen.Truncate(time.Microsecond)) {
			t.Errorf("LastSeen = %v, want %v", d.LastSeen, seen)
		}
		if err := r.TouchDevice(ctx, "p", "zz", seen); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchDevice(missing) = %v", err)
		}
		if err := r.TouchDevice(ctx, "p", "", seen); !errors.Is(err, ErrInvalid) {
			t.Errorf("TouchDevice(bad id) = %v", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		must[Credential](t)(r.AddPSK(ctx, "q", "b", "b@q", []byte("secret")))
		if err := r.PutState(ctx, "q", "b", "x", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteDevice(ctx, "q", "b"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.PSKByIdentity(ctx, "b@q"); !errors.Is(err, ErrNotFound) {
			t.Errorf("PSK survived its device: %v", err)
		}
		if _, err := r.GetState(ctx, "q", "b", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("state survived its device: %v", err)
		}
		if err := r.DeleteDevice(ctx, "q", "b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteDevice = %v", err)
		}
	})
}

func TestEnsureDevice(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	must[Project](t)(r.CreateProject(ctx, "p"))
	tests := []struct {
		name, project, id string
		auto              bool
		created           bool
		want              error
	}{
		{"first creates", "p", "d", true, true, nil},
		{"second gets", "p", "d", false, false, nil},
		{"unknown project", "nope", "d", true, false, ErrNotFound},
		{"bad id", "p", "d@x", true, false, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, created, err := r.EnsureDevice(ctx, tt.project, tt.id, tt.auto)
			if !errors.Is(err, tt.want) {
				t.Fatalf("EnsureDevice = %v, want %v", err, tt.want)
			}
			if created != tt.created {
				t.Errorf("created = %t, want %t", created, tt.created)
			}
			if err == nil && !d.AutoProvisioned {
				t.Errorf("device created with auto=true is not AutoProvisioned: %+v", d)
			}
		})
	}
}

// TestEnsureDeviceConcurrent races first connects: in one process, and in
// two processes (two handles on one file).
func TestEnsureDeviceConcurrent(t *testing.T) {
	path := tempDB(t)
	a := openFile(t, path, nil)
	b := openFile(t, path, nil)
	mem := openMem(t, nil)
	for _, tt := range []struct {
		name    string
		handles []*Registry
	}{
		{"memory", []*Registry{mem}},
		{"one handle on a file", []*Registry{a}},
		{"two handles on a file", []*Registry{a, b}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			project := fmt.Sprintf("p%d", len(tt.handles))
			if _, err := tt.handles[0].CreateProject(ctx, project); err != nil && !errors.Is(err, ErrExists) {
				t.Fatal(err)
			}
			const n = 8
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				created int
			)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					_, c, err := tt.handles[i%len(tt.handles)].EnsureDevice(ctx, project, "dev", true)
					if err != nil {
						t.Error(err)
						return
					}
					if c {
						mu.Lock()
						created++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if created != 1 {
				t.Errorf("%d callers created the device, want 1", created)
			}
			if ds := must[[]Device](t)(tt.handles[0].Devices(context.Background(), project)); len(ds) != 1 {
				t.Errorf("devices: %+v", ds)
			}
		})
	}
}
