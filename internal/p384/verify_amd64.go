//go:build amd64 && !purego

package p384

import (
	"crypto/elliptic"
	"errors"
	"math/big"
)

// oneM is 1 in Montgomery form, R mod p. Multiplying by it reduces a value.
var oneM = func() fp384 {
	var o fp384
	montEncode(&o, &fp384{1})
	return o
}()

var curveP = elliptic.P384().Params().P

// PublicKey is a P-384 public key in the form Verify takes: 96 bytes.
type PublicKey struct {
	q affinePoint
}

// NewPublicKey takes an uncompressed point, 0x04 || X || Y, that the caller
// has already checked lies on the curve (crypto/ecdsa's parsers do).
func NewPublicKey(point []byte) (*PublicKey, error) {
	if len(point) != 97 || point[0] != 4 {
		return nil, errors.New("p384: not an uncompressed P-384 point")
	}
	var k PublicKey
	for i := range 48 {
		k.q.x[i] = point[48-i]
		k.q.y[i] = point[96-i]
	}
	montEncode(&k.q.x, &k.q.x)
	montEncode(&k.q.y, &k.q.y)
	return &k, nil
}

// Verify reports whether (r, s), big-endian integers already known to lie
// in [1, n-1], is an ECDSA signature by k of digest (SEC 1 section 4.1.4).
func Verify(k *PublicKey, digest, r, s []byte) bool {
	k1, k2, ok := scalars(digest, r, s)
	if !ok {
		return false
	}
	var rr big.Int
	rr.SetBytes(r)

	var P jacobianPoint
	combinedMult(&P, &k.q, &k1, &k2)
	if P.z == (fp384{}) {
		return false // the point at infinity
	}
	// x = X/Z². Accept when x mod n = r, that is x = r or x = r + n < p,
	// checked as X = r·Z² without inverting Z.
	var z2, x fp384
	fp384Sqr(&z2, &P.z)
	fp384Mul(&x, &P.x, &oneM)
	if xEquals(&x, &z2, &rr) {
		return true
	}
	rr.Add(&rr, curveN)
	return rr.Cmp(curveP) < 0 && xEquals(&x, &z2, &rr)
}

// xEquals reports whether x = v·z2, all in Montgomery form, x reduced.
func xEquals(x, z2 *fp384, v *big.Int) bool {
	var be [48]byte
	v.FillBytes(be[:])
	var vm, t fp384
	for i := range 48 {
		vm[i] = be[47-i]
	}
	montEncode(&vm, &vm)
	fp384Mul(&t, &vm, z2)
	return t == *x
}

// combinedMult sets P = m·G + n·Q with interleaved width-w NAFs: width 7
// over circl's table of odd multiples of G, width 5 over eight odd
// multiples of Q computed here.
func combinedMult(P *jacobianPoint, q *affinePoint, m, n *[48]byte) {
	const qOmega = 5
	var nafM, nafN [386]int8
	lm := wnaf(&nafM, m, baseOmega)
	ln := wnaf(&nafN, n, qOmega)

	var tab [1 << (qOmega - 2)]jacobianPoint
	tab[0] = q.toJacobian()
	twoQ := tab[0]
	twoQ.double()
	for i := 1; i < len(tab); i++ {
		tab[i].add(&tab[i-1], &twoQ)
	}

	*P = jacobianPoint{x: oneM, y: oneM} // infinity
	for i := max(lm, ln) - 1; i >= 0; i-- {
		P.double()
		if d := nafM[i]; d != 0 {
			a := baseOddMultiples[abs8(d)>>1]
			if d < 0 {
				a.neg()
			}
			P.mixadd(P, &a)
		}
		if d := nafN[i]; d != 0 {
			j := tab[abs8(d)>>1]
			if d < 0 {
				j.neg()
			}
			P.add(P, &j)
		}
	}
}

func abs8(d int8) int8 {
	if d < 0 {
		return -d
	}
	return d
}

// wnaf writes the width-w non-adjacent form of the big-endian k, least
// significant digit first, and returns the number of digits. Each digit is
// 0 or odd in (-2^(w-1), 2^(w-1)).
func wnaf(out *[386]int8, k *[48]byte, w uint) int {
	// Little-endian 64-bit limbs, one spare for the carry of k - d, d < 0.
	var l [7]uint64
	for i := range 6 {
		for j := range 8 {
			l[i] |= uint64(k[47-8*i-j]) << (8 * j)
		}
	}
	mask := uint64(1)<<w - 1
	n := 0
	for i := 0; ; i++ {
		if l == ([7]uint64{}) {
			return n
		}
		if l[0]&1 == 1 {
			d := int64(l[0] & mask)
			if d >= 1<<(w-1) {
				d -= 1 << w
			}
			out[i] = int8(d)
			if d > 0 {
				subSmall(&l, uint64(d))
			} else {
				addSmall(&l, uint64(-d))
			}
		}
		n = i + 1
		for j := range 6 {
			l[j] = l[j]>>1 | l[j+1]<<63
		}
		l[6] >>= 1
	}
}

func subSmall(l *[7]uint64, v uint64) {
	for i := range l {
		old := l[i]
		l[i] -= v
		if old >= v {
			return
		}
		v = 1
	}
}

func addSmall(l *[7]uint64, v uint64) {
	for i := range l {
		l[i] += v
		if l[i] >= v {
			return
		}
		v = 1
	}
}
