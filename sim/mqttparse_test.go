package sim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func mustEncode(t testing.TB, format string, v any) []byte {
	t.Helper()
	b, err := encodePayload(format, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestMQTTAnswerParsing(t *testing.T) {
	for _, format := range []string{formatJSON, formatCBOR} {
		full := map[string]any{"certificateId": "ab", "certificatePem": testPEM, "certificateOwnershipToken": "tok", "privateKey": "k", "extra": 1}
		tests := []struct {
			name      string
			data      []byte
			needToken bool
			needKey   bool
			ok        bool
		}{
			{"all fields", mustEncode(t, format, full), true, true, true},
			{"no token, not needed", mustEncode(t, format, map[string]string{"certificatePem": testPEM}), false, false, true},
			{"no token", mustEncode(t, format, map[string]string{"certificatePem": testPEM}), true, false, false},
			{"no key", mustEncode(t, format, map[string]string{"certificatePem": testPEM, "certificateOwnershipToken": "t"}), true, true, false},
			{"no certificate", mustEncode(t, format, map[string]string{"certificateOwnershipToken": "t"}), true, false, false},
			{"token too long", mustEncode(t, format, map[string]string{"certificatePem": testPEM, "certificateOwnershipToken": strings.Repeat("t", 513)}), true, false, false},
			{"wrong type", mustEncode(t, format, map[string]any{"certificatePem": 7}), false, false, false},
			{"not a map", mustEncode(t, format, []string{"certificatePem"}), false, false, false},
			{"empty", nil, false, false, false},
			{"too large", make([]byte, MaxMQTTPayload+1), false, false, false},
		}
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				r, err := parseCertResponse(format, tt.data, tt.needToken, tt.needKey)
				if tt.ok != (err == nil) {
					t.Fatalf("err = %v, want ok=%t", err, tt.ok)
				}
				if err != nil && !errors.Is(err, errMalformed) {
					t.Fatalf("err %v does not wrap errMalformed", err)
				}
				if err == nil && r.CertificatePem != testPEM {
					t.Fatalf("certificatePem = %q", r.CertificatePem)
				}
			})
		}
		t.Run(format+"/register and rejected", func(t *testing.T) {
			r, err := parseRegisterAccepted(format, mustEncode(t, format, map[string]any{"deviceConfiguration": map[string]string{}, "thingName": "dev-1"}))
			if err != nil || r.ThingName != "dev-1" {
				t.Fatalf("register = %+v, %v", r, err)
			}
			if _, err := parseRegisterAccepted(format, mustEncode(t, format, map[string]any{"deviceConfiguration": map[string]string{}})); err == nil {
				t.Fatal("accepted without thingName")
			}
			rej := parseRejected(format, mustEncode(t, format, map[string]any{"statusCode": 403, "errorCode": "InvalidCertificateOwnershipToken", "errorMessage": "used\nup"}), "op")
			if rej.StatusCode != 403 || rej.ErrorCode != "InvalidCertificateOwnershipToken" || rej.ErrorMessage != "used up" {
				t.Fatalf("rejected = %+v", rej)
			}
			if rej := parseRejected(format, []byte{0xff, 0x00}, "op"); rej == nil || rej.StatusCode != 0 || !strings.Contains(rej.Error(), "undecodable") {
				t.Fatalf("garbage rejection = %v", rej)
			}
		})
	}
	// A JSON syntax error is reported by offset, never by quoting the
	// payload (which may hold a key).
	_, err := parseCertResponse(formatJSON, []byte(`{"privateKey":"SECRET`), false, false)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("err = %v", err)
	}
}

func TestIsCSRAction(t *testing.T) {
	for in, want := range map[string]bool{
		`{"action":"csr"}`:                    true,
		`{"action":"csr","reason":"renewal"}`: true,
		`{"action":"CSR"}`:                    false,
		`{"action":1}`:                        false,
		`{"new_certificate":"x"}`:             false,
		`{"action":"csr"`:                     false,
		``:                                    false,
	} {
		if got := isCSRAction([]byte(in)); got != want {
			t.Errorf("isCSRAction(%q) = %t, want %t", in, got, want)
		}
	}
}

func TestClosedBeforeConnack(t *testing.T) {
	paho := func(err error) error { return fmt.Errorf("%w : %w", errors.New("network Error"), err) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"close_notify", paho(io.EOF), true},
		{"truncated", paho(io.ErrUnexpectedEOF), true},
		{"reset", paho(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), true},
		{"TLS alert", paho(&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}), false},
		{"CONNACK refused", errors.New("not Authorized"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := closedBeforeConnack(tt.err); got != tt.want {
				t.Fatalf("closedBeforeConnack(%v) = %t, want %t", tt.err, got, tt.want)
			}
		})
	}
}

// FuzzMQTTAnswers feeds the decoders of the cloud's answers (JSON and
// CBOR) and of rotation commands: they must not panic, must reject with
// errMalformed, and what they accept must hold the required fields.
func FuzzMQTTAnswers(f *testing.F) {
	for _, format := range []string{formatJSON, formatCBOR} {
		f.Add(format == formatCBOR, mustEncode(f, format, map[string]string{"certificateId": "ab", "certificatePem": testPEM, "certificateOwnershipToken": "t", "privateKey": "k"}))
		f.Add(format == formatCBOR, mustEncode(f, format, map[string]any{"deviceConfiguration": map[string]string{"a": "b"}, "thingName": "dev-1"}))
		f.Add(format == formatCBOR, mustEncode(f, format, map[string]any{"statusCode": 400, "errorCode": "InvalidCSR", "errorMessage": "bad"}))
	}
	f.Add(false, []byte(`{"action":"csr"}`))
	f.Add(false, []byte(`{"certificatePem": "a
b"}`))
	deep, _ := cbor.Marshal([]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{1}}}}}}}}}}}}}}}}})
	f.Add(true, deep)
	f.Add(true, []byte{0xbf, 0x61, 0x61, 0xff}) // indefinite-length map with a dangling key
	f.Fuzz(func(t *testing.T, useCBOR bool, data []byte) {
		format := formatJSON
		if useCBOR {
			format = formatCBOR
		}
		if r, err := parseCertResponse(format, data, true, true); err == nil {
			if r.CertificatePem == "" || r.Token == "" || len(r.Token) > MaxOwnershipTok || r.PrivateKey == "" {
				t.Fatalf("accepted an incomplete answer: %+v", r)
			}
		} else if !errors.Is(err, errMalformed) {
			t.Fatalf("error does not wrap errMalformed: %v", err)
		}
		if r, err := parseRegisterAccepted(format, data); err == nil && r.ThingName == "" {
			t.Fatal("accepted an answer without thingName")
		}
		rej := parseRejected(format, data, "op")
		if rej == nil {
			t.Fatal("nil rejection")
		}
		if strings.ContainsFunc(rej.Error(), func(r rune) bool { return r < ' ' }) {
			t.Fatalf("rejection has control characters: %q", rej.Error())
		}
		isCSRAction(data)
	})
}

func TestNewMQTTDeviceWithoutModel(t *testing.T) {
	d := newMQTTDevice(nil, MQTTDeviceOptions{Addr: "127.0.0.1:1"})
	if err := d.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "device id") {
		t.Fatalf("Start = %v", err)
	}
	if _, err := d.ProvisionByClaim(t.Context(), ClaimOptions{Template: "t"}); err == nil {
		t.Fatal("ProvisionByClaim without a claim certificate succeeded")
	}
	d.Stop()
}
