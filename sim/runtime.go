// Package sim is the device runtime: the one connect loop, credential
// handling and DTLS/CoAP, MQTT/TLS and HTTPS clients that carry out an
// internal/devicemodel state machine's decisions (which credential to
// present, when to swap, when to fall back) over real sockets. Simulated
// devices (Device, MQTTDevice), fleets (RunFleet) and the board emulators
// under boards/ all run on it, so each behaves the same wherever it runs.
package sim

import (
	"context"
	"fmt"

	"github.com/credloop/credloop/internal/devicemodel"
)

// defaultMaxAttempts bounds the connection attempts of one Start when the
// options leave it zero.
const defaultMaxAttempts = 10

// connectLoop is the device runtime's one connect loop, shared by the
// DTLS/CoAP Device and the MQTTDevice (and so by every board emulator that
// runs them): boot the model, connect with the credential it offers, tell
// it the outcome and carry out its decision — online, retry now with its
// next credential, reboot (the boot counter may send it back to its factory
// credential), or stop — within MaxAttempts. The transport is the only
// thing that differs, and it comes in as the functions below.
type connectLoop[S any] struct {
	model *devicemodel.Device
	// id names the device in errors.
	id string
	// maxAttempts bounds connection attempts across the reboots the model
	// asks for (defaultMaxAttempts when <= 0).
	maxAttempts int
	// logf prints a console line.
	logf func(format string, args ...any)
	// target is where the device connects, as the console shows it.
	target string
	// dial makes one connection attempt with cred. An error while ctx is
	// done is not the credential's fault: the model is not told of it.
	dial func(ctx context.Context, cred devicemodel.Credential) (S, error)
	// discard closes a session the model refused (Decision.Err).
	discard func(s S)
	// online takes over a session the model accepted. It returns reboot
	// to have the loop reboot and connect again (a renewed certificate to
	// boot into); an error ends the loop.
	online func(ctx context.Context, s S, cred devicemodel.Credential) (reboot bool, err error)
	// offline, when set, receives the last connection error when the loop
	// gives up.
	offline func(last error)
}

// run boots the model and connects, following its decisions, and returns
// nil once online. It fails with ErrOffline when the attempts run out or
// the model would retry a credential that already failed in this run
// (retrying it teaches nothing in a test run).
func (l connectLoop[S]) run(ctx context.Context) error {
	maxAttempts := l.maxAttempts
	if maxAttempts <= 0 {
		maxAttempts = defaultMaxAttempts
	}
	plan, err := l.boot()
	if err != nil {
		return err
	}
	var last error
	failedWith := map[string]bool{}
	for range maxAttempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		cred := plan.Credential
		l.logf("connecting to %s with %s credential %s", l.target, plan.Slot, cred.Fingerprint())
		s, err := l.dial(ctx, cred)
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("sim %s: %w", l.id, ctx.Err())
		}
		var dec devicemodel.Decision
		if err == nil {
			dec = l.model.ConnectResult(true, "")
		} else {
			last = err
			l.logf("connection failed: %v", err)
			dec = l.model.ConnectResult(false, err.Error())
		}
		l.logLines(dec.Log)
		switch {
		case dec.Err != nil:
			if err == nil {
				l.discard(s)
			}
			return fmt.Errorf("sim %s: %w", l.id, dec.Err)
		case dec.Connected:
			reboot, err := l.online(ctx, s, cred)
			if err != nil {
				return fmt.Errorf("sim %s: %w", l.id, err)
			}
			if !reboot {
				return nil
			}
			if plan, err = l.reboot(); err != nil {
				return err
			}
		case dec.Reboot:
			if plan, err = l.reboot(); err != nil {
				return err
			}
		case dec.Retry:
			failedWith[cred.Fingerprint()+string(plan.Slot)] = true
			plan = dec.Next
			if failedWith[plan.Credential.Fingerprint()+string(plan.Slot)] {
				l.giveUp(last)
				return fmt.Errorf("%w: %s: %v", ErrOffline, l.id, last)
			}
		}
	}
	l.giveUp(last)
	return fmt.Errorf("%w: %s after %d attempts: %v", ErrOffline, l.id, maxAttempts, last)
}

func (l connectLoop[S]) boot() (devicemodel.Plan, error) {
	l.logf("boot")
	plan := l.model.Boot()
	l.logLines(plan.Log)
	if plan.Err != nil {
		return plan, fmt.Errorf("sim %s: boot: %w", l.id, plan.Err)
	}
	return plan, nil
}

func (l connectLoop[S]) reboot() (devicemodel.Plan, error) {
	l.logf("rebooting")
	l.model.Reset()
	return l.boot()
}

func (l connectLoop[S]) giveUp(last error) {
	if l.offline != nil {
		l.offline(last)
	}
}

func (l connectLoop[S]) logLines(lines []string) {
	for _, line := range lines {
		l.logf("%s", line)
	}
}
