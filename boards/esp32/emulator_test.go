//go:build linux

package esp32

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/devicemodel"
	"github.com/credloop/credloop/internal/fakeca"
)

// A board flashed with an NVS image holding Golioth credentials
// (namespace example: g_psk_id, g_psk), as `credloop nvs build` writes
// it, connects over CoAP/DTLS with its PSK.
func TestNVSImagePSKConnect(t *testing.T) {
	const psk = "secret-key-0001"
	tests := []struct {
		name string
		enc  nvs.Type // how the image stores the key
	}{
		{"PSK as a string (nvs_set_str)", nvs.TypeString},
		{"PSK as a blob (hex2bin)", nvs.TypeBlob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c := newCloud(t, ctx)
			if _, err := c.Registry.CreateDevice(ctx, "acme", "dev1"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Registry.AddPSK(ctx, "acme", "dev1", "dev1@acme", []byte(psk)); err != nil {
				t.Fatal(err)
			}
			img, err := nvs.Build([]nvs.Item{
				{Namespace: "example", Key: "g_psk_id", Type: nvs.TypeString, Data: []byte("dev1@acme")},
				{Namespace: "example", Key: "g_psk", Type: tt.enc, Data: []byte(psk)},
				{Namespace: "example", Key: "w_ssid", Type: nvs.TypeString, Data: []byte("lab")},
			}, nvs.Options{Size: DefaultFlashSize})
			if err != nil {
				t.Fatal(err)
			}
			path := flashPath(t)
			if err := os.WriteFile(path, img, 0o600); err != nil { // "flashing"
				t.Fatal(err)
			}
			seq := c.mark(t)
			b := startBoard(t, ctx, EmulatorOptions{FlashPath: path, Cloud: c.endpoints()})
			if err := b.drv.WaitBoot(ctx); err != nil {
				t.Fatal(err)
			}
			line := b.online(ctx)
			wantContains(t, "online line", line, "Golioth client connected", "PSK-ID dev1@acme")
			ev := c.event(t, seq, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev1"})
			if ev.Project != "acme" {
				t.Errorf("event %+v", ev)
			}
			info := b.run(ctx, "info")
			wantContains(t, "info", info, "dev1@acme", "fp="+devicemodel.Fingerprint([]byte(psk)), "golioth-psk", "Online:               yes")
			// The firmware shows the key by fingerprint only; it was never
			// typed, so the redactor cannot have hidden it.
			if strings.Contains(b.log.String(), psk) {
				t.Error("the PSK reached the console")
			}
			// Booting from the image did not change it.
			if got, _ := os.ReadFile(path); !bytes.Equal(got, img) {
				t.Error("the flash image changed without a write")
			}
		})
	}
}

// Console provisioning of a certificate into NVS (namespace certs), a
// restart, MQTT with JITP; the flash survives an emulator restart; then a
// broken rotation from the cloud is stored, fails three boots and the
// board falls back to its factory certificate.
func TestConsoleProvisionRotationFallback(t *testing.T) {
	ctx := testCtx(t)
	c := newCloud(t, ctx)
	ca := c.jitpCA(t)
	factory, factoryCert := issue(t, ca, "dev-7")
	provisioned, provCert := issue(t, ca, "dev-7")
	fpFactory, fpProv := devicemodel.Fingerprint(factoryCert.Raw), devicemodel.Fingerprint(provCert.Raw)

	b := startBoard(t, ctx, EmulatorOptions{FlashPath: flashPath(t), Cloud: c.endpoints(), Factory: factory})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	b.expectLines(ctx, "No rotated certificates found. Using factory certificates.")
	wantContains(t, "online line", b.online(ctx), "MQTT client connected", "as dev-7", "factory certificate fp="+fpFactory)
	// The board is online once it has its CONNACK; the cloud records the
	// session right after. Mark the log past that event, so the waits
	// below see only what follows.
	seq := c.event(t, 0, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-7"}).Seq
	if err := b.drv.Provision(ctx, provisioned); err != nil {
		t.Fatal(err)
	}
	b.expectLines(ctx, "Found rotated certificates in NVS. Attempting to use them.")
	wantContains(t, "online line", b.online(ctx), "as dev-7", "NVS certificate fp="+fpProv)
	// JITP: the first connection registered the certificate, the retry
	// got in.
	c.event(t, seq, registry.Filter{Kind: registry.EventMQTTRegistered})
	ev := c.event(t, seq, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-7"})
	if ev.Credential != fakeca.Fingerprint(provCert.Raw) {
		t.Errorf("the cloud saw %s, want the provisioned certificate", ev.Credential)
	}
	// The key was typed on the console, but the log shows a fingerprint.
	kp, err := keyPEM(provisioned.KeyDER)
	if err != nil {
		t.Fatal(err)
	}
	log := strings.ToLower(b.log.String())
	for _, secret := range [][]byte{kp, []byte(hexString(kp)), provisioned.KeyDER} {
		if strings.Contains(log, strings.ToLower(string(secret))) {
			t.Fatal("the private key reached the board log")
		}
	}
	wantContains(t, "board log", b.log.String(), "<redacted fp=")

	// The flash survives an emulator restart.
	b.restart(ctx)
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "online line after emulator restart", b.online(ctx), "NVS certificate fp="+fpProv)
	seq = c.event(t, ev.Seq, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-7"}).Seq

	// A rotation the board cannot connect with: stored, three failed
	// boots, back to the factory certificate.
	if err := c.Rotate(ctx, "acme", "dev-7", cloud.RotateOptions{Mode: cloud.RotateKey, Broken: true}); err != nil {
		t.Fatal(err)
	}
	b.expectLines(ctx, "Certificate rotation command received.")
	b.expect(ctx, `New certificates \([0-9a-f]{8}\) stored in NVS\. Rebooting in 5 seconds`)
	for i := 1; i <= 3; i++ {
		b.expectLines(ctx, "rst:0xc (SW_CPU_RESET)", "Found rotated certificates in NVS. Attempting to use them.")
		b.expect(ctx, `rotated certificate [0-9a-f]{8} is unconfirmed: boot `+string(rune('0'+i))+` of 3`)
		b.expect(ctx, `E \(\d+\) mqtt_example: MQTT_EVENT_ERROR`)
	}
	b.expectLines(ctx, "rst:0xc (SW_CPU_RESET)",
		"rotated certificate failed 3 boots, falling back to factory credentials",
		"Using factory certificates.")
	wantContains(t, "online line after the fallback", b.online(ctx), "factory certificate fp="+fpFactory)
	c.event(t, seq, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeFail, Device: "dev-7"})
	ev = c.event(t, seq, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-7"})
	if ev.Credential != fakeca.Fingerprint(factoryCert.Raw) {
		t.Errorf("after the fallback the cloud saw %s, want the factory certificate", ev.Credential)
	}
	// The fallback erased the rotated certificate from NVS.
	p, err := nvs.Read(b.emu.FlashImage())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{devicemodel.KeyRotatedCert, devicemodel.KeyRotatedKey, devicemodel.KeyRotatedOK} {
		if _, ok := p.Get("certs", k); ok {
			t.Errorf("certs/%s still in NVS after the fallback", k)
		}
	}
	wantContains(t, "info", b.run(ctx, "info"), "Boot count (RTC):     0 of 3", "Credential in use:    factory cert fp="+fpFactory)
}

// A power cut while client_cert is written (by the console, or by the
// firmware storing a rotation) loses that write whole: after the board
// comes back, and after a further power cycle, the old certificate still
// connects.
func TestPowerCutDuringCredentialWrite(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, b *board, c *testCloud, next Credentials)
	}{
		{
			name: "console nvs_set client_cert",
			write: func(t *testing.T, b *board, c *testCloud, next Credentials) {
				err := b.drv.Provision(c.ctx, next)
				if !errors.Is(err, ErrBoardReset) || !strings.Contains(err.Error(), "POWERON_RESET") {
					t.Fatalf("Provision = %v, want %v (POWERON_RESET)", err, ErrBoardReset)
				}
			},
		},
		{
			name: "firmware stores a rotation",
			write: func(t *testing.T, b *board, c *testCloud, _ Credentials) {
				if err := c.Rotate(c.ctx, "acme", "dev-9", cloud.RotateOptions{Mode: cloud.RotateKey}); err != nil {
					t.Fatal(err)
				}
				// The handler's lines may or may not make it out before
				// the power goes: only the power-on is certain.
				b.expectLines(c.ctx, "rst:0x1 (POWERON_RESET)")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c := newCloud(t, ctx)
			ca := c.jitpCA(t)
			old, oldCert := issue(t, ca, "dev-9")
			next, _ := issue(t, ca, "dev-9")
			fpOld := devicemodel.Fingerprint(oldCert.Raw)

			// No factory certificate: the NVS one is all the board has.
			b := startBoard(t, ctx, EmulatorOptions{FlashPath: flashPath(t), Cloud: c.endpoints()})
			if err := b.drv.WaitBoot(ctx); err != nil {
				t.Fatal(err)
			}
			b.expectLines(ctx, "No credentials")
			if err := b.drv.Provision(ctx, old); err != nil {
				t.Fatal(err)
			}
			wantContains(t, "online line", b.online(ctx), "NVS certificate fp="+fpOld)
			before, _ := nvs.Read(b.emu.FlashImage())
			oldPEM, _ := before.Get("certs", devicemodel.KeyRotatedCert)

			seq := c.event(t, 0, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-9"}).Seq
			b.emu.CutPowerAt("set:" + devicemodel.KeyRotatedCert)
			tt.write(t, b, c, next)
			if err := b.drv.WaitBoot(ctx); err != nil {
				t.Fatal(err)
			}
			wantContains(t, "online line after the cut", b.online(ctx), "NVS certificate fp="+fpOld)
			ev := c.event(t, seq, registry.Filter{Kind: registry.EventAuthMQTT, Outcome: registry.OutcomeOK, Device: "dev-9"})
			if ev.Credential != fakeca.Fingerprint(oldCert.Raw) {
				t.Errorf("the cloud saw %s, want the old certificate", ev.Credential)
			}
			after, err := nvs.Read(b.emu.FlashImage())
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := after.Get("certs", devicemodel.KeyRotatedCert); !bytes.Equal(got.Data, oldPEM.Data) {
				t.Error("client_cert changed although its write lost power")
			}

			// And after a power cycle of our own.
			b.emu.PowerCycle()
			b.expectLines(ctx, "rst:0x1 (POWERON_RESET)")
			if err := b.drv.WaitBoot(ctx); err != nil {
				t.Fatal(err)
			}
			wantContains(t, "online line after a power cycle", b.online(ctx), "NVS certificate fp="+fpOld)
			wantContains(t, "info", b.run(ctx, "info"), "Boot count (RTC):     0 of 3", "confirmed=yes")
		})
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// The boot counter lives in RTC memory: it survives the console's
// restart but not a power cycle or an emulator restart. The board boots
// from an image that holds a certificate in NVS as the ESP32 rotation example's firmware
// writes it (PEM strings), with nowhere to connect.
func TestRTCBootCounter(t *testing.T) {
	ctx := testCtx(t)
	cr, cert := issue(t, newTestCA(t), "dev-r")
	kp, err := keyPEM(cr.KeyDER)
	if err != nil {
		t.Fatal(err)
	}
	img, err := nvs.Build([]nvs.Item{
		{Namespace: "certs", Key: "client_cert", Type: nvs.TypeString, Data: chainPEM([][]byte{cert.Raw})},
		{Namespace: "certs", Key: "client_key", Type: nvs.TypeString, Data: kp},
	}, nvs.Options{Size: DefaultFlashSize})
	if err != nil {
		t.Fatal(err)
	}
	path := flashPath(t)
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, ctx, EmulatorOptions{FlashPath: path})
	boot := func(n string) {
		t.Helper()
		b.expect(ctx, `rotated certificate [0-9a-f]{8} is unconfirmed: boot `+n+` of 3`)
		b.expectLines(ctx, "No MQTT broker URI configured")
	}
	steps := []struct {
		name string
		do   func()
		boot string
	}{
		{"first boot", func() {}, "1"},
		{"restart keeps the RTC", func() {
			if err := b.drv.Reset(ctx); err != nil {
				t.Fatal(err)
			}
		}, "2"},
		{"power cycle clears it", b.emu.PowerCycle, "1"},
		{"restart again", func() {
			if err := b.drv.Reset(ctx); err != nil {
				t.Fatal(err)
			}
		}, "2"},
		{"emulator restart clears it", func() { b.restart(ctx) }, "1"},
	}
	for _, st := range steps {
		st.do()
		boot(st.boot)
		wantContains(t, st.name, b.run(ctx, "info"), "Boot count (RTC):     "+st.boot+" of 3", "Device ID:            dev-r")
	}
}
