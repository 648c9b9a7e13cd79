package cloud_test

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
)

// PSK clients are served by credloop's own DTLS server (internal/dtlspsk);
// these tests drive it with credloop's lean client in every suite, and
// check the alerts and events of each refusal.

// leanGet sends a CoAP CON GET /path over c and returns the piggybacked
// response.
func leanGet(t *testing.T, c net.Conn, path string) []byte {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := []byte{0x41, 0x01, 0x12, 0x34, 0xab, 0xb0 | byte(len(path))}
	req = append(req, path...)
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	resp := buf[:n]
	if n < 5 || resp[0] != 0x61 || resp[1] != 0x45 || !bytes.Equal(resp[2:5], req[2:5]) {
		t.Fatalf("response % x, want a piggybacked 2.05 for % x", resp, req[:5])
	}
	return resp
}

func TestLeanClientSuites(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{HTTPSAddr: "-", MQTTAddr: "-"}, "0123456789abcdef")
	for _, suite := range []uint16{dtlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256, dtlspsk.TLS_PSK_WITH_AES_128_CCM_8, dtlspsk.TLS_PSK_WITH_AES_128_CCM} {
		t.Run(dtlspsk.CipherSuiteName(suite), func(t *testing.T) {
			seq, _ := c.Registry.LastSeq(ctxT(t))
			conn, err := dtlspsk.Dial(ctxT(t), c.Addrs().CoAPS, &dtlspsk.Config{Identity: cred.PSKIdentity, Key: cred.PSK, CipherSuites: []uint16{suite}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.State(); got.CipherSuite != suite || !got.ExtendedMasterSecret {
				t.Errorf("state = %+v", got)
			}
			if resp := leanGet(t, conn, "hello"); !bytes.Contains(resp, []byte(`"device":"dev1"`)) {
				t.Errorf("hello body does not name the device: %q", resp)
			}
			ev := waitEvent(t, c, registry.Filter{Kind: "auth.psk", AfterSeq: seq})
			if ev.Outcome != registry.OutcomeOK || ev.Credential != "dev1@acme" {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func TestLeanClientRefused(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{HTTPSAddr: "-", MQTTAddr: "-"}, "0123456789abcdef")
	ctx := ctxT(t)
	if _, err := c.Registry.CreateDevice(ctx, "acme", "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.AddPSK(ctx, "acme", "off", "off@acme", cred.PSK); err != nil {
		t.Fatal(err)
	}
	if err := c.Registry.SetDeviceDisabled(ctx, "acme", "off", true); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, identity string
		key            []byte
		alert          dtlspsk.AlertDescription
		reason         string
	}{
		// The cloud tells a client whose Finished does not decrypt at once.
		{"wrong key", "dev1@acme", []byte("not the key"), dtlspsk.AlertBadRecordMAC, "psk mismatch: the client's Finished did not decrypt with the registered key"},
		{"unknown identity", "ghost@acme", cred.PSK, dtlspsk.AlertUnknownPSKIdentity, "psk identity unknown"},
		{"malformed identity", "no-at-sign", cred.PSK, dtlspsk.AlertUnknownPSKIdentity, "psk identity malformed: want <device-id>@<project-id>"},
		{"disabled device", "off@acme", cred.PSK, dtlspsk.AlertAccessDenied, "device disabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seq, _ := c.Registry.LastSeq(ctxT(t))
			_, err := dtlspsk.Dial(ctxT(t), c.Addrs().CoAPS, &dtlspsk.Config{Identity: tt.identity, Key: tt.key})
			var ae *dtlspsk.AlertError
			if !errors.As(err, &ae) || ae.Level != dtlspsk.AlertFatal || ae.Description != tt.alert {
				t.Fatalf("err = %v, want a fatal %s", err, tt.alert)
			}
			ev := waitEvent(t, c, registry.Filter{Kind: "auth.psk", AfterSeq: seq})
			if ev.Outcome != registry.OutcomeFail || ev.Reason != tt.reason {
				t.Errorf("event %+v, want reason %q", ev, tt.reason)
			}
		})
	}
	// The refusals cost the endpoint nothing: a good client still gets in.
	conn, err := dtlspsk.Dial(ctxT(t), c.Addrs().CoAPS, &dtlspsk.Config{Identity: cred.PSKIdentity, Key: cred.PSK})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leanGet(t, conn, "hello")
}

// A client that offers a certificate suite before its PSK suites is
// served by pion, which picks the same suite it always did; one whose
// first acceptable offer is PSK by credloop's server. Either way the
// session works and the suite is the client's first acceptable offer.
func TestPSKSuiteChoiceUnchanged(t *testing.T) {
	c, cred := pskCloud(t, cloud.Options{HTTPSAddr: "-", MQTTAddr: "-"}, "0123456789abcdef")
	for _, tt := range []struct {
		name   string
		suites []dtls.CipherSuiteID
		want   dtls.CipherSuiteID
	}{
		{"psk only", []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8}, dtls.TLS_PSK_WITH_AES_128_CCM_8},
		{"CBC first (pion)", []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CBC_SHA256, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256}, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256},
		{"GCM first", []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256}, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ra, err := net.ResolveUDPAddr("udp", c.Addrs().CoAPS)
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
				dtls.WithCipherSuites(tt.suites...),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.HandshakeContext(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			st, _ := conn.ConnectionState()
			if st.CipherSuiteID != tt.want {
				t.Errorf("suite %s, want %s", st.CipherSuiteID, tt.want)
			}
			leanGet(t, conn, "hello")
		})
	}
}
