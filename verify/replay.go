package verify

import (
	"crypto/sha256"
	"sync"
	"time"
)

// ReplayGuard remembers every accepted (public key, timestamp) pair until
// its timestamp leaves the window, and refuses the same pair a second time.
// Flower has no such guard: a captured set of headers can be replayed for
// as long as the timestamp stays in the window (305 s).
//
// It keys on the signed message, not on the signature: ECDSA signatures are
// malleable ((r, s) and (r, n-s) both verify), so a guard on signature bytes
// would let a replay through with the other s. A node that signs the same
// microsecond twice (two calls at once) sees the second refused.
//
// Each tracked call costs about 64 bytes (a 16-byte digest and an expiry
// time in a map). At most MaxEntries calls are tracked; when full, it
// refuses new calls rather than forget old ones (fail closed).
type ReplayGuard struct {
	max    int
	shards [replayShards]replayShard
}

const replayShards = 32

type replayShard struct {
	mu    sync.Mutex
	seen  map[[16]byte]time.Time // digest -> expiry
	sweep time.Time              // next sweep of expired entries
}

// NewReplayGuard returns a guard tracking at most maxEntries calls (0 means
// 1,000,000: about 64 MB).
func NewReplayGuard(maxEntries int) *ReplayGuard {
	if maxEntries <= 0 {
		maxEntries = 1_000_000
	}
	g := &ReplayGuard{max: maxEntries}
	for i := range g.shards {
		g.shards[i].seen = make(map[[16]byte]time.Time)
	}
	return g
}

// Len returns the number of calls tracked now.
func (g *ReplayGuard) Len() int {
	n := 0
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		n += len(s.seen)
		s.mu.Unlock()
	}
	return n
}

var (
	errReplayed   = &Error{Replayed, "the same key and timestamp were accepted before, inside the window"}
	errGuardFull  = &Error{Replayed, "the replay guard is full; refusing calls it cannot track"}
	replayContext = []byte("nodekeys replay guard v1")
)

// check records the call of key pemKey at timestamp ts, accepted at now
// and valid until expiry, and reports whether it was new.
func (g *ReplayGuard) check(pemKey, ts string, now, expiry time.Time) error {
	h := sha256.New()
	h.Write(replayContext)
	h.Write([]byte(pemKey))
	h.Write([]byte{0})
	h.Write([]byte(ts))
	var sum [32]byte
	h.Sum(sum[:0])
	var d [16]byte
	copy(d[:], sum[:16])

	s := &g.shards[d[0]%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.seen[d]; ok && now.Before(exp) {
		return errReplayed
	}
	limit := g.max / replayShards
	if limit < 1 {
		limit = 1
	}
	if len(s.seen) >= limit || now.After(s.sweep) {
		for k, exp := range s.seen {
			if !now.Before(exp) {
				delete(s.seen, k)
			}
		}
		s.sweep = now.Add(time.Second)
		if len(s.seen) >= limit {
			return errGuardFull
		}
	}
	s.seen[d] = expiry
	return nil
}
