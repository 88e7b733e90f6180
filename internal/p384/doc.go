// Package p384 verifies ECDSA P-384 signatures in variable time, for
// public inputs only: a public key, a digest and a signature.
//
// It computes u1·G + u2·Q with each scalar split into 192-bit halves, so
// that the four products u1_lo·G, u1_hi·G', u2_lo·Q and u2_hi·Q', where
// G' = 2^192·G and Q' = 2^192·Q, share 192 doublings instead of 384. G and
// G' have tables of 64 odd multiples (width-7 NAF); Q and Q' tables of 8
// (width 5) built per call. Q' is computed on a key's first verification
// and kept with the key (144 bytes), which makes that first call about
// 1.6 times the cost of the later ones. The point arithmetic takes no
// allocation, and the result's x-coordinate is checked against r in
// Jacobian coordinates, r·Z² = X, so no field inversion is needed.
//
// The field arithmetic (arith_amd64.s), the point formulas and the table of
// G come from github.com/cloudflare/circl/ecc/p384, under the BSD 3-Clause
// licence in LICENSE beside this file. On other architectures the package
// uses circl's public CombinedMult.
package p384
