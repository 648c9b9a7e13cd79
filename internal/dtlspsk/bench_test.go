//go:build unix

package dtlspsk

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// helperEnv makes the test binary a pion echo server (for benchmarks that
// must not count the server's work): it prints its address, answers
// "usage" with its CPU time in ns, and exits when stdin closes.
const helperEnv = "DTLSPSK_PION_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(pionServerProcess())
	}
	os.Exit(m.Run())
}

func pionServerProcess() int {
	srv := startPion(&helperTB{}, pionConfig("dev1@proj", testKey))
	fmt.Println(srv.addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "usage" {
			fmt.Println(cpuTime().Nanoseconds())
		}
	}
	srv.close()
	return 0
}

// helperTB lets startPion run outside a test.
type helperTB struct{ testing.TB }

func (*helperTB) Helper()                   {}
func (*helperTB) Cleanup(func())            {}
func (*helperTB) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (*helperTB) Fatalf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...); os.Exit(1) }

// cpuTime is the user+system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverProcess is a pion server in a child process.
type serverProcess struct {
	cmd  *exec.Cmd
	in   *bufio.Writer
	out  *bufio.Scanner
	addr string
	stop func()
}

func startServerProcess(b *testing.B) *serverProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, in: bufio.NewWriter(stdin), out: bufio.NewScanner(stdout)}
	p.stop = func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	b.Cleanup(p.stop)
	if !p.out.Scan() {
		b.Fatal("server process printed no address")
	}
	p.addr = strings.TrimSpace(p.out.Text())
	return p
}

// usage asks the server process for its CPU time.
func (p *serverProcess) usage(b *testing.B) time.Duration {
	fmt.Fprintln(p.in, "usage")
	if err := p.in.Flush(); err != nil {
		b.Fatal(err)
	}
	if !p.out.Scan() {
		b.Fatal("server process gone")
	}
	ns, err := strconv.ParseInt(p.out.Text(), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(ns)
}

// dialFunc returns a dialer for suite; the configuration is built once,
// as a load generator would.
type dialFunc func(suite uint16) func(ctx context.Context, addr string) (net.Conn, error)

func dialOurs(suite uint16) func(ctx context.Context, addr string) (net.Conn, error) {
	cfg := &Config{Identity: "dev1@proj", Key: testKey, CipherSuites: []uint16{suite}}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return Dial(ctx, addr, cfg)
	}
}

func dialPion(suite uint16) func(ctx context.Context, addr string) (net.Conn, error) {
	opts := []dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return testKey, nil }),
		dtls.WithPSKIdentityHint([]byte("dev1@proj")),
		dtls.WithCipherSuites(dtls.CipherSuiteID(suite)),
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, err
		}
		c, err := dtls.DialWithOptions("udp", ua, opts...)
		if err != nil {
			return nil, err
		}
		if err := c.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
}

// BenchmarkHandshake is this client's handshake (dial, handshake,
// close_notify) against pion. With server=inprocess ns/op and allocs/op
// include the server's work; with server=subprocess allocs/op and
// client-cpu-ns/op are the client's alone and server-cpu-ns/op the
// server's.
func BenchmarkHandshake(b *testing.B) { benchHandshakes(b, dialOurs) }

// BenchmarkPionClientHandshake is the same with pion's client.
func BenchmarkPionClientHandshake(b *testing.B) { benchHandshakes(b, dialPion) }

func benchHandshakes(b *testing.B, dial dialFunc) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CCM_8} {
		name := map[uint16]string{TLS_PSK_WITH_AES_128_GCM_SHA256: "gcm", TLS_PSK_WITH_AES_128_CCM_8: "ccm8"}[suite]
		b.Run(name+"/server=inprocess", func(b *testing.B) {
			srv := startPion(b, pionConfig("dev1@proj", testKey))
			runHandshakes(b, dial(suite), srv.addr, nil)
		})
		b.Run(name+"/server=dtlspsk", func(b *testing.B) {
			srv := startOwn(b, ownConfig("dev1@proj", testKey))
			runHandshakes(b, dial(suite), srv.addr, nil)
		})
		b.Run(name+"/server=subprocess", func(b *testing.B) {
			p := startServerProcess(b)
			runHandshakes(b, dial(suite), p.addr, p)
		})
	}
}

func runHandshakes(b *testing.B, dial func(context.Context, string) (net.Conn, error), addr string, p *serverProcess) {
	// Warm up (pools, the server's goroutines).
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := dial(ctx, addr)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
	var server0 time.Duration
	if p != nil {
		server0 = p.usage(b)
	}
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := dial(ctx, addr)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			_ = c.Close()
		}
	})
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if p == nil {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		return
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "client-cpu-ns/op")
	b.ReportMetric(float64((p.usage(b)-server0).Nanoseconds())/float64(b.N), "server-cpu-ns/op")
}
