//go:build amd64 && !purego

package p384

import (
	"crypto/elliptic"
	"errors"
	"math/big"
	"math/bits"
	"sync"
	"sync/atomic"
)

// oneM is 1 in Montgomery form, R mod p. Multiplying by it reduces a value.
var oneM = func() fp384 {
	var o fp384
	montEncode(&o, &fp384{1})
	return o
}()

var curveP = elliptic.P384().Params().P

// PublicKey is a P-384 public key in the form Verify takes: the point Q
// and, once the key has verified twice, 2^192·Q.
type PublicKey struct {
	q affinePoint
	// seen is set by the key's first verification.
	seen atomic.Bool
	// high is 2^192·Q, computed on the key's second verification and kept:
	// it halves the doublings of every later one. A key verified only once
	// (Flower's no-allowlist mode parses a key per call) never pays for
	// it. Racing calls compute the same value, so either store is right.
	high atomic.Pointer[jacobianPoint]
	// hot is the key's state in a Cache.
	hot hotState
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

// highQ returns 2^192·Q, computing it on the key's second verification,
// or nil on its first.
func (k *PublicKey) highQ() *jacobianPoint {
	if h := k.high.Load(); h != nil {
		return h
	}
	if !k.seen.Swap(true) {
		return nil
	}
	h := shifted(&k.q)
	k.high.Store(h)
	return h
}

// shifted returns 2^192·q.
func shifted(q *affinePoint) *jacobianPoint {
	h := q.toJacobian()
	for range 192 {
		h.double()
	}
	return &h
}

// Verify reports whether (r, s), big-endian integers already known to lie
// in [1, n-1], is an ECDSA signature by k of digest (SEC 1 section 4.1.4).
func Verify(k *PublicKey, digest, r, s []byte) bool {
	k1, k2, ok := scalars(digest, r, s)
	if !ok {
		return false
	}

	var P jacobianPoint
	if h := k.highQ(); h != nil {
		splitMult(&P, &k.q, h, &k1, &k2)
	} else {
		combinedMult(&P, &k.q, &k1, &k2)
	}
	return matches(&P, r)
}

// matches reports whether P is finite and its x-coordinate is r mod n.
func matches(P *jacobianPoint, r []byte) bool {
	if P.z == (fp384{}) {
		return false // the point at infinity
	}
	// x = X/Z². Accept when x mod n = r, that is x = r or x = r + n < p,
	// checked as X = r·Z² without inverting Z.
	var z2, x fp384
	fp384Sqr(&z2, &P.z)
	fp384Mul(&x, &P.x, &oneM)
	var v [48]byte
	copy(v[48-len(r):], r)
	if xEquals(&x, &z2, &v) {
		return true
	}
	var rn big.Int
	rn.SetBytes(r).Add(&rn, curveN)
	if rn.Cmp(curveP) >= 0 {
		return false
	}
	rn.FillBytes(v[:])
	return xEquals(&x, &z2, &v)
}

// xEquals reports whether x = v·z2, x and z2 in Montgomery form, x
// reduced, v a big-endian integer below p.
func xEquals(x, z2 *fp384, v *[48]byte) bool {
	var vm, t fp384
	for i := range 48 {
		vm[i] = v[47-i]
	}
	montEncode(&vm, &vm)
	fp384Mul(&t, &vm, z2)
	return t == *x
}

// qOmega is the NAF width for Q: eight odd multiples, built per call.
const qOmega = 5

// combinedMult sets P = m·G + n·Q with interleaved width-w NAFs: width 7
// over circl's table of 64 odd multiples of G, width 5 over eight odd
// multiples of Q computed here. It takes 384 doublings.
func combinedMult(P *jacobianPoint, q *affinePoint, m, n *[48]byte) {
	var nafM, nafN [386]int8
	top := max(wnaf(&nafM, m, baseOmega), wnaf(&nafN, n, qOmega))
	var tab [1 << (qOmega - 2)]jacobianPoint
	oddMultiples(tab[:], q.toJacobian())

	*P = jacobianPoint{x: oneM, y: oneM} // infinity
	for i := top - 1; i >= 0; i-- {
		P.double()
		addAffine(P, &baseOddMultiples, nafM[i])
		addJacobian(P, &tab, nafN[i])
	}
}

// splitMult sets P = m·G + n·Q given qHigh = 2^192·Q. Each scalar is split
// into 192-bit halves, m = m0 + 2^192·m1, so that P = m0·G + m1·G' + n0·Q +
// n1·Q' with G' = 2^192·G and Q' = qHigh, and the four products are
// interleaved as in combinedMult: 192 doublings instead of 384.
func splitMult(P *jacobianPoint, q *affinePoint, qHigh *jacobianPoint, m, n *[48]byte) {
	var m0, m1, n0, n1 [48]byte
	copy(m0[24:], m[24:])
	copy(m1[24:], m[:24])
	copy(n0[24:], n[24:])
	copy(n1[24:], n[:24])
	var nafM0, nafM1, nafN0, nafN1 [386]int8
	top := max(wnaf(&nafM0, &m0, baseOmega), wnaf(&nafM1, &m1, baseOmega),
		wnaf(&nafN0, &n0, qOmega), wnaf(&nafN1, &n1, qOmega))

	var tab0, tab1 [1 << (qOmega - 2)]jacobianPoint
	oddMultiples(tab0[:], q.toJacobian())
	oddMultiples(tab1[:], *qHigh)
	gHigh := baseHighOddMultiples()

	*P = jacobianPoint{x: oneM, y: oneM} // infinity
	for i := top - 1; i >= 0; i-- {
		P.double()
		addAffine(P, &baseOddMultiples, nafM0[i])
		addAffine(P, gHigh, nafM1[i])
		addJacobian(P, &tab0, nafN0[i])
		addJacobian(P, &tab1, nafN1[i])
	}
}

// oddMultiples sets tab[i] = (2i+1)·Q.
func oddMultiples(tab []jacobianPoint, q jacobianPoint) {
	tab[0] = q
	twoQ := q
	twoQ.double()
	for i := 1; i < len(tab); i++ {
		tab[i].add(&tab[i-1], &twoQ)
	}
}

// addAffine adds d·A to P for a NAF digit d, where tab[i] = (2i+1)·A.
func addAffine(P *jacobianPoint, tab *[1 << (baseOmega - 1)]affinePoint, d int8) {
	if d == 0 {
		return
	}
	a := tab[abs8(d)>>1]
	if d < 0 {
		a.neg()
	}
	P.mixadd(P, &a)
}

// addJacobian adds d·Q to P for a NAF digit d, where tab[i] = (2i+1)·Q.
func addJacobian(P *jacobianPoint, tab *[8]jacobianPoint, d int8) {
	if d == 0 {
		return
	}
	j := tab[abs8(d)>>1]
	if d < 0 {
		j.neg()
	}
	P.add(P, &j)
}

// baseHighOddMultiples returns the table of (2i+1)·2^192·G, affine, built
// on first use from G's own table.
var baseHighOddMultiples = sync.OnceValue(func() *[1 << (baseOmega - 1)]affinePoint {
	var jac [1 << (baseOmega - 1)]jacobianPoint
	g := baseOddMultiples[0].toJacobian()
	for range 192 {
		g.double()
	}
	oddMultiples(jac[:], g)
	var tab [1 << (baseOmega - 1)]affinePoint
	toAffine(tab[:], jac[:])
	return &tab
})

// toAffine sets out[i] to in[i] in affine form, for finite points, with one
// field inversion for all of them (Montgomery's trick).
func toAffine(out []affinePoint, in []jacobianPoint) {
	prefix := make([]fp384, len(in))
	prefix[0] = in[0].z
	for i := 1; i < len(in); i++ {
		fp384Mul(&prefix[i], &prefix[i-1], &in[i].z)
	}
	var inv fp384
	fp384Inv(&inv, &prefix[len(in)-1])
	for i := len(in) - 1; i >= 0; i-- {
		var zInv, zInv2, zInv3 fp384
		if i > 0 {
			fp384Mul(&zInv, &inv, &prefix[i-1])
			fp384Mul(&inv, &inv, &in[i].z)
		} else {
			zInv = inv
		}
		fp384Sqr(&zInv2, &zInv)
		fp384Mul(&zInv3, &zInv2, &zInv)
		fp384Mul(&out[i].x, &in[i].x, &zInv2)
		fp384Mul(&out[i].y, &in[i].y, &zInv3)
	}
}

// fp384Inv sets c = 1/a (a ≠ 0) by Fermat's little theorem, a^(p-2), in
// variable time: it only ever sees public values.
func fp384Inv(c, a *fp384) {
	e := new(big.Int).Sub(curveP, big.NewInt(2))
	x := oneM
	for i := e.BitLen() - 1; i >= 0; i-- {
		fp384Sqr(&x, &x)
		if e.Bit(i) == 1 {
			fp384Mul(&x, &x, a)
		}
	}
	*c = x
}

func abs8(d int8) int8 {
	if d < 0 {
		return -d
	}
	return d
}

// wnaf writes the width-w non-adjacent form of the big-endian k, least
// significant digit first, and returns the number of digits. Each digit is
// 0 or odd in (-2^(w-1), 2^(w-1)); out must be zero. Runs of zero digits
// are skipped a word or a run of trailing zeros at a time.
func wnaf(out *[386]int8, k *[48]byte, w uint) int {
	// Little-endian 64-bit limbs, one spare for the carry of k - d, d < 0.
	var l [7]uint64
	for i := range 6 {
		for j := range 8 {
			l[i] |= uint64(k[47-8*i-j]) << (8 * j)
		}
	}
	mask := uint64(1)<<w - 1
	n, pos := 0, 0
	for l != ([7]uint64{}) {
		if l[0] == 0 {
			copy(l[:], l[1:])
			l[6] = 0
			pos += 64
			continue
		}
		if l[0]&1 == 0 {
			tz := uint(bits.TrailingZeros64(l[0]))
			shiftRight(&l, tz)
			pos += int(tz)
			continue
		}
		d := int64(l[0] & mask)
		if d >= 1<<(w-1) {
			d -= 1 << w
		}
		out[pos] = int8(d)
		n = pos + 1
		if d > 0 {
			subSmall(&l, uint64(d))
		} else {
			addSmall(&l, uint64(-d))
		}
		// l is now a multiple of 2^w: the next w-1 digits are zero.
		shiftRight(&l, w)
		pos += int(w)
	}
	return n
}

// shiftRight sets l = l >> s, 0 < s < 64.
func shiftRight(l *[7]uint64, s uint) {
	for j := range 6 {
		l[j] = l[j]>>s | l[j+1]<<(64-s)
	}
	l[6] >>= s
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
