package verify_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

var benchNow = time.Date(2026, 11, 22, 17, 45, 3, 123456000, time.UTC)

// benchSetup returns a verifier of n keys and valid headers of key 0.
func benchSetup(b *testing.B, n int, opts ...verify.Option) (*verify.Verifier, sign.Headers, *ecdsa.PrivateKey) {
	b.Helper()
	var pubs []*keys.PublicKey
	var first *ecdsa.PrivateKey
	for i := range n {
		p, err := keys.Generator{Seed: []byte("bench-seed-0123456789abcdef")}.Pair(i)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			first = p.Private
		}
		pubs = append(pubs, p.Public)
	}
	list, err := verify.NewAllowlist(pubs)
	if err != nil {
		b.Fatal(err)
	}
	s, err := sign.New(first)
	if err != nil {
		b.Fatal(err)
	}
	h, err := s.SignTimestamp(flwr.FormatTimestamp(benchNow.Add(-time.Second)))
	if err != nil {
		b.Fatal(err)
	}
	return verify.New(list, opts...), h, first
}

// hotPaths are the verifiers BenchmarkVerifyP384 compares in one run:
// today's path (no hot-key cache), a key held by the cache, and a key the
// cache counts but never promotes. benchstat shows hot and cold as ratios
// against today.
var hotPaths = []struct {
	name string
	opt  verify.Option
}{
	{"today", verify.WithHotKeys(0, 0)},
	{"hot", verify.WithHotKeys(verify.DefaultHotKeyBytes, 1)},
	{"cold", verify.WithHotKeys(verify.DefaultHotKeyBytes, 1<<30)},
}

func BenchmarkVerifyP384(b *testing.B) {
	for _, p := range hotPaths {
		b.Run("path="+p.name, func(b *testing.B) {
			v, h, _ := benchSetup(b, 100, p.opt)
			warm(b, v, h, p.name == "hot")
			b.ReportAllocs()
			c0 := cpuTime()
			for b.Loop() {
				if _, err := v.VerifyAt(h, benchNow); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, c0)
		})
	}
}

// reportCPU reports the CPU time per operation since c0: the cost per
// core, which a loaded machine inflates less than the wall time.
func reportCPU(b *testing.B, c0 time.Duration) {
	if c := cpuTime(); c > 0 {
		b.ReportMetric(float64(c-c0)/float64(b.N), "cpu-ns/op")
	}
}

// warm verifies h twice, so that its key is past its first two calls, and
// checks that the cache holds it or not.
func warm(b *testing.B, v *verify.Verifier, h sign.Headers, hot bool) {
	b.Helper()
	for range 2 {
		if _, err := v.VerifyAt(h, benchNow); err != nil {
			b.Fatal(err)
		}
	}
	if held, _ := v.HotKeys(); (held == 1) != (hot && verify.HotKeyBytesPerKey > 0) {
		b.Fatalf("%d keys held", held)
	}
}

// BenchmarkStdlibP384 is the baseline: crypto/ecdsa on the same signature.
func BenchmarkStdlibP384(b *testing.B) {
	_, h, priv := benchSetup(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256([]byte(h.Timestamp))
		if !ecdsa.VerifyASN1(&priv.PublicKey, sum[:], h.Signature) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkVerifyP384Parallel(b *testing.B) {
	for _, p := range hotPaths {
		b.Run("path="+p.name, func(b *testing.B) {
			v, h, _ := benchSetup(b, 100, p.opt)
			warm(b, v, h, p.name == "hot")
			b.ReportAllocs()
			c0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.VerifyAt(h, benchNow); err != nil {
						b.Fatal(err)
					}
				}
			})
			reportCPU(b, c0)
		})
	}
}

func BenchmarkRejectStale(b *testing.B) {
	v, h, _ := benchSetup(b, 100)
	late := benchNow.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyAt(h, late); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkRejectUnknownKey(b *testing.B) {
	v, h, _ := benchSetup(b, 100)
	p, _ := keys.Generator{}.Pair(0)
	h.PublicKey = p.Public.PEM()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyAt(h, benchNow); err == nil {
			b.Fatal("accepted")
		}
	}
}
