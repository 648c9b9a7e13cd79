package sim_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/credloop/credloop/sim"
)

// A refusal is a *sim.RefusedError carrying the status and the cloud's
// reason; its text is what it always was.
func TestProvisionHTTPSRefused(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"UDID not on the allowlist"}`))
	}))
	defer srv.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = sim.ProvisionHTTPS(ctx, sim.HTTPSProvisionOptions{URL: srv.URL, UDID: "00AA", Key: key})
	var re *sim.RefusedError
	if !errors.As(err, &re) || re.Status != "403 Forbidden" || re.Reason != "UDID not on the allowlist" {
		t.Fatalf("err = %v (%T)", err, err)
	}
	if want := "sim: provision refused: 403 Forbidden: UDID not on the allowlist"; err.Error() != want {
		t.Fatalf("text = %q, want %q", err.Error(), want)
	}
}
