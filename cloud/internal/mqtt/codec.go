package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MaxPayload is the largest PUBLISH payload the cloud processes (64 KiB).
const MaxPayload = 64 << 10

// errPayload is wrapped by every decoding error: the request gets a 400
// "InvalidPayload".
var errPayload = errors.New("mqtt: invalid payload")

// Message keys, byte for byte as AWS IoT Fleet Provisioning spells them.
const (
	keyCSR        = "certificateSigningRequest"
	keyToken      = "certificateOwnershipToken"
	keyParameters = "parameters"
)

// createAccepted answers create and create-from-csr.
type createAccepted struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
	PrivateKey                string `json:"privateKey,omitempty"` // create only
}

// registerAccepted answers RegisterThing.
type registerAccepted struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

// rejected is every operation's error answer.
type rejected struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// registerThing is a RegisterThing request.
type registerThing struct {
	Token      string
	Parameters map[string]string
}

// csrAccepted answers a rotation CSR on devices/<id>/certs/csr/accepted.
type csrAccepted struct {
	CertificateID  string `json:"certificateId"`
	CertificatePEM string `json:"certificatePem"`
}

// rotateKey is the rotation variant (a) message on devices/<id>/certs/rotate.
type rotateKey struct {
	NewCertificate string `json:"new_certificate"`
	NewPrivateKey  string `json:"new_private_key"`
}

// registeredEvent is the $aws/events/certificates/registered/<caId> payload.
type registeredEvent struct {
	CertificateID                    string `json:"certificateId"`
	CACertificateID                  string `json:"caCertificateId"`
	Timestamp                        int64  `json:"timestamp"`
	CertificateStatus                string `json:"certificateStatus"`
	AWSAccountID                     string `json:"awsAccountId"`
	CertificateRegistrationTimestamp int64  `json:"certificateRegistrationTimestamp"`
}

// cborDec decodes requests strictly: a map with text keys, no duplicate
// keys, shallow nesting, bounded sizes, valid UTF-8.
var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:          cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:    8,
		MaxArrayElements:   1024,
		MaxMapPairs:        1024,
		IndefLength:        cbor.IndefLengthAllowed,
		TagsMd:             cbor.TagsForbidden,
		MapKeyByteString:   cbor.MapKeyByteStringForbidden,
		UTF8:               cbor.UTF8RejectInvalid,
		ByteStringToString: cbor.ByteStringToStringForbidden,
	}.DecMode()
	if err != nil {
		panic(err) // static options
	}
	return dm
}()

// cborEnc encodes answers: plain maps with text keys, as tinycbor reads them.
var cborEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortCoreDeterministic}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	return em
}()

// encode serializes an answer in the request's format.
func encode(format string, v any) ([]byte, error) {
	if format == formatCBOR {
		return cborEnc.Marshal(v)
	}
	return json.Marshal(v)
}

// object decodes a request payload into its top-level map. An empty
// payload is an empty map only when emptyOK.
func object(format string, b []byte, emptyOK bool) (map[string]rawValue, error) {
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errPayload, len(b), MaxPayload)
	}
	if len(bytes.TrimSpace(b)) == 0 && (format == formatJSON || len(b) == 0) {
		if emptyOK {
			return map[string]rawValue{}, nil
		}
		return nil, fmt.Errorf("%w: empty", errPayload)
	}
	out := map[string]rawValue{}
	switch format {
	case formatJSON:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%w: not a JSON object: %s", errPayload, jsonError(err))
		}
		if m == nil {
			return nil, fmt.Errorf("%w: not a JSON object", errPayload)
		}
		for k, v := range m {
			out[k] = rawValue{json: v}
		}
	case formatCBOR:
		var m map[string]cbor.RawMessage
		if err := cborDec.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%w: not a CBOR map with text keys: %s", errPayload, clipMsg(err.Error()))
		}
		if m == nil {
			return nil, fmt.Errorf("%w: not a CBOR map", errPayload)
		}
		for k, v := range m {
			out[k] = rawValue{cbor: v, isCBOR: true}
		}
	default:
		return nil, fmt.Errorf("%w: format %q", errPayload, format)
	}
	return out, nil
}

// rawValue is one undecoded value of a request map.
type rawValue struct {
	json   json.RawMessage
	cbor   cbor.RawMessage
	isCBOR bool
}

func (v rawValue) null() bool {
	if v.isCBOR {
		return len(v.cbor) == 1 && (v.cbor[0] == 0xf6 || v.cbor[0] == 0xf7) // null, undefined
	}
	return string(bytes.TrimSpace(v.json)) == "null"
}

// text decodes a text string (JSON string, CBOR tstr).
func (v rawValue) text() (string, bool) {
	var s string
	if v.isCBOR {
		return s, len(v.cbor) > 0 && v.cbor[0]>>5 == 3 && cborDec.Unmarshal(v.cbor, &s) == nil
	}
	j := bytes.TrimSpace(v.json)
	return s, len(j) > 0 && j[0] == '"' && json.Unmarshal(j, &s) == nil
}

// textMap decodes a map of text strings to text strings.
func (v rawValue) textMap() (map[string]string, bool) {
	m := map[string]string{}
	if v.isCBOR {
		if len(v.cbor) == 0 || v.cbor[0]>>5 != 5 {
			return nil, false
		}
		var raw map[string]cbor.RawMessage
		if cborDec.Unmarshal(v.cbor, &raw) != nil {
			return nil, false
		}
		for k, e := range raw {
			s, ok := rawValue{cbor: e, isCBOR: true}.text()
			if !ok {
				return nil, false
			}
			m[k] = s
		}
		return m, true
	}
	j := bytes.TrimSpace(v.json)
	if len(j) == 0 || j[0] != '{' {
		return nil, false
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(j, &raw) != nil {
		return nil, false
	}
	for k, e := range raw {
		s, ok := rawValue{json: e}.text()
		if !ok {
			return nil, false
		}
		m[k] = s
	}
	return m, true
}

// requiredText returns the non-empty text field key of m.
func requiredText(m map[string]rawValue, key string) (string, error) {
	v, ok := m[key]
	if !ok || v.null() {
		return "", fmt.Errorf("%w: missing %q", errPayload, key)
	}
	s, ok := v.text()
	if !ok {
		return "", fmt.Errorf("%w: %q is not a string", errPayload, key)
	}
	if s == "" {
		return "", fmt.Errorf("%w: %q is empty", errPayload, key)
	}
	return s, nil
}

// decodeCreateFromCSR returns the PEM CSR of a CreateCertificateFromCsr
// request (also the rotation CSR message, JSON).
func decodeCreateFromCSR(format string, b []byte) (string, error) {
	m, err := object(format, b, false)
	if err != nil {
		return "", err
	}
	return requiredText(m, keyCSR)
}

// decodeCreate checks a CreateKeysAndCertificate request: empty (the AWS
// demo publishes 0 bytes on the CBOR topic), or a map whose contents are
// ignored.
func decodeCreate(format string, b []byte) error {
	_, err := object(format, b, true)
	return err
}

// decodeRegisterThing returns a RegisterThing request. parameters may be
// absent (then empty); present, it must map strings to strings.
func decodeRegisterThing(format string, b []byte) (registerThing, error) {
	m, err := object(format, b, false)
	if err != nil {
		return registerThing{}, err
	}
	tok, err := requiredText(m, keyToken)
	if err != nil {
		return registerThing{}, err
	}
	req := registerThing{Token: tok, Parameters: map[string]string{}}
	if v, ok := m[keyParameters]; ok && !v.null() {
		p, ok := v.textMap()
		if !ok {
			return registerThing{}, fmt.Errorf("%w: %q is not a map of strings to strings", errPayload, keyParameters)
		}
		req.Parameters = p
	}
	return req, nil
}

// jsonError describes a JSON syntax error without echoing the input.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "a " + te.Value + " where an object was expected"
	}
	return clipMsg(err.Error())
}

func clipMsg(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
