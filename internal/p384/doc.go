// Package p384 verifies ECDSA P-384 signatures in variable time, for
// public inputs only: a public key, a digest and a signature.
//
// It computes u1·G + u2·Q with an interleaved width-w NAF (a 32-point table
// of G, an 8-point table of Q), takes no allocation for the point
// arithmetic, and checks the result's x-coordinate against r in Jacobian
// coordinates, r·Z² = X, so no field inversion is needed.
//
// The field arithmetic (arith_amd64.s), the point formulas and the table of
// G come from github.com/cloudflare/circl/ecc/p384, under the BSD 3-Clause
// licence in LICENSE beside this file. On other architectures the package
// uses circl's public CombinedMult.
package p384
