//go:build amd64 && !purego

package p384

import "sync"

// A hot key's table makes both products of u1·G + u2·Q fixed-base. Each
// scalar is written as one width-w NAF of 384 (at most 385) digits, and the
// digit at position p is added from the table of 2^(32·i)·P at row p - 32·i,
// i = min(p/32, 11): twelve pieces of 32 bits share 32 doublings, where the
// plain path takes 384 and the split path 192. With affine tables every
// addition is a mixed one. The digits at position 384 and beyond, which a
// NAF can carry, go to the last piece, which so has 33 rows.
const (
	hotSpan   = 32 // bits per piece: the doublings of a hot verification
	hotPieces = 12 // 384 / hotSpan
	hotOmegaQ = 5  // NAF width for the key: 8 odd multiples a piece
	hotOmegaG = 8  // NAF width for G: 64 odd multiples a piece
)

// hotTable is a key's table: (2j+1)·2^(32·i)·Q at [i][j], affine, in
// Montgomery form. 12 x 8 points of 96 bytes: 9,216 bytes.
type hotTable [hotPieces][1 << (hotOmegaQ - 2)]affinePoint

// hotBase is G's table in the same layout with 64 odd multiples a piece:
// 12 x 64 x 96 = 73,728 bytes, built once, on the first hot verification.
type hotBase [hotPieces][1 << (hotOmegaG - 2)]affinePoint

var hotBaseTable = sync.OnceValue(func() *hotBase {
	t := new(hotBase)
	flat := fill(baseOddMultiples[0].toJacobian(), len(t[0]))
	for i := range t {
		copy(t[i][:], flat[i*len(t[i]):])
	}
	return t
})

// buildTable builds a key's table: 352 doublings, 96 additions and one
// field inversion, about as much as two verifications on the split path.
func buildTable(k *PublicKey) *hotTable {
	t := new(hotTable)
	flat := fill(k.q.toJacobian(), len(t[0]))
	for i := range t {
		copy(t[i][:], flat[i*len(t[i]):])
	}
	return t
}

// fill returns the rows of a table, row after row: (2j+1)·2^(32·i)·b at
// i·width + j, for i below hotPieces and j below width.
func fill(b jacobianPoint, width int) []affinePoint {
	jac := make([]jacobianPoint, hotPieces*width)
	for i := range hotPieces {
		if i > 0 {
			for range hotSpan {
				b.double()
			}
		}
		oddMultiples(jac[i*width:(i+1)*width], b)
	}
	flat := make([]affinePoint, len(jac))
	toAffine(flat, jac)
	return flat
}

// hotMult sets P = m·G + n·Q from G's table and Q's.
func hotMult(P *jacobianPoint, t *hotTable, m, n *[48]byte) {
	g := hotBaseTable()
	var nafM, nafN [386]int8
	wnaf(&nafM, m, hotOmegaG)
	wnaf(&nafN, n, hotOmegaQ)

	*P = jacobianPoint{x: oneM, y: oneM} // infinity
	started := false
	for row := hotSpan; row >= 0; row-- {
		if started {
			P.double()
		}
		for i := range hotPieces {
			if row == hotSpan && i < hotPieces-1 {
				continue // that position is row 0 of the next piece
			}
			pos := i*hotSpan + row
			if d := nafM[pos]; d != 0 {
				addHot(P, g[i][:], d)
				started = true
			}
			if d := nafN[pos]; d != 0 {
				addHot(P, t[i][:], d)
				started = true
			}
		}
	}
}

// addHot adds d·A to P for a nonzero NAF digit d, where tab[i] = (2i+1)·A.
func addHot(P *jacobianPoint, tab []affinePoint, d int8) {
	a := tab[abs8(d)>>1]
	if d < 0 {
		a.neg()
	}
	P.addMixed(&a)
}

// addMixed sets P = P + A, A finite: mixadd without its two reductions.
// It tells P = ±A from h = X_A·Z² - X and r = Y_A·Z³ - Y, which are 0 mod
// p exactly when P = A, and h = 0 mod p with r ≠ 0 when P = -A; a value
// 0 mod p below 2^384 is 0 or p.
func (P *jacobianPoint) addMixed(A *affinePoint) {
	if P.z == (fp384{}) {
		*P = A.toJacobian()
		return
	}
	var z1z1, u2, s2, h, r fp384
	fp384Sqr(&z1z1, &P.z)
	fp384Mul(&u2, &A.x, &z1z1)
	fp384Mul(&s2, &A.y, &P.z)
	fp384Mul(&s2, &s2, &z1z1)
	fp384Sub(&h, &u2, &P.x)
	fp384Sub(&r, &s2, &P.y)
	if h == (fp384{}) || h == p {
		if r == (fp384{}) || r == p {
			P.double()
		} else {
			*P = jacobianPoint{x: oneM, y: oneM}
		}
		return
	}

	var h2, h3, h3y1, h2x1 fp384
	fp384Mul(&P.z, &h, &P.z)
	fp384Sqr(&h2, &h)
	fp384Mul(&h3, &h2, &h)
	fp384Mul(&h3y1, &h3, &P.y)
	fp384Mul(&h2x1, &h2, &P.x)

	fp384Sqr(&P.x, &r)
	fp384Sub(&P.x, &P.x, &h3)
	fp384Sub(&P.x, &P.x, &h2x1)
	fp384Sub(&P.x, &P.x, &h2x1)

	fp384Sub(&P.y, &h2x1, &P.x)
	fp384Mul(&P.y, &P.y, &r)
	fp384Sub(&P.y, &P.y, &h3y1)
}

// verifyHot is Verify for a key with a table.
func verifyHot(k *PublicKey, t *hotTable, digest, r, s []byte) bool {
	k1, k2, ok := scalars(digest, r, s)
	if !ok {
		return false
	}
	var P jacobianPoint
	hotMult(&P, t, &k1, &k2)
	return matches(&P, r)
}
