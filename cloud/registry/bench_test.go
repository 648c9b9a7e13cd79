package registry

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPSKByIdentity looks identities up among 1,000 devices in a file
// registry, as the DTLS handshake does.
func BenchmarkPSKByIdentity(b *testing.B) {
	r := openBench(b)
	ctx := context.Background()
	must[Project](b)(r.CreateProject(ctx, "p"))
	const n = 1000
	for i := range n {
		d := fmt.Sprintf("dev-%04d", i)
		must[Device](b)(r.CreateDevice(ctx, "p", d))
		must[Credential](b)(r.AddPSK(ctx, "p", d, d+"@p", []byte("0123456789abcdef")))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			id := fmt.Sprintf("dev-%04d@p", i%n)
			if _, _, err := r.PSKByIdentity(ctx, id); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}

// BenchmarkRecord appends authentication events to a file registry.
func BenchmarkRecord(b *testing.B) {
	r := openBench(b)
	ctx := context.Background()
	e := Event{Project: "p", Device: "dev-0001", Credential: "dev-0001@p", Kind: "auth.psk", Outcome: "ok", Reason: "session established"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Record(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddCertificate registers certificates issued by a root the
// project trusts (so the issuer is found by signature), as first connects
// of auto-provisioned devices do.
func BenchmarkAddCertificate(b *testing.B) {
	r := openBench(b)
	ctx := context.Background()
	must[Project](b)(r.CreateProject(ctx, "p"))
	must[Device](b)(r.CreateDevice(ctx, "p", "d"))
	root := newCA(b, "root", nil)
	must[TrustedRoot](b)(r.TrustRoot(ctx, "p", root.cert.Raw))
	ders := make([][]byte, 0, 1000)
	for i := range cap(ders) {
		ders = append(ders, root.leaf(b, "p", "d", int64(i+1), t0.Add(time.Hour)))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(ders) {
			// Out of certificates: delete them and start over, off the clock.
			b.StopTimer()
			cs := must[[]Credential](b)(r.Credentials(ctx, "p", "d"))
			for _, c := range cs {
				if err := r.DeleteCredential(ctx, c.ID); err != nil {
					b.Fatal(err)
				}
			}
			i = 0
			b.StartTimer()
		}
		if _, err := r.AddCertificate(ctx, "p", "d", ders[i], StateActive); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// openBench opens a file registry without the tests' debug logging.
func openBench(b *testing.B) *Registry {
	r, err := Open(tempDB(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// BenchmarkRecordParallel records from many goroutines at once, as
// concurrent handshakes do: writes share transactions (group commit).
func BenchmarkRecordParallel(b *testing.B) {
	r := openBench(b)
	ctx := context.Background()
	e := Event{Project: "p", Device: "dev-0001", Credential: "dev-0001@p", Kind: "auth.psk", Outcome: "ok", Reason: "session established"}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Record(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
