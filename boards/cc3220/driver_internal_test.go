package cc3220

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	na := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		line string
		want Status
		err  bool
	}{
		{"online", "udid=U1 pubkey_fp=aabbccdd cert_fp=11223344 project=acme not_after=2027-01-02T03:04:05Z slot=provisioned mqtt=online connects=2 boot_count=1 future=x",
			Status{UDID: "U1", PublicKeyFP: "aabbccdd", CertFP: "11223344", Project: "acme", NotAfter: na, Slot: "provisioned", Online: true, Connects: 2, BootCount: 1}, false},
		{"not provisioned", "udid=U1 pubkey_fp=aabbccdd cert_fp=none project=- not_after=- slot=none mqtt=offline connects=0 boot_count=0",
			Status{UDID: "U1", PublicKeyFP: "aabbccdd", Slot: "none"}, false},
		{"no udid", "mqtt=online", Status{}, true},
		{"bad number", "udid=U1 connects=many", Status{}, true},
		{"bad time", "udid=U1 not_after=yesterday", Status{}, true},
		{"not key=value", "udid=U1 hello", Status{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatus(tc.line)
			if tc.err {
				if !errors.Is(err, ErrBadOutput) {
					t.Fatalf("err %v, want ErrBadOutput", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	good := string(encodePublicKeyPEM(der))
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"good", good, true},
		{"private key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", false},
		{"not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", false},
		{"nothing", "hello", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePublicKeyPEM(tc.text)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
			if tc.ok && string(got) != string(der) {
				t.Fatal("wrong key")
			}
			if !tc.ok && !errors.Is(err, ErrBadOutput) {
				t.Fatalf("err %v, want ErrBadOutput", err)
			}
		})
	}
}
