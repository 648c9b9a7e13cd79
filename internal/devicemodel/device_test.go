package devicemodel

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type fixtures struct {
	ca          *testCA
	factoryCert Credential // factory certificate, expires in a year
	rotated     Credential // v2 certificate
	rotated2    Credential // v3 certificate
	factoryPSK  Credential
	pskB, pskC  Credential // keys pushed as backups
	pskCfg      Config
	certCfg     Config
}

func newFixtures(t testing.TB) *fixtures {
	t.Helper()
	f := &fixtures{ca: newTestCA(t, 1)}
	year := 365 * 24 * time.Hour
	f.factoryCert = f.ca.certCred(t, "dev1", 10, t0.Add(year))
	f.rotated = f.ca.certCred(t, "dev1", 11, t0.Add(2*year))
	f.rotated2 = f.ca.certCred(t, "dev1", 12, t0.Add(3*year))
	f.factoryPSK = Credential{Kind: KindPSK, PSKIdentity: "dev1@proj", PSK: []byte("factory-psk-0123")}
	f.pskB = Credential{Kind: KindPSK, PSKIdentity: "dev1-b@proj", PSK: []byte("backup-psk-B-4567")}
	f.pskC = Credential{Kind: KindPSK, PSKIdentity: "dev1-c@proj", PSK: []byte("backup-psk-C-89ab")}
	f.pskCfg = Config{ID: "dev1", Project: "proj", Factory: f.factoryPSK}
	f.certCfg = Config{ID: "dev1", Project: "proj", Factory: f.factoryCert}
	return f
}

func installCred(c Credential, want error) step {
	return installBackup(c.PSKIdentity, c.PSK, want)
}

func TestPSKRotation(t *testing.T) {
	f := newFixtures(t)
	tests := []struct {
		name  string
		steps []step
	}{
		{"backup authenticates, then main and backup swap", []step{
			boot(SlotFactory, 0, false),
			connect(true, connected),
			installCred(f.pskB, nil),
			expectCurrent(f.factoryPSK), // the running session keeps its key
			expectState(func(s State) string {
				if !s.HasBackupPSK || !s.BackupPending || s.HasMainPSK {
					return "want a new backup and no main slot yet"
				}
				return ""
			}),
			reset(),
			boot(SlotBackup, 0, false),
			expectCurrent(f.pskB),
			connect(true, connected),
			expectLog("swapped"),
			expectState(func(s State) string {
				if s.Slot != SlotMain || !s.HasMainPSK || !s.HasBackupPSK || s.BackupPending {
					return "want main=B, backup=old factory key, nothing pending"
				}
				return ""
			}),
			do("slots hold the swapped keys", func(r *rig) {
				if id, _ := r.store.Get(KeyPSKMainID); string(id) != f.pskB.PSKIdentity {
					r.t.Errorf("main identity = %q", id)
				}
				if k, _ := r.store.Get(KeyPSKBackup); string(k) != string(f.factoryPSK.PSK) {
					r.t.Errorf("backup key fp=%s, want the old main", Fingerprint(k))
				}
			}),
			reset(),
			boot(SlotMain, 0, false),
			expectCurrent(f.pskB),
			// A second rotation moves B to the backup slot.
			installCred(f.pskC, nil),
			powerCycle(),
			boot(SlotBackup, 0, false),
			connect(true, connected),
			reset(),
			boot(SlotMain, 0, false),
			expectCurrent(f.pskC),
			do("backup is now B", func(r *rig) {
				if k, _ := r.store.Get(KeyPSKBackup); string(k) != string(f.pskB.PSK) {
					r.t.Errorf("backup key fp=%s, want B", Fingerprint(k))
				}
			}),
		}},
		{"backup rejected keeps the old main and drops the backup", []step{
			boot(SlotFactory, 0, false),
			installCred(f.pskB, nil),
			reset(),
			boot(SlotBackup, 0, false),
			connect(false, retry),
			expectNext(SlotFactory, f.factoryPSK),
			expectCurrent(f.factoryPSK),
			expectLog("key update must be repeated"),
			connect(true, connected),
			expectState(func(s State) string {
				if s.HasBackupPSK || s.HasMainPSK {
					return "want no backup and main still the factory key"
				}
				return ""
			}),
			reset(),
			boot(SlotFactory, 0, false),
			// The key update is tried again and succeeds this time.
			installCred(f.pskB, nil),
			reset(),
			boot(SlotBackup, 0, false),
			connect(true, connected),
			reset(),
			boot(SlotMain, 0, false),
			expectCurrent(f.pskB),
		}},
		{"backup rejected after an earlier swap falls back to that main", []step{
			installCred(f.pskB, nil),
			boot(SlotBackup, 0, false),
			connect(true, connected),
			installCred(f.pskC, nil),
			reset(),
			boot(SlotBackup, 0, false),
			connect(false, retry),
			expectNext(SlotMain, f.pskB),
		}},
		{"failure with main retries the same key", []step{
			boot(SlotFactory, 0, false),
			connect(false, retry),
			expectNext(SlotFactory, f.factoryPSK),
			connect(true, connected),
		}},
		{"power cut while installing the backup leaves the old main usable", []step{
			boot(SlotFactory, 0, false),
			connect(true, connected),
			armCut("set:psk_bak"),
			installCred(f.pskB, ErrPowerCut),
			expectState(func(s State) string {
				if !s.PoweredOff || s.HasBackupPSK || s.BackupPending {
					return "want off, no trace of the backup"
				}
				return ""
			}),
			bootErr(ErrPoweredOff),
			installCred(f.pskB, ErrPoweredOff),
			connect(true, failed),
			powerCycle(),
			boot(SlotFactory, 0, false),
			connect(true, connected),
			expectState(func(s State) string {
				if s.HasBackupPSK {
					return "no backup expected"
				}
				return ""
			}),
		}},
		{"power cut during the swap keeps the backup new", []step{
			installCred(f.pskB, nil),
			boot(SlotBackup, 0, false),
			armCut("set:psk_main"),
			connect(true, failed),
			powerCycle(),
			boot(SlotBackup, 0, false),
			connect(true, connected),
			reset(),
			boot(SlotMain, 0, false),
			expectCurrent(f.pskB),
		}},
		{"invalid backups are refused", []step{
			installBackup("", []byte("k"), ErrBadPSK),
			installBackup("id", nil, ErrBadPSK),
			installBackup("id", make([]byte, MaxPSKLen+1), ErrBadPSK),
			installBackup(strings.Repeat("i", MaxPSKIdentityLen+1), []byte("k"), ErrBadPSK),
			boot(SlotFactory, 0, false),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, f.pskCfg, tt.steps) })
	}
}

func TestCertRotation(t *testing.T) {
	f := newFixtures(t)
	ok := credPayload(t, f.rotated)
	failBoot := func() []step { return []step{connect(false, reboot), reset()} }
	tests := []struct {
		name  string
		cfg   func(Config) Config
		steps []step
	}{
		{"rotation confirmed on first success", nil, []step{
			boot(SlotFactory, 0, false),
			expectLog("Using factory certificates"),
			connect(true, connected),
			handleRotation(ok, nil),
			expectLog("New certificates"),
			expectCurrent(f.factoryCert), // until the reboot
			expectState(func(s State) string {
				if !s.RTC.RotationPending || !s.HasRotated || s.RotatedConfirmed {
					return "want a pending, unconfirmed rotated certificate"
				}
				return ""
			}),
			reset(),
			boot(SlotRotated, 1, false),
			expectLog("Found rotated certificates in NVS"),
			expectCurrent(f.rotated),
			expectState(func(s State) string {
				if s.RTC.RotationPending {
					return "RotationPending must clear at boot"
				}
				return ""
			}),
			connect(true, connected),
			expectLog("rotation confirmed"),
			expectState(func(s State) string {
				if !s.RotatedConfirmed || s.RTC.BootCount != 0 {
					return "want confirmed and boot counter 0"
				}
				return ""
			}),
			reset(),
			boot(SlotRotated, 0, false),
			// A confirmed certificate is never counted or dropped.
			connect(false, retry),
			reset(),
			boot(SlotRotated, 0, false),
			reset(),
			boot(SlotRotated, 0, false),
			reset(),
			boot(SlotRotated, 0, false),
			reset(),
			boot(SlotRotated, 0, false),
			expectCurrent(f.rotated),
		}},
		{"rotated certificate failing 3 boots falls back to factory on the 4th", nil, slicesConcat(
			[]step{boot(SlotFactory, 0, false), handleRotation(ok, nil), reset()},
			[]step{boot(SlotRotated, 1, false)}, failBoot(),
			[]step{boot(SlotRotated, 2, false)}, failBoot(),
			[]step{boot(SlotRotated, 3, false)},
			[]step{connect(false, reboot), expectLog("boot 3 of 3"), reset()},
			[]step{
				boot(SlotFactory, 0, true),
				expectLog("rotated certificate failed 3 boots, falling back to factory credentials"),
				expectCurrent(f.factoryCert),
				expectState(func(s State) string {
					if s.HasRotated || s.RTC.BootCount != 0 || !s.FellBack {
						return "rotated slot must be erased, counter zero"
					}
					return ""
				}),
				do("rotated keys are gone from the store", func(r *rig) {
					for _, k := range []string{KeyRotatedCert, KeyRotatedKey, KeyRotatedOK} {
						if _, ok := r.store.Get(k); ok {
							r.t.Errorf("%s still stored", k)
						}
					}
				}),
				connect(true, connected),
				reset(),
				boot(SlotFactory, 0, false),
			},
		)},
		{"boots that crash before reporting count too", nil, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false), reset(),
			boot(SlotRotated, 2, false), reset(),
			boot(SlotRotated, 3, false), reset(),
			boot(SlotFactory, 0, true),
		}},
		{"MaxRotatedFailures 1 falls back on the 2nd boot", func(c Config) Config { c.MaxRotatedFailures = 1; return c }, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false),
			expectLog("boot 1 of 1"),
			connect(false, reboot), reset(),
			boot(SlotFactory, 0, true),
			expectLog("failed 1 boots"),
		}},
		{"success on the 3rd boot confirms", nil, slicesConcat(
			[]step{handleRotation(ok, nil)},
			[]step{boot(SlotRotated, 1, false)}, failBoot(),
			[]step{boot(SlotRotated, 2, false)}, failBoot(),
			[]step{boot(SlotRotated, 3, false), connect(true, connected), reset(), boot(SlotRotated, 0, false)},
		)},
		{"power cycle clears the boot counter but not the store", nil, slicesConcat(
			[]step{handleRotation(ok, nil)},
			[]step{boot(SlotRotated, 1, false)}, failBoot(),
			[]step{boot(SlotRotated, 2, false), connect(false, reboot), powerCycle()},
			[]step{
				expectState(func(s State) string {
					if s.RTC != (RTC{}) || !s.HasRotated {
						return "want RTC zeroed and the rotated certificate still stored"
					}
					return ""
				}),
				boot(SlotRotated, 1, false), // counting starts over
			},
		)},
		{"a new rotation replaces a confirmed one and restarts the count", nil, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false),
			connect(true, connected),
			handleRotation(credPayload(t, f.rotated2), nil),
			reset(),
			boot(SlotRotated, 1, false),
			expectCurrent(f.rotated2),
		}},
		{"power cut during ApplyRotation leaves the old credential usable", nil, []step{
			boot(SlotFactory, 0, false),
			armCut("set:client_key"),
			handleRotation(ok, ErrPowerCut),
			expectState(func(s State) string {
				if !s.PoweredOff || s.HasRotated {
					return "want off and no rotated certificate"
				}
				return ""
			}),
			do("no rotated key in the store", func(r *rig) {
				if len(r.store.Keys()) != 0 {
					r.t.Errorf("store keys = %v", r.store.Keys())
				}
			}),
			powerCycle(),
			boot(SlotFactory, 0, false),
			connect(true, connected),
		}},
		{"power cut during a second rotation keeps the confirmed one", nil, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false),
			connect(true, connected),
			armCut("any"),
			handleRotation(credPayload(t, f.rotated2), ErrPowerCut),
			reset(), // power is back
			boot(SlotRotated, 0, false),
			expectCurrent(f.rotated),
			expectState(func(s State) string {
				if !s.RotatedConfirmed {
					return "want the earlier rotation still confirmed"
				}
				return ""
			}),
		}},
		{"power cut while erasing at fallback: the count restarts", nil, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false), reset(),
			boot(SlotRotated, 2, false), reset(),
			boot(SlotRotated, 3, false), reset(),
			armCut("delete:client_cert"),
			bootErr(ErrPowerCut),
			powerCycle(),
			boot(SlotRotated, 1, false),
		}},
		{"power cut while confirming: still unconfirmed afterwards", nil, []step{
			handleRotation(ok, nil),
			boot(SlotRotated, 1, false),
			armCut("set:client_ok"),
			connect(true, failed),
			powerCycle(),
			boot(SlotRotated, 1, false),
			connect(true, connected),
		}},
		{"unreadable rotated slot is erased at boot", nil, []step{
			do("corrupt the rotated slot", func(r *rig) {
				_ = r.store.Set(KeyRotatedCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
				_ = r.store.Set(KeyRotatedKey, []byte("nope"))
			}),
			boot(SlotFactory, 0, true),
			expectLog("unreadable"),
			expectState(func(s State) string {
				if s.HasRotated {
					return "want the slot erased"
				}
				return ""
			}),
		}},
		{"a PSK device can be moved to certificates and falls back to its PSK", func(c Config) Config { c.Factory = f.factoryPSK; return c }, []step{
			boot(SlotFactory, 0, false),
			handleRotation(ok, nil),
			reset(),
			boot(SlotRotated, 1, false), reset(),
			boot(SlotRotated, 2, false), reset(),
			boot(SlotRotated, 3, false), reset(),
			boot(SlotFactory, 0, true),
			expectCurrent(f.factoryPSK),
		}},
		{"connect before boot is an error", nil, []step{
			connect(true, failed),
			do("ErrNotBooted", func(r *rig) {
				if !errors.Is(r.dec.Err, ErrNotBooted) {
					r.t.Errorf("Err = %v", r.dec.Err)
				}
			}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.certCfg
			if tt.cfg != nil {
				cfg = tt.cfg(cfg)
			}
			run(t, cfg, tt.steps)
		})
	}
}

func slicesConcat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestMalformedRotationChangesNothing(t *testing.T) {
	f := newFixtures(t)
	certPEM := pemChain(f.rotated.CertChainDER)
	keyPEM := pemKey(t, f.rotated)
	otherKeyPEM := pemKey(t, f.rotated2)
	rawNewlines := fmt.Sprintf(`{"new_certificate": "%s", "new_private_key": "%s"}`, certPEM, keyPEM)
	doubleEscaped := rotationJSON(t, strings.ReplaceAll(certPEM, "\n", `\n`), keyPEM)
	noArmor := rotationJSON(t, strings.Join(strings.Split(certPEM, "\n")[1:3], "\n"), keyPEM)
	truncated := rotationJSON(t, certPEM+"-----BEGIN CERTIFICATE-----\nMIIB\n", keyPEM)
	encrypted := rotationJSON(t, certPEM, strings.Replace(keyPEM, "\n", "\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n", 1))
	wrongType := rotationJSON(t, mustPEMBlock(t, "PUBLIC KEY", []byte{1, 2, 3}), keyPEM)
	keyAsCert := rotationJSON(t, keyPEM, keyPEM)
	badDER := rotationJSON(t, mustPEMBlock(t, "CERTIFICATE", []byte("not DER")), keyPEM)
	badKeyDER := rotationJSON(t, certPEM, mustPEMBlock(t, "EC PRIVATE KEY", []byte("not DER")))

	tests := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"not JSON", []byte("rotate please"), ErrBadJSON},
		{"empty", nil, ErrBadJSON},
		{"truncated JSON", []byte(`{"new_certificate": "x`), ErrBadJSON},
		{"PEM with raw newlines inside the JSON string", []byte(rawNewlines), ErrBadJSON},
		{"top-level array", []byte(`[1,2]`), ErrBadJSON},
		{"missing key field", []byte(`{"new_certificate": "x"}`), ErrMissingField},
		{"missing cert field", []byte(`{"new_private_key": "x"}`), ErrMissingField},
		{"null field", []byte(`{"new_certificate": null, "new_private_key": "x"}`), ErrMissingField},
		{"number field", []byte(`{"new_certificate": 7, "new_private_key": "x"}`), ErrMissingField},
		{"PEM newlines escaped twice", doubleEscaped, ErrBadPEM},
		{"PEM without BEGIN/END", noArmor, ErrBadPEM},
		{"truncated second certificate", truncated, ErrBadPEM},
		{"wrong block type", wrongType, ErrBadPEM},
		{"key sent as certificate", keyAsCert, ErrBadPEM},
		{"certificate DER garbage", badDER, ErrBadCert},
		{"key DER garbage", badKeyDER, ErrBadPrivateKey},
		{"encrypted key", encrypted, ErrBadPrivateKey},
		{"empty key", rotationJSON(t, certPEM, ""), ErrBadPEM},
		{"mismatched key", rotationJSON(t, certPEM, otherKeyPEM), ErrKeyMismatch},
		{"too large", rotationJSON(t, certPEM+strings.Repeat(" ", MaxRotationPayload), keyPEM), ErrBadRotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRotation(tt.payload); !errors.Is(err, tt.want) || !errors.Is(err, ErrBadRotation) {
				t.Fatalf("ParseRotation err = %v, want %v and ErrBadRotation", err, tt.want)
			} else if strings.Contains(err.Error(), "MIG") || strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
				t.Errorf("error quotes key material: %v", err)
			}
			var before string
			run(t, f.certCfg, []step{
				boot(SlotFactory, 0, false),
				connect(true, connected),
				do("snapshot", func(r *rig) { before = image(t, r.store) }),
				handleRotation(tt.payload, tt.want),
				do("nothing changed", func(r *rig) {
					if image(t, r.store) != before {
						r.t.Error("store changed")
					}
					if s := r.dev.State(); s.RTC != (RTC{}) || s.PoweredOff || s.Slot != SlotFactory {
						r.t.Errorf("state changed: %s", s)
					}
				}),
				reset(),
				boot(SlotFactory, 0, false),
			})
		})
	}

	t.Run("ApplyRotation rejects a hand-built mismatched rotation", func(t *testing.T) {
		d := New(f.certCfg, nil)
		bad := Rotation{Credential: Credential{Kind: KindCert, CertChainDER: f.rotated.CertChainDER, KeyDER: f.rotated2.KeyDER}}
		if err := d.ApplyRotation(bad); !errors.Is(err, ErrKeyMismatch) || !errors.Is(err, ErrBadRotation) {
			t.Fatalf("ApplyRotation = %v", err)
		}
		if keys := d.Store().Keys(); len(keys) != 0 || d.RTC() != (RTC{}) {
			t.Fatalf("changed: keys %v rtc %+v", keys, d.RTC())
		}
	})
}

func TestNeedsRenewal(t *testing.T) {
	f := newFixtures(t)
	notAfter := t0.Add(365 * 24 * time.Hour) // factoryCert
	day := 24 * time.Hour
	tests := []struct {
		name        string
		renewBefore time.Duration
		factory     Credential
		now         time.Time
		boot        bool
		want        bool
	}{
		{"fresh certificate", 0, f.factoryCert, t0, true, false},
		{"31 days before expiry", 0, f.factoryCert, notAfter.Add(-31 * day), true, false},
		{"one second before the window", 0, f.factoryCert, notAfter.Add(-30*day - time.Second), true, false},
		{"exactly 30 days before (boundary)", 0, f.factoryCert, notAfter.Add(-30 * day), true, true},
		{"29 days before", 0, f.factoryCert, notAfter.Add(-29 * day), true, true},
		{"expired", 0, f.factoryCert, notAfter.Add(day), true, true},
		{"60-day window", 60 * day, f.factoryCert, notAfter.Add(-45 * day), true, true},
		{"PSK never", 0, f.factoryPSK, notAfter.Add(day), true, false},
		{"before boot", 0, f.factoryCert, notAfter.Add(day), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(Config{ID: "dev1", Factory: tt.factory, RenewBefore: tt.renewBefore}, nil)
			if tt.boot {
				d.Boot()
			}
			if got := d.NeedsRenewal(tt.now); got != tt.want {
				t.Fatalf("NeedsRenewal(%s) = %t, want %t", tt.now, got, tt.want)
			}
		})
	}

	t.Run("renewal window moves with the rotated certificate", func(t *testing.T) {
		d := New(f.certCfg, nil)
		d.Boot()
		now := notAfter.Add(-10 * day)
		if !d.NeedsRenewal(now) {
			t.Fatal("factory certificate should need renewal")
		}
		if dec := d.HandleRotation(credPayload(t, f.rotated)); !dec.Reboot {
			t.Fatalf("rotation: %+v", dec)
		}
		d.Reset()
		d.Boot()
		if d.NeedsRenewal(now) {
			t.Fatal("rotated certificate (2 years) should not need renewal")
		}
		if got := d.State().NotAfter; !got.Equal(t0.Add(2 * 365 * day)) {
			t.Fatalf("State.NotAfter = %s", got)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	d := New(Config{ID: "x"}, nil)
	c := d.Config()
	if c.MaxRotatedFailures != DefaultMaxRotatedFailures || c.RenewBefore != DefaultRenewBefore {
		t.Fatalf("defaults = %d %s", c.MaxRotatedFailures, c.RenewBefore)
	}
	if _, ok := d.Store().(*MemStore); !ok {
		t.Fatalf("nil store should become a MemStore, got %T", d.Store())
	}
	if !d.Current().IsZero() || d.State().Slot != SlotNone {
		t.Fatal("a new device has no plan before Boot")
	}
}

func TestInstallBackupPSKOnCertDevice(t *testing.T) {
	f := newFixtures(t)
	d := New(f.certCfg, nil)
	if err := d.InstallBackupPSK("a@b", []byte("k")); !errors.Is(err, ErrNotPSK) {
		t.Fatalf("err = %v", err)
	}
}

// TestLogsHoldNoSecrets runs the busiest scenarios and checks that no log
// line, error or state string carries a PSK or private key.
func TestLogsHoldNoSecrets(t *testing.T) {
	f := newFixtures(t)
	secrets := [][]byte{f.factoryPSK.PSK, f.pskB.PSK, f.factoryCert.KeyDER, f.rotated.KeyDER}
	r := run(t, f.pskCfg, []step{
		boot(SlotFactory, 0, false),
		installCred(f.pskB, nil),
		reset(),
		boot(SlotBackup, 0, false),
		connect(false, retry),
		installCred(f.pskB, nil),
		reset(),
		boot(SlotBackup, 0, false),
		connect(true, connected),
		handleRotation(credPayload(t, f.rotated), nil),
		reset(),
		boot(SlotRotated, 1, false),
		connect(false, reboot),
		reset(), boot(SlotRotated, 2, false), reset(), boot(SlotRotated, 3, false), reset(),
		boot(SlotMain, 0, true),
	})
	all := strings.Join(r.log, "\n") + r.dev.State().String() + fmt.Sprintf("%v %+v", r.plan, r.dec)
	for _, s := range secrets {
		assertNoSecret(t, all, s)
	}
}
