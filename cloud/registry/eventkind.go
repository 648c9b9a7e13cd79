package registry

// EventKind names what an event records. Every kind credloop writes is one
// of the constants below; scenarios, reports and the revocation watch of
// other processes match on these exact spellings, so they never change.
type EventKind string

// Authentication and sessions.
const (
	EventAuthPSK       EventKind = "auth.psk"       // a DTLS PSK handshake
	EventAuthCert      EventKind = "auth.cert"      // a DTLS certificate handshake
	EventAuthHandshake EventKind = "auth.handshake" // a DTLS handshake refused before an identity was known
	EventAuthMQTT      EventKind = "auth.mqtt"      // an MQTT/TLS connection
	EventSessionClosed EventKind = "session.closed" // a live session ended (idle, revoked, closed by the device)
)

// Provisioning and enrollment.
const (
	EventProvisionAuto     EventKind = "provision.auto"        // certificate auto-provisioned on first DTLS connect
	EventProvisionJITP     EventKind = "provision.jitp"        // AWS just-in-time provisioning
	EventProvisionJITR     EventKind = "provision.jitr"        // AWS just-in-time registration
	EventProvisionCSR      EventKind = "provision.csr"         // run-time CSR over HTTPS (allowlist)
	EventMQTTRegistered    EventKind = "mqtt.registered"       // $aws/events/certificates/registered published
	EventFleetCreateCSR    EventKind = "fleet.create-from-csr" // fleet provisioning: certificate from a CSR
	EventFleetCreate       EventKind = "fleet.create"          // fleet provisioning: key and certificate made by the cloud
	EventFleetProvision    EventKind = "fleet.provision"       // fleet provisioning: template applied
	EventKeyOverTheWire    EventKind = "key.over-the-wire"     // a private key was sent to a device
	EventESTEnroll         EventKind = "est.enroll"            // EST-coaps simple enrollment
	EventESTReenroll       EventKind = "est.reenroll"          // EST-coaps re-enrollment
	EventPKICSR            EventKind = "pki.csr"               // a CSR signed on v1/csr
	EventRotationRequest   EventKind = "rotation.request"      // the cloud asked a device to rotate
	EventRotationCSR       EventKind = "rotation.csr"          // a rotation CSR signed
	EventCertActivated     EventKind = "certificate.activated"
	EventCertDeactivated   EventKind = "certificate.deactivated"
	EventAllowlistAdded    EventKind = "allowlist.added"
	EventCredentialAdded   EventKind = "credential.added"
	EventCredentialRevoked EventKind = "credential.revoked"
)

// Operator changes.
const (
	EventProjectCreated  EventKind = "project.created"
	EventRootTrusted     EventKind = "project.trust"
	EventRootUntrusted   EventKind = "project.untrust"
	EventTemplatePut     EventKind = "project.template"
	EventDeviceCreated   EventKind = "device.created"
	EventDeviceDisabled  EventKind = "device.disabled"
	EventDeviceEnabled   EventKind = "device.enabled"
	EventCARevoke        EventKind = "ca.revoke"
	EventCARegistered    EventKind = "ca.register"
	EventCADeactivated   EventKind = "ca.deactivated"
	EventCredentialState EventKind = "credential.state"
)

// Golioth's device services on the CoAP endpoint.
const (
	EventCoAPRequest    EventKind = "coap.request"    // a device's CoAP request and the response code
	EventLightDBSet     EventKind = "lightdb.set"     // LightDB State written (device or operator)
	EventLightDBDelete  EventKind = "lightdb.delete"  // LightDB State deleted (device or operator)
	EventStreamRecord   EventKind = "stream.record"   // a LightDB Stream record stored
	EventDeviceLog      EventKind = "device.log"      // a log message from a device stored
	EventSettingsSet    EventKind = "settings.set"    // an operator changed a setting
	EventSettingsStatus EventKind = "settings.status" // a device reported how it applied its settings
	EventRPCCall        EventKind = "rpc.call"        // an operator called a remote procedure on a device
	EventRPCStatus      EventKind = "rpc.status"      // a device answered an RPC (or the call timed out)
	EventOTARelease     EventKind = "ota.release"     // an operator released a firmware component
	EventOTAReport      EventKind = "ota.report"      // a device reported its OTA state for a component
)

// Enforced reports whether live sessions must be checked again after an
// event of this kind: a revocation or a disable made by another process
// (the CLI) reaches the sessions a running cloud holds through the event
// log.
func (k EventKind) Enforced() bool {
	switch k {
	case EventCARevoke, EventCredentialRevoked, EventCredentialState,
		EventCertDeactivated, EventDeviceDisabled, EventCADeactivated:
		return true
	}
	return false
}

// EnforcedKinds lists the kinds for which Enforced is true.
func EnforcedKinds() []EventKind {
	return []EventKind{EventCARevoke, EventCredentialRevoked, EventCredentialState,
		EventCertDeactivated, EventDeviceDisabled, EventCADeactivated}
}
