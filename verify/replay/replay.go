// Package replay refuses a Flower call whose signed timestamp was accepted
// before inside the window, which Flower's SuperLink does not do.
//
// Guard is the guard of one process; a Checker shared by several gateways
// (package gateway/shared) puts its own Guard in front. Digests gives
// what both key on. A Checker refuses with an *Error, whose Reason package
// verify reports as its own: a Verifier runs one with verify.WithReplay.
package replay

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// Checker records a verified call and refuses one seen before inside the
// window. *Guard is the one of a single process; a checker shared by
// several gateways (package gateway/shared) is another.
type Checker interface {
	// Check records the call of the key pemKey with the flwr-timestamp ts,
	// which says the call was signed at signed, accepted at now and inside
	// the window until expiry. It returns nil for a new call, or an *Error
	// (Replayed, RateLimited, Unavailable).
	Check(pemKey, ts string, signed, now, expiry time.Time) error
}

// Reason says why a Checker refused a call. Package verify reports it as
// its Reason of the same name.
type Reason string

// The reasons a Checker gives.
const (
	Replayed    Reason = "replayed"     // the same key and timestamp were accepted before
	RateLimited Reason = "rate-limited" // the key has more calls than it is allowed
	Unavailable Reason = "unavailable"  // shared state needed for the check cannot be reached
)

// Error is a call a Checker refused.
type Error struct {
	Reason Reason
	// Detail says more, without echoing the key or the timestamp.
	Detail string
}

// Error returns "verify: REASON: DETAIL", as package verify's errors read:
// a Verifier returns it as its refusal.
func (e *Error) Error() string {
	if e.Detail == "" {
		return "verify: " + string(e.Reason)
	}
	return "verify: " + string(e.Reason) + ": " + e.Detail
}

// Guard remembers every accepted (public key, timestamp) pair until
// its timestamp leaves the window, and refuses the same pair a second time.
// Flower has no such guard: a captured set of headers can be replayed for
// as long as the timestamp stays in the window (305 s).
//
// It keys on the signed message, not on the signature: ECDSA signatures are
// malleable ((r, s) and (r, n-s) both verify), so a guard on signature bytes
// would let a replay through with the other s. A node that signs the same
// microsecond twice (two calls at once) sees the second refused.
//
// Each key has a quota: at most KeyQuota of its calls are tracked at once.
// A key over its quota has its further calls refused, with reason
// RateLimited, until its own entries expire; other keys are not affected,
// so one allowlisted node flooding valid calls cannot fill the guard and
// lock out the rest. Across all keys at most MaxEntries calls are tracked;
// when full, it refuses new calls rather than forget old ones (fail
// closed). Each tracked call costs about 80 bytes.
type Guard struct {
	max, quota int
	onQuota    func(pemKey string)
	shards     [replayShards]replayShard
}

const replayShards = 32

// DefaultKeyQuota is the default number of calls of one key tracked at
// once: a SuperNode may call 100 times a second for the whole 305 s window
// (the pace of a run moving a large model in objects) and stay inside it;
// a key at its quota holds about 2.6 MB of the guard.
const DefaultKeyQuota = 32768

type replayEntry struct {
	expiry time.Time
	key    uint64 // the key's id in the shard's counts
}

type replayShard struct {
	mu     sync.Mutex
	seen   map[[16]byte]replayEntry
	perKey map[uint64]int
	sweep  time.Time // next sweep of expired entries
}

// Option configures a Guard.
type Option func(*Guard)

// WithKeyQuota sets how many calls of one key are tracked at once (default
// DefaultKeyQuota). It bounds what one node can take of the guard.
func WithKeyQuota(n int) Option {
	return func(g *Guard) {
		if n > 0 {
			g.quota = n
		}
	}
}

// OnKeyQuota calls f, with the key's PEM, for each call refused because
// its key is over quota: a metric or a log line per abusive node. f must
// be fast and safe for concurrent use; it runs under the guard's lock.
func OnKeyQuota(f func(pemKey string)) Option {
	return func(g *Guard) { g.onQuota = f }
}

// NewGuard returns a guard tracking at most maxEntries calls (0 means
// 1,000,000: about 80 MB).
func NewGuard(maxEntries int, opts ...Option) *Guard {
	if maxEntries <= 0 {
		maxEntries = 1_000_000
	}
	g := &Guard{max: maxEntries, quota: DefaultKeyQuota}
	for _, o := range opts {
		o(g)
	}
	for i := range g.shards {
		g.shards[i].seen = make(map[[16]byte]replayEntry)
		g.shards[i].perKey = make(map[uint64]int)
	}
	return g
}

// Len returns the number of calls tracked now.
func (g *Guard) Len() int {
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
	errKeyQuota   = &Error{RateLimited, "this key has more calls inside the window than its replay-guard quota"}
	replayContext = []byte("nodekeys replay guard v1")
)

// Digests returns what a replay guard keys on: a digest of the key
// alone, and of the key and timestamp (the signed message), both SHA-256
// under a context string. Neither reveals the key or the timestamp.
func Digests(pemKey, ts string) (key, call [32]byte) {
	h := sha256.New()
	h.Write(replayContext)
	h.Write([]byte(pemKey))
	h.Sum(key[:0])
	h.Write([]byte{0})
	h.Write([]byte(ts))
	h.Sum(call[:0])
	return key, call
}

// Check implements Checker.
func (g *Guard) Check(pemKey, ts string, _, now, expiry time.Time) error {
	sumKey, sum := Digests(pemKey, ts)
	return g.CheckDigests(sumKey, sum, pemKey, now, expiry)
}

// CheckDigests is Check for a call whose Digests the caller
// has already computed (a shared guard that keys on them too); pemKey is
// only passed to the OnKeyQuota function.
func (g *Guard) CheckDigests(sumKey, sum [32]byte, pemKey string, now, expiry time.Time) error {
	var d [16]byte
	copy(d[:], sum[:16])
	keyID := binary.LittleEndian.Uint64(sumKey[:8])

	// All calls of one key land in one shard, so its count is exact.
	s := &g.shards[sumKey[8]%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.seen[d]; ok && now.Before(e.expiry) {
		return errReplayed
	}
	// Expired entries go once a second, not at every call: a key or a
	// shard that is full costs a map lookup per refused call, not a sweep.
	if now.After(s.sweep) {
		s.expire(now)
	}
	if s.perKey[keyID] >= g.quota {
		if g.onQuota != nil {
			g.onQuota(pemKey)
		}
		return errKeyQuota
	}
	if len(s.seen) >= max(g.max/replayShards, 1) {
		return errGuardFull
	}
	s.seen[d] = replayEntry{expiry: expiry, key: keyID}
	s.perKey[keyID]++
	return nil
}

// expire drops the entries whose window has passed, and sets the next
// sweep a second later: an entry outlives its window by at most that.
func (s *replayShard) expire(now time.Time) {
	for k, e := range s.seen {
		if !now.Before(e.expiry) {
			delete(s.seen, k)
			if s.perKey[e.key]--; s.perKey[e.key] <= 0 {
				delete(s.perKey, e.key)
			}
		}
	}
	s.sweep = now.Add(time.Second)
}
