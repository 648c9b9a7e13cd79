package bench

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// BenchmarkPionPSKHandshake measures bare pion/dtls PSK handshakes (client
// and server in this process over loopback UDP, HelloVerifyRequest cookie
// included, no CoAP, no registry): the dependency's own limit that the
// dtls-psk workload is compared with in BENCHMARKS.md.
func BenchmarkPionPSKHandshake(b *testing.B) {
	psk := []byte("0123456789abcdef")
	ln, err := dtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)},
		dtls.WithPSK(func([]byte) ([]byte, error) { return psk, nil }),
		dtls.WithPSKIdentityHint([]byte("bench")),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
	)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if c.(*dtls.Conn).HandshakeContext(ctx) == nil {
					// Echo one record, then wait for the client's close.
					buf := make([]byte, 64)
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if n, err := c.Read(buf); err == nil {
						_, _ = c.Write(buf[:n])
						_, _ = c.Read(buf)
					}
				}
				_ = c.Close()
			}()
		}
	}()
	raddr := ln.Addr().(*net.UDPAddr)
	ccfg := []dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return psk, nil }),
		dtls.WithPSKIdentityHint([]byte("dev")),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := dtls.DialWithOptions("udp", raddr, ccfg...)
			if err != nil {
				b.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.HandshakeContext(ctx); err != nil {
				b.Error(err)
			} else if _, err := c.Write([]byte("ping")); err != nil {
				b.Error(err)
			} else if _, err := c.Read(make([]byte, 64)); err != nil {
				b.Error(err)
			}
			cancel()
			_ = c.Close()
		}
	})
	b.StopTimer()
	_ = ln.Close()
	wg.Wait()
}
