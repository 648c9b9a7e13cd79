//go:build linux

package esp32

import (
	"context"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/boards/esp32/nvs"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/hil"
	"github.com/credloop/credloop/internal/devicemodel"
)

// The console answers as ESP-IDF's console example and Golioth's settings
// shell do, through the pseudo-terminal and go.bug.st/serial.
func TestConsoleCommands(t *testing.T) {
	ctx := testCtx(t)
	b := startBoard(t, ctx, EmulatorOptions{FlashPath: flashPath(t)})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	b.expectLines(ctx, "No credentials") // nothing in flash, no factory certificate
	steps := []struct {
		line string
		want string // regexp over the answer
	}{
		{"frobnicate", `^Unrecognized command\n$`},
		{"", `^$`},
		{"   ", `^$`},
		{"nvs_get x i32", `E \(\d+\) cmd_nvs: ESP_ERR_NVS_NOT_FOUND\nCommand returned non-zero error code: 0x1 \(ERROR\)\n$`},
		{"nvs_set a u8 -v 255", `I \(\d+\) cmd_nvs: Value stored under key 'a'\n$`},
		{"nvs_get a u8", `^255\n$`},
		{"nvs_get a i32", `ESP_ERR_NVS_NOT_FOUND`}, // NVS looks values up by type
		{"nvs_set a u8 -v 256", `ESP_ERR_NVS_VALUE_TOO_LONG`},
		{"nvs_set b i8 --value=-128", `Value stored under key 'b'`},
		{"nvs_get b i8", `^-128\n$`},
		{"nvs_set c u32 -v0x10", `Value stored under key 'c'`},
		{"nvs_get c u32", `^16\n$`},
		{"nvs_set d i64 -v -9223372036854775808", `Value stored`},
		{"nvs_get d i64", `^-9223372036854775808\n$`},
		{"nvs_set e u16 -v abc", `ESP_ERR_INVALID_ARG`},
		{"nvs_set s str -v \"hello world\"", `Value stored under key 's'`},
		{"nvs_get s str", `^hello world\n$`},
		{"nvs_set bl blob -v 0102ABcd", `Value stored under key 'bl'`},
		{"nvs_get bl blob", `^0102abcd\n$`},
		{"nvs_set bl blob -v 012", `Blob data must contain even number of characters[\s\S]*ESP_ERR_NVS_TYPE_MISMATCH`},
		{"nvs_set bl blob -v zz", `Blob data contain invalid character`},
		{"nvs_set x float -v 1", `Type 'float' is undefined`},
		{"nvs_set x u8", `nvs_set: missing option -v\|--value=<value>\nCommand returned non-zero error code: 0x1`},
		{"nvs_set", `nvs_set: missing option <key>\nnvs_set: missing option <type>`},
		{"nvs_set a b c d", `unexpected argument "c"`},
		{"nvs_set 0123456789abcdef u8 -v 1", `ESP_ERR_NVS_KEY_TOO_LONG`},
		{"nvs_set my_key blob -v 00112233445566", `Value stored under key 'my_key'`},
		{"nvs_get my_key blob", `^<secret: 7 bytes, fp=[0-9a-f]{8}>\n$`}, // this firmware never prints a key
		{"nvs_erase a", `Value with key 'a' erased`},
		{"nvs_erase a", `ESP_ERR_NVS_NOT_FOUND`},
		{"nvs_list nvs", `namespace 'storage', key 'b', type 'i8' \n`},
		{"nvs_list nvs -t str", `^namespace 'storage', key 's', type 'str' \n$`},
		{"nvs_list spiffs", `ESP_ERR_NVS_PART_NOT_FOUND`},
		{"nvs_namespace certs", `Namespace set to 'certs'`},
		{"nvs_get b i8", `ESP_ERR_NVS_NOT_FOUND`}, // certs does not exist yet
		{"nvs_erase_namespace storage", `Namespace 'storage' was  erased`},
		{"nvs_list nvs -n storage", `No such entry was found`},
		{"settings", `usage:\n  settings get`},
		{"settings get golioth/psk-id", `^Setting not found\n$`},
		{"settings set golioth/psk-id dev1@acme", `^Setting golioth/psk-id saved\n$`},
		{"settings get golioth/psk-id", `^dev1@acme\n$`},
		{"settings get golioth/psk-id --json", `^\{"status": "success", "value": "dev1@acme"\}\n$`},
		{"settings set golioth/psk \"not so secret\"", `Setting golioth/psk saved`},
		{"settings get golioth/psk", `^<secret: 13 bytes, fp=` + devicemodel.Fingerprint([]byte("not so secret")) + `>\n$`},
		{"settings erase golioth/psk", `Erased key golioth/psk from NVS`},
		{"settings set foo/bar 1", `Unknown setting foo/bar`},
		{"settings frob golioth/psk", `usage:`},
		{"unterminated \"quote", `^$`},
		{"version", `IDF Version:v5\.2\.1`},
		{"help", `nvs_set  <key> <type> -v <value>\n  Set key-value pair in selected namespace\.`},
		{"info", `Device ID:            esp32-240ac4[0-9a-f]{6}\n[\s\S]*Golioth PSK:          \(not set\)`},
	}
	for _, st := range steps {
		t.Run(strings.ReplaceAll(st.line, "/", "_"), func(t *testing.T) {
			out, err := b.drv.Run(ctx, st.line)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(st.want).MatchString(out) {
				t.Errorf("%q answered %q, want /%s/", st.line, out, st.want)
			}
		})
	}
	// What the console wrote is in NVS.
	p, err := nvs.Read(b.emu.FlashImage())
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := p.Get("example", "g_psk_id"); !ok || it.Type != nvs.TypeString || string(it.Data) != "dev1@acme" {
		t.Errorf("example/g_psk_id = %+v", it)
	}
	if _, ok := p.Get("example", "g_psk"); ok {
		t.Error("example/g_psk not erased")
	}
}

// Raw input: a line longer than the console takes, control characters,
// backspace and arrow keys, \r\n line ends.
func TestConsoleInput(t *testing.T) {
	ctx := testCtx(t)
	b := startBoard(t, ctx, EmulatorOptions{})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if _, err := b.console.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Repeat("x", MaxLine+10) + "\r\n")
	b.expect(ctx, `E \(\d+\) console: command line too long`)
	write("nvs_set k u8 -v 7\x1b[A\r\n") // an arrow key is dropped
	b.expectLines(ctx, "Value stored under key 'k'")
	write("nvs_gex\x7ft k u8\r") // backspace
	b.expect(ctx, `\n7\n`)
	write("\x00\x01\x02\x03info\n")
	b.expectLines(ctx, "Device ID:")
	// Still answering.
	if out, err := b.drv.Run(ctx, "nvs_get k u8"); err != nil || out != "7\n" {
		t.Fatalf("nvs_get = %q, %v", out, err)
	}
}

// Golioth's PSK provisioned over the settings shell: the key is typed,
// but the board log shows its fingerprint; after the restart the board
// connects over CoAP/DTLS.
func TestConsoleProvisionPSK(t *testing.T) {
	ctx := testCtx(t)
	c := newCloud(t, ctx)
	if _, err := c.Registry.CreateDevice(ctx, "acme", "dev2"); err != nil {
		t.Fatal(err)
	}
	const psk = "another secret"
	if _, err := c.Registry.AddPSK(ctx, "acme", "dev2", "dev2@acme", []byte(psk)); err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, ctx, EmulatorOptions{FlashPath: flashPath(t), Cloud: c.endpoints()})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.drv.WaitOnline(ctx); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("WaitOnline without credentials = %v, want %v", err, ErrNoCredentials)
	}
	seq := c.mark(t)
	if err := b.drv.Provision(ctx, Credentials{PSKIdentity: registry.PSKIdentity("dev2", "acme"), PSK: []byte(psk)}); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "online line", b.online(ctx), "Golioth client connected (PSK-ID dev2@acme")
	c.event(t, seq, registry.Filter{Kind: "auth.psk", Outcome: registry.OutcomeOK, Device: "dev2"})
	log := b.log.String()
	if strings.Contains(log, psk) {
		t.Fatal("the PSK reached the board log")
	}
	wantContains(t, "board log", log, `settings set golioth/psk "<redacted fp=`+hil.Fingerprint([]byte(psk))+`>"`, "Setting golioth/psk saved")
}

func TestProvisionRefuses(t *testing.T) {
	ctx := testCtx(t)
	b := startBoard(t, ctx, EmulatorOptions{})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	cert, _ := issue(t, ca, "dev-x")
	other, _ := issue(t, ca, "dev-y")
	mismatched := Credentials{Chain: cert.Chain, KeyDER: other.KeyDER}
	tests := []struct {
		name string
		cr   Credentials
		drv  func() *Driver
		want error
	}{
		{"nothing", Credentials{}, nil, ErrNoCredentials},
		{"PSK that is not text", Credentials{PSKIdentity: "d@p", PSK: []byte{0, 1, 2, 3, 4, 5, 6}}, nil, ErrBadCredential},
		{"PSK without identity", Credentials{PSK: []byte("secret-key")}, nil, ErrBadCredential},
		{"PSK too short to redact", Credentials{PSKIdentity: "d@p", PSK: []byte("abc")}, nil, hil.ErrSecretTooShort},
		{"key does not match", mismatched, nil, ErrBadCredential},
		{"certificate without key", Credentials{Chain: cert.Chain}, nil, ErrBadCredential},
		{"no redactor", cert, func() *Driver { return &Driver{c: b.console} }, ErrNoRedactor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := b.drv
			if tt.drv != nil {
				d = tt.drv()
			}
			err := d.Provision(ctx, tt.cr)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Provision = %v, want %v", err, tt.want)
			}
			for _, secret := range [][]byte{tt.cr.PSK, tt.cr.KeyDER} {
				if len(secret) > 3 && strings.Contains(err.Error(), string(secret)) {
					t.Fatal("the error quotes a secret")
				}
			}
		})
	}
	// Nothing was sent: the console saw no command.
	if strings.Contains(b.log.String(), "> settings") || strings.Contains(b.log.String(), "> nvs_set") {
		t.Fatal("a refused Provision sent commands")
	}
}

// Close ends every goroutine of the emulator, also with the firmware
// connected and in the middle of its work.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ctx := testCtx(t)
	c := newCloud(t, ctx)
	ca := c.jitpCA(t)
	factory, _ := issue(t, ca, "dev-c")
	b := startBoard(t, ctx, EmulatorOptions{Cloud: c.endpoints(), Factory: factory})
	b.online(ctx)
	b.emu.PowerCycle()
	b.stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "boards/esp32.(*") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator goroutines left after Close:\n%s", stacks)
		}
		runtime.Gosched()
	}
}

func TestCloseIdempotent(t *testing.T) {
	e, err := StartEmulator(context.Background(), EmulatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e.PowerCycle() // after Close: returns at once
	e.CutPowerAt("any")
}

// A command the firmware refuses is a *CommandError naming the ESP-IDF
// error, matched by type rather than by its text.
func TestCommandError(t *testing.T) {
	ctx := testCtx(t)
	b := startBoard(t, ctx, EmulatorOptions{})
	if err := b.drv.WaitBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.command(ctx, "nvs_namespace certs", "nvs_namespace certs", `Namespace set to 'certs'`); err != nil {
		t.Fatal(err)
	}
	err := b.drv.command(ctx, "nvs_erase nokey", "nvs_erase nokey", `Value with key 'nokey' erased`)
	var ce *CommandError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCommand) || ce.Command != "nvs_erase nokey" {
		t.Fatalf("err = %v (%T)", err, err)
	}
	if !IsESPError(err, "ESP_ERR_NVS_NOT_FOUND") || IsESPError(err, "ESP_ERR_NVS_INVALID_NAME") || IsESPError(errors.New("ESP_ERR_NVS_NOT_FOUND"), "ESP_ERR_NVS_NOT_FOUND") {
		t.Fatalf("IsESPError on %v", err)
	}
	if want := "esp32: command failed: nvs_erase nokey: ESP_ERR_NVS_NOT_FOUND"; err.Error() != want {
		t.Fatalf("text = %q, want %q", err.Error(), want)
	}
}
