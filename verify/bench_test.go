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
func benchSetup(b *testing.B, n int) (*verify.Verifier, sign.Headers, *ecdsa.PrivateKey) {
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
	return verify.New(list), h, first
}

func BenchmarkVerifyP384(b *testing.B) {
	v, h, _ := benchSetup(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyAt(h, benchNow); err != nil {
			b.Fatal(err)
		}
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
	v, h, _ := benchSetup(b, 100)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.VerifyAt(h, benchNow); err != nil {
				b.Fatal(err)
			}
		}
	})
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
