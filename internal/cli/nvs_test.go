package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credloop/credloop/boards/esp32/nvs"
)

// The usage example of `nvs build`: Golioth PSK keys and the ESP32 rotation example's
// rotated certificate and key.
const nvsTestCSV = `key,type,encoding,value
example,namespace,,
g_psk_id,data,string,device-1@my-project
g_psk,data,string,my-psk-s3cr3t
w_ssid,data,string,lab-wifi
w_pass,data,string,lab-password
certs,namespace,,
client_cert,file,string,device.crt.pem
client_key,file,string,device.key.pem
`

func nvsTestDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"nvs.csv":        nvsTestCSV,
		"device.crt.pem": "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n",
		"device.key.pem": "-----BEGIN EC PRIVATE KEY-----\nMHcKEYs3cr3t\n-----END EC PRIVATE KEY-----\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNVSBuildDump(t *testing.T) {
	dir := nvsTestDir(t)
	bin := filepath.Join(dir, "nvs.bin")
	r := mustCLI(t, "nvs", "build", "--csv", filepath.Join(dir, "nvs.csv"), "--size", "0x6000", "-o", bin, "--base", dir)
	if !strings.Contains(r.stdout, "0x6000 bytes, 2 namespaces, 6 keys, 1 of 5 data pages used") {
		t.Fatalf("build output:\n%v", r)
	}
	img, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o600 {
		t.Errorf("image mode %v", fi.Mode())
	}
	p, err := nvs.Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := p.Get("certs", "client_key"); !ok || !strings.Contains(string(it.Data), "MHcKEYs3cr3t") || it.Type != nvs.TypeString {
		t.Fatalf("client_key %+v", it)
	}

	dump := mustCLI(t, "nvs", "dump", bin)
	for _, want := range []string{`namespace "example" (index 1)`, `namespace "certs" (index 2)`, "w_ssid", `"lab-wifi"`, "client_cert", "BEGIN CERTIFICATE", "ACTIVE"} {
		if !strings.Contains(dump.stdout, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump.stdout)
		}
	}
	js := mustCLI(t, "nvs", "dump", "--json", bin)
	for _, out := range []cliResult{r, dump, js} {
		for _, secret := range []string{"my-psk-s3cr3t", "lab-password", "MHcKEYs3cr3t"} {
			if strings.Contains(out.stdout+out.stderr, secret) {
				t.Fatalf("output shows secret %q:\n%v", secret, out)
			}
		}
	}
	if !strings.Contains(dump.stdout, "<13 bytes fp="+nvs.Fingerprint([]byte("my-psk-s3cr3t"))+">") {
		t.Errorf("dump lacks the PSK's fingerprint:\n%s", dump.stdout)
	}
	var j struct {
		Namespaces []struct {
			Name  string
			Items []struct {
				Key      string
				Redacted bool
			}
		}
	}
	if err := json.Unmarshal([]byte(js.stdout), &j); err != nil || len(j.Namespaces) != 2 || !j.Namespaces[1].Items[1].Redacted {
		t.Fatalf("%v %+v", err, j)
	}
	shown := mustCLI(t, "nvs", "dump", bin, "--show-secrets", "--full")
	if !strings.Contains(shown.stdout, "my-psk-s3cr3t") || !strings.Contains(shown.stdout, "MHcKEYs3cr3t") {
		t.Fatalf("--show-secrets:\n%s", shown.stdout)
	}

	// Standard input and output.
	csvIn, _ := os.ReadFile(filepath.Join(dir, "nvs.csv"))
	r = runCLIIn(t, strings.NewReader(string(csvIn)), "nvs", "build", "--csv", "-", "-o", "-", "--base", dir)
	if r.code != 0 || r.stdout != string(img) || !strings.Contains(r.stderr, "wrote standard output") {
		t.Fatalf("build to stdout: exit %d, %d bytes, stderr %s", r.code, len(r.stdout), r.stderr)
	}
	r = runCLIIn(t, strings.NewReader(string(img)), "nvs", "dump", "-")
	if r.code != 0 || r.stdout != dump.stdout {
		t.Fatalf("dump from stdin:\n%v", r)
	}
}

func TestNVSErrors(t *testing.T) {
	dir := nvsTestDir(t)
	csvFile := filepath.Join(dir, "nvs.csv")
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("key,type,encoding,value\nexample,namespace,,\ng_psk,data,hex2bin,zz-s3cr3t!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.bin")
	failCLI(t, 2, []string{"missing --csv"}, "nvs", "build", "-o", out)
	failCLI(t, 2, []string{"missing -o"}, "nvs", "build", "--csv", csvFile)
	failCLI(t, 2, []string{"--size 0x2000"}, "nvs", "build", "--csv", csvFile, "-o", out, "--size", "0x2000")
	failCLI(t, 2, []string{"--size \"big\""}, "nvs", "build", "--csv", csvFile, "-o", out, "--size", "big")
	failCLI(t, 1, []string{"device.crt.pem"}, "nvs", "build", "--csv", csvFile, "-o", out) // files not found from the cwd
	r := failCLI(t, 1, []string{"bad.csv: nvs: bad CSV: line 3: key \"g_psk\": hex2bin value: not hex"}, "nvs", "build", "--csv", bad, "-o", out)
	if strings.Contains(r.stderr, "s3cr3t") {
		t.Fatalf("error shows the secret: %s", r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a failed build wrote the image")
	}
	failCLI(t, 2, []string{"missing image FILE"}, "nvs", "dump")
	failCLI(t, 2, []string{"unknown subcommand"}, "nvs", "frobnicate")

	bin := filepath.Join(dir, "nvs.bin")
	mustCLI(t, "nvs", "build", "--csv", csvFile, "-o", bin, "--base", dir)
	img, _ := os.ReadFile(bin)
	img[0x40+9] ^= 0xFF // a key byte of entry 0
	corrupt := filepath.Join(dir, "corrupt.bin")
	if err := os.WriteFile(corrupt, img, 0o600); err != nil {
		t.Fatal(err)
	}
	failCLI(t, 1, []string{"corrupt.bin: nvs: corrupt image: page 0 entry 0 (offset 0x40): entry CRC"}, "nvs", "dump", corrupt)
	failCLI(t, 1, []string{"not a positive multiple of 4096"}, "nvs", "dump", csvFile)

	for _, args := range [][]string{{"nvs", "--help"}, {"nvs", "build", "--help"}, {"nvs", "dump", "--help"}} {
		r := runCLI(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "Usage: credloop nvs") {
			t.Errorf("%v: %v", args, r)
		}
	}
	if r := runCLI(t, "nvs", "build", "--help"); !strings.Contains(r.stderr, "g_psk_id,data,string") || !strings.Contains(r.stderr, "client_key,file,string") {
		t.Errorf("build help lacks the Golioth example:\n%s", r.stderr)
	}
}
