// Package p384 verifies ECDSA P-384 signatures in variable time, for
// public inputs only: a public key, a digest and a signature.
//
// It computes u1·G + u2·Q over interleaved width-w NAFs: width 7 over a
// table of 64 odd multiples of G, width 5 over eight odd multiples of Q
// built per call. A key that verifies more than once takes a faster path:
// on its second verification 2^192·Q is computed and kept with the key
// (144 bytes), and from then on each scalar is split into 192-bit halves,
// so that the four products u1_lo·G, u1_hi·G', u2_lo·Q and u2_hi·Q', where
// G' = 2^192·G and Q' = 2^192·Q, share 192 doublings instead of 384. A key
// verified once, as in Flower's no-allowlist mode where each call brings
// its key, never pays for the precomputation. A key that verifies often
// can go further through a Cache: it gets a table of its own (9,216
// bytes), so that both products are fixed-base, twelve pieces of 32 bits
// sharing 32 doublings, with mixed additions from affine tables of G
// (73,728 bytes, shared) and of Q. A Cache bounds the tables' memory in
// total, promotes a key after a number of verified signatures, and evicts
// by use (a clock). All of it is variable time: nothing in a verification
// is secret. The point arithmetic takes
// no allocation, and the result's x-coordinate is checked against r in
// Jacobian coordinates, r·Z² = X, so no field inversion is needed.
//
// The field arithmetic (arith_amd64.s), the point formulas and the table of
// G come from github.com/cloudflare/circl v1.6.5, folder ecc/p384, under
// the BSD 3-Clause licences beside this file: circl's (LICENSE) and that
// folder's (LICENSE-ecc-p384). PROVENANCE lists what was changed, and
// provenance_test.go compares the copy with that version in the module
// cache. On other architectures, and with the purego build tag, the
// package uses circl's public CombinedMult.
package p384
