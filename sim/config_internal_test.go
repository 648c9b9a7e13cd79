package sim

import (
	"testing"
	"time"

	"github.com/credloop/credloop/internal/devicemodel"
)

// TestModelStateString: the public snapshot renders as the model's own
// state does, so consoles and scenario output do not change.
func TestModelStateString(t *testing.T) {
	st := devicemodel.State{
		ID: "dev-1", Booted: true, Slot: devicemodel.SlotRotated, Kind: devicemodel.KindCert, Fingerprint: "0123abcd",
		NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), FellBack: true,
		RTC:        devicemodel.RTC{BootCount: 2, RotationPending: true},
		HasRotated: true, HasMainPSK: true, HasBackupPSK: true, BackupPending: true, CSRPending: true,
	}
	ms := modelState(st)
	if got, want := ms.String(), st.String(); got != want {
		t.Fatalf("ModelState:\n%s\nwant:\n%s", got, want)
	}
	if ms.Slot != SlotRotated || ms.BootCount != 2 || !ms.NotAfter.Equal(st.NotAfter) {
		t.Fatalf("modelState = %+v", ms)
	}
}
