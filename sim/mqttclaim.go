package sim

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/fxamacker/cbor/v2"

	"github.com/credloop/credloop/internal/devicemodel"
)

// Fleet-provisioning payload formats (the <fmt> of the topics).
const (
	formatJSON = "json"
	formatCBOR = "cbor"
)

// Limits of the AWS embedded SDK (fleet_provisioning.h and its demo).
const (
	MaxTemplateName = 36  // FP_TEMPLATENAME_MAX_LENGTH
	MaxOwnershipTok = 512 // the demo's token buffer
)

// errMalformed wraps every decoding failure of an answer from the cloud.
var errMalformed = errors.New("sim: malformed answer")

// ClaimOptions configures ProvisionByClaim.
type ClaimOptions struct {
	// Template is the provisioning template (at most 36 characters).
	Template string
	// Format is the payload format: "json" (default) or "cbor".
	Format string
	// Parameters go to RegisterThing, e.g. {"SerialNumber": "dev-7"}.
	Parameters map[string]string
	// CreateKeys uses CreateKeysAndCertificate: the cloud generates the
	// key and sends it over the network. Otherwise the device generates
	// it and sends a CSR (CreateCertificateFromCsr).
	CreateKeys bool
	// BeforeRegister, when set, runs between receiving the certificate and
	// sending RegisterThing (a test moves a virtual clock there).
	BeforeRegister func(ctx context.Context) error
	// ReplayToken sends RegisterThing a second time with the same
	// ownership token after it was accepted; the cloud must refuse it,
	// and ProvisionByClaim returns that rejection (*RejectedError), or
	// ErrReplayAccepted if the cloud accepted it. The certificate is
	// stored and the thing name returned either way.
	ReplayToken bool
}

// ErrReplayAccepted is returned by ProvisionByClaim with ReplayToken when
// the cloud accepted an ownership token a second time.
var ErrReplayAccepted = errors.New("sim: the cloud accepted a replayed ownership token")

// RejectedError is a rejection from the cloud on a .../rejected topic.
type RejectedError struct {
	// Operation is the request topic that was rejected.
	Operation    string
	StatusCode   int
	ErrorCode    string
	ErrorMessage string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("sim: %s rejected: %d %s: %s", e.Operation, e.StatusCode, e.ErrorCode, e.ErrorMessage)
}

// certResponse is the accepted answer of create, create-from-csr and of a
// CSR rotation.
type certResponse struct {
	CertificateID  string `json:"certificateId"`
	CertificatePem string `json:"certificatePem"`
	Token          string `json:"certificateOwnershipToken"`
	PrivateKey     string `json:"privateKey"`
}

type registerRequest struct {
	Token      string            `json:"certificateOwnershipToken"`
	Parameters map[string]string `json:"parameters"`
}

type registerAccepted struct {
	ThingName string `json:"thingName"`
}

type rejectedPayload struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// cborDecOptions bound what a CBOR answer may make the device allocate.
var cborDecOptions = cbor.DecOptions{
	MaxNestedLevels:  16,
	MaxArrayElements: 1024,
	MaxMapPairs:      1024,
}

func encodePayload(format string, v any) ([]byte, error) {
	if format == formatCBOR {
		return cbor.Marshal(v)
	}
	return json.Marshal(v)
}

// decodePayload decodes a JSON or CBOR answer. Its errors never quote the
// payload, which may hold a private key or a token.
func decodePayload(format string, data []byte, v any) error {
	if len(data) > MaxMQTTPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", errMalformed, len(data), MaxMQTTPayload)
	}
	if format == formatCBOR {
		dm, err := cborDecOptions.DecMode()
		if err != nil {
			return fmt.Errorf("sim: cbor decoder: %w", err)
		}
		if err := dm.Unmarshal(data, v); err != nil {
			var typ *cbor.UnmarshalTypeError
			if errors.As(err, &typ) {
				return fmt.Errorf("%w: cbor: a field has the wrong type", errMalformed)
			}
			return fmt.Errorf("%w: cbor: not a well-formed map", errMalformed)
		}
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("%w: json: syntax error at offset %d", errMalformed, syn.Offset)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: json: %s is a %s", errMalformed, sanitizeText(typ.Field), typ.Value)
		default:
			return fmt.Errorf("%w: json: cannot decode", errMalformed)
		}
	}
	return nil
}

// parseCertResponse decodes a certificate answer; certificatePem is always
// required, the ownership token and the private key when asked for.
func parseCertResponse(format string, data []byte, needToken, needKey bool) (certResponse, error) {
	var r certResponse
	if err := decodePayload(format, data, &r); err != nil {
		return certResponse{}, err
	}
	switch {
	case r.CertificatePem == "":
		return certResponse{}, fmt.Errorf("%w: certificatePem is missing", errMalformed)
	case needToken && r.Token == "":
		return certResponse{}, fmt.Errorf("%w: certificateOwnershipToken is missing", errMalformed)
	case needToken && len(r.Token) > MaxOwnershipTok:
		return certResponse{}, fmt.Errorf("%w: certificateOwnershipToken is %d bytes, the device keeps at most %d", errMalformed, len(r.Token), MaxOwnershipTok)
	case needKey && r.PrivateKey == "":
		return certResponse{}, fmt.Errorf("%w: privateKey is missing", errMalformed)
	}
	return r, nil
}

func parseRegisterAccepted(format string, data []byte) (registerAccepted, error) {
	var r registerAccepted
	if err := decodePayload(format, data, &r); err != nil {
		return registerAccepted{}, err
	}
	if r.ThingName == "" {
		return registerAccepted{}, fmt.Errorf("%w: thingName is missing", errMalformed)
	}
	return r, nil
}

// parseRejected always returns a rejection: the topic says so even when
// the payload cannot be decoded.
func parseRejected(format string, data []byte, operation string) *RejectedError {
	var p rejectedPayload
	if err := decodePayload(format, data, &p); err != nil {
		return &RejectedError{Operation: operation, ErrorMessage: fmt.Sprintf("undecodable rejection (%d bytes)", len(data))}
	}
	return &RejectedError{Operation: operation, StatusCode: p.StatusCode, ErrorCode: sanitizeText(p.ErrorCode), ErrorMessage: sanitizeText(p.ErrorMessage)}
}

func validTemplateName(name string) error {
	switch {
	case name == "":
		return errors.New("sim: claim: no template name")
	case len(name) > MaxTemplateName:
		return fmt.Errorf("sim: claim: template name is %d characters, at most %d", len(name), MaxTemplateName)
	case strings.ContainsAny(name, "/+#\x00"):
		return fmt.Errorf("sim: claim: template name %q cannot be used in a topic", name)
	}
	return nil
}

// ProvisionByClaim runs AWS fleet provisioning by claim (docs/protocols.md,
// AWS fleet provisioning): it connects with the model's factory certificate (the claim
// certificate), obtains a certificate with CreateCertificateFromCsr (key
// made on the device by Model.PrepareCSR) or, with CreateKeys,
// CreateKeysAndCertificate (key made by the cloud), registers the thing
// with RegisterThing and disconnects; each time it subscribes to accepted
// and rejected before publishing. Then it stores the certificate in the
// rotated slot (CompleteCSR, or ApplyRotation for CreateKeys), so the next
// Start uses it, and returns the thing name. A live connection of the
// device is closed first. A rejection is a *RejectedError.
func (d *MQTTDevice) ProvisionByClaim(ctx context.Context, o ClaimOptions) (string, error) {
	if o.Format == "" {
		o.Format = formatJSON
	}
	if o.Format != formatJSON && o.Format != formatCBOR {
		return "", fmt.Errorf("sim: claim: format %q, want json or cbor", o.Format)
	}
	if err := validTemplateName(o.Template); err != nil {
		return "", err
	}
	d.op.Lock()
	defer d.op.Unlock()
	d.closeLocked()
	cfg := d.model.Config()
	claim := cfg.Factory
	d.logf("fleet provisioning: connecting with claim certificate %s (template %q, %s)", claim.Fingerprint(), o.Template, o.Format)
	s, err := d.connect(ctx, claim, d.currentLife())
	if err != nil {
		d.logf("claim connection failed: %v", err)
		return "", fmt.Errorf("sim %s: claim connection: %w", cfg.ID, err)
	}
	defer s.close()
	name, store, replay, err := d.provision(ctx, s, o)
	if err != nil {
		d.logf("fleet provisioning failed: %v", err)
		return "", fmt.Errorf("sim %s: %w", cfg.ID, err)
	}
	s.close()
	d.logf("disconnected from the claim session")
	if err := store(); err != nil {
		d.logf("Storing the provisioned certificate failed: %v", err)
		return "", fmt.Errorf("sim %s: store certificate: %w", cfg.ID, err)
	}
	d.update(func() {})
	if replay != nil {
		return name, fmt.Errorf("sim %s: replayed RegisterThing: %w", cfg.ID, replay)
	}
	return name, nil
}

// provision runs the two requests and returns the thing name, how to store
// the certificate and, with ReplayToken, the outcome of the replay.
func (d *MQTTDevice) provision(ctx context.Context, s *mqttSession, o ClaimOptions) (string, func() error, error, error) {
	var (
		resp   certResponse
		store  func() error
		fp     string
		replay error
	)
	if o.CreateKeys {
		topic := "$aws/certificates/create/" + o.Format
		payload := []byte("{}")
		if o.Format == formatCBOR {
			payload = nil // the embedded-C demo publishes 0 bytes
		}
		data, err := d.fleetCall(ctx, s, o.Format, topic, payload)
		if err != nil {
			return "", nil, nil, err
		}
		if resp, err = parseCertResponse(o.Format, data, true, true); err != nil {
			return "", nil, nil, fmt.Errorf("%s: %w", topic, err)
		}
		rot, err := devicemodel.RotationFromPEM([]byte(resp.CertificatePem), []byte(resp.PrivateKey))
		if err != nil {
			return "", nil, nil, fmt.Errorf("%s: %w", topic, err)
		}
		fp = rot.Credential.Fingerprint()
		d.logf("CreateKeysAndCertificate accepted: certificateId %s; the cloud sent the private key (fp %s) over the network", shortID(resp.CertificateID), rot.Credential.KeyFingerprint())
		store = func() error { return d.model.ApplyRotation(rot) }
	} else {
		topic := "$aws/certificates/create-from-csr/" + o.Format
		der, err := d.model.PrepareCSR(d.rand, pkix.Name{})
		if err != nil {
			return "", nil, nil, fmt.Errorf("csr: %w", err)
		}
		payload, err := encodePayload(o.Format, map[string]string{
			"certificateSigningRequest": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		})
		if err != nil {
			return "", nil, nil, err
		}
		d.logf("Generated a key on the device; sending its CSR to %s", topic)
		data, err := d.fleetCall(ctx, s, o.Format, topic, payload)
		if err != nil {
			return "", nil, nil, err
		}
		if resp, err = parseCertResponse(o.Format, data, true, false); err != nil {
			return "", nil, nil, fmt.Errorf("%s: %w", topic, err)
		}
		chain, err := devicemodel.ParseCertChainPEM([]byte(resp.CertificatePem))
		if err != nil {
			return "", nil, nil, fmt.Errorf("%s: certificatePem: %w", topic, err)
		}
		fp = devicemodel.Fingerprint(chain[0])
		d.logf("CreateCertificateFromCsr accepted: certificateId %s", shortID(resp.CertificateID))
		store = func() error { return d.model.CompleteCSR(bytes.Join(chain, nil)) }
	}
	if o.BeforeRegister != nil {
		if err := o.BeforeRegister(ctx); err != nil {
			return "", nil, nil, fmt.Errorf("before RegisterThing: %w", err)
		}
	}
	params := o.Parameters
	if params == nil {
		params = map[string]string{}
	}
	topic := "$aws/provisioning-templates/" + o.Template + "/provision/" + o.Format
	payload, err := encodePayload(o.Format, registerRequest{Token: resp.Token, Parameters: params})
	if err != nil {
		return "", nil, nil, err
	}
	d.logf("RegisterThing with ownership token fp %s", devicemodel.Fingerprint([]byte(resp.Token)))
	data, err := d.fleetCall(ctx, s, o.Format, topic, payload)
	if err != nil {
		return "", nil, nil, err
	}
	reg, err := parseRegisterAccepted(o.Format, data)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", topic, err)
	}
	shown := sanitizeText(reg.ThingName)
	d.logf("RegisterThing accepted: thing %q, certificate %s", shown, fp)
	if id := d.ID(); reg.ThingName != id {
		d.logf("warning: the thing name %q is not the device id %q", shown, id)
	}
	if o.ReplayToken {
		d.logf("replaying RegisterThing with the same ownership token")
		if _, err := d.fleetCall(ctx, s, o.Format, topic, payload); err != nil {
			replay = err
			d.logf("replay refused: %v", err)
		} else {
			replay = ErrReplayAccepted
			d.logf("replay accepted: the token was used twice")
		}
	}
	return reg.ThingName, func() error {
		if err := store(); err != nil {
			return err
		}
		d.logf("New certificates (%s) stored in NVS; the next boot uses them.", fp)
		return nil
	}, replay, nil
}

type fleetMsg struct {
	topic   string
	payload []byte
}

// fleetCall subscribes to topic/accepted and topic/rejected, publishes the
// request and waits for one answer on this connection. A rejection is a
// *RejectedError.
func (d *MQTTDevice) fleetCall(ctx context.Context, s *mqttSession, format, topic string, payload []byte) ([]byte, error) {
	accepted, rejected := topic+"/accepted", topic+"/rejected"
	answers := make(chan fleetMsg, 2)
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case answers <- fleetMsg{m.Topic(), bytes.Clone(m.Payload())}:
		default: // an unexpected extra answer
		}
	}
	sub := s.client.SubscribeMultiple(map[string]byte{accepted: 1, rejected: 1}, handler)
	if err := d.waitToken(ctx, s, sub); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if st, ok := sub.(*paho.SubscribeToken); ok {
		for t, code := range st.Result() {
			if code == 0x80 {
				return nil, fmt.Errorf("%w: %s", ErrSubscribeRefused, t)
			}
		}
	}
	defer func() {
		_ = d.waitToken(context.WithoutCancel(ctx), s, s.client.Unsubscribe(accepted, rejected))
	}()
	if err := d.publish(ctx, s, topic, payload); err != nil {
		return nil, err
	}
	t := time.NewTimer(d.opts.ResponseTimeout)
	defer t.Stop()
	select {
	case m := <-answers:
		if m.topic == rejected {
			return nil, parseRejected(format, m.payload, topic)
		}
		return m.payload, nil
	case <-s.done:
		return nil, fmt.Errorf("%s: connection lost while waiting for the answer", topic)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", topic, ctx.Err())
	case <-t.C:
		return nil, fmt.Errorf("%s: no answer within %s", topic, d.opts.ResponseTimeout)
	}
}
