package registry

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOwnershipTokens(t *testing.T) {
	c := newClock()
	opts := testOptions(t, c)
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := Open(":memory:", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx := ctxT(t)
	seed(t, r)
	ca := newCA(t, "claim", nil)
	cert := must[Credential](t)(r.AddCertificate(ctx, "p", "", ca.leaf(t, "p", "x", 1, t0.Add(time.Hour)), StatePendingActivation))
	exp := t0.Add(time.Hour)

	tok := must[string](t)(r.CreateOwnershipToken(ctx, strings.ToUpper(cert.Fingerprint), exp))
	if raw, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(raw) != 32 {
		t.Fatalf("token %q: %d bytes, %v", tok, len(raw), err)
	}
	var stored int
	if err := r.rd.QueryRow(`SELECT count(*) FROM ownership_tokens WHERE hash = ? AND fingerprint = ?`, tokenHash(tok), cert.Fingerprint).Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("token stored by hash: %d %v", stored, err)
	}
	expired := must[string](t)(r.CreateOwnershipToken(ctx, cert.Fingerprint, t0.Add(time.Minute)))
	if expired == tok {
		t.Fatal("two tokens are equal")
	}

	if _, err := r.CreateOwnershipToken(ctx, Fingerprint([]byte("none")), exp); !errors.Is(err, ErrNotFound) {
		t.Errorf("token for an unknown certificate: %v", err)
	}
	if _, err := r.CreateOwnershipToken(ctx, "zz", exp); !errors.Is(err, ErrInvalid) {
		t.Errorf("token for a bad fingerprint: %v", err)
	}
	if _, err := r.CreateOwnershipToken(ctx, cert.Fingerprint, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("token without expiry: %v", err)
	}

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"expired", expired, t0.Add(time.Minute), ErrTokenExpired},
		{"unknown", "AAAA", t0, ErrNotFound},
		{"empty", "", t0, ErrNotFound},
		{"oversized", strings.Repeat("A", MaxTokenLen+1), t0, ErrNotFound},
		{"ok", tok, t0.Add(59 * time.Minute), nil},
		{"replayed", tok, t0.Add(59 * time.Minute), ErrTokenUsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := r.ConsumeOwnershipToken(ctx, tt.token, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ConsumeOwnershipToken = %q, %v; want %v", fp, err, tt.want)
			}
			if err == nil && fp != cert.Fingerprint {
				t.Errorf("fingerprint %q, want %q", fp, cert.Fingerprint)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), expired) {
		t.Errorf("logs show a token:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), tokenHash(tok)[:8]) {
		t.Errorf("logs do not name the token by its fingerprint:\n%s", logs.String())
	}
}

// TestConsumeOwnershipTokenConcurrent: of many concurrent uses of one
// token exactly one succeeds.
func TestConsumeOwnershipTokenConcurrent(t *testing.T) {
	r := openFile(t, tempDB(t), newClock())
	ctx := ctxT(t)
	seed(t, r)
	ca := newCA(t, "claim", nil)
	cert := must[Credential](t)(r.AddCertificate(ctx, "p", "", ca.leaf(t, "p", "x", 1, t0.Add(time.Hour)), StatePendingActivation))
	tok := must[string](t)(r.CreateOwnershipToken(ctx, cert.Fingerprint, t0.Add(time.Hour)))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, used int
	)
	for range 8 {
		wg.Go(func() {
			_, err := r.ConsumeOwnershipToken(ctx, tok, t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrTokenUsed):
				used++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || used != 7 {
		t.Errorf("%d succeeded, %d already used; want 1 and 7", ok, used)
	}
}

func TestPurgeExpiredTokens(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)
	ca := newCA(t, "claim", nil)
	add := func(serial int64, device string, s CredState) Credential {
		return must[Credential](t)(r.AddCertificate(ctx, "p", device, ca.leaf(t, "p", "x", serial, t0.Add(time.Hour)), s))
	}
	pending := add(1, "", StatePendingActivation)       // expired token: deleted
	attached := add(2, "", StatePendingActivation)      // attached before expiry: kept
	active := add(3, "", StateActive)                   // not pending: kept
	stillValid := add(4, "", StatePendingActivation)    // has a second, valid token: kept
	fresh := add(5, "", StatePendingActivation)         // token not expired: kept
	devicesCert := add(6, "d1", StatePendingActivation) // attached: kept
	soon, later := t0.Add(time.Minute), t0.Add(time.Hour)
	for _, c := range []Credential{pending, attached, active, stillValid, devicesCert} {
		must[string](t)(r.CreateOwnershipToken(ctx, c.Fingerprint, soon))
	}
	must[string](t)(r.CreateOwnershipToken(ctx, stillValid.Fingerprint, later))
	freshTok := must[string](t)(r.CreateOwnershipToken(ctx, fresh.Fingerprint, later))
	if err := r.AttachCertificate(ctx, attached.Fingerprint, "p", "d2"); err != nil {
		t.Fatal(err)
	}

	if n := must[int](t)(r.PurgeExpiredTokens(ctx, soon.Add(-time.Microsecond))); n != 0 {
		t.Errorf("purged %d before expiry", n)
	}
	if n := must[int](t)(r.PurgeExpiredTokens(ctx, soon)); n != 5 {
		t.Errorf("purged %d tokens, want 5", n)
	}
	for _, tt := range []struct {
		c    Credential
		kept bool
	}{{pending, false}, {attached, true}, {active, true}, {stillValid, true}, {fresh, true}, {devicesCert, true}} {
		_, err := r.CertificateByFingerprint(ctx, tt.c.Fingerprint)
		if kept := err == nil; kept != tt.kept {
			t.Errorf("certificate %s kept=%t, want %t (%v)", tt.c.Serial, kept, tt.kept, err)
		}
	}
	if _, err := r.ConsumeOwnershipToken(ctx, freshTok, soon); err != nil {
		t.Errorf("a valid token was purged: %v", err)
	}
}
