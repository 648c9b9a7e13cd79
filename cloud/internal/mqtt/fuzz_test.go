package mqtt

import (
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
)

func selectFormat(cborFormat bool) string {
	if cborFormat {
		return formatCBOR
	}
	return formatJSON
}

// FuzzDecodeCreateFromCSR feeds CreateCertificateFromCsr payloads, JSON and
// CBOR, through the decoder and the CSR intake: errors are payload errors
// (400 InvalidPayload) or CSR errors (400 InvalidCSR), a decoded CSR
// survives a re-encoding, and nothing panics.
func FuzzDecodeCreateFromCSR(f *testing.F) {
	_, pemCSR := csr(f, pkix.Name{CommonName: "unit-1"})
	j, _ := encode(formatJSON, map[string]string{keyCSR: string(pemCSR)})
	c, _ := encode(formatCBOR, map[string]string{keyCSR: string(pemCSR)})
	f.Add(false, j)
	f.Add(true, c)
	for _, s := range []string{"", "{}", "null", "[]", `{"certificateSigningRequest":null}`, `{"certificateSigningRequest":""}`,
		`{"certificateSigningRequest":1}`, `{"certificateSigningRequest":"x","certificateSigningRequest":"y"}`, `{"a":{"b":{"c":[[[[]]]]}}}`,
		"\xa1\x78\x19certificateSigningRequest\x61x", "\xa1\x58\x19certificateSigningRequest\x61x", "\xbf\x61a\x61b\xff", "\xf6", "\xa0",
		"\xa2\x61a\x01\x61a\x02", "\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\x9f\xff", "\xa1\x78\x19certificateSigningRequest\x42hi"} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, cborFormat bool, b []byte) {
		format := selectFormat(cborFormat)
		got, err := decodeCreateFromCSR(format, b)
		if err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v does not wrap errPayload", err)
			}
		} else {
			if got == "" {
				t.Fatal("decoded an empty CSR")
			}
			re, err := encode(format, map[string]string{keyCSR: got})
			if err != nil {
				t.Fatal(err)
			}
			if again, err := decodeCreateFromCSR(format, re); err != nil || again != got {
				t.Fatalf("re-encoded CSR decodes to %q, %v", again, err)
			}
		}
		csr, rej := intakeCSR(format, b)
		switch {
		case rej == nil && csr == nil:
			t.Fatal("no CSR and no rejection")
		case rej != nil && (rej.status != 400 || (rej.code != codeInvalidPayload && rej.code != codeInvalidCSR)):
			t.Fatalf("rejection %v", rej)
		case rej == nil && err != nil:
			t.Fatal("intake accepted what the decoder refused")
		}
	})
}

// FuzzDecodeRegisterThing feeds RegisterThing payloads, JSON and CBOR:
// a decoded request has a token and string parameters and survives a
// re-encoding.
func FuzzDecodeRegisterThing(f *testing.F) {
	req := map[string]any{keyToken: "tok", keyParameters: map[string]string{"SerialNumber": "sn-1"}}
	j, _ := encode(formatJSON, req)
	c, _ := encode(formatCBOR, req)
	f.Add(false, j)
	f.Add(true, c)
	for _, s := range []string{"", "{}", `{"certificateOwnershipToken":"t"}`, `{"certificateOwnershipToken":"t","parameters":null}`,
		`{"certificateOwnershipToken":"t","parameters":{"a":1}}`, `{"certificateOwnershipToken":"t","parameters":[]}`,
		`{"certificateOwnershipToken":"t","parameters":{"a":"b","a":"c"}}`, `{"certificateOwnershipToken":["t"]}`,
		"\xa2\x78\x19certificateOwnershipToken\x61t\x6aparameters\xa1\x61a\x61b",
		"\xa2\x78\x19certificateOwnershipToken\x61t\x6aparameters\xa1\x01\x61b",
		"\xa2\x78\x19certificateOwnershipToken\x61t\x6aparameters\xbf\x61a\x61b\xff",
		"\xa1\x78\x19certificateOwnershipToken\x7f\x61a\x61b\xff"} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, cborFormat bool, b []byte) {
		format := selectFormat(cborFormat)
		got, err := decodeRegisterThing(format, b)
		if err != nil {
			if !errors.Is(err, errPayload) {
				t.Fatalf("error %v does not wrap errPayload", err)
			}
			return
		}
		if got.Token == "" || got.Parameters == nil {
			t.Fatalf("decoded %+v", got)
		}
		re, err := encode(format, map[string]any{keyToken: got.Token, keyParameters: got.Parameters})
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRegisterThing(format, re)
		if err != nil || again.Token != got.Token || len(again.Parameters) != len(got.Parameters) {
			t.Fatalf("re-encoded request decodes to %+v, %v", again, err)
		}
		for k, v := range got.Parameters {
			if again.Parameters[k] != v {
				t.Fatalf("parameter %q: %q, then %q", k, v, again.Parameters[k])
			}
		}
	})
}

// FuzzTopic checks the topic router and the ACL: a request topic
// round-trips, its answers are not requests, and the ACL is sound: a
// filter a scope may subscribe to matches only topics it may read, and
// what it may publish it may read.
func FuzzTopic(f *testing.F) {
	for _, s := range [][2]string{
		{"devices/dev1/certs/csr", "devices/dev1/#"},
		{"$aws/certificates/create/json", "$aws/certificates/create/json/+"},
		{"$aws/certificates/create-from-csr/cbor", "$aws/certificates/#"},
		{"$aws/provisioning-templates/tmpl/provision/json", "$aws/provisioning-templates/tmpl/provision/#"},
		{"$aws/provisioning-templates/x/provision/json", "$aws/provisioning-templates/+/provision/json"},
		{"devices/dev1", "devices/dev1/#"},
		{"devices/dev2/x", "devices/+/x"},
		{"$aws/things/dev1/shadow", "#"},
		{"a//b", "a/+/b"},
		{"", ""},
		{"/", "/#"},
	} {
		f.Add(s[0], s[1])
	}
	scopes := []scope{deviceScope("dev1"), claimScope("tmpl"), claimScope("")}
	f.Fuzz(func(t *testing.T, topic, filter string) {
		if r, ok := parseRequest(topic); ok {
			if r.topic() != topic {
				t.Fatalf("request %q routes back to %q", topic, r.topic())
			}
			if _, ok := parseRequest(r.accepted()); ok {
				t.Fatalf("answer topic %q is a request", r.accepted())
			}
		}
		plain := topic != "" && !strings.ContainsAny(topic, "+#")
		if plain && !match(topic, topic) {
			t.Fatalf("%q does not match itself", topic)
		}
		for _, sc := range scopes {
			if plain && sc.canRead(filter) && match(filter, topic) && !sc.canRead(topic) {
				t.Fatalf("scope %v: filter %q allowed, matches %q, which is not", sc.prefixes, filter, topic)
			}
			if sc.canPublish(topic) && !sc.canRead(topic) {
				t.Fatalf("scope %v: may publish %q but not read it", sc.prefixes, topic)
			}
		}
	})
}
