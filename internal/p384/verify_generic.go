//go:build !amd64 || purego

package p384

import (
	"errors"
	"math/big"

	"github.com/cloudflare/circl/ecc/p384"
)

var curve = p384.P384()

// PublicKey is a P-384 public key in the form Verify takes.
type PublicKey struct {
	x, y *big.Int
	hot  hotState
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
	u1, u2, ok := scalars(digest, r, s)
	if !ok {
		return false
	}
	x, y := curve.CombinedMult(k.x, k.y, u1[:], u2[:])
	if curve.IsAtInfinity(x, y) {
		return false
	}
	x.Mod(x, curveN)
	return x.Cmp(new(big.Int).SetBytes(r)) == 0
}
