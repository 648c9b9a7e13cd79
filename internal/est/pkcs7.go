// Package est holds what both ends of EST over CoAPS (RFC 9148) share:
// content formats and the PKCS#7 certs-only encoding.
package est

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// Content formats (RFC 9148 section 4.4).
const (
	CFPKCS7CertsOnly = 281 // application/pkcs7-mime; smime-type=certs-only
	CFPKCS10         = 286 // application/pkcs10
	CFPKIXCert       = 287 // application/pkix-cert
)

// MaxCertsOnly bounds what ParseCertsOnly accepts.
const MaxCertsOnly = 64 << 10

// CertsOnly encodes a degenerate PKCS#7 SignedData holding only
// certificates (RFC 2315 / RFC 5652 "certs-only"), as EST answers.
func CertsOnly(certs [][]byte) ([]byte, error) {
	var set []asn1.RawValue
	for _, c := range certs {
		set = append(set, asn1.RawValue{FullBytes: c})
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
	}
	type signedData struct {
		Version          int
		DigestAlgorithms []asn1.RawValue `asn1:"set"`
		ContentInfo      contentInfo
		Certificates     []asn1.RawValue `asn1:"optional,tag:0,set"`
		SignerInfos      []asn1.RawValue `asn1:"set"`
	}
	sd, err := asn1.Marshal(signedData{
		Version:          1,
		DigestAlgorithms: []asn1.RawValue{},
		ContentInfo:      contentInfo{ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}},
		Certificates:     set,
		SignerInfos:      []asn1.RawValue{},
	})
	if err != nil {
		return nil, err
	}
	// RawValue with FullBytes ignores struct tags, so the [0] EXPLICIT
	// wrapper is spelled out.
	type outer struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}
	return asn1.Marshal(outer{
		ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2},
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd},
	})
}

// ParseCertsOnly decodes a PKCS#7 certs-only message into certificates.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	if len(der) > MaxCertsOnly {
		return nil, fmt.Errorf("est: pkcs7: %d bytes is too large", len(der))
	}
	type outer struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	var o outer
	if rest, err := asn1.Unmarshal(der, &o); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("est: pkcs7: not a ContentInfo")
	}
	if !o.ContentType.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}) {
		return nil, fmt.Errorf("est: pkcs7: not SignedData")
	}
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      asn1.RawValue
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		Rest             asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(o.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("est: pkcs7: %w", err)
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		return nil, fmt.Errorf("est: pkcs7 certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("est: pkcs7: no certificates")
	}
	return certs, nil
}
