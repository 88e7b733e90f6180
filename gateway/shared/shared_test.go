package shared_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/redistest"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/tokens"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// check runs c on a call signed at the time its timestamp ts says.
func check(c replay.Checker, pemKey, ts string, now, expiry time.Time) error {
	signed, ok := flwr.ParseTimestamp(ts)
	if !ok {
		panic("check: not a flwr-timestamp: " + ts)
	}
	return c.Check(pemKey, ts, signed, now, expiry)
}

// errs records the failures a backend reports.
type errs struct {
	mu    sync.Mutex
	kinds map[string]int
}

func (e *errs) report(kind string, _ error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kinds == nil {
		e.kinds = map[string]int{}
	}
	e.kinds[kind]++
}

func (e *errs) count(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.kinds[kind]
}

func replica(t *testing.T, addr string, tweak func(*shared.Config), e *errs) *shared.Backend {
	t.Helper()
	cfg := shared.Config{Addrs: []string{addr}, Timeout: 100 * time.Millisecond, CheckInterval: 20 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	var report shared.Errors
	if e != nil {
		report = e.report
	}
	b, err := shared.New(context.Background(), cfg, report)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// settled waits until each backend trusts the revoked set: on a new
// epoch, 2 x CheckInterval + 3 x Timeout after it began.
func settled(t *testing.T, bs ...*shared.Backend) {
	t.Helper()
	for _, b := range bs {
		require.Eventually(t, func() bool {
			_, err := b.Revoked(context.Background(), [32]byte{})
			return err == nil
		}, 10*time.Second, 10*time.Millisecond)
	}
}

func pemKey(t testing.TB) string {
	t.Helper()
	p, err := keys.Generator{}.Pair(0)
	require.NoError(t, err)
	return string(p.Public.PEM())
}

func TestSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	one, two := replica(t, srv.Addr, nil, nil), replica(t, srv.Addr, nil, nil)
	guard1 := one.Replay(replay.NewGuard(1000))
	guard2 := two.Replay(replay.NewGuard(1000))
	key := pemKey(t)
	now := time.Now()
	ts := flwr.FormatTimestamp(now)
	expiry := now.Add(flwr.DefaultWindow.Past)

	// A call accepted by replica 1 is a replay at replica 2.
	require.NoError(t, check(guard1, key, ts, now, expiry))
	err := check(guard2, key, ts, now, expiry)
	assert.Equal(t, verify.Replayed, verify.ReasonOf(err))
	assert.Equal(t, verify.Replayed, verify.ReasonOf(check(guard1, key, ts, now, expiry)))
	require.NoError(t, check(guard2, key, flwr.FormatTimestamp(now.Add(time.Millisecond)), now, expiry), "another timestamp is new")
	// The entry expires with the window.
	short := flwr.FormatTimestamp(now.Add(2 * time.Millisecond))
	require.NoError(t, check(guard1, key, short, now, now.Add(50*time.Millisecond)))
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, check(guard2, key, short, time.Now(), time.Now().Add(time.Second)), "expired in Redis")

	// One rate limit across replicas: 4 calls of burst, then refused at either.
	never := func(string, time.Time) bool {
		t.Error("the local limiter is asked only when Redis fails")
		return false
	}
	lim1, lim2 := one.Limiter(0.5, 4, never), two.Limiter(0.5, 4, never)
	for i, lim := range []func(string, time.Time) error{lim1, lim2, lim1, lim2} {
		require.NoError(t, lim(key, now), i)
	}
	assert.Equal(t, verify.RateLimited, verify.ReasonOf(lim1(key, now)))
	assert.Equal(t, verify.RateLimited, verify.ReasonOf(lim2(key, now)))
	require.NoError(t, lim2(pemKey(t), now), "another key has its own bucket")

	// Owners, recorded by one, read by the other; the first owner stays.
	ctx := context.Background()
	alice := owners.Owner{Subject: "alice", Name: "Alice", At: now.UTC().Truncate(time.Millisecond)}
	require.NoError(t, one.SetOwner(ctx, owners.Runs, 42, alice))
	require.NoError(t, two.SetOwner(ctx, owners.Runs, 42, alice))
	assert.ErrorIs(t, two.SetOwner(ctx, owners.Runs, 42, owners.Owner{Subject: "bob"}), owners.ErrOwned)
	got, err := two.Owners(ctx, owners.Runs, []uint64{42, 43})
	require.NoError(t, err)
	assert.Equal(t, map[uint64]owners.Owner{42: alice}, got)
	got, err = two.Owners(ctx, owners.Nodes, []uint64{42})
	require.NoError(t, err)
	assert.Empty(t, got, "runs and nodes are apart")

	// A token revoked through one replica is revoked at the other (once
	// the new epoch has settled).
	_, err = two.Revoked(ctx, [32]byte{})
	assert.ErrorIs(t, err, shared.ErrSettling, "a new epoch")
	settled(t, one, two)
	tok, err := tokens.Generate()
	require.NoError(t, err)
	require.NoError(t, one.Revoke(ctx, [][32]byte{tokens.Hash(tok)}))
	revoked, err := two.Revoked(ctx, tokens.Hash(tok))
	require.NoError(t, err)
	assert.True(t, revoked)
	other, _ := tokens.Generate()
	revoked, err = two.Revoked(ctx, tokens.Hash(other))
	require.NoError(t, err)
	assert.False(t, revoked)

	// Nothing secret or identifying is stored in clear: every key, field,
	// value and member is read back and searched.
	dump := dumpAll(t, one)
	body := strings.Join(strings.Split(key, "\n")[1:3], "")
	for what, secret := range map[string]string{"the key": body, "a timestamp": ts, "the token": tok, "the token's body": tok[4:]} {
		assert.NotContains(t, dump, secret, what)
	}
}

// dumpAll returns every key and everything in it.
func dumpAll(t *testing.T, b *shared.Backend) string {
	t.Helper()
	ctx := context.Background()
	rdb := b.Client()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	var out strings.Builder
	for _, k := range keys {
		out.WriteString(k + "\n")
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			out.WriteString(rdb.Get(ctx, k).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				out.WriteString(f + "=" + v + "\n")
			}
		case "set":
			out.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), "\n"))
		default:
			t.Fatalf("unexpected %s at %s", typ, k)
		}
	}
	return out.String()
}

// Redis killed mid-test: each kind of state does what it is configured to
// do, reports it, and recovers when Redis is back.
func TestRedisDownAndBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var e1, e2 errs
	local := replica(t, srv.Addr, nil, &e1)
	closed := replica(t, srv.Addr, func(c *shared.Config) {
		c.ReplayFallback, c.RateFallback = shared.Closed, shared.Closed
	}, &e2)
	lg, cg := local.Replay(replay.NewGuard(1000)), closed.Replay(replay.NewGuard(1000))
	key := pemKey(t)
	now := time.Now()
	exp := now.Add(time.Minute)
	at := func(ms int) string { return flwr.FormatTimestamp(now.Add(time.Duration(ms) * time.Millisecond)) }
	require.NoError(t, check(lg, key, at(0), now, exp))

	srv.Stop()
	// Replay guard, fallback local: new calls pass, and this replica's own
	// calls are still refused as replays.
	require.NoError(t, check(lg, key, at(1), now, exp))
	assert.Equal(t, verify.Replayed, verify.ReasonOf(check(lg, key, at(1), now, exp)))
	assert.Equal(t, verify.Replayed, verify.ReasonOf(check(lg, key, at(0), now, exp)))
	// Fallback closed: refused as unavailable.
	err := check(cg, key, at(2), now, exp)
	assert.Equal(t, verify.Unavailable, verify.ReasonOf(err))
	assert.Equal(t, "Authentication unavailable, try again", grpcauth.StatusOf(err).Message())
	assert.Equal(t, "Unavailable", grpcauth.StatusOf(err).Code().String())
	// Rate limits: the local limiter decides, or the call is refused.
	asked := 0
	lim := local.Limiter(1, 5, func(string, time.Time) bool { asked++; return true })
	require.NoError(t, lim(key, now))
	assert.Equal(t, 1, asked)
	assert.Equal(t, verify.Unavailable, verify.ReasonOf(closed.Limiter(1, 5, nil)(key, now)))
	// Owners and revocations fail closed.
	ctx := context.Background()
	_, err = local.Owners(ctx, owners.Runs, []uint64{1})
	assert.ErrorIs(t, err, owners.ErrUnavailable)
	assert.ErrorIs(t, local.SetOwner(ctx, owners.Runs, 1, owners.Owner{Subject: "a"}), owners.ErrUnavailable)
	_, err = local.Revoked(ctx, [32]byte{})
	assert.Error(t, err)
	assert.Positive(t, e1.count("replay"))
	assert.Positive(t, e1.count("rate"))
	assert.Positive(t, e1.count("owners"))
	assert.Positive(t, e1.count("revoked"))
	assert.Positive(t, e2.count("replay"))

	// Back, empty: shared again, with no restart of the replicas. A
	// header signed before the restart cannot be proven unseen (Redis
	// lost the entries): refused as unavailable, at both replicas.
	srv.Restart(t)
	for i, g := range []replay.Checker{lg, cg} {
		err := check(g, key, at(10+i), now, exp)
		assert.ErrorContains(t, err, "signed before the shared replay guard lost its entries")
		assert.Equal(t, verify.Unavailable, verify.ReasonOf(err))
	}
	after := time.Now()
	ts := flwr.FormatTimestamp(after)
	require.NoError(t, check(lg, key, ts, after, after.Add(time.Minute)))
	assert.Equal(t, verify.Replayed, verify.ReasonOf(check(cg, key, ts, after, after.Add(time.Minute))), "seen by the other replica, through Redis")
	require.NoError(t, local.SetOwner(ctx, owners.Runs, 1, owners.Owner{Subject: "a"}))
}

// The same sharing through a Sentinel (the master found by name) and
// through a Cluster of three primaries, where each key may sit on another
// node. Long form: it starts five more servers.
func TestSentinelAndCluster(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("starts a Sentinel and a three-node Cluster: NODEKEYS_LONG=1")
	}
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master)
	cluster := redistest.StartCluster(t, 3)
	for name, cfg := range map[string]shared.Config{
		"sentinel": {Addrs: []string{sentinel}, MasterName: "nodekeys"},
		"cluster":  {Addrs: cluster[:1], Cluster: true},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Timeout, cfg.CheckInterval = time.Second, 20*time.Millisecond
			one, err := shared.New(context.Background(), cfg, nil)
			require.NoError(t, err)
			defer one.Close()
			two, err := shared.New(context.Background(), cfg, nil)
			require.NoError(t, err)
			defer two.Close()
			g1, g2 := one.Replay(replay.NewGuard(0)), two.Replay(replay.NewGuard(0))
			never := func(string, time.Time) bool { t.Error("Redis did not answer"); return false }
			l1, l2 := one.Limiter(0.01, 10, never), two.Limiter(0.01, 10, never)
			now := time.Now()
			// Many keys, so that in the Cluster they fall on every node.
			for i := range 30 {
				key := pemKey(t) + strconv.Itoa(i)
				ts := flwr.FormatTimestamp(now)
				require.NoError(t, check(g1, key, ts, now, now.Add(time.Minute)))
				assert.Equal(t, verify.Replayed, verify.ReasonOf(check(g2, key, ts, now, now.Add(time.Minute))))
				for range 5 {
					require.NoError(t, l1(key, now))
					require.NoError(t, l2(key, now))
				}
				assert.Equal(t, verify.RateLimited, verify.ReasonOf(l2(key, now)))
			}
			ctx := context.Background()
			require.NoError(t, one.SetOwner(ctx, owners.Nodes, 9, owners.Owner{Subject: "carol"}))
			got, err := two.Owners(ctx, owners.Nodes, []uint64{9})
			require.NoError(t, err)
			assert.Equal(t, "carol", got[9].Subject)
			settled(t, two)
			tok, _ := tokens.Generate()
			require.NoError(t, one.Revoke(ctx, [][32]byte{tokens.Hash(tok)}))
			revoked, err := two.Revoked(ctx, tokens.Hash(tok))
			require.NoError(t, err)
			assert.True(t, revoked)
		})
	}
}

// The cost a call of the shared replay guard and of the revocation check,
// each one round trip to a real redis-server on loopback.
func BenchmarkShared(b *testing.B) {
	srv := redistest.Start(b)
	// A long timeout: on a busy machine, a slow look would count as an
	// outage and hold the revocation checks back.
	be, err := shared.New(context.Background(), shared.Config{Addrs: []string{srv.Addr}, Timeout: time.Second, CheckInterval: 10 * time.Millisecond}, nil)
	require.NoError(b, err)
	defer be.Close()
	ctx := context.Background()
	b.Run("replay", func(b *testing.B) {
		g := be.Replay(replay.NewGuard(0))
		key := pemKey(b)
		now := time.Now()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			ts := flwr.FormatTimestamp(now.Add(time.Duration(i) * time.Microsecond))
			if err := check(g, key, ts, now, now.Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("revoked", func(b *testing.B) {
		require.Eventually(b, func() bool { _, err := be.Revoked(ctx, [32]byte{}); return err == nil }, 10*time.Second, 10*time.Millisecond)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := be.Revoked(ctx, [32]byte{1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
