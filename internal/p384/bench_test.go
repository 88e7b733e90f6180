package p384

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"testing"
	"time"
)

// signed returns a key and a valid signature, r and s as 48 bytes each.
func signed(tb testing.TB, seed string) (*ecdsa.PrivateKey, []byte, []byte, []byte) {
	tb.Helper()
	d := sha512.Sum384([]byte(seed))
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256([]byte(seed))
	r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	return priv, sum[:], r.FillBytes(make([]byte, 48)), s.FillBytes(make([]byte, 48))
}

func newKey(tb testing.TB, priv *ecdsa.PrivateKey) *PublicKey {
	tb.Helper()
	point, err := priv.PublicKey.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := NewPublicKey(point)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// BenchmarkVerify compares, in one run, a key on today's path (verified
// before, so on the split path where that is built) with the same key held
// by a Cache, and a key too cold to be promoted going through the Cache.
// benchstat's ratio of cold to today is the cost of the Cache for a cold
// key; today to hot is the gain for a hot one.
func BenchmarkVerify(b *testing.B) {
	priv, digest, r, s := signed(b, "bench")
	b.Run("path=today", func(b *testing.B) {
		k := newKey(b, priv)
		c0 := cpuTime()
		for b.Loop() {
			if !Verify(k, digest, r, s) {
				b.Fatal("refused")
			}
		}
		reportCPU(b, c0)
	})
	b.Run("path=cold", func(b *testing.B) {
		k := newKey(b, priv)
		c := NewCache(1<<20, 1<<31)
		c0 := cpuTime()
		for b.Loop() {
			if !c.Verify(k, digest, r, s) {
				b.Fatal("refused")
			}
		}
		reportCPU(b, c0)
	})
	b.Run("path=hot", func(b *testing.B) {
		k := newKey(b, priv)
		c := NewCache(1<<20, 1)
		c.Verify(k, digest, r, s)
		if TableBytes > 0 && !k.Held() {
			b.Fatal("not promoted")
		}
		c0 := cpuTime()
		for b.Loop() {
			if !c.Verify(k, digest, r, s) {
				b.Fatal("refused")
			}
		}
		reportCPU(b, c0)
	})
}

// reportCPU reports the CPU time per operation since c0: the cost per
// core, which a loaded machine inflates less than the wall time.
func reportCPU(b *testing.B, c0 time.Duration) {
	if c := cpuTime(); c > 0 {
		b.ReportMetric(float64(c-c0)/float64(b.N), "cpu-ns/op")
	}
}
