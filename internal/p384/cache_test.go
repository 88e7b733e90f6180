package p384

import (
	"fmt"
	"sync"
	"testing"
)

// tables reports whether this build makes tables; with purego a Cache
// must hold nothing and verify as Verify does.
func tables(t *testing.T, c *Cache) bool {
	t.Helper()
	if TableBytes == 0 {
		if c.MaxKeys() != 0 {
			t.Fatalf("a Cache holds %d keys where no table is built", c.MaxKeys())
		}
		return false
	}
	return true
}

// TestCachePromotion: a key is promoted on its promoteAfter-th verified
// signature, not before, and refused signatures do not count: a forger
// cannot promote a key. Held or not, the verdicts are Verify's.
func TestCachePromotion(t *testing.T) {
	priv, digest, r, s := signed(t, "promotion")
	k := newKey(t, priv)
	c := NewCache(4*TableBytes, 3)
	bad := append([]byte(nil), s...)
	bad[47] ^= 1
	for range 10 {
		if c.Verify(k, digest, r, bad) {
			t.Fatal("accepted a bad signature")
		}
	}
	for i := 1; i <= 2; i++ {
		if !c.Verify(k, digest, r, s) {
			t.Fatal("refused a good signature")
		}
		if k.Held() {
			t.Fatalf("promoted after %d verified signatures and 10 refused, want 3", i)
		}
	}
	if !c.Verify(k, digest, r, s) {
		t.Fatal("refused a good signature")
	}
	if !tables(t, c) {
		return
	}
	if !k.Held() || c.Len() != 1 {
		t.Fatalf("not promoted after 3 verified signatures (held %v, %d keys)", k.Held(), c.Len())
	}
	if !c.Verify(k, digest, r, s) || c.Verify(k, digest, r, bad) {
		t.Fatal("a held key's verdicts differ from Verify's")
	}
}

// TestCacheCredit: while the cache has room, a key is taken in at once;
// once it is full, a table (and an eviction) comes at most once per
// BuildCredit verifications of keys it does not hold, however many keys
// qualify.
func TestCacheCredit(t *testing.T) {
	priv1, d1, r1, s1 := signed(t, "credit 1")
	priv2, d2, r2, s2 := signed(t, "credit 2")
	k1, k2 := newKey(t, priv1), newKey(t, priv2)
	c := NewCache(TableBytes, 1)
	if !c.Verify(k1, d1, r1, s1) {
		t.Fatal("refused")
	}
	if !tables(t, c) {
		return
	}
	if !k1.Held() {
		t.Fatal("a key was not taken into a cache with room")
	}
	// k1's verification earned 1; each of k2's adds 1.
	for i := 1; i < BuildCredit-1; i++ {
		c.Verify(k2, d2, r2, s2)
		if k2.Held() {
			t.Fatalf("a second table after %d verifications, want %d", i+1, BuildCredit)
		}
	}
	c.Verify(k2, d2, r2, s2)
	if !k2.Held() || k1.Held() {
		t.Fatalf("after %d verifications: key 2 held %v, key 1 held %v; want key 2 in key 1's place", BuildCredit, k2.Held(), k1.Held())
	}
}

// TestCacheEviction: a full cache makes room by use. Of two held keys,
// the one verified since the clock hand last passed stays, the other goes;
// the cache never holds more than its bound.
func TestCacheEviction(t *testing.T) {
	type signedKey struct {
		k            *PublicKey
		digest, r, s []byte
	}
	var ks []signedKey
	for i := range 4 {
		priv, d, r, s := signed(t, fmt.Sprint("eviction ", i))
		ks = append(ks, signedKey{newKey(t, priv), d, r, s})
	}
	c := NewCache(2*TableBytes+TableBytes/2, 1)
	if !tables(t, c) {
		return
	}
	if c.MaxKeys() != 2 {
		t.Fatalf("holds %d keys in 2.5 tables' bytes", c.MaxKeys())
	}
	verify := func(i int) {
		t.Helper()
		c.credit.Store(BuildCredit) // credit is TestCacheCredit's subject
		if !c.Verify(ks[i].k, ks[i].digest, ks[i].r, ks[i].s) {
			t.Fatalf("key %d refused", i)
		}
	}
	held := func(want ...bool) {
		t.Helper()
		for i, w := range want {
			if ks[i].k.Held() != w {
				t.Fatalf("key %d held %v, want %v", i, !w, w)
			}
		}
		if c.Len() > 2 {
			t.Fatalf("%d keys held, bound 2", c.Len())
		}
	}
	verify(0)
	verify(1)
	held(true, true, false, false)
	// Both were verified since the hand last passed (as they came in): a
	// full turn clears both marks, and the first, key 0, makes room.
	verify(2)
	held(false, true, true, false)
	// Key 2 verifies again; key 1 does not. Key 1 goes.
	verify(2)
	verify(3)
	held(false, false, true, true)
	// An evicted key counts again from zero, and comes back.
	verify(0)
	held(true, false, false, true)
}

// TestCacheConcurrent: under -race, many goroutines verifying more keys
// than the cache holds get Verify's verdicts, and the bound holds.
func TestCacheConcurrent(t *testing.T) {
	type signedKey struct {
		k                 *PublicKey
		digest, r, s, bad []byte
	}
	var ks []signedKey
	for i := range 6 {
		priv, d, r, s := signed(t, fmt.Sprint("concurrent ", i))
		bad := append([]byte(nil), r...)
		bad[0] ^= 0x40
		ks = append(ks, signedKey{newKey(t, priv), d, r, s, bad})
	}
	c := NewCache(3*TableBytes, 2)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 40 {
				k := ks[(g+i)%len(ks)]
				c.credit.Add(BuildCredit / 4) // keep tables coming
				if !c.Verify(k.k, k.digest, k.r, k.s) {
					t.Error("refused a good signature")
				}
				if c.Verify(k.k, k.digest, k.bad, k.s) {
					t.Error("accepted a bad signature")
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > c.MaxKeys() {
		t.Fatalf("%d keys held, bound %d", c.Len(), c.MaxKeys())
	}
	held := 0
	for _, k := range ks {
		if k.k.Held() {
			held++
		}
	}
	if held != c.Len() {
		t.Fatalf("%d keys have a table, the cache holds %d", held, c.Len())
	}
	tables(t, c)
}
