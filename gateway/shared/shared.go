// Package shared is the state that several gateway replicas share, in
// Redis (standalone, Sentinel or Cluster, through go-redis): the replay
// guard, the per-key rate limits, run and node owners, and revoked bearer
// tokens. One gateway needs none of it; its embedded state is package
// gateway/owners and the in-process guard and limiter.
//
// What is stored, and for how long (PREFIX is Config.Prefix):
//
//	PREFIX r:<32 hex>       a verified call (SHA-256 of key and timestamp), until its timestamp leaves the window
//	PREFIX k:<32 hex>       a key's token bucket (SHA-256 of the key), until the bucket would be full again
//	PREFIX owners:runs      hash: run id -> owner record (JSON), kept
//	PREFIX owners:nodes     hash: node id -> owner record (JSON), kept
//	PREFIX revoked          set: SHA-256 of revoked bearer tokens, kept
//	PREFIX epoch{PREFIX revoked}  a random id and when the first replica wrote it, kept (see epoch.go)
//
// No key, signature, timestamp or token is stored in clear. A call costs
// one round trip for its rate limit (before the signature is checked)
// and one for the replay guard (after); Control calls one for owners, and
// one for the revocation check with a token.
//
// When Redis is slow or down, each kind of state does what the config
// says, with a metric and a log line (see Fallback): the replay guard and
// rate limits fall back to this replica's own by default; owner reads and
// writes, and the revocation check, fail closed. Each replica's watch
// loop checks every CheckInterval that Redis still holds the epoch, and
// asserts again the revocations this replica has seen: after Redis lost
// its data or was unreachable, headers signed before are refused as
// Unavailable, and token checks wait until every replica has had the time
// to assert its own revocations again.
package shared

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/internal/tlsconf"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// Fallback is what the replay guard and rate limits do when Redis fails.
type Fallback string

const (
	// Local (the default) checks with this replica's own guard and limiter,
	// which record every call anyway. Fleet calls go on; what is lost is a
	// replay to another replica inside the window, during the outage only,
	// which Flower's SuperLink would accept anyway.
	Local Fallback = "local"
	// Closed refuses the call with UNAVAILABLE: no replay can pass, and no
	// SuperNode can reach the SuperLink while Redis is down.
	Closed Fallback = "closed"
)

// Config says how to reach Redis.
type Config struct {
	// Addrs: one address for a standalone server; the Sentinels' with
	// MasterName; the seed nodes of a Cluster with Cluster (or several
	// addresses without MasterName).
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Cluster    bool     `yaml:"cluster"`
	DB         int      `yaml:"db"`
	Username   string   `yaml:"username"`
	// The password comes from PasswordFile or the environment variable
	// PasswordEnv, never from the config itself or a flag.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// TLS speaks TLS to Redis, checking its certificate against CAFile
	// (default: the system's roots).
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// Prefix starts every key (default "nodekeys:"), so that federations
	// can share a server.
	Prefix string `yaml:"prefix"`
	// Timeout bounds one round trip (default 250ms): a Fleet call waits at
	// most this long for Redis before the fallback applies.
	Timeout time.Duration `yaml:"timeout"`
	// ReplayFallback and RateFallback: Local (default) or Closed.
	ReplayFallback Fallback `yaml:"replay_fallback"`
	RateFallback   Fallback `yaml:"rate_fallback"`
	// CheckInterval is how often each replica checks that Redis still
	// holds the shared state (default 1s) and asserts again the token
	// revocations it has seen. After Redis lost its data or could not be
	// reached, a replica refuses token checks for 2 x CheckInterval +
	// 3 x Timeout: time for every replica to assert its own again (a look
	// starts within CheckInterval, doubled for slack, and, after an
	// outage, dials anew and answers within 3 x Timeout).
	CheckInterval time.Duration `yaml:"check_interval"`
}

// Defaults fills the zero fields.
func (c *Config) Defaults() {
	if c.Prefix == "" {
		c.Prefix = "nodekeys:"
	}
	if c.Timeout <= 0 {
		c.Timeout = 250 * time.Millisecond
	}
	if c.ReplayFallback == "" {
		c.ReplayFallback = Local
	}
	if c.RateFallback == "" {
		c.RateFallback = Local
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = time.Second
	}
}

// Validate reports contradictions, after Defaults.
func (c *Config) Validate() error {
	switch {
	case len(c.Addrs) == 0:
		return errors.New("redis: no addrs")
	case c.MasterName != "" && c.Cluster:
		return errors.New("redis: master_name (Sentinel) and cluster contradict each other")
	case c.PasswordFile != "" && c.PasswordEnv != "":
		return errors.New("redis: password_file and password_env contradict each other")
	}
	if c.CheckInterval > time.Minute {
		return fmt.Errorf("redis: check_interval is at most 1m (token checks wait twice as long after Redis lost its data), got %s", c.CheckInterval)
	}
	for _, f := range []Fallback{c.ReplayFallback, c.RateFallback} {
		if f != Local && f != Closed {
			return fmt.Errorf("redis: a fallback is %q or %q, got %q", Local, Closed, f)
		}
	}
	return nil
}

// Errors reports each failed round trip: kind is "replay", "rate",
// "owners" or "revoked". It must be fast and safe for concurrent use.
type Errors func(kind string, err error)

// Backend is the shared state over one Redis client.
type Backend struct {
	cfg    Config
	opts   *redis.UniversalOptions
	rdb    redis.UniversalClient
	onErr  Errors // report, then look
	report Errors
	bucket *redis.Script
	ep     epoch
	poke   chan struct{} // asks the watch loop to look now
	fails  int           // the watch loop's failed looks in a row
	stop   context.CancelFunc
	done   chan struct{}
}

// quietOnce routes go-redis's own log lines (connection pool retries, to
// stderr by default) to slog at debug level, once per process: every
// failure that matters reaches the caller's Errors already.
var quietOnce sync.Once

type debugLog struct{}

func (debugLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// New connects to Redis and checks that it answers.
func New(ctx context.Context, cfg Config, onErr Errors) (*Backend, error) {
	quietOnce.Do(func() { redis.SetLogger(debugLog{}) })
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &redis.UniversalOptions{Addrs: cfg.Addrs, MasterName: cfg.MasterName, DB: cfg.DB, Username: cfg.Username,
		DialTimeout: 2 * cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout, MaxRetries: 1,
		IsClusterMode: cfg.Cluster}
	var err error
	if opts.Password, err = password(cfg); err != nil {
		return nil, err
	}
	if cfg.TLS {
		if opts.TLSConfig, err = tlsconf.Client(cfg.CAFile, ""); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
	}
	if onErr == nil {
		onErr = func(string, error) {}
	}
	b := &Backend{cfg: cfg, report: onErr, bucket: redis.NewScript(bucketScript), poke: make(chan struct{}, 1), done: make(chan struct{})}
	b.onErr = func(kind string, err error) {
		onErr(kind, err)
		b.look() // is Redis down, or did it lose its data?
	}
	b.ep.settle = 2*cfg.CheckInterval + 3*cfg.Timeout
	if cfg.MasterName != "" || !(cfg.Cluster || len(cfg.Addrs) > 1) {
		// One primary: a restart of Redis ends every connection, so the
		// epoch read on each new one finds a loss before any command.
		opts.OnConnect = b.onConnect
	}
	b.opts = opts
	b.rdb = redis.NewUniversalClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The client reads with its own timeouts, not ctx's: the first round
	// trips run aside, so that a caller who cancels ctx (SIGTERM at start)
	// is not held by a Redis that accepts and does not answer.
	first := make(chan error, 1)
	go func() {
		err := b.rdb.Ping(pctx).Err()
		if err == nil {
			err = b.check(pctx)
		}
		first <- err
	}()
	select {
	case err = <-first:
	case <-pctx.Done():
		err = pctx.Err()
	}
	if err != nil {
		b.rdb.Close()
		return nil, fmt.Errorf("redis: %s: %w", strings.Join(cfg.Addrs, ","), err)
	}
	wctx, stop := context.WithCancel(context.Background())
	b.stop = stop
	go b.watch(wctx)
	return b, nil
}

func password(cfg Config) (string, error) {
	switch {
	case cfg.PasswordFile != "":
		b, err := safefile.ReadRegular(cfg.PasswordFile, 4096)
		if err != nil {
			return "", fmt.Errorf("redis: password: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case cfg.PasswordEnv != "":
		v, ok := os.LookupEnv(cfg.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("redis: password: the environment variable %s is not set", cfg.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// Close stops the watch loop and closes the client.
func (b *Backend) Close() error {
	b.stop()
	<-b.done
	return b.rdb.Close()
}

// Client returns the Redis client, for inspection.
func (b *Backend) Client() redis.UniversalClient { return b.rdb }

func (b *Backend) key(parts ...string) string { return b.cfg.Prefix + strings.Join(parts, "") }

func (b *Backend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.cfg.Timeout)
}

// bound gives a call's context the round-trip timeout, so that a Redis
// that is down costs a Control call Timeout, not the pool's longer waits.
func (b *Backend) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.Timeout)
}

// --- the replay guard ---

var (
	errReplayed    = &replay.Error{Reason: replay.Replayed, Detail: "this signed timestamp was accepted before (by this or another gateway)"}
	errUnavailable = &replay.Error{Reason: replay.Unavailable, Detail: "the shared state cannot be reached"}
	errBeforeLoss  = &replay.Error{Reason: replay.Unavailable, Detail: "signed before the shared replay guard lost its entries or was unreachable; the next call, signed anew, passes"}
)

// sharedReplay is a replay.Checker shared through Redis, with this
// replica's own guard in front.
type sharedReplay struct {
	b     *Backend
	local *replay.Guard
}

// Replay returns the shared replay guard. Every call is first checked and
// recorded by local (this replica's guard, with its per-key quota), then
// set in Redis if absent (SET NX with the call's expiry: one round trip).
func (b *Backend) Replay(local *replay.Guard) replay.Checker {
	return &sharedReplay{b: b, local: local}
}

// Check implements replay.Checker.
func (r *sharedReplay) Check(pemKey, ts string, signed, now, expiry time.Time) error {
	key, call := replay.Digests(pemKey, ts)
	if err := r.local.CheckDigests(key, call, pemKey, now, expiry); err != nil {
		return err
	}
	ttl := expiry.Sub(now)
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ctx, cancel := r.b.ctx()
	defer cancel()
	fresh, err := r.b.rdb.SetNX(ctx, r.b.key("r:", hex.EncodeToString(call[:16])), 1, ttl).Result()
	if err != nil {
		r.b.onErr("replay", err)
		if r.b.cfg.ReplayFallback == Local {
			return nil // recorded by the local guard above
		}
		return errUnavailable
	}
	r.b.up()
	if !fresh {
		return errReplayed
	}
	if r.b.beforeFloor(signed) {
		return errBeforeLoss
	}
	return nil
}

// --- per-key rate limits ---

// bucketScript is a token bucket in one round trip: rate tokens a second
// up to burst, timed by the server's clock so that replicas agree. The
// bucket expires when it would be full again.
const bucketScript = `
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 't', 'n')
local tokens = burst
if v[1] then
  tokens = math.min(burst, tonumber(v[2]) + math.max(0, now - tonumber(v[1])) * rate)
end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', now), 'n', string.format('%.6f', tokens))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
`

// Limiter returns a per-key rate limit shared through Redis: rate calls a
// second, bursts of burst. When Redis fails, local decides (RateFallback
// Local) or the call is refused.
func (b *Backend) Limiter(rate float64, burst int, local func(pemKey string, now time.Time) bool) func(pemKey string, now time.Time) error {
	args := []any{strconv.FormatFloat(rate, 'f', -1, 64), burst}
	return func(pemKey string, now time.Time) error {
		k, _ := replay.Digests(pemKey, "")
		ctx, cancel := b.ctx()
		defer cancel()
		ok, err := b.bucket.Run(ctx, b.rdb, []string{b.key("k:", hex.EncodeToString(k[:16]))}, args...).Int()
		if err != nil {
			b.onErr("rate", err)
			if b.cfg.RateFallback == Closed {
				return errUnavailable
			}
			if local(pemKey, now) {
				return nil
			}
			return errRate
		}
		b.up()
		if ok != 1 {
			return errRate
		}
		return nil
	}
}

var errRate = &replay.Error{Reason: replay.RateLimited, Detail: "this key sent more calls than its rate limit allows (across gateways)"}

// --- owners (owners.Store) ---

var _ owners.Store = (*Backend)(nil)

func (b *Backend) ownersKey(kind owners.Kind) string { return b.key("owners:", string(kind)) }

func (b *Backend) fail(err error) error {
	b.onErr("owners", err)
	return fmt.Errorf("%w: redis: %v", owners.ErrUnavailable, err)
}

// SetOwner implements owners.Store (HSETNX: the first owner stays).
func (b *Backend) SetOwner(ctx context.Context, kind owners.Kind, id uint64, o owners.Owner) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	field := strconv.FormatUint(id, 10)
	set, err := b.rdb.HSetNX(ctx, b.ownersKey(kind), field, v).Result()
	if err != nil {
		return b.fail(err)
	}
	if set {
		return nil
	}
	old, err := b.rdb.HGet(ctx, b.ownersKey(kind), field).Result()
	if err != nil {
		return b.fail(err)
	}
	var prev owners.Owner
	if json.Unmarshal([]byte(old), &prev) == nil && prev.SameAs(o) {
		return nil
	}
	return owners.ErrOwned
}

// Owners implements owners.Store (one HMGET).
func (b *Backend) Owners(ctx context.Context, kind owners.Kind, ids []uint64) (map[uint64]owners.Owner, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	out := make(map[uint64]owners.Owner, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	fields := make([]string, len(ids))
	for i, id := range ids {
		fields[i] = strconv.FormatUint(id, 10)
	}
	vals, err := b.rdb.HMGet(ctx, b.ownersKey(kind), fields...).Result()
	if err != nil {
		return nil, b.fail(err)
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var o owners.Owner
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			return nil, fmt.Errorf("state: redis: a damaged owner record of %s %d", kind, ids[i])
		}
		out[ids[i]] = o
	}
	return out, nil
}

// All implements owners.Store.
func (b *Backend) All(ctx context.Context, kind owners.Kind) (map[uint64]owners.Owner, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	m, err := b.rdb.HGetAll(ctx, b.ownersKey(kind)).Result()
	if err != nil {
		return nil, b.fail(err)
	}
	out := make(map[uint64]owners.Owner, len(m))
	for k, v := range m {
		id, err := strconv.ParseUint(k, 10, 64)
		var o owners.Owner
		if err != nil || json.Unmarshal([]byte(v), &o) != nil {
			return nil, fmt.Errorf("state: redis: a damaged owner record in %s", kind)
		}
		out[id] = o
	}
	return out, nil
}

// --- revoked tokens ---

// Revoke records token hashes as revoked, for every replica, and
// remembers them: the watch loop asserts them again every CheckInterval
// for as long as this Backend runs, so that a revocation made while Redis
// is unreachable reaches it when it is back, and one that Redis lost
// (restarted without persistence, flushed) is restored. An error means
// Redis does not have them yet.
func (b *Backend) Revoke(ctx context.Context, hashes [][sha256.Size]byte) error {
	if len(hashes) == 0 {
		return nil
	}
	b.remember(hashes)
	ctx, cancel := b.bound(ctx)
	defer cancel()
	members := make([]any, len(hashes))
	for i, h := range hashes {
		members[i] = hex.EncodeToString(h[:])
	}
	if err := b.rdb.SAdd(ctx, b.key("revoked"), members...).Err(); err != nil {
		b.onErr("revoked", err)
		return err
	}
	b.up()
	return nil
}

// Revoked reports whether a token hash was revoked by any replica. An
// error means the answer is unknown; callers refuse the token. It is
// ErrSettling for 2 x CheckInterval + 3 x Timeout after Redis lost its data
// or this replica's watch loop found it unreachable.
func (b *Backend) Revoked(ctx context.Context, hash [sha256.Size]byte) (bool, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	pipe := b.rdb.Pipeline()
	member := pipe.SIsMember(ctx, b.key("revoked"), hex.EncodeToString(hash[:]))
	ep := pipe.Get(ctx, b.epochKey()) // after: a flush between the two shows
	pipe.Exec(ctx)
	err := member.Err()
	if err == nil && !errors.Is(ep.Err(), redis.Nil) {
		err = ep.Err()
	}
	if err != nil {
		b.onErr("revoked", err)
		return false, err
	}
	b.up()
	if !b.trusted(ep.Val()) {
		b.look()
		return false, ErrSettling
	}
	return member.Val(), nil
}
