package endpoint

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credloop/credloop/cloud/registry"
	"github.com/credloop/credloop/internal/fakeca"
)

func TestServerHosts(t *testing.T) {
	base := []string{"localhost", "127.0.0.1", "::1"}
	tests := []struct {
		name  string
		addr  string
		hosts []string
		want  []string
	}{
		{"loopback", "127.0.0.1:0", nil, append(slices.Clone(base), "127.0.0.1")},
		{"named host and extras", "lab.example:5684", []string{"gw.example", "10.0.0.7"}, append(slices.Clone(base), "gw.example", "10.0.0.7", "lab.example")},
		{"IPv6 host", "[fd00::1]:8883", nil, append(slices.Clone(base), "fd00::1")},
		{"IPv4 wildcard", "0.0.0.0:8883", []string{"gw.example"}, append(slices.Clone(base), "gw.example")},
		{"IPv6 wildcard", "[::]:8883", nil, base},
		{"no host", ":8883", nil, base},
		{"no port", "127.0.0.1", nil, base},
		{"empty", "", nil, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServerHosts(tt.addr, tt.hosts); !slices.Equal(got, tt.want) {
				t.Fatalf("ServerHosts(%q, %q) = %q, want %q", tt.addr, tt.hosts, got, tt.want)
			}
		})
	}
	t.Run("hosts not modified", func(t *testing.T) {
		hosts := make([]string, 1, 8)
		hosts[0] = "gw.example"
		_ = ServerHosts("lab.example:1", hosts)
		if got := hosts[:2]; got[1] != "" {
			t.Fatalf("ServerHosts wrote past the caller's slice: %q", got)
		}
	})
}

func TestServerCert(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := fakeca.Init(fakeca.ECDSAP256, fakeca.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ServerCert(a.Issuing, "lab.example:5684", []string{"10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if want := []string{"localhost", "lab.example"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs %q, want %q", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.0.0.7"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %q, want %q", ips, want)
	}
	if got := leaf.NotAfter.Sub(now); got != ServerCertValidity {
		t.Errorf("valid for %s after now, want %s", got, ServerCertValidity)
	}
	if err := leaf.CheckSignatureFrom(a.Issuing.Cert); err != nil {
		t.Errorf("not signed by the issuing CA: %v", err)
	}
	if err := leaf.VerifyHostname("lab.example"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("10.0.0.7"); err != nil {
		t.Error(err)
	}
}

func TestRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := registry.Open(":memory:", registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	Record(reg, log, registry.Event{Project: "p", Device: "d", Kind: "auth.test", Outcome: registry.OutcomeOK, Reason: "session established"})
	evs, err := reg.Events(ctx, registry.Filter{Kind: "auth.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Reason != "session established" {
		t.Fatalf("events %+v, want the one recorded", evs)
	}
	if logs.Len() != 0 {
		t.Errorf("logged %q for a recorded event", logs.String())
	}

	tests := []struct {
		name string
		reg  func() *registry.Registry
		e    registry.Event
		want string
	}{
		{"invalid event", func() *registry.Registry { return reg }, registry.Event{Kind: "auth.test", Outcome: "maybe"}, "kind=auth.test"},
		{"closed registry", func() *registry.Registry { _ = reg.Close(); return reg }, registry.Event{Kind: "auth.closed", Outcome: registry.OutcomeOK}, "kind=auth.closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			Record(tt.reg(), log, tt.e)
			if out := logs.String(); !strings.Contains(out, "record event") || !strings.Contains(out, tt.want) {
				t.Fatalf("log %q, want a record event error with %q", out, tt.want)
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "dev1", "dev1"},
		{"empty", "", ""},
		{"control characters", "dev\n1\x00\x7f\t", "dev?1???"},
		{"unicode kept", "dispositivo-ñ", "dispositivo-ñ"},
		{"long", strings.Repeat("a", 200), strings.Repeat("a", 128)},
		{"exactly 128", strings.Repeat("b", 128), strings.Repeat("b", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Printable(tt.in); got != tt.want {
				t.Fatalf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
