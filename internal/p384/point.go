//go:build amd64 && !purego

package p384

// affinePoint is an affine point in Montgomery form. The point at infinity
// is (0,0), which is not on the curve.
type affinePoint struct{ x, y fp384 }

func (ap *affinePoint) isZero() bool {
	zero := fp384{}
	return ap.x == zero && ap.y == zero
}

func (ap *affinePoint) neg() { fp384Neg(&ap.y, &ap.y) }

func (ap *affinePoint) toJacobian() jacobianPoint {
	var P jacobianPoint
	if ap.isZero() {
		montEncode(&P.x, &fp384{1})
		montEncode(&P.y, &fp384{1})
	} else {
		P.x = ap.x
		P.y = ap.y
		montEncode(&P.z, &fp384{1})
	}
	return P
}

// jacobianPoint is a point (x/z², y/z³). The point at infinity is any
// (x,y,0) with x and y different from 0.
type jacobianPoint struct{ x, y, z fp384 }

func (P *jacobianPoint) isZero() bool {
	zero := fp384{}
	return P.x != zero && P.y != zero && P.z == zero
}

func (P *jacobianPoint) neg() { fp384Neg(&P.y, &P.y) }

// add calculates P=Q+R such that Q and R are different than the identity point.
// This function can be used for doublings.
func (P *jacobianPoint) add(Q, R *jacobianPoint) {
	if Q.isZero() {
		*P = *R
		return
	} else if R.isZero() {
		*P = *Q
		return
	}

	// Cohen-Miyagi-Ono (1998)
	// https://hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-3.html#addition-add-1998-cmo-2
	X1, Y1, Z1 := &Q.x, &Q.y, &Q.z
	X2, Y2, Z2 := &R.x, &R.y, &R.z
	var Z1Z1, Z2Z2, U1, U2, H, HH, HHH, RR, V, t4, t5, t6, t7, t8, t0, t1, t2, t3, S1, S2 fp384
	fp384Sqr(&Z1Z1, Z1)      // Z1Z1 = Z1 ^ 2
	fp384Sqr(&Z2Z2, Z2)      // Z2Z2 = Z2 ^ 2
	fp384Mul(&U1, X1, &Z2Z2) // U1 = X1 * Z2Z2
	fp384Mul(&U2, X2, &Z1Z1) // U2 = X2 * Z1Z1
	fp384Mul(&t0, Z2, &Z2Z2) // t0 = Z2 * Z2Z2
	fp384Mul(&S1, Y1, &t0)   // S1 = Y1 * t0
	fp384Mul(&t1, Z1, &Z1Z1) // t1 = Z1 * Z1Z1
	fp384Mul(&S2, Y2, &t1)   // S2 = Y2 * t1
	fp384Sub(&H, &U2, &U1)   // H = U2 - U1
	fp384Sqr(&HH, &H)        // HH = H ^ 2
	fp384Mul(&HHH, &H, &HH)  // HHH = H * HH
	fp384Sub(&RR, &S2, &S1)  // r = S2 - S1

	// Detect point doubling
	if zero := (fp384{}); H == zero && RR == zero {
		*P = *Q
		P.double()
		return
	}

	fp384Mul(&V, &U1, &HH)   // V = U1 * HH
	fp384Sqr(&t2, &RR)       // t2 = r ^ 2
	fp384Add(&t3, &V, &V)    // t3 = V + V
	fp384Sub(&t4, &t2, &HHH) // t4 = t2 - HHH
	fp384Sub(&P.x, &t4, &t3) // X3 = t4 - t3
	fp384Sub(&t5, &V, &P.x)  // t5 = V - X3
	fp384Mul(&t6, &S1, &HHH) // t6 = S1 * HHH
	fp384Mul(&t7, &RR, &t5)  // t7 = r * t5
	fp384Sub(&P.y, &t7, &t6) // Y3 = t7 - t6
	fp384Mul(&t8, Z2, &H)    // t8 = Z2 * H
	fp384Mul(&P.z, Z1, &t8)  // Z3 = Z1 * t8
}

// mixadd calculates P=Q+R such that P and Q different than the identity point,
// and Q not in {P,-P, O}.
func (P *jacobianPoint) mixadd(Q *jacobianPoint, R *affinePoint) {
	// See https://www.hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-3.html#addition-madd-2007-bl
	if Q.isZero() {
		*P = R.toJacobian()
		return
	} else if R.isZero() {
		*P = *Q
		return
	}

	var z1z1, u2, s2, qx, qy fp384
	fp384Sqr(&z1z1, &Q.z)
	fp384Mul(&u2, &R.x, &z1z1)
	fp384Mul(&s2, &R.y, &Q.z)
	fp384Mul(&s2, &s2, &z1z1)
	// Q.x and Q.y need not be reduced; compare their reduced forms.
	fp384Mul(&qx, &Q.x, &oneM)
	if qx == u2 {
		fp384Mul(&qy, &Q.y, &oneM)
		if qy != s2 {
			*P = jacobianPoint{x: oneM, y: oneM}
			return
		}
		*P = *Q
		P.double()
		return
	}

	var h, r, h2, h3, h3y1, h2x1 fp384
	fp384Sub(&h, &u2, &Q.x)
	fp384Mul(&P.z, &h, &Q.z)
	fp384Sub(&r, &s2, &Q.y)

	fp384Sqr(&h2, &h)
	fp384Mul(&h3, &h2, &h)
	fp384Mul(&h3y1, &h3, &Q.y)
	fp384Mul(&h2x1, &h2, &Q.x)

	fp384Sqr(&P.x, &r)
	fp384Sub(&P.x, &P.x, &h3)
	fp384Sub(&P.x, &P.x, &h2x1)
	fp384Sub(&P.x, &P.x, &h2x1)

	fp384Sub(&P.y, &h2x1, &P.x)
	fp384Mul(&P.y, &P.y, &r)
	fp384Sub(&P.y, &P.y, &h3y1)
}

func (P *jacobianPoint) double() {
	// See https://hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-3.html#doubling-dbl-2001-b
	var delta, gamma, alpha, alpha2, beta, beta8 fp384
	fp384Sqr(&delta, &P.z)
	fp384Sqr(&gamma, &P.y)
	fp384Sub(&alpha, &P.x, &delta)
	fp384Add(&alpha2, &P.x, &delta)
	fp384Mul(&alpha, &alpha, &alpha2)
	alpha2 = alpha
	fp384Add(&alpha, &alpha, &alpha)
	fp384Add(&alpha, &alpha, &alpha2)

	fp384Mul(&beta, &P.x, &gamma)

	fp384Sqr(&P.x, &alpha)
	fp384Add(&beta8, &beta, &beta)
	fp384Add(&beta8, &beta8, &beta8)
	fp384Add(&beta8, &beta8, &beta8)
	fp384Sub(&P.x, &P.x, &beta8)

	fp384Add(&P.z, &P.y, &P.z)
	fp384Sqr(&P.z, &P.z)
	fp384Sub(&P.z, &P.z, &gamma)
	fp384Sub(&P.z, &P.z, &delta)

	fp384Add(&beta, &beta, &beta)
	fp384Add(&beta, &beta, &beta)
	fp384Sub(&beta, &beta, &P.x)

	fp384Mul(&P.y, &alpha, &beta)

	fp384Sqr(&gamma, &gamma)
	fp384Add(&gamma, &gamma, &gamma)
	fp384Add(&gamma, &gamma, &gamma)
	fp384Add(&gamma, &gamma, &gamma)
	fp384Sub(&P.y, &P.y, &gamma)
}
