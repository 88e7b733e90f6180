package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"math/big"

	"github.com/cloudflare/circl/ecc/p384"
)

// p384Curve does the double-scalar multiplication u1*G + u2*Q in variable
// time: signature verification touches only public values.
var (
	p384Curve = p384.P384()
	p384N     = elliptic.P384().Params().N
)

// p384Key is a P-384 public key in the form the fast path takes.
type p384Key struct {
	x, y *big.Int
}

func newP384Key(pub *ecdsa.PublicKey) *p384Key {
	b, _ := pub.Bytes() // 0x04 || X || Y, 97 bytes
	return &p384Key{x: new(big.Int).SetBytes(b[1:49]), y: new(big.Int).SetBytes(b[49:97])}
}

// verify checks an ECDSA signature (r, s), already known to lie in
// [1, n-1], over hash, as SEC 1 section 4.1.4 states it.
func (k *p384Key) verify(hash, rb, sb []byte) bool {
	if len(hash) > 48 {
		hash = hash[:48] // bits2int: the leftmost 384 bits
	}
	var e, r, s, w, u1, u2 big.Int
	e.SetBytes(hash)
	r.SetBytes(rb)
	s.SetBytes(sb)
	if w.ModInverse(&s, p384N) == nil {
		return false
	}
	u1.Mul(&e, &w).Mod(&u1, p384N)
	u2.Mul(&r, &w).Mod(&u2, p384N)
	var b1, b2 [48]byte
	x, y := p384Curve.CombinedMult(k.x, k.y, u1.FillBytes(b1[:]), u2.FillBytes(b2[:]))
	if p384Curve.IsAtInfinity(x, y) {
		return false
	}
	x.Mod(x, p384N)
	return x.Cmp(&r) == 0
}
