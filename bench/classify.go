package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
)

// Error causes returned by DefaultClassify.
const (
	CauseTimeout  = "timeout"
	CauseRefused  = "refused"
	CauseReset    = "reset"
	CauseAlert    = "alert"
	CauseCanceled = "canceled"
	CauseOther    = "other"
)

// DefaultClassify names the cause of an operation error: "timeout" (context
// deadline, net timeouts), "refused" (connection refused, also ICMP port
// unreachable on UDP), "reset" (connection reset), "alert" (TLS alerts from
// crypto/tls, pion/dtls alerts, "remote error: tls: ..."), "canceled" (the
// run's context was cancelled) or "other".
func DefaultClassify(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return CauseTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CauseTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return CauseRefused
	}
	if errors.Is(err, syscall.ECONNRESET) {
		return CauseReset
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return CauseAlert
	}
	if errors.Is(err, context.Canceled) {
		return CauseCanceled
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "timeout") || strings.Contains(msg, "timed out") ||
		strings.Contains(msg, "deadline exceeded"):
		return CauseTimeout
	case strings.Contains(msg, "connection refused"):
		return CauseRefused
	case strings.Contains(msg, "connection reset"):
		return CauseReset
	case strings.Contains(msg, "remote error: tls") || strings.Contains(msg, "alert"):
		// crypto/tls remote alerts; pion/dtls "alert: Alert LevelFatal: ...".
		return CauseAlert
	}
	return CauseOther
}
