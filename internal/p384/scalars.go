package p384

import (
	"crypto/elliptic"
	"math/big"
)

var curveN = elliptic.P384().Params().N

// scalars returns u1 = e·s⁻¹ and u2 = r·s⁻¹ mod n as 48-byte big-endian
// values, for a digest and r, s already known to lie in [1, n-1]; e is the
// leftmost 384 bits of the digest (SEC 1 section 4.1.4, bits2int).
func scalars(digest, r, s []byte) (u1, u2 [48]byte, ok bool) {
	if len(digest) > 48 {
		digest = digest[:48]
	}
	var e, rr, ss, w, t1, t2 big.Int
	e.SetBytes(digest)
	rr.SetBytes(r)
	ss.SetBytes(s)
	if w.ModInverse(&ss, curveN) == nil {
		return u1, u2, false
	}
	t1.Mul(&e, &w).Mod(&t1, curveN).FillBytes(u1[:])
	t2.Mul(&rr, &w).Mod(&t2, curveN).FillBytes(u2[:])
	return u1, u2, true
}
