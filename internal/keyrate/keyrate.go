// Package keyrate is a token bucket per key (a client address, a public
// key): Rate tokens a second, up to Burst, for bounding what one caller
// may make a server do. Its entry point is New, then Limiter.Allow.
//
// It is sharded, so that concurrent calls of different keys rarely meet on
// a lock, and it forgets buckets that have been full for a while, so its
// size follows the active keys, not every key ever seen.
package keyrate

import (
	"hash/maphash"
	"sync"
	"time"
)

// Limiter is a token bucket per key. The zero value is not usable; make
// one with New.
type Limiter struct {
	rate   float64
	burst  float64
	seed   maphash.Seed
	shards [64]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*Bucket
	sweep   time.Time
}

// Bucket is one token bucket, for a caller that keeps its own (one per
// connection, say). It is not safe for concurrent use.
type Bucket struct {
	// Tokens is what the bucket held at Last.
	Tokens float64
	Last   time.Time
}

// Take refills b for the time since it was last used, at rate tokens a
// second up to burst, and takes a token if there is one.
func (b *Bucket) Take(now time.Time, rate, burst float64) bool {
	if el := now.Sub(b.Last); el > 0 {
		b.Tokens = min(burst, b.Tokens+el.Seconds()*rate)
		b.Last = now
	}
	if b.Tokens < 1 {
		return false
	}
	b.Tokens--
	return true
}

// New returns a limiter of rate tokens a second per key, up to burst
// (at least 1).
func New(rate float64, burst int) *Limiter {
	l := &Limiter{rate: rate, burst: float64(max(burst, 1)), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*Bucket)
	}
	return l
}

// Allow takes a token of key at now, and reports whether there was one.
func (l *Limiter) Allow(key string, now time.Time) bool {
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.sweep) {
		// A bucket full again is the same as no bucket.
		full := time.Duration(l.burst / max(l.rate, 1e-9) * float64(time.Second))
		for k, b := range s.buckets {
			if now.Sub(b.Last) > full {
				delete(s.buckets, k)
			}
		}
		s.sweep = now.Add(10 * time.Second)
	}
	b, ok := s.buckets[key]
	if !ok {
		b = &Bucket{Tokens: l.burst, Last: now}
		s.buckets[key] = b
	}
	return b.Take(now, l.rate, l.burst)
}
