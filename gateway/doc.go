// Package gateway is an authenticating front door for a Flower SuperLink:
// a gRPC reverse proxy that terminates TLS for the Fleet API (SuperNodes)
// and the Control API (the flwr CLI), checks every Fleet call's signed
// timestamp before any byte reaches the SuperLink, and forwards what it
// accepts, unchanged.
//
// Payloads pass through as raw bytes: the gateway does not depend on
// Flower's message types to forward, so every method, unary or streaming,
// of any Flower version goes through. Deadlines, cancellation, status
// codes and details, headers and trailers travel both ways.
//
// A Fleet call (a method under /flwr.proto.Fleet/) is checked, cheapest
// first: the metadata size (at the transport), one value per flwr-*
// header, the key's exact bytes against the allowlist (as Flower matches
// them), the timestamp window, a per-key rate limit, and only then the
// signature, under a global bound on concurrent verifications; last the
// replay guard, which Flower lacks. A refused call ends with Flower's
// status and message and never reaches the upstream. An accepted call is
// forwarded with the three flwr-* headers exactly as verified.
//
// Control calls are forwarded as they are unless the config turns on
// account login (oidc) or machine tokens (token_list). Then the gateway
// answers flwr login itself, authenticates every other Control call (a
// login's token, a bearer token, or a service's client-credentials token),
// checks the caller's roles against a policy (package authz), and keeps
// each account to its own runs and SuperNodes: owners are recorded from
// StartRun and RegisterNode in an owner store (package gateway/owners), calls about
// one run or node are checked before they go upstream, and ListRuns and
// ListNodes answers are filtered. Only the fields these checks use are
// decoded; every other field is re-encoded as it came.
package gateway
