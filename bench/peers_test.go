package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/peer"
	"github.com/credloop/credloop/sim"
)

func hexKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(hex.EncodeToString(b))
}

// tinyRun drives w for 300 ms at concurrency 2 and checks it made
// operations without errors and sampled the server's CPU.
func tinyRun(t *testing.T, ctx context.Context, w *Workload, serverCPU func() (time.Duration, error)) *Result {
	t.Helper()
	r, err := Run(ctx, Options{Workload: w.Name, Concurrency: 2, Duration: 300 * time.Millisecond,
		Timeout: 5 * time.Second, Op: w.Op, ServerCPU: serverCPU})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops == 0 || r.ErrorCount() != 0 {
		t.Fatalf("ops %d, errors %v", r.Ops, r.Errors)
	}
	if !r.ServerMeasured || r.ServerCPUSeconds < 0 {
		t.Fatalf("server CPU not measured: %v %v", r.ServerMeasured, r.ServerCPUSeconds)
	}
	return r
}

// checkGone closes a peer and checks its process and files are gone.
func checkGone(t *testing.T, p *Peer) {
	t.Helper()
	pid, dir := p.Pid(), p.proc.dir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("peer dir: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("peer dir %s not removed: %v", dir, err)
	}
	if err := p.Close(); err != nil { // idempotent
		t.Fatalf("second close: %v", err)
	}
}

func TestCoAPServerPeer(t *testing.T) {
	peer.Require(t, CoAPServerBinary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds := []sim.Credential{
		{PSKIdentity: "side-a@bench", PSK: hexKey(t)},
		{PSKIdentity: "side-b@bench", PSK: hexKey(t)},
	}
	p, err := StartCoAPServer(ctx, PeerOptions{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.Name != CoAPServerBinary {
		t.Fatalf("peer %q at %q", p.Name, p.Addr)
	}
	// The key is in a 0600 file, not on the command line.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/cmdline")
	if err == nil && strings.Contains(string(cmdline), string(creds[0].PSK)) {
		t.Fatal("PSK on the command line")
	}
	if st, err := os.Stat(p.proc.dir + "/identities"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", st, err)
	}

	w, err := Prepare(ctx, WorkloadDTLSPSK, WorkloadOptions{Target: p.Addr, PSKIdentity: creds[1].PSKIdentity, PSK: creds[1].PSK, Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	tinyRun(t, ctx, w, p.CPU)
	if err := probeCoAP(ctx, p.Addr, sim.Credential{PSKIdentity: creds[0].PSKIdentity, PSK: []byte("wrong")}); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	checkGone(t, p)
}

func TestMosquittoPeer(t *testing.T) {
	peer.Require(t, MosquittoBinary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, err := cloud.NewCA(cloud.CAOptions{Name: "peer test device CA", NoIntermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartMosquitto(ctx, MosquittoOptions{ClientCA: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.RootCAs == nil || p.ServerName != "localhost" {
		t.Fatalf("peer roots %v name %q", p.RootCAs, p.ServerName)
	}
	wo := WorkloadOptions{Target: p.Addr, RootCAs: p.RootCAs, ServerName: p.ServerName, ClientCA: ca, Devices: 4}
	w, err := Prepare(ctx, WorkloadMQTTMTLS, wo)
	if err != nil {
		t.Fatal(err)
	}
	tinyRun(t, ctx, w, p.CPU)

	// A device certificate from another CA is refused (when Prepare or
	// the operation connects).
	wo.ClientCA = nil
	if other, err := Prepare(ctx, WorkloadMQTTMTLS, wo); err == nil {
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		defer ocancel()
		if err := other.Op(octx, 0); err == nil {
			t.Fatal("a certificate from an unknown CA got CONNACK")
		}
	}
	checkGone(t, p)
}

func TestPeerErrors(t *testing.T) {
	ctx := context.Background()
	_, err := StartCoAPServer(ctx, PeerOptions{Binary: "credloop-no-such-program", Credentials: []sim.Credential{{PSKIdentity: "a", PSK: []byte("b")}}})
	if !errors.Is(err, ErrPeer) || err.Error() != "bench: credloop-no-such-program not found: install libcoap3-bin" {
		t.Fatalf("missing coap-server: %v", err)
	}
	_, err = StartMosquitto(ctx, MosquittoOptions{Binary: "credloop-no-such-program"})
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "not found: install mosquitto") {
		t.Fatalf("missing mosquitto: %v", err)
	}
	if _, err := FindPeer("nope"); !errors.Is(err, ErrOptions) {
		t.Fatalf("unknown peer: %v", err)
	}
	if _, err := FindPeer(CoAPServerBinary); err != nil {
		return // the option checks below need the program
	}
	for _, creds := range [][]sim.Credential{
		nil,
		{{PSKIdentity: "a,b", PSK: []byte("k")}},
		{{PSKIdentity: "a", PSK: []byte("k y")}},
		{{PSKIdentity: "", PSK: []byte("k")}},
	} {
		_, err := StartCoAPServer(ctx, PeerOptions{Credentials: creds})
		if !errors.Is(err, ErrOptions) {
			t.Errorf("credentials %q: %v", creds, err)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1234 (mosquitto) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 200", 10, true},
		{"99 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0", 300, true},
		{"1 (x) S 1 2 3", 0, false},
		{"no parens", 0, false},
		{"1 (x) S 1 2 3 4 5 6 7 8 9 10 -1 5", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %d, %v; want %d ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	if _, err := parseProcStat(b); err != nil {
		t.Fatalf("/proc/self/stat: %v", err)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1234 (mosquitto) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0"))
	f.Add([]byte("1 ((() S 1 2 3 4 5 6 7 8 9 10 18446744073709551615 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseProcStat(b); err == nil && v > 2<<40 {
			t.Fatalf("%d ticks accepted", v)
		}
	})
}

func TestParseStatusKiB(t *testing.T) {
	status := []byte("Name:\tcredloop\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
	if got := parseStatusKiB(status, "VmRSS:"); got != 1024*1024 {
		t.Errorf("VmRSS %d", got)
	}
	if got := parseStatusKiB(status, "VmHWM:"); got != 2048*1024 {
		t.Errorf("VmHWM %d", got)
	}
	for _, bad := range []string{"VmRSS: 12 MB\n", "VmRSS: x kB\n", "VmRSS:\n", ""} {
		if got := parseStatusKiB([]byte(bad), "VmRSS:"); got != 0 {
			t.Errorf("%q: %d", bad, got)
		}
	}
}

func FuzzParseStatusKiB(f *testing.F) {
	f.Add([]byte("VmHWM:\t  1234 kB\n"), "VmHWM:")
	f.Add([]byte("VmRSS: 99999999999999999999 kB\n"), "VmRSS:")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		if v := parseStatusKiB(b, key); v%1024 != 0 {
			t.Fatalf("%d is not whole KiB", v)
		}
	})
}

func TestFirstLine(t *testing.T) {
	f := &firstLine{ch: make(chan []byte, 1)}
	for _, s := range []string{`{"event":`, `"ready"}` + "\r\nlog line\n", "more\n"} {
		if n, err := f.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d %v", s, n, err)
		}
	}
	if got := string(<-f.ch); got != `{"event":"ready"}` {
		t.Fatalf("first line %q", got)
	}
	big := &firstLine{ch: make(chan []byte, 1)}
	_, _ = big.Write(make([]byte, maxReadyLine+1))
	if got := <-big.ch; len(got) != maxReadyLine {
		t.Fatalf("unbounded line: %d", len(got))
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	_, _ = b.Write([]byte("0123456789"))
	_, _ = b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Fatalf("tail %q", got)
	}
}
