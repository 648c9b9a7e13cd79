package cloud_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/credloop/credloop/cloud"
	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/dtlspsk"
	"github.com/credloop/credloop/internal/fakeca"
)

// Each PSK check outcome ends the handshake with the same alert and the
// same event reason whichever DTLS stack serves it.
func TestPSKRefusalsOnBothStacks(t *testing.T) {
	for _, stack := range []cloud.DTLSPSKStack{cloud.DTLSPSKCredloop, cloud.DTLSPSKPion} {
		t.Run(string(stack), func(t *testing.T) {
			c, cred := pskCloud(t, cloud.Options{HTTPSAddr: "-", MQTTAddr: "-", DTLSPSKStack: stack}, "0123456789abcdef")
			ctx := ctxT(t)
			for _, d := range []string{"off", "idle"} {
				if _, err := c.Registry.CreateDevice(ctx, "acme", d); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Registry.AddPSK(ctx, "acme", "off", "off@acme", cred.PSK); err != nil {
				t.Fatal(err)
			}
			if err := c.Registry.SetDeviceDisabled(ctx, "acme", "off", true); err != nil {
				t.Fatal(err)
			}
			idle, err := c.Registry.AddPSK(ctx, "acme", "idle", "idle@acme", cred.PSK)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Registry.SetCredentialState(ctx, idle.ID, registry.StateInactive); err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				name, identity string
				key            []byte
				alert          dtlspsk.AlertDescription
				reason         string
			}{
				{"wrong key", "dev1@acme", []byte("not the key"), dtlspsk.AlertBadRecordMAC, "psk mismatch: the client's Finished did not decrypt with the registered key"},
				{"unknown identity", "ghost@acme", cred.PSK, dtlspsk.AlertUnknownPSKIdentity, "psk identity unknown"},
				{"malformed identity", "no-at-sign", cred.PSK, dtlspsk.AlertUnknownPSKIdentity, "psk identity malformed: want <device-id>@<project-id>"},
				{"disabled device", "off@acme", cred.PSK, dtlspsk.AlertAccessDenied, "device disabled"},
				{"inactive credential", "idle@acme", cred.PSK, dtlspsk.AlertAccessDenied, "psk credential INACTIVE"},
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
		})
	}
}

// alertSniffer is a client's socket that remembers the first fatal alert
// record of epoch 0 the server sent.
type alertSniffer struct {
	net.PacketConn
	mu    sync.Mutex
	alert int // -1: none yet
}

func (a *alertSniffer) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := a.PacketConn.ReadFrom(b)
	if n >= 15 && b[0] == 21 && b[3] == 0 && b[4] == 0 && b[13] == 2 {
		a.mu.Lock()
		if a.alert < 0 {
			a.alert = int(b[14])
		}
		a.mu.Unlock()
	}
	return n, addr, err
}

// Each certificate check outcome ends the handshake with its own alert
// (pion serves certificates on either stack) and records its reason.
func TestCertificateRefusalAlerts(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	c := newCloud(t, cloud.Options{Now: clock, HTTPSAddr: "-", MQTTAddr: "-"})
	ctx := ctxT(t)
	reg := c.Registry
	if _, err := reg.CreateProject(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	own, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.TrustRoot(ctx, "acme", own.Root.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	untrusted, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *fakeca.Authority, cn, org string, nb, na time.Time) tls.Certificate {
		cert, key, err := a.Issuing.IssueWith(fakeca.Template{CN: cn, Org: org, NotBefore: nb, NotAfter: na})
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw, a.Issuing.Cert.Raw}, PrivateKey: key}
	}
	valid := func(a *fakeca.Authority, cn, org string) tls.Certificate {
		return issue(a, cn, org, now.Add(-time.Hour), now.Add(24*time.Hour))
	}
	revoked := valid(own, "dev-r", "acme")
	leaf, _ := fakeca.ParseChain(revoked.Certificate)
	if _, err := reg.CreateDevice(ctx, "acme", "dev-off"); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetDeviceDisabled(ctx, "acme", "dev-off", true); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, fakeca.Fingerprint(own.Issuing.Cert.Raw), fmt.Sprintf("%X", leaf[0].SerialNumber), 1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		cert   tls.Certificate
		alert  dtlspsk.AlertDescription
		reason string // the event's reason starts with it
	}{
		{"revoked", revoked, dtlspsk.AlertCertificateRevoked, "certificate revoked"},
		{"expired", issue(own, "dev-x", "acme", now.Add(-48*time.Hour), now.Add(-24*time.Hour)), dtlspsk.AlertCertificateExpired, "certificate rejected: fakeca: certificate expired"},
		{"not yet valid", issue(own, "dev-y", "acme", now.Add(24*time.Hour), now.Add(48*time.Hour)), dtlspsk.AlertCertificateExpired, "certificate rejected: fakeca: certificate not yet valid"},
		{"untrusted root", valid(untrusted, "dev-u", "acme"), dtlspsk.AlertUnknownCA, "certificate rejected: signed by an untrusted root"},
		{"disabled device", valid(own, "dev-off", "acme"), dtlspsk.AlertAccessDenied, "device disabled"},
		{"unknown project", valid(own, "dev-p", "nope"), dtlspsk.AlertBadCertificate, "unknown project nope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seq, _ := reg.LastSeq(ctx)
			ra, err := net.ResolveUDPAddr("udp", c.Addrs().CoAPS)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			sniff := &alertSniffer{PacketConn: pc, alert: -1}
			conn, err := dtls.ClientWithOptions(sniff, ra,
				dtls.WithCertificates(tt.cert),
				dtls.WithInsecureSkipVerify(true),
				dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.HandshakeContext(ctxT(t)); err == nil {
				t.Fatal("handshake succeeded")
			}
			sniff.mu.Lock()
			got := sniff.alert
			sniff.mu.Unlock()
			if got != int(tt.alert) {
				t.Errorf("alert %s, want %s", dtlspsk.AlertDescription(got), tt.alert)
			}
			ev := waitEvent(t, c, registry.Filter{Kind: "auth.cert", Outcome: "fail", AfterSeq: seq})
			if !strings.HasPrefix(ev.Reason, tt.reason) {
				t.Errorf("reason %q, want it to start with %q", ev.Reason, tt.reason)
			}
		})
	}
}
