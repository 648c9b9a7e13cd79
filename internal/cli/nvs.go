package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/credloop/credloop/boards/esp32/nvs"
)

func init() {
	register(command{name: "nvs", summary: "build and inspect ESP32 NVS partition images", run: runNVS})
}

const nvsUsage = `
Usage: credloop nvs <subcommand> [flags]

Build and inspect ESP-IDF NVS (non-volatile storage) partition images, the
format ESP32 firmware reads with nvs_get_str, nvs_get_blob and friends.
Images are format version 2 and byte for byte what Espressif's
nvs_partition_gen.py makes from the same CSV file; credloop does not need
Python.

Subcommands:
  build    make an image from a CSV file (nvs_partition_gen's format)
  dump     show the namespaces, keys and values of an image

Examples:
  credloop nvs build --csv nvs.csv --size 0x6000 -o nvs.bin
  credloop nvs dump nvs.bin

Run 'credloop nvs <subcommand> --help' for its flags and examples.
`

func runNVS(ctx context.Context, env *Env) error {
	return subcommands(ctx, env, "nvs", nvsUsage, map[string]func(context.Context, *Env) error{
		"build": nvsBuild,
		"dump":  nvsDump,
	})
}

const nvsBuildUsage = `
Usage: credloop nvs build --csv FILE [--size SIZE] -o FILE [--base DIR]

Make an NVS partition image from a CSV file in the format of ESP-IDF's
nvs_partition_gen.py. The first line names the columns:

  key,type,encoding,value

Lines starting with # are comments. type is namespace, data or file; the
first row must be a namespace, and the rows under it go into it. encoding
(data and file rows) is one of
  u8 i8 u16 i16 u32 i32 u64 i64   a decimal integer
  string                          a NUL-terminated string, at most 4000 bytes
  hex2bin base64 binary           a blob: hex, base64, or the bytes as they are
A file row's value is a path, relative to --base (default: the current
directory, as nvs_partition_gen); the file's content is encoded the same
way. Keys and namespace names are at most 15 characters; a key may appear
once per namespace.

--size is the partition size from your partition table: a multiple of
0x1000, at least 0x3000 (default 0x6000, the nvs partition of ESP-IDF's
default table). The last page stays blank for the firmware's garbage
collection. The image holds secrets: it is written with mode 0600.

Example: Golioth PSK credentials for the ESP-IDF samples (namespace
"example", keys g_psk_id and g_psk, plus the Wi-Fi keys w_ssid and w_pass)
and a certificate and key rotated into namespace "certs" (keys client_cert
and client_key, which the firmware reads with nvs_get_str). nvs.csv:

    key,type,encoding,value
    example,namespace,,
    g_psk_id,data,string,device-1@my-project
    g_psk,data,string,my-psk
    w_ssid,data,string,lab-wifi
    w_pass,data,string,lab-password
    certs,namespace,,
    client_cert,file,string,device.crt.pem
    client_key,file,string,device.key.pem

Then:

  credloop ca issue --dir ./lab --cn device-1 --org my-project --name device
  credloop nvs build --csv nvs.csv --size 0x6000 -o nvs.bin
  esptool.py --chip esp32 write_flash 0x9000 nvs.bin
  credloop nvs dump nvs.bin

ca issue writes device.crt.pem and device.key.pem (any PEM files will do);
0x9000 is the nvs partition's offset in ESP-IDF's default partition table.
`

func nvsBuild(_ context.Context, env *Env) error {
	fs := flagSet(env, "nvs build", nvsBuildUsage)
	csvFile := fs.String("csv", "", "CSV `FILE` to read (- for standard input)")
	sizeArg := fs.String("size", "0x6000", "partition `SIZE` in bytes, decimal or 0x hex")
	out := fs.String("o", "", "image `FILE` to write (- for standard output)")
	base := fs.String("base", "", "`DIR` that relative paths of file rows are resolved against (default: the current directory)")
	if _, err := parseArgs(fs, env.Args); err != nil {
		return err
	}
	if *csvFile == "" {
		return usageErr("missing --csv FILE")
	}
	if *out == "" {
		return usageErr("missing -o FILE (- for standard output)")
	}
	size, err := strconv.ParseInt(strings.TrimSpace(*sizeArg), 0, 64)
	if err != nil || size > 1<<30 {
		return usageErr("--size %q: want a number of bytes such as 0x6000 or 24576", *sizeArg)
	}
	if err := nvs.CheckSize(int(size)); err != nil {
		return usageErr("--size %s: a multiple of 0x1000, at least 0x3000", *sizeArg)
	}
	var in io.Reader
	if *csvFile == "-" {
		in = env.Stdin
	} else {
		f, err := os.Open(*csvFile)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	img, err := nvs.BuildCSV(io.LimitReader(in, 16<<20), nvs.CSVOptions{Dir: *base}, nvs.Options{Size: int(size)})
	if err != nil {
		if *csvFile != "-" {
			return fmt.Errorf("%s: %w", *csvFile, err)
		}
		return err
	}
	p, err := nvs.Read(img)
	if err != nil {
		return fmt.Errorf("the image built does not read back: %w", err)
	}
	var msg io.Writer
	if *out == "-" {
		if _, err := env.Stdout.Write(img); err != nil {
			return err
		}
		msg = env.Stderr
	} else {
		if err := writeFileAtomic(*out, img, 0o600); err != nil {
			return err
		}
		msg = env.Stdout
	}
	used := 0
	for _, pg := range p.Pages {
		if pg.State != nvs.StateEmpty {
			used++
		}
	}
	name := *out
	if name == "-" {
		name = "standard output"
	}
	fmt.Fprintf(msg, "wrote %s: 0x%x bytes, %d namespaces, %d keys, %d of %d data pages used (the last page stays blank)\n",
		name, len(img), len(p.Namespaces), len(p.Items), used, len(img)/nvs.PageSize-1)
	return nil
}

const nvsDumpUsage = `
Usage: credloop nvs dump FILE [--json] [--show-secrets] [--full]

Show an NVS partition image: its pages (state, sequence number, entries
used) and each namespace with its keys, types and values. Every CRC is
checked; a corrupt image is an error that names the page and entry.

Values of keys whose names contain "psk", "key", "pass" or "pwd" are
secrets: they show as <N bytes fp=XXXXXXXX> (the first 8 hex digits of the
value's SHA-256) unless --show-secrets. Long strings and blobs are cut to
64 bytes unless --full (--json always has them whole: strings as strings,
blobs in base64).

FILE may be - for standard input, an image read back from a board, say:
  esptool.py --chip esp32 read_flash 0x9000 0x6000 nvs-read.bin

Examples:
  credloop nvs dump nvs.bin
  credloop nvs dump nvs.bin --json
  credloop nvs dump nvs-read.bin --show-secrets --full
`

func nvsDump(_ context.Context, env *Env) error {
	fs := flagSet(env, "nvs dump", nvsDumpUsage)
	asJSON := fs.Bool("json", false, "print JSON")
	show := fs.Bool("show-secrets", false, "show the values of secret keys (psk, key, pass, pwd)")
	full := fs.Bool("full", false, "show long strings and blobs whole")
	pos, err := parseArgs(fs, env.Args, "image FILE")
	if err != nil {
		return err
	}
	const limit = 64 << 20
	var img []byte
	if pos[0] == "-" {
		if img, err = io.ReadAll(io.LimitReader(env.Stdin, limit+1)); err != nil {
			return err
		}
		if len(img) > limit {
			return errors.New("standard input is larger than 64 MiB")
		}
	} else if img, err = readInput(pos[0], limit); err != nil {
		return err
	}
	p, err := nvs.Read(img)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	opts := nvs.DumpOptions{ShowSecrets: *show, Full: *full}
	if *asJSON {
		return p.DumpJSON(env.Stdout, opts)
	}
	return p.Dump(env.Stdout, opts)
}
