package p384

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// TableBytes is the memory of one hot key's table: 9,216 bytes on amd64,
// where the tables are built; 0 with purego or on other architectures,
// where a Cache holds nothing and verifies as Verify does.
const TableBytes = int64(unsafe.Sizeof(hotTable{}))

// BuildCredit is the number of verifications that pay for a table once the
// Cache is full: from then on it builds at most one table (and evicts one
// key) per BuildCredit verifications of keys it does not hold, with at
// most maxBanked tables' worth saved up. A table costs about two
// verifications, so however the keys churn, building tables never costs
// more than about 3% of the verifications' time. Until the Cache is full,
// each key it takes in stays until it is full, so those tables are built
// at most once each and without credit.
const BuildCredit = 64

// maxBanked bounds the credit saved while no table is built.
const maxBanked = 256

// Cache gives the public keys that verify often a table of their own, so
// that both products of a verification are fixed-base: about 2.4x faster
// than Verify on amd64. It holds at most MaxBytes/TableBytes keys; a key is
// promoted once its signatures have verified promoteAfter times, and when
// the cache is full the key to make room is chosen by use: the clock hand
// passes over keys verified since it last came by (and clears their mark),
// and takes the first that was not. A key that is not held verifies as
// Verify does, and pays only two atomic additions for being counted.
//
// Verification handles public data only (key, digest, signature), so the
// tables are built and read in variable time; nothing here is secret.
//
// A Cache is safe for concurrent use. A key is held by at most one Cache;
// another Cache verifies it with the table if it has one.
type Cache struct {
	promoteAfter uint32
	maxKeys      int // cap(ring), read without the lock
	credit       atomic.Int64

	mu   sync.Mutex
	ring []*PublicKey // the keys held; len(ring) <= cap(ring), the bound
	hand int
}

// hotState is a key's part in a Cache.
type hotState struct {
	table atomic.Pointer[hotTable]
	owner atomic.Pointer[Cache]
	// uses counts the key's verified signatures while it is not held.
	uses atomic.Uint32
	// ref marks a held key verified since the clock hand last passed it.
	ref atomic.Bool
}

// NewCache returns a Cache that holds at most maxBytes of tables and
// promotes a key after promoteAfter verified signatures (at least 1). A
// maxBytes below TableBytes makes a Cache that holds nothing.
func NewCache(maxBytes int64, promoteAfter int) *Cache {
	keys := 0
	if per := TableBytes; per > 0 && maxBytes > 0 {
		keys = int(min(maxBytes/per, int64(1)<<30))
	}
	return &Cache{promoteAfter: uint32(max(promoteAfter, 1)), maxKeys: keys, ring: make([]*PublicKey, 0, keys)}
}

// Verify is Verify, with k's table if it has one; it counts k's verified
// signatures toward its promotion. A nil Cache is Verify.
func (c *Cache) Verify(k *PublicKey, digest, r, s []byte) bool {
	if c == nil || c.maxKeys == 0 {
		return Verify(k, digest, r, s)
	}
	if t := k.hot.table.Load(); t != nil {
		if !k.hot.ref.Load() {
			k.hot.ref.Store(true)
		}
		return verifyHot(k, t, digest, r, s)
	}
	if c.credit.Load() < BuildCredit*maxBanked {
		c.credit.Add(1)
	}
	if !Verify(k, digest, r, s) {
		return false
	}
	if k.hot.uses.Add(1) == c.promoteAfter {
		c.promote(k)
	}
	return true
}

// Promote gives k a table now, as its promoteAfter-th verified signature
// would, but without waiting for credit: to warm the cache with keys known
// to call often. It does nothing where tables are not built, or if another
// Cache holds k.
func (c *Cache) Promote(k *PublicKey) {
	if c.maxKeys > 0 && k.hot.table.Load() == nil && k.hot.owner.CompareAndSwap(nil, c) {
		c.take(k)
	}
}

// Len returns the number of keys held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ring)
}

// MaxKeys returns the most keys c holds.
func (c *Cache) MaxKeys() int { return c.maxKeys }

// Held reports whether k has a table.
func (k *PublicKey) Held() bool { return k.hot.table.Load() != nil }

// promote builds k's table and takes k in: into a free slot, or, if the
// credit allows, in place of a key chosen by use. Otherwise k starts
// counting again.
func (c *Cache) promote(k *PublicKey) {
	defer k.hot.uses.Store(0)
	if !k.hot.owner.CompareAndSwap(nil, c) {
		return // another Cache holds it
	}
	c.mu.Lock()
	full := len(c.ring) == cap(c.ring)
	c.mu.Unlock()
	if full && !c.spend() {
		k.hot.owner.Store(nil)
		return
	}
	c.take(k)
}

// take builds k's table and holds k, in a free slot or in place of the
// victim; k's owner is already c.
func (c *Cache) take(k *PublicKey) {
	t := buildTable(k)
	c.mu.Lock()
	defer c.mu.Unlock()
	slot := len(c.ring)
	if slot < cap(c.ring) {
		c.ring = append(c.ring, nil)
	} else {
		slot = c.victim()
		old := c.ring[slot]
		old.hot.table.Store(nil)
		old.hot.owner.Store(nil)
	}
	c.ring[slot] = k
	k.hot.ref.Store(true) // a turn of the hand to be verified again
	k.hot.table.Store(t)
}

// victim advances the clock hand to a held key not verified since the
// hand last passed it, clearing the marks on the way, and returns its slot.
// After one turn every mark is clear, so it stops within two.
func (c *Cache) victim() int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.ring)
		if !c.ring[i].hot.ref.Swap(false) {
			return i
		}
	}
}

// spend takes one table's credit, if there is enough.
func (c *Cache) spend() bool {
	for {
		v := c.credit.Load()
		if v < BuildCredit {
			return false
		}
		if c.credit.CompareAndSwap(v, v-BuildCredit) {
			return true
		}
	}
}
