package nvs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVendorGenerator compares BuildCSV with Espressif's generator when
// python3 can import esp_idf_nvs_partition_gen (pip install
// esp-idf-nvs-partition-gen). It skips otherwise, even under CI: the
// module is not installed by .ci/run, and the hand-built vectors in
// writer_test.go are the reference.
func TestVendorGenerator(t *testing.T) {
	dir := t.TempDir()
	var sb strings.Builder
	sb.WriteString("key,type,encoding,value\n# every type\nexample,namespace,,\n")
	sb.WriteString("u8,data,u8,200\ni8,data,i8,-1\nu16,data,u16,48879\ni16,data,i16,-2\n")
	sb.WriteString("u32,data,u32,305419896\ni32,data,i32,-100000\nu64,data,u64,81985529216486895\ni64,data,i64,-2\n")
	sb.WriteString("g_psk_id,data,string,device-1@my-project\ng_psk,data,string,supersecret\n")
	sb.WriteString("blob5000,data,hex2bin," + strings.Repeat("a5", 5000) + "\n")
	sb.WriteString("b64,data,base64,aGVsbG8gd29ybGQ=\n")
	sb.WriteString("certs,namespace,,\nclient_cert,file,string,cert.pem\nclient_key,file,binary,key.der\n")
	for i := range 130 {
		sb.WriteString("n" + itoa(i) + ",data,u32," + itoa(i) + "\n")
	}
	sb.WriteString("example,namespace,,\nlast,data,string," + strings.Repeat("z", 3000) + "\n")
	files := map[string]string{
		"in.csv":   sb.String(),
		"cert.pem": "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("MIIB", 300) + "\n-----END CERTIFICATE-----\n",
		"key.der":  string(blobPattern(121)),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(filepath.Join(dir, "in.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := BuildCSV(f, CSVOptions{Dir: dir}, Options{Size: 0x8000})
	if err != nil {
		t.Fatal(err)
	}
	// The image reads back with every value in place.
	p, err := Read(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 145 || len(p.Namespaces) != 2 {
		t.Fatalf("%d items in %d namespaces", len(p.Items), len(p.Namespaces))
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, py, "-c", "import esp_idf_nvs_partition_gen").CombinedOutput(); err != nil {
		t.Skipf("python3 cannot import esp_idf_nvs_partition_gen: %s", strings.TrimSpace(string(out)))
	}
	cmd := exec.CommandContext(ctx, py, "-m", "esp_idf_nvs_partition_gen", "generate", "in.csv", "out.bin", "0x8000")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvs_partition_gen: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(dir, "out.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "image", got, want)
}
