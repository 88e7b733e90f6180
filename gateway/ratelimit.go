package gateway

import (
	"hash/maphash"
	"sync"
	"time"
)

// keyLimiter is a token bucket per key: rate tokens a second, up to burst.
// It is sharded so that concurrent calls of different keys rarely meet on
// a lock, and forgets buckets that have been full for a while, so its size
// follows the active keys, not every key ever seen.
type keyLimiter struct {
	rate   float64
	burst  float64
	seed   maphash.Seed
	shards [64]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newKeyLimiter(rate float64, burst int) *keyLimiter {
	l := &keyLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// allow takes a token of key at now, and reports whether there was one.
func (l *keyLimiter) allow(key string, now time.Time) bool {
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.After(s.sweep) {
		// A bucket full again is the same as no bucket.
		full := time.Duration(l.burst / l.rate * float64(time.Second))
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
	return b.take(now, l.rate, l.burst)
}

// take refills b for the time since it was last used, at rate tokens a
// second up to burst, and takes a token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(burst, b.tokens+el.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
