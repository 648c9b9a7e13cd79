package devicemodel

import (
	"errors"
	"testing"
	"time"
)

// A certificate from the device's own first provisioning (TI's CC3220
// run-time flow) is its primary credential: no boot counter, no fallback,
// kept across power cycles, and what a failed rotation falls back to.
func TestInstallCertificate(t *testing.T) {
	ca := newTestCA(t, 1)
	issued := ca.certCred(t, "CC3220-0A1B2C", 40, t0.Add(365*24*time.Hour))
	burned := Credential{Kind: KindCert, KeyDER: issued.KeyDER} // the pre-burned key, no certificate yet
	other := ca.certCred(t, "CC3220-0A1B2C", 41, t0.Add(365*24*time.Hour))
	broken := ca.certCred(t, "CC3220-0A1B2C", 42, t0.Add(365*24*time.Hour))
	cfg := Config{ID: "CC3220-0A1B2C", Project: "proj", Factory: burned}
	install := func(chain [][]byte, want error) step {
		return do("install certificate", func(r *rig) {
			if err := r.dev.InstallCertificate(chain); !errors.Is(err, want) {
				r.t.Errorf("InstallCertificate = %v, want %v", err, want)
			}
		})
	}
	run(t, cfg, []step{
		boot(SlotFactory, 0, false),
		expectCurrent(burned),
		// Another key's certificate, or garbage, changes nothing.
		install(other.CertChainDER, ErrKeyMismatch),
		install([][]byte{[]byte("not a certificate")}, ErrBadCert),
		do("nothing stored", func(r *rig) {
			if _, ok := r.store.Get(KeyDeviceCert); ok {
				r.t.Error("a refused certificate was stored")
			}
		}),
		install(issued.CertChainDER, nil),
		// The running session keeps its credential; the next boot uses
		// the certificate, in the factory slot.
		expectCurrent(burned),
		reset(),
		boot(SlotFactory, 0, false),
		expectCurrent(issued),
		// Refused more often than a rotation's budget: retried as is,
		// never a reboot or a fallback.
		connect(false, retry),
		expectNext(SlotFactory, issued),
		reset(), boot(SlotFactory, 0, false), connect(false, retry),
		reset(), boot(SlotFactory, 0, false), connect(false, retry),
		reset(), boot(SlotFactory, 0, false), connect(false, retry),
		reset(), boot(SlotFactory, 0, false), expectCurrent(issued),
		connect(true, connected),
		// Storage outlives power.
		powerCycle(),
		boot(SlotFactory, 0, false),
		expectCurrent(issued),
		// A broken rotation falls back to it, not to the bare key.
		do("rotation", func(r *rig) {
			if err := r.dev.ApplyRotation(Rotation{Credential: broken}); err != nil {
				r.t.Fatal(err)
			}
		}),
		reset(), boot(SlotRotated, 1, false), connect(false, reboot),
		reset(), boot(SlotRotated, 2, false), connect(false, reboot),
		reset(), boot(SlotRotated, 3, false), connect(false, reboot),
		reset(), boot(SlotFactory, 0, true),
		expectCurrent(issued),
		// Installing again replaces the certificate and erases a rotated
		// one, atomically.
		do("rotation", func(r *rig) {
			if err := r.dev.ApplyRotation(Rotation{Credential: broken}); err != nil {
				r.t.Fatal(err)
			}
		}),
		install(issued.CertChainDER, nil),
		expectState(func(s State) string {
			if s.HasRotated || s.RTC.BootCount != 0 {
				return "a rotated certificate survived InstallCertificate"
			}
			return ""
		}),
	})
}

func TestInstallCertificatePowerCut(t *testing.T) {
	ca := newTestCA(t, 1)
	issued := ca.certCred(t, "dev", 43, t0.Add(365*24*time.Hour))
	burned := Credential{Kind: KindCert, KeyDER: issued.KeyDER}
	r := run(t, Config{ID: "dev", Factory: burned}, []step{
		boot(SlotFactory, 0, false),
		armCut("set:" + KeyDeviceCert),
		do("install certificate", func(r *rig) {
			if err := r.dev.InstallCertificate(issued.CertChainDER); !errors.Is(err, ErrPowerCut) {
				r.t.Errorf("InstallCertificate = %v, want ErrPowerCut", err)
			}
		}),
		powerCycle(),
		boot(SlotFactory, 0, false),
		expectCurrent(burned),
	})
	if _, ok := r.store.Get(KeyDeviceCert); ok {
		t.Fatal("a cut write stored the certificate")
	}
	// A PSK device has no key to provision a certificate for.
	psk := New(Config{ID: "dev", Factory: Credential{Kind: KindPSK, PSKIdentity: "dev@proj", PSK: []byte("k")}}, nil)
	if err := psk.InstallCertificate(issued.CertChainDER); !errors.Is(err, ErrBadCredential) {
		t.Fatalf("InstallCertificate on a PSK device = %v, want ErrBadCredential", err)
	}
}
