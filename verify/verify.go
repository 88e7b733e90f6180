package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/p384"
	"github.com/nodekeys/nodekeys/internal/parallel"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// Reason says why a call was refused.
type Reason string

// The reasons Verify gives.
const (
	MissingMetadata Reason = "missing-metadata" // a header is absent or empty
	Malformed       Reason = "malformed"        // a header is too long or does not parse
	UnknownKey      Reason = "unknown-key"      // the key is not in the allowlist
	BadSignature    Reason = "bad-signature"    // the signature does not verify
	StaleTimestamp  Reason = "stale-timestamp"  // the timestamp is too far in the past
	FutureTimestamp Reason = "future-timestamp" // the timestamp is too far in the future
	InvalidNodeID   Reason = "invalid-node-id"  // the request names a node the key does not own
)

// The reasons of a replay.Checker, which a rate limit gives too.
const (
	Replayed    = Reason(replay.Replayed)    // the same signature was seen inside the window
	RateLimited = Reason(replay.RateLimited) // the key sent more calls than it is allowed
	Unavailable = Reason(replay.Unavailable) // shared state needed for the check cannot be reached
)

// FlowerMessage returns the message Flower's SuperLink aborts the call with
// for this reason.
func (r Reason) FlowerMessage() string {
	switch r {
	case MissingMetadata:
		return "Missing authentication metadata"
	case UnknownKey:
		return "Public key not recognized"
	case BadSignature, Malformed:
		return "Invalid signature"
	case StaleTimestamp, FutureTimestamp, Replayed:
		return "Invalid timestamp"
	case RateLimited:
		return "Too many calls"
	case InvalidNodeID:
		return "Invalid node ID"
	case Unavailable:
		return "Authentication unavailable, try again"
	}
	return "Unauthenticated"
}

// Error is a refused call.
type Error struct {
	Reason Reason
	// Detail says more, without echoing the header values.
	Detail string
}

// Error returns "verify: REASON: DETAIL".
func (e *Error) Error() string {
	if e.Detail == "" {
		return "verify: " + string(e.Reason)
	}
	return "verify: " + string(e.Reason) + ": " + e.Detail
}

// ReasonOf returns the Reason of an *Error, or of a *replay.Error, or ""
// for any other error.
func ReasonOf(err error) Reason {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.Reason
	}
	var re *replay.Error
	if errors.As(err, &re) {
		return Reason(re.Reason)
	}
	return ""
}

// Preallocated errors keep the refusal paths free of allocations.
var (
	errMissing      = &Error{MissingMetadata, "a flwr-* header is missing or empty"}
	errKeyTooLong   = &Error{Malformed, "flwr-public-key-bin is too long"}
	errTSTooLong    = &Error{Malformed, "flwr-timestamp is too long"}
	errSigTooLong   = &Error{Malformed, "flwr-signature-bin is too long"}
	errUnknown      = &Error{UnknownKey, "the public key is not in the allowlist"}
	errBadKey       = &Error{Malformed, "flwr-public-key-bin is not a PEM EC public key"}
	errNotP384      = &Error{UnknownKey, "only P-384 keys are accepted without an allowlist"}
	errTimestamp    = &Error{Malformed, "flwr-timestamp is not an ISO 8601 time with a UTC offset"}
	errStale        = &Error{StaleTimestamp, "the timestamp is older than the window allows"}
	errFuture       = &Error{FutureTimestamp, "the timestamp is further ahead than the window allows"}
	errDER          = &Error{Malformed, "flwr-signature-bin is not a DER ECDSA signature"}
	errSigRange     = &Error{BadSignature, "r or s is out of range"}
	errBadSignature = &Error{BadSignature, "the signature does not verify"}
)

// maxPublicKeyLen bounds flwr-public-key-bin: a P-521 key in PEM is 268
// bytes.
const maxPublicKeyLen = 512

// Key is an allowed SuperNode key.
type Key struct {
	// PEM is the key's canonical flwr-public-key-bin value.
	PEM string
	// Public is the key.
	Public *ecdsa.PublicKey
	// p384 holds the fast-path form of a P-384 key.
	p384 *p384.PublicKey
}

// Fingerprint returns the key's ssh-keygen fingerprint, "SHA256:...".
func (k *Key) Fingerprint() string {
	pk, err := keys.NewPublicKey(k.Public)
	if err != nil {
		return ""
	}
	return pk.Fingerprint()
}

func newKey(pub *ecdsa.PublicKey) (*Key, error) {
	pk, err := keys.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return newKeyOf(pk)
}

// newKeyOf builds a Key from a parsed key, whose point is already checked.
func newKeyOf(pk *keys.PublicKey) (*Key, error) {
	k := &Key{PEM: string(pk.PEM()), Public: pk.Key}
	if pk.Key.Curve == elliptic.P384() {
		var err error
		if k.p384, err = p384.NewPublicKey(pk.Point()); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Allowlist is an immutable set of allowed keys, indexed by the exact bytes
// of their flwr-public-key-bin value.
type Allowlist struct {
	byPEM map[string]*Key
}

// NewAllowlist returns the allowlist of ks. Duplicates are kept once.
func NewAllowlist(ks []*keys.PublicKey) (*Allowlist, error) {
	built := make([]*Key, len(ks))
	errs := make([]error, len(ks))
	parallel.For(len(ks), 2048, func(i int) { built[i], errs[i] = newKeyOf(ks[i]) })
	a := &Allowlist{byPEM: make(map[string]*Key, len(ks))}
	for i, k := range built {
		if errs[i] != nil {
			return nil, errs[i]
		}
		a.byPEM[k.PEM] = k
	}
	return a, nil
}

// Len returns the number of keys.
func (a *Allowlist) Len() int { return len(a.byPEM) }

// Keys returns the allowed keys, in no set order.
func (a *Allowlist) Keys() []*Key {
	out := make([]*Key, 0, len(a.byPEM))
	for _, k := range a.byPEM {
		out = append(out, k)
	}
	return out
}

// Diff returns how many keys a holds that old does not (added), and old
// holds that a does not (removed).
func (a *Allowlist) Diff(old *Allowlist) (added, removed int) {
	for pem := range a.byPEM {
		if _, ok := old.byPEM[pem]; !ok {
			added++
		}
	}
	for pem := range old.byPEM {
		if _, ok := a.byPEM[pem]; !ok {
			removed++
		}
	}
	return added, removed
}

// Lookup returns the allowed key whose flwr-public-key-bin value is h, or
// nil. A key that differs from an allowed one only in PEM formatting is
// found too.
func (a *Allowlist) Lookup(h []byte) *Key { return a.lookup(h) }

// lookup finds the key for a header value: the bytes as they are first,
// then, on a miss, the canonical PEM of the same DER, so a key that differs
// only in PEM formatting (line lengths, CRLF) is still recognised.
func (a *Allowlist) lookup(h []byte) *Key {
	if k, ok := a.byPEM[string(h)]; ok {
		return k
	}
	var buf [maxPublicKeyLen]byte
	c, ok := canonicalPEM(h, &buf)
	if !ok {
		return nil
	}
	return a.byPEM[string(c)]
}

// Verifier checks Flower's authentication headers. It is safe for
// concurrent use, and its allowlist can be replaced while calls are in
// flight: each call sees the old list or the new one, whole.
type Verifier struct {
	list     atomic.Pointer[Allowlist]
	anyKey   bool
	stdlib   bool
	exact    bool
	replay   replay.Checker
	keyCheck func(*Key, time.Time) error
	slots    chan struct{}
	hot      *p384.Cache
	window   flwr.Window
	now      func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithWindow sets the accepted window (default flwr.DefaultWindow;
// flwr.WindowOf gives a Flower version's).
func WithWindow(w flwr.Window) Option { return func(v *Verifier) { v.window = w } }

// WithClock makes the Verifier read the time from now (default time.Now).
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// AnyKey accepts any valid P-384 key, as a Flower SuperLink without an
// allowlist does. It must be asked for: the allowlist is then ignored.
func AnyKey() Option { return func(v *Verifier) { v.anyKey = true } }

// StandardLibrary verifies every signature with crypto/ecdsa, the slower
// constant-time path, instead of the P-384 fast path: a baseline for
// benchmarks, or for deployments that want only the standard library.
func StandardLibrary() Option { return func(v *Verifier) { v.stdlib = true } }

// WithReplay runs c for every call that passes the other checks: it
// refuses, with reason Replayed, a call whose key and timestamp were
// accepted before inside the window (replay.NewGuard for one process). Off
// by default, as in Flower.
func WithReplay(c replay.Checker) Option { return func(v *Verifier) { v.replay = c } }

// ExactPEM matches flwr-public-key-bin against the allowlist byte for
// byte, as Flower's SuperLink does, instead of also recognising a key that
// differs only in PEM formatting (CRLF, line widths, white space). A
// gateway in front of a Flower SuperLink wants it, so that the two never
// decide differently about the same bytes.
func ExactPEM() Option { return func(v *Verifier) { v.exact = true } }

// WithKeyCheck calls check for every call whose signature verifies, before
// the replay check: a per-key rate limit there bounds the calls (and the
// verifications) of whoever holds the key's private key. It runs after
// the signature, not before, because public keys are not secret: a check
// before it would let anyone spend a real node's allowance with forged
// signatures under its key, and lock the node out. Verifications of forged
// signatures are bounded by WithMaxConcurrent instead, and a caller that
// knows the connection can bound them per connection. A non-nil error
// refuses the call; return an *Error (RateLimited) to give a reason.
func WithKeyCheck(check func(k *Key, now time.Time) error) Option {
	return func(v *Verifier) { v.keyCheck = check }
}

// The hot-key cache (WithHotKeys).
const (
	// DefaultHotKeyBytes bounds the tables held by default: 7,281 keys.
	DefaultHotKeyBytes = 64 << 20
	// DefaultPromoteAfter is how many verified signatures promote a key.
	DefaultPromoteAfter = 8
	// HotKeyBytesPerKey is the memory of one key's table: 9,216 bytes on
	// amd64, 0 where tables are not built.
	HotKeyBytesPerKey = p384.TableBytes
)

// WithHotKeys sizes the cache of P-384 keys that verify often (on by
// default: DefaultHotKeyBytes, DefaultPromoteAfter). A key whose
// signatures have verified promoteAfter times gets a precomputed table of
// HotKeyBytesPerKey (9,216) bytes, which makes its later verifications
// about 2x faster; at most maxBytes of tables are held, and when the cache
// is full the key to make room for a new one is one not verified since the
// cache last looked (a clock over the keys held). Once the cache is full,
// a table is built for at most one key per 64 verifications, so churn
// costs at most a few percent.
// A maxBytes of 0 turns the cache off: every key then verifies as a key
// seen for the first time or twice does. The tables hold only public data
// and are read in variable time, as all P-384 verification here is.
// AnyKey parses a new key for every call, so its keys are never promoted.
// Only on amd64 without the purego tag; elsewhere the cache holds nothing.
func WithHotKeys(maxBytes int64, promoteAfter int) Option {
	return func(v *Verifier) { v.hot = p384.NewCache(maxBytes, promoteAfter) }
}

// WithMaxConcurrent lets at most n signature verifications run at once;
// further calls wait for a slot. The cheap checks before it are not
// bounded, so a flood of calls that fail them never waits.
func WithMaxConcurrent(n int) Option {
	return func(v *Verifier) {
		if n > 0 {
			v.slots = make(chan struct{}, n)
		}
	}
}

// New returns a Verifier that accepts the keys of list.
func New(list *Allowlist, opts ...Option) *Verifier {
	v := &Verifier{window: flwr.DefaultWindow, now: time.Now}
	v.hot = p384.NewCache(DefaultHotKeyBytes, DefaultPromoteAfter)
	if list == nil {
		list = &Allowlist{}
	}
	v.list.Store(list)
	for _, o := range opts {
		o(v)
	}
	return v
}

// HotKeys returns how many keys hold a table, and the most that may.
func (v *Verifier) HotKeys() (held, most int) {
	if v.hot == nil {
		return 0, 0
	}
	return v.hot.Len(), v.hot.MaxKeys()
}

// SetAllowlist replaces the allowlist atomically.
func (v *Verifier) SetAllowlist(a *Allowlist) { v.list.Store(a) }

// Allowlist returns the current allowlist.
func (v *Verifier) Allowlist() *Allowlist { return v.list.Load() }

// Verify checks h at the Verifier's clock's time. It returns the node's key,
// or nil and an *Error.
func (v *Verifier) Verify(h sign.Headers) (*Key, error) {
	return v.VerifyAt(h, v.now())
}

// VerifyAt checks h as if the time were now.
func (v *Verifier) VerifyAt(h sign.Headers, now time.Time) (*Key, error) {
	if len(h.PublicKey) == 0 || len(h.Timestamp) == 0 || len(h.Signature) == 0 {
		return nil, errMissing
	}
	switch {
	case len(h.PublicKey) > maxPublicKeyLen:
		return nil, errKeyTooLong
	case len(h.Timestamp) > flwr.MaxTimestampLen:
		return nil, errTSTooLong
	case len(h.Signature) > maxSignatureLen:
		return nil, errSigTooLong
	}
	var k *Key
	if v.anyKey {
		var err error
		if k, err = parseAnyKey(h.PublicKey); err != nil {
			return nil, err
		}
	} else if k = v.lookupKey(h.PublicKey); k == nil {
		return nil, errUnknown
	}
	ts, ok := flwr.ParseTimestamp(h.Timestamp)
	if !ok {
		return nil, errTimestamp
	}
	d := now.Sub(ts)
	if d >= v.window.Past {
		return nil, errStale
	}
	if d <= -v.window.Future {
		return nil, errFuture
	}
	if v.slots != nil {
		v.slots <- struct{}{}
	}
	err := k.verify(h.Timestamp, h.Signature, v.stdlib, v.hot)
	if v.slots != nil {
		<-v.slots
	}
	if err != nil {
		return nil, err
	}
	if v.keyCheck != nil {
		if err := v.keyCheck(k, now); err != nil {
			return nil, err
		}
	}
	if v.replay != nil {
		if err := v.replay.Check(k.PEM, h.Timestamp, ts, now, ts.Add(v.window.Past)); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// lookupKey finds the allowed key of a header value, exactly or, unless
// ExactPEM, in any PEM formatting.
func (v *Verifier) lookupKey(h []byte) *Key {
	l := v.list.Load()
	if v.exact {
		return l.byPEM[string(h)]
	}
	return l.lookup(h)
}

// parseAnyKey parses a PEM key for AnyKey mode: P-384 only.
func parseAnyKey(h []byte) (*Key, error) {
	block, rest := pem.Decode(h)
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errBadKey
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, errBadKey
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P384() {
		return nil, errNotP384
	}
	k, err := newKey(ec)
	if err != nil {
		return nil, errBadKey
	}
	return k, nil
}

// verify checks sig over SHA-256(ts) with k, with k's table in hot if it
// has one.
func (k *Key) verify(ts string, sig []byte, stdlib bool, hot *p384.Cache) error {
	sum := sha256.Sum256([]byte(ts))
	if stdlib {
		if !ecdsa.VerifyASN1(k.Public, sum[:], sig) {
			return errBadSignature
		}
		return nil
	}
	return k.verifyDigestIn(hot, sum[:], sig)
}

// verifyDigest checks the DER signature sig over the message digest sum,
// as a key not held by a hot-key cache.
func (k *Key) verifyDigest(sum, sig []byte) error { return k.verifyDigestIn(nil, sum, sig) }

// verifyDigestIn is verifyDigest with hot's table for k, if it has one.
func (k *Key) verifyDigestIn(hot *p384.Cache, sum, sig []byte) error {
	r, s, ok := parseSignature(sig)
	if !ok {
		return errDER
	}
	n := k.Public.Curve.Params().N
	if !inRange(r, n) || !inRange(s, n) {
		return errSigRange
	}
	if k.p384 != nil {
		if !hot.Verify(k.p384, sum, r, s) {
			return errBadSignature
		}
		return nil
	}
	if !ecdsa.Verify(k.Public, sum, new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)) {
		return errBadSignature
	}
	return nil
}

// Result is the outcome of one call in a batch.
type Result struct {
	Key *Key
	Err error
}

// VerifyBatch checks every hs[i] as if the time were now, on up to workers
// goroutines (0 means GOMAXPROCS), and returns the results in order. The
// workers take calls from a shared counter: no lock on the hot path.
func (v *Verifier) VerifyBatch(hs []sign.Headers, now time.Time, workers int) []Result {
	out := make([]Result, len(hs))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(hs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(hs) {
					return
				}
				out[i].Key, out[i].Err = v.VerifyAt(hs[i], now)
			}
		})
	}
	wg.Wait()
	return out
}
