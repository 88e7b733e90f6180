//go:build !amd64 || purego

package p384

import (
	"crypto/elliptic"
	"errors"
	"math/big"

	"github.com/cloudflare/circl/ecc/p384"
)

var (
	curve  = p384.P384()
	curveN = elliptic.P384().Params().N
)

// PublicKey is a P-384 public key in the form Verify takes.
type PublicKey struct {
	x, y *big.Int
}

// NewPublicKey takes an uncompressed point, 0x04 || X || Y, that the caller
// has already checked lies on the curve (crypto/ecdsa's parsers do).
func NewPublicKey(point []byte) (*PublicKey, error) {
	if len(point) != 97 || point[0] != 4 {
		return nil, errors.New("p384: not an uncompressed P-384 point")
	}
	return &PublicKey{x: new(big.Int).SetBytes(point[1:49]), y: new(big.Int).SetBytes(point[49:])}, nil
}

// Verify reports whether (r, s), big-endian integers already known to lie
// in [1, n-1], is an ECDSA signature by k of digest (SEC 1 section 4.1.4).
func Verify(k *PublicKey, digest, r, s []byte) bool {
	if len(digest) > 48 {
		digest = digest[:48]
	}
	var e, rr, ss, w, u1, u2 big.Int
	e.SetBytes(digest)
	rr.SetBytes(r)
	ss.SetBytes(s)
	if w.ModInverse(&ss, curveN) == nil {
		return false
	}
	u1.Mul(&e, &w).Mod(&u1, curveN)
	u2.Mul(&rr, &w).Mod(&u2, curveN)
	var b1, b2 [48]byte
	x, y := curve.CombinedMult(k.x, k.y, u1.FillBytes(b1[:]), u2.FillBytes(b2[:]))
	if curve.IsAtInfinity(x, y) {
		return false
	}
	x.Mod(x, curveN)
	return x.Cmp(&rr) == 0
}
