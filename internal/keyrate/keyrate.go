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
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter of rate tokens a second per key, up to burst
// (at least 1).
func New(rate float64, burst int) *Limiter {
	l := &Limiter{rate: rate, burst: float64(max(burst, 1)), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
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
			if now.Sub(b.last) > full {
				delete(s.buckets, k)
			}
		}
		s.sweep = now.Add(10 * time.Second)
	}
	b, ok := s.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		s.buckets[key] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
