// Package verify checks Flower's signed-timestamp node authentication on
// the SuperLink side, byte-compatible with Flower and faster than it.
//
// A Verifier holds an allowlist of SuperNode public keys, parsed once, and
// checks the three metadata values of a call (see package sign) cheapest
// first: sizes, the key (a map lookup on the header bytes as they arrive),
// the timestamp window, and only then the signature. A flood of calls with
// unknown keys or stale timestamps so costs a fraction of a microsecond
// each, not a signature verification.
//
// Flower accepts a call when -5 s < now - timestamp < 305 s (Flower 1.20
// and later; flwr.WindowOf gives older versions'). Verify returns nil or an
// *Error whose Reason says why the call was refused.
//
// A key is found in the allowlist by its exact header bytes and, unless
// ExactPEM is given, also in another PEM formatting of the same key (CRLF,
// line widths, spaces): captured headers and hand-made test clients
// reformat PEM, and the key is the same. Flower matches exact bytes; a
// gateway in front of it should too, so that the two never disagree.
//
// New builds a Verifier from an Allowlist (NewAllowlist, from parsed keys);
// Verify and VerifyAt check one call, VerifyBatch many. The package reads
// no files and imports no gRPC: package allowlist reads the allowlist from
// its files and reloads it, verify/replay is the replay guard
// (WithReplay), and verify/grpcauth makes the check on a gRPC server.
//
// P-384 signatures, what SuperNodes make, are verified with a variable-time
// double-scalar multiplication (github.com/cloudflare/circl/ecc/p384):
// everything it touches is public. Keys that call often get precomputed
// tables from a bounded cache (WithHotKeys), which makes their
// verifications about twice as fast. P-256 and P-521 keys go through
// crypto/ecdsa. Both paths parse signatures as strict DER and require r
// and s in [1, n-1].
package verify
