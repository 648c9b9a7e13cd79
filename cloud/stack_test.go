package cloud_test

import (
	"errors"
	"net"
	"testing"

	"github.com/pion/dtls/v3"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/sim"
)

// Each DTLS PSK stack completes a PSK handshake from credloop's simulated
// device, from credloop's own DTLS client and from pion's client; with
// "pion" credloop's PSK server is given none of them, with "credloop" it
// serves them all (every client offers GCM, CCM or CCM_8 first).
func TestDTLSPSKStacks(t *testing.T) {
	clients := []struct {
		name string
		dial func(t *testing.T, addr string, cred sim.Credential) net.Conn
	}{
		{"sim device", func(t *testing.T, addr string, cred sim.Credential) net.Conn {
			s, err := sim.Dial(ctxT(t), sim.DialOptions{Addr: addr, Credential: cred})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return nil
		}},
		{"credloop client", func(t *testing.T, addr string, cred sim.Credential) net.Conn {
			conn, err := dtlspsk.Dial(ctxT(t), addr, &dtlspsk.Config{Identity: cred.PSKIdentity, Key: cred.PSK})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return conn
		}},
		{"pion client", func(t *testing.T, addr string, cred sim.Credential) net.Conn {
			ra, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := dtls.ClientWithOptions(pc, ra,
				dtls.WithPSK(func([]byte) ([]byte, error) { return cred.PSK, nil }),
				dtls.WithPSKIdentityHint([]byte(cred.PSKIdentity)),
				dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CCM_8),
			)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			if err := conn.HandshakeContext(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			return conn
		}},
	}
	for _, tt := range []struct {
		stack     cloud.DTLSPSKStack
		own, pion uint64
	}{
		{"", 3, 0},
		{cloud.DTLSPSKCredloop, 3, 0},
		{cloud.DTLSPSKPion, 0, 3},
	} {
		name := string(tt.stack)
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			c, cred := pskCloud(t, cloud.Options{HTTPSAddr: "-", MQTTAddr: "-", DTLSPSKStack: tt.stack}, "0123456789abcdef")
			for _, cl := range clients {
				t.Run(cl.name, func(t *testing.T) {
					if conn := cl.dial(t, c.Addrs().CoAPS, cred); conn != nil {
						leanGet(t, conn, "hello")
					}
				})
			}
			if own, pion := cloud.CoAPHandshakes(c); own != tt.own || pion != tt.pion {
				t.Errorf("handshakes: credloop's PSK server %d, pion %d; want %d, %d", own, pion, tt.own, tt.pion)
			}
		})
	}
}

func TestDTLSPSKStackUnknown(t *testing.T) {
	_, err := cloud.New(cloud.Options{DTLSPSKStack: "openssl", HTTPSAddr: "-", MQTTAddr: "-"})
	if !errors.Is(err, cloud.ErrDTLSPSKStack) {
		t.Fatalf("New with stack %q: err = %v, want ErrDTLSPSKStack", "openssl", err)
	}
	const want = `cloud: unknown DTLS PSK stack "openssl": want "credloop" or "pion"`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	for in, want := range map[string]cloud.DTLSPSKStack{"": cloud.DTLSPSKCredloop, "credloop": cloud.DTLSPSKCredloop, "pion": cloud.DTLSPSKPion} {
		if got, err := cloud.ParseDTLSPSKStack(in); err != nil || got != want {
			t.Errorf("ParseDTLSPSKStack(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
