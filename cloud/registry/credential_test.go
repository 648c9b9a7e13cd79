package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAddPSK(t *testing.T) {
	r := openMem(t, newClock())
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))
	tests := []struct {
		name, project, device, identity string
		key                             []byte
		want                            error
	}{
		{"main key", "p", "d1", "d1@p", []byte("k1"), nil},
		{"backup key", "p", "d1", "d1-backup@p", []byte("k2"), nil},
		{"third key", "p", "d1", "d1-third@p", []byte("k3"), ErrTooManyPSKs},
		{"identity taken", "p", "d2", "d1@p", []byte("k4"), ErrExists},
		{"identity of another project", "p", "d2", "d2@q", []byte("k"), ErrInvalid},
		{"identity without project", "p", "d2", "d2", []byte("k"), ErrInvalid},
		{"identity with bad device part", "p", "d2", "d 2@p", []byte("k"), ErrInvalid},
		{"empty key", "p", "d2", "d2@p", nil, ErrInvalid},
		{"64-byte key", "p", "d2", "d2@p", bytes.Repeat([]byte{1}, 64), nil},
		{"65-byte key", "p", "d2", "d2-long@p", bytes.Repeat([]byte{1}, 65), ErrInvalid},
		{"unknown device", "p", "d9", "d9@p", []byte("k"), ErrNotFound},
		{"unknown project", "z", "d1", "d1@z", []byte("k"), ErrNotFound},
		{"bad device id", "p", "", "x@p", []byte("k"), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := r.AddPSK(ctx, tt.project, tt.device, tt.identity, tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AddPSK = %v, want %v", err, tt.want)
			}
			if err != nil {
				if len(tt.key) > 1 && strings.Contains(err.Error(), string(tt.key)) {
					t.Errorf("error %q shows the key", err)
				}
				return
			}
			want := Credential{ID: c.ID, Project: tt.project, Device: tt.device, Kind: KindPSK, State: StateActive,
				PSKIdentity: tt.identity, PSK: tt.key, Fingerprint: Fingerprint(tt.key), Created: t0}
			if c.ID == 0 || fmt.Sprint(c.LogValue()) != fmt.Sprint(want.LogValue()) || !bytes.Equal(c.PSK, tt.key) || !c.Created.Equal(t0) {
				t.Errorf("AddPSK = %v %v, want %v", c.LogValue(), c.Created, want.LogValue())
			}
		})
	}

	t.Run("revoked keys do not count", func(t *testing.T) {
		cs := must[[]Credential](t)(r.Credentials(ctx, "p", "d1"))
		if len(cs) != 2 {
			t.Fatalf("d1 has %d credentials", len(cs))
		}
		if err := r.SetCredentialState(ctx, cs[0].ID, StateRevoked); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AddPSK(ctx, "p", "d1", "d1-next@p", []byte("k5")); err != nil {
			t.Fatalf("AddPSK after revoking one: %v", err)
		}
		// Not even a revoked credential's identity can be reused.
		if _, err := r.AddPSK(ctx, "p", "d2", cs[0].PSKIdentity, []byte("k6")); !errors.Is(err, ErrExists) {
			t.Fatalf("AddPSK(revoked identity) = %v, want ErrExists", err)
		}
	})
}

func TestPSKByIdentity(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	added := must[Credential](t)(r.AddPSK(ctx, "p", "d2", "main.d2@p", []byte("0123456789abcdef")))
	seen := t0.Add(time.Hour)
	if err := r.TouchDevice(ctx, "p", "d2", seen); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		identity string
		want     error
	}{
		{"main.d2@p", nil},
		{"MAIN.d2@p", ErrNotFound},
		{"d2@p", ErrNotFound},
		{"", ErrNotFound},
		{strings.Repeat("x", 10000), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.identity), func(t *testing.T) {
			cred, dev, err := r.PSKByIdentity(ctx, tt.identity)
			if !errors.Is(err, tt.want) {
				t.Fatalf("PSKByIdentity = %v, want %v", err, tt.want)
			}
			if err != nil {
				if len(err.Error()) > 300 {
					t.Errorf("error not clipped: %d bytes", len(err.Error()))
				}
				return
			}
			if cred.ID != added.ID || !bytes.Equal(cred.PSK, added.PSK) || cred.State != StateActive {
				t.Errorf("credential = %v", cred.LogValue())
			}
			want := Device{Project: "p", ID: "d2", Created: t0, LastSeen: seen}
			if dev != want {
				t.Errorf("device = %+v, want %+v", dev, want)
			}
		})
	}
}

// TestCredentialNeverShowsPSK formats and logs a PSK credential every way
// we can think of and looks for the key in any encoding.
func TestCredentialNeverShowsPSK(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	seed(t, r)
	key := []byte("TOPSECRETKEYVALUE")
	c := must[Credential](t)(r.AddPSK(ctx, "p", "d1", "d1@p", key))
	forbidden := []string{
		string(key),
		hex.EncodeToString(key),
		strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key),
		fmt.Sprint(key[:4]), // [84 79 80 83 ...]
		strings.Trim(fmt.Sprint(key[:4]), "[]"),
		fmt.Sprintf("% x", key[:4]),
	}
	var logs bytes.Buffer
	text := slog.New(slog.NewTextHandler(&logs, nil))
	text.Info("credential", "cred", c, "ptr", &c)
	jsonLog := slog.New(slog.NewJSONHandler(&logs, nil))
	jsonLog.Info("credential", "cred", c, slog.Any("list", []Credential{c}))
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v %+v":  fmt.Sprintf("%v %+v", c, c),
		"%#v":     fmt.Sprintf("%#v", c),
		"%s %q":   fmt.Sprintf("%s %q", c, c),
		"%x %X":   fmt.Sprintf("%x %X", c, c),
		"%d":      fmt.Sprintf("%d", c),
		"pointer": fmt.Sprintf("%v %+v %s", &c, &c, &c),
		"slice":   fmt.Sprintf("%v %+v", []Credential{c}, []*Credential{&c}),
		"struct":  fmt.Sprintf("%+v", struct{ C Credential }{c}),
		"String":  c.String(),
		"slog":    logs.String(),
		"json":    string(js),
	}
	wantShown := fmt.Sprintf("psk:d1@p fp=%s", Fingerprint(key)[:8])
	if c.String() != wantShown {
		t.Errorf("String() = %q, want %q", c.String(), wantShown)
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			for _, f := range forbidden {
				if strings.Contains(out, f) {
					t.Errorf("%s output %q contains the key as %q", name, out, f)
				}
			}
			if name != "json" && !strings.Contains(out, "d1@p") {
				t.Errorf("%s output %q does not show the identity", name, out)
			}
		})
	}
}

func TestCertificateString(t *testing.T) {
	c := Credential{Kind: KindCert, Serial: "1a", Fingerprint: strings.Repeat("ab", 32)}
	if got, want := fmt.Sprint(c), "cert:1a fp=abababab"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestAddCertificate(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	root := newCA(t, "root", nil)
	other := newCA(t, "other", nil)
	must[TrustedRoot](t)(r.TrustRoot(ctx, "p", root.cert.Raw))
	notAfter := t0.Add(30 * 24 * time.Hour)
	der := root.leaf(t, "p", "d1", 0x0abc, notAfter)

	tests := []struct {
		name, project, device string
		der                   []byte
		state                 CredState
		want                  error
	}{
		{"ok", "p", "d1", der, StateActive, nil},
		{"duplicate", "p", "d2", der, StateActive, ErrExists},
		{"pending, unknown issuer", "p", "d2", other.leaf(t, "p", "d2", 1, notAfter), StatePendingActivation, nil},
		{"bad state", "p", "d2", other.leaf(t, "p", "d2", 2, notAfter), "BROKEN", ErrInvalid},
		{"bad DER", "p", "d2", []byte{0x30, 0x03, 1, 2, 3}, StateActive, ErrInvalid},
		{"unknown device", "p", "d9", other.leaf(t, "p", "d9", 3, notAfter), StateActive, ErrNotFound},
		{"bad device id", "p", "d 9", der, StateActive, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.AddCertificate(ctx, tt.project, tt.device, tt.der, tt.state)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AddCertificate = %v, want %v", err, tt.want)
			}
			if err == nil && (got.State != tt.state || got.Kind != KindCert || got.Device != tt.device) {
				t.Errorf("AddCertificate = %v", got.LogValue())
			}
		})
	}

	got := must[Credential](t)(r.CertificateByFingerprint(ctx, strings.ToUpper(Fingerprint(der))))
	want := Credential{
		ID: got.ID, Project: "p", Device: "d1", Kind: KindCert, State: StateActive,
		Serial: "abc", Fingerprint: Fingerprint(der), IssuerFingerprint: root.fp,
		Issuer: root.cert.Subject.String(), Subject: "CN=d1,O=p",
		NotBefore: t0.Add(-time.Hour), NotAfter: notAfter, DER: der, Created: t0,
	}
	if g, w := fmt.Sprintf("%#v", fieldsOf(got)), fmt.Sprintf("%#v", fieldsOf(want)); g != w {
		t.Errorf("CertificateByFingerprint =\n%s\nwant\n%s", g, w)
	}
	if got.PSK != nil || got.PSKIdentity != "" {
		t.Errorf("certificate has PSK fields")
	}

	lookups := []struct {
		name, fp string
		want     error
	}{
		{"missing", strings.Repeat("0", 64), ErrNotFound},
		{"not hex", "xyz", ErrInvalid},
		{"psk fingerprint is not a certificate", Fingerprint([]byte("k")), ErrNotFound},
	}
	must[Credential](t)(r.AddPSK(ctx, "p", "d2", "d2@p", []byte("k")))
	for _, tt := range lookups {
		t.Run("lookup "+tt.name, func(t *testing.T) {
			if _, err := r.CertificateByFingerprint(ctx, tt.fp); !errors.Is(err, tt.want) {
				t.Fatalf("CertificateByFingerprint = %v, want %v", err, tt.want)
			}
		})
	}
}

// fieldsOf is a Credential's fields without its methods, for comparing.
type credFields struct {
	ID                                                                           int64
	Project, Device                                                              string
	Kind                                                                         CredKind
	State                                                                        CredState
	PSKIdentity                                                                  string
	PSK                                                                          []byte
	Serial, Fingerprint, IssuerFingerprint, Issuer, Subject, NotBefore, NotAfter string
	DER                                                                          []byte
	Created                                                                      string
}

func fieldsOf(c Credential) credFields {
	return credFields{c.ID, c.Project, c.Device, c.Kind, c.State, c.PSKIdentity, c.PSK,
		c.Serial, c.Fingerprint, c.IssuerFingerprint, c.Issuer, c.Subject,
		c.NotBefore.String(), c.NotAfter.String(), c.DER, c.Created.String()}
}

func TestCredentialsAndStates(t *testing.T) {
	r := openMem(t, nil)
	ctx := ctxT(t)
	seed(t, r)
	must[Project](t)(r.CreateProject(ctx, "q"))
	must[Device](t)(r.CreateDevice(ctx, "q", "d1"))
	ca := newCA(t, "ca", nil)
	a := must[Credential](t)(r.AddPSK(ctx, "p", "d1", "d1@p", []byte("a")))
	b := must[Credential](t)(r.AddCertificate(ctx, "p", "d1", ca.leaf(t, "p", "d1", 1, t0), StatePendingActivation))
	c := must[Credential](t)(r.AddPSK(ctx, "p", "d2", "d2@p", []byte("c")))
	d := must[Credential](t)(r.AddPSK(ctx, "q", "d1", "d1@q", []byte("d")))

	list := []struct {
		project, device string
		want            []int64
		err             error
	}{
		{"p", "d1", []int64{a.ID, b.ID}, nil},
		{"p", "", []int64{a.ID, b.ID, c.ID}, nil},
		{"", "", []int64{a.ID, b.ID, c.ID, d.ID}, nil},
		{"q", "d2", nil, nil},
		{"", "d1", nil, ErrInvalid},
		{"p", "d 1", nil, ErrInvalid},
		{"p q", "", nil, ErrInvalid},
	}
	for _, tt := range list {
		t.Run("list "+tt.project+"/"+tt.device, func(t *testing.T) {
			cs, err := r.Credentials(ctx, tt.project, tt.device)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Credentials = %v, want %v", err, tt.err)
			}
			var ids []int64
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("Credentials(%q, %q) = %v, want %v", tt.project, tt.device, ids, tt.want)
			}
		})
	}

	states := []struct {
		name string
		id   int64
		to   CredState
		want error
	}{
		{"activate", b.ID, StateActive, nil},
		{"deactivate", b.ID, StateInactive, nil},
		{"pending", b.ID, StatePendingActivation, nil},
		{"revoke", b.ID, StateRevoked, nil},
		{"revoke again", b.ID, StateRevoked, nil},
		{"revoked is final", b.ID, StateActive, ErrInvalid},
		{"unknown state", a.ID, "active", ErrInvalid},
		{"unknown credential", 9999, StateActive, ErrNotFound},
	}
	for _, tt := range states {
		t.Run("state "+tt.name, func(t *testing.T) {
			err := r.SetCredentialState(ctx, tt.id, tt.to)
			if !errors.Is(err, tt.want) {
				t.Fatalf("SetCredentialState = %v, want %v", err, tt.want)
			}
			if err == nil {
				if got := must[Credential](t)(r.Credential(ctx, tt.id)); got.State != tt.to {
					t.Errorf("state = %s, want %s", got.State, tt.to)
				}
			}
		})
	}

	del := []struct {
		id   int64
		want error
	}{
		{c.ID, nil},
		{c.ID, ErrNotFound},
		{-1, ErrNotFound},
	}
	for _, tt := range del {
		t.Run(fmt.Sprint("delete ", tt.id), func(t *testing.T) {
			if err := r.DeleteCredential(ctx, tt.id); !errors.Is(err, tt.want) {
				t.Fatalf("DeleteCredential = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := r.Credential(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Credential(deleted) = %v", err)
	}
	// Ids are not reused.
	e := must[Credential](t)(r.AddPSK(ctx, "p", "d2", "d2@p", []byte("e")))
	if e.ID <= d.ID {
		t.Errorf("new id %d reuses an old one (last %d)", e.ID, d.ID)
	}
}

func TestExpiringCertificates(t *testing.T) {
	c := newClock()
	r := openMem(t, c)
	ctx := ctxT(t)
	seed(t, r)
	ca := newCA(t, "ca", nil)
	day := 24 * time.Hour
	add := func(serial int64, notAfter time.Time, s CredState) Credential {
		t.Helper()
		return must[Credential](t)(r.AddCertificate(ctx, "p", "d1", ca.leaf(t, "p", "d1", serial, notAfter), s))
	}
	in10 := add(1, t0.Add(10*day), StateActive)
	in40 := add(2, t0.Add(40*day), StateActive)
	in5pending := add(3, t0.Add(5*day), StatePendingActivation)
	add(4, t0.Add(3*day), StateInactive)
	add(5, t0.Add(2*day), StateRevoked)
	expired := add(6, t0.Add(-day), StateActive)

	tests := []struct {
		name   string
		within time.Duration
		now    time.Time
		want   []int64
	}{
		{"now, 30 days", 30 * day, t0, []int64{expired.ID, in5pending.ID, in10.ID}},
		{"now, zero window: expired only", 0, t0, []int64{expired.ID}},
		{"exactly at NotAfter", 10 * day, t0, []int64{expired.ID, in5pending.ID, in10.ID}},
		{"a microsecond short", 10*day - time.Microsecond, t0, []int64{expired.ID, in5pending.ID}},
		{"virtual clock 35 days on", 7 * day, t0.Add(35 * day), []int64{expired.ID, in5pending.ID, in10.ID, in40.ID}},
		{"long before", day, t0.Add(-30 * day), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := must[[]Credential](t)(r.ExpiringCertificates(ctx, tt.within, tt.now))
			var ids []int64
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("ExpiringCertificates = %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestCredentialLogValueWithHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	c := Credential{ID: 3, Project: "p", Device: "d", Kind: KindPSK, State: StateActive, PSKIdentity: "d@p", PSK: []byte("zzzz"), Fingerprint: Fingerprint([]byte("zzzz"))}
	log.Info("x", "cred", c)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	got, _ := m["cred"].(map[string]any)
	if got["identity"] != "d@p" || got["fp"] != Fingerprint([]byte("zzzz"))[:8] || got["state"] != "ACTIVE" {
		t.Errorf("logged %v", m["cred"])
	}
	if _, ok := got["psk"]; ok {
		t.Errorf("logged a psk field: %v", got)
	}
}
