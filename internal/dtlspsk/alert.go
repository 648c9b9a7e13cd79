package dtlspsk

import (
	"errors"
	"fmt"
	"strconv"
)

// AlertLevel is the level byte of a TLS alert.
type AlertLevel uint8

// Alert levels (RFC 5246 7.2).
const (
	AlertWarning AlertLevel = 1
	AlertFatal   AlertLevel = 2
)

func (l AlertLevel) String() string {
	switch l {
	case AlertWarning:
		return "warning"
	case AlertFatal:
		return "fatal"
	}
	return "level " + strconv.Itoa(int(l))
}

// AlertDescription is the description byte of a TLS alert.
type AlertDescription uint8

// Alert descriptions (RFC 5246 7.2, RFC 4279, RFC 5746, RFC 8446).
const (
	AlertCloseNotify            AlertDescription = 0
	AlertUnexpectedMessage      AlertDescription = 10
	AlertBadRecordMAC           AlertDescription = 20
	AlertDecryptionFailed       AlertDescription = 21
	AlertRecordOverflow         AlertDescription = 22
	AlertDecompressionFailure   AlertDescription = 30
	AlertHandshakeFailure       AlertDescription = 40
	AlertNoCertificate          AlertDescription = 41
	AlertBadCertificate         AlertDescription = 42
	AlertUnsupportedCertificate AlertDescription = 43
	AlertCertificateRevoked     AlertDescription = 44
	AlertCertificateExpired     AlertDescription = 45
	AlertCertificateUnknown     AlertDescription = 46
	AlertIllegalParameter       AlertDescription = 47
	AlertUnknownCA              AlertDescription = 48
	AlertAccessDenied           AlertDescription = 49
	AlertDecodeError            AlertDescription = 50
	AlertDecryptError           AlertDescription = 51
	AlertExportRestriction      AlertDescription = 60
	AlertProtocolVersion        AlertDescription = 70
	AlertInsufficientSecurity   AlertDescription = 71
	AlertInternalError          AlertDescription = 80
	AlertInappropriateFallback  AlertDescription = 86
	AlertUserCanceled           AlertDescription = 90
	AlertNoRenegotiation        AlertDescription = 100
	AlertUnsupportedExtension   AlertDescription = 110
	AlertUnrecognizedName       AlertDescription = 112
	AlertUnknownPSKIdentity     AlertDescription = 115
	AlertNoApplicationProtocol  AlertDescription = 120
)

var alertNames = map[AlertDescription]string{
	AlertCloseNotify:            "close_notify",
	AlertUnexpectedMessage:      "unexpected_message",
	AlertBadRecordMAC:           "bad_record_mac",
	AlertDecryptionFailed:       "decryption_failed",
	AlertRecordOverflow:         "record_overflow",
	AlertDecompressionFailure:   "decompression_failure",
	AlertHandshakeFailure:       "handshake_failure",
	AlertNoCertificate:          "no_certificate",
	AlertBadCertificate:         "bad_certificate",
	AlertUnsupportedCertificate: "unsupported_certificate",
	AlertCertificateRevoked:     "certificate_revoked",
	AlertCertificateExpired:     "certificate_expired",
	AlertCertificateUnknown:     "certificate_unknown",
	AlertIllegalParameter:       "illegal_parameter",
	AlertUnknownCA:              "unknown_ca",
	AlertAccessDenied:           "access_denied",
	AlertDecodeError:            "decode_error",
	AlertDecryptError:           "decrypt_error",
	AlertExportRestriction:      "export_restriction",
	AlertProtocolVersion:        "protocol_version",
	AlertInsufficientSecurity:   "insufficient_security",
	AlertInternalError:          "internal_error",
	AlertInappropriateFallback:  "inappropriate_fallback",
	AlertUserCanceled:           "user_canceled",
	AlertNoRenegotiation:        "no_renegotiation",
	AlertUnsupportedExtension:   "unsupported_extension",
	AlertUnrecognizedName:       "unrecognized_name",
	AlertUnknownPSKIdentity:     "unknown_psk_identity",
	AlertNoApplicationProtocol:  "no_application_protocol",
}

func (d AlertDescription) String() string {
	if s, ok := alertNames[d]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(d)) + ")"
}

// AlertError is an alert the server sent. A fatal alert ends the handshake
// or the connection.
type AlertError struct {
	Level       AlertLevel
	Description AlertDescription
}

func (e *AlertError) Error() string {
	return fmt.Sprintf("dtlspsk: remote alert: %s (%s)", e.Description, e.Level)
}

// ErrProtocol is wrapped by every error that reports a server breaking the
// protocol (a malformed or unexpected message, a Finished that does not
// verify). The client sends the server a fatal alert before returning it.
var ErrProtocol = errors.New("dtlspsk: protocol violation")

// protocolError is a local protocol failure and the alert sent for it.
type protocolError struct {
	alert AlertDescription
	msg   string
}

func (e *protocolError) Error() string { return ErrProtocol.Error() + ": " + e.msg }

func (e *protocolError) Is(target error) bool { return target == ErrProtocol }

func violation(alert AlertDescription, format string, args ...any) error {
	return &protocolError{alert: alert, msg: fmt.Sprintf(format, args...)}
}
