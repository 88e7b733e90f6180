package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/redistest"
	"github.com/nodekeys/nodekeys/tokens"
)

// Two gateway replicas in front of one SuperLink, sharing a real Redis: a
// header accepted by one is a replay at the other, one rate limit holds
// across both, owners are shared, and a token revoked at one is refused by
// both. Then Redis is killed: Fleet calls go on (the replay guard falls
// back to each replica's own), Control calls are refused (owners fail
// closed), and all is shared again when Redis returns.
func TestReplicasShareStateInRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	dir := t.TempDir()
	file1, file2 := filepath.Join(dir, "tokens1"), filepath.Join(dir, "tokens2")
	ci, _, err := tokens.New(file1, "ci", "member")
	require.NoError(t, err)
	ops, _, err := tokens.New(file1, "ops", "member")
	require.NoError(t, err)
	b, err := os.ReadFile(file1)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file2, b, 0o600)) // each replica has its own copy, as a ConfigMap mount gives it

	shared := func(file string) func(*gateway.Config) {
		return func(c *gateway.Config) {
			c.Redis = &shared.Config{Addrs: []string{srv.Addr}, Timeout: 200 * time.Millisecond, CheckInterval: 20 * time.Millisecond}
			c.TokenList = file
			c.KeyRate, c.KeyBurst = 0.01, 4
			c.RefusalDelay = new(time.Duration)
			c.ReloadInterval = time.Hour // reloads only when the test asks
		}
	}
	one := newRig(t, 1, shared(file1))
	two := newRig(t, 1, shared(file2), func(c *gateway.Config) {
		c.Allowlist = one.cfg.Allowlist
		c.Upstream, c.UpstreamControl = one.upstream, one.upstream
	})
	assert.Empty(t, one.cfg.StateFile, "owners are kept in Redis")

	s := one.signer(t, 0)
	h, err := s.Sign()
	require.NoError(t, err)
	c1, c2 := one.dial(t, one.fleet, nil), two.dial(t, two.fleet, nil)
	_, _, _, err = call(c1, heartbeat, "echo:x", headerPairs(h)...)
	require.NoError(t, err)
	_, _, _, err = call(c2, heartbeat, "echo:x", headerPairs(h)...)
	wantStatus(t, err, codes.Unauthenticated, "Invalid timestamp")
	assert.Contains(t, two.logs.String(), "reason=replayed")

	// The key's burst of 4 is shared: the two calls above (the replay
	// took a token too: the limit is charged once the signature verifies,
	// before the replay check), one more at each, and the next is refused
	// at either.
	signed1, signed2 := one.dial(t, one.fleet, s.PerRPCCredentials()), two.dial(t, two.fleet, s.PerRPCCredentials())
	for _, c := range []*grpc.ClientConn{signed1, signed2} {
		_, _, _, err := call(c, heartbeat, "echo:x")
		require.NoError(t, err)
	}
	_, _, _, err = call(signed2, heartbeat, "echo:x")
	wantStatus(t, err, codes.ResourceExhausted, "")
	_, _, _, err = call(signed1, heartbeat, "echo:x")
	wantStatus(t, err, codes.ResourceExhausted, "")

	// Owners: a run started through one is the same account's through two,
	// and nobody else's.
	ctl1, ctl2 := one.dial(t, one.control, nil), two.dial(t, two.control, nil)
	accepted(t, ops, ctl1, ctl2) // once Redis's new epoch has settled
	run := startRun(t, ctl1, bearer(ci))
	m, _ := runsOf(t, ctl2, bearer(ci))
	assert.Equal(t, []uint64{run}, runIDs(m))
	m, _ = runsOf(t, ctl2, bearer(ops))
	assert.Empty(t, m.RunDict)
	_, err = ctl(ctl2, bearer(ops), "StopRun", &flwrpb.StopRunRequest{RunId: run})
	wantStatus(t, err, codes.PermissionDenied, "")

	// Revoked at one (its file, reloaded): refused by two at once, though
	// two's own file still holds the token.
	_, err = tokens.Revoke(file1, "ci")
	require.NoError(t, err)
	require.NoError(t, one.gw.Reload())
	_, err = ctl(ctl1, bearer(ci), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = ctl(ctl2, bearer(ci), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = ctl(ctl2, bearer(ops), "ListRuns", &flwrpb.ListRunsRequest{})
	require.NoError(t, err, "the other token is untouched")

	// Redis down.
	srv.Stop()
	fresh := func() []string {
		h, err := s.Sign()
		require.NoError(t, err)
		return headerPairs(h)
	}
	plain1 := one.dial(t, one.fleet, nil)
	md := fresh()
	// The bucket is empty in Redis, but Redis is gone: the local limiter
	// (full) decides, and the local replay guard still refuses a replay.
	_, _, _, err = call(plain1, heartbeat, "echo:x", md...)
	require.NoError(t, err, "Fleet calls go on without Redis")
	_, _, _, err = call(plain1, heartbeat, "echo:x", md...)
	wantStatus(t, err, codes.Unauthenticated, "Invalid timestamp")
	_, err = ctl(ctl2, bearer(ops), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unavailable, "")
	assert.Contains(t, metricsText(t, one), `nodekeys_gateway_shared_state_errors_total{kind="replay"}`)
	assert.Contains(t, metricsText(t, two), `nodekeys_gateway_shared_state_errors_total{kind="revoked"}`)
	assert.Contains(t, one.logs.String(), "shared state unreachable")

	// Back (empty, as a restarted Redis without persistence is).
	srv.Restart(t)
	require.Eventually(t, func() bool {
		_, err := ctl(ctl2, bearer(ops), "ListRuns", &flwrpb.ListRunsRequest{})
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	md = fresh()
	_, _, _, err = call(plain1, heartbeat, "echo:x", md...)
	require.NoError(t, err)
	_, _, _, err = call(two.dial(t, two.fleet, nil), heartbeat, "echo:x", md...)
	wantStatus(t, err, codes.Unauthenticated, "Invalid timestamp")
	assert.NotContains(t, one.logs.String()+two.logs.String(), ci)
}

// accepted waits until tok is accepted through each connection: after a
// new epoch in Redis, token checks are UNAVAILABLE for a while.
func accepted(t *testing.T, tok string, conns ...*grpc.ClientConn) {
	t.Helper()
	for _, c := range conns {
		var err error
		require.Eventually(t, func() bool {
			_, err = ctl(c, bearer(tok), "ListRuns", &flwrpb.ListRunsRequest{})
			return status.Code(err) != codes.Unavailable
		}, 10*time.Second, 10*time.Millisecond)
		require.NoError(t, err)
	}
}

func metricsText(t *testing.T, r *rig) string {
	t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// replicas starts n gateways sharing one Redis, each with its own copy of
// a token file holding the tokens named, and returns them with the
// tokens. Further replicas come from more(file).
func replicas(t *testing.T, srv *redistest.Server, n int, names ...string) (rs []*rig, files []string, toks map[string]string, more func(file string) *rig) {
	t.Helper()
	dir := t.TempDir()
	toks = map[string]string{}
	file := filepath.Join(dir, "tokens0")
	for _, name := range names {
		tok, _, err := tokens.New(file, name, "member")
		require.NoError(t, err)
		toks[name] = tok
	}
	b := tokens.Format(nil)
	if len(names) > 0 {
		var err error
		b, err = os.ReadFile(file)
		require.NoError(t, err)
	}
	var first *rig
	more = func(file string) *rig {
		tweaks := []func(*gateway.Config){func(c *gateway.Config) {
			c.Redis = &shared.Config{Addrs: []string{srv.Addr}, Timeout: 150 * time.Millisecond, CheckInterval: 20 * time.Millisecond}
			c.TokenList = file
			c.RefusalDelay = new(time.Duration)
			c.ReloadInterval = time.Hour // reloads only when the test asks
		}}
		if first != nil {
			tweaks = append(tweaks, func(c *gateway.Config) {
				c.Allowlist = first.cfg.Allowlist
				c.Upstream, c.UpstreamControl = first.upstream, first.upstream
			})
		}
		return newRig(t, 1, tweaks...)
	}
	for i := range n {
		files = append(files, filepath.Join(dir, fmt.Sprintf("tokens%d", i+1)))
		require.NoError(t, os.WriteFile(files[i], b, 0o600)) // each replica has its own copy, as a ConfigMap mount gives it
		rs = append(rs, more(files[i]))
		first = rs[0]
	}
	return rs, files, toks, more
}

// refused waits until tok is refused as unauthenticated through each
// connection, and fails if it is accepted meanwhile: until then the only
// answer allowed is UNAVAILABLE.
func refused(t *testing.T, tok string, conns ...*grpc.ClientConn) {
	t.Helper()
	for i, c := range conns {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := ctl(c, bearer(tok), "ListRuns", &flwrpb.ListRunsRequest{})
			code := status.Code(err)
			require.NotEqual(t, codes.OK, code, "a revoked token accepted through connection %d", i)
			if code == codes.Unauthenticated {
				break
			}
			require.Equal(t, codes.Unavailable, code, "%v", err)
			require.True(t, time.Now().Before(deadline), "connection %d: still %v", i, err)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// watchSawOutage waits until r's watch loop has found Redis unreachable.
func watchSawOutage(t *testing.T, r *rig) {
	t.Helper()
	require.Eventually(t, func() bool {
		return strings.Contains(metricsText(t, r), `nodekeys_gateway_shared_state_errors_total{kind="watch"}`)
	}, 5*time.Second, 10*time.Millisecond)
}

// A token revocation outlives Redis. Revoked while Redis is down, it
// reaches Redis when Redis is back (with its data: persistence); revoked
// before Redis restarts empty, it is asserted again by the replica that
// saw it. A replica whose own file still lists the token, including one
// started after Redis lost the set, never accepts it meanwhile: it
// answers UNAVAILABLE until every replica has had the time to assert its
// revocations again, then UNAUTHENTICATED.
func TestRevocationsOutliveRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.StartPersistent(t)
	rs, files, toks, more := replicas(t, srv, 2, "ci", "ops", "dev")
	one, two := rs[0], rs[1]
	ctl1, ctl2 := one.dial(t, one.control, nil), two.dial(t, two.control, nil)
	accepted(t, toks["dev"], ctl1, ctl2)

	// Redis down: the revocation at one cannot reach it.
	srv.Stop()
	watchSawOutage(t, two)
	_, err := tokens.Revoke(files[0], "ci")
	require.NoError(t, err)
	require.NoError(t, one.gw.Reload())
	assert.Contains(t, one.logs.String(), "cannot share a token revocation yet")
	srv.Restart(t) // with its data, but not the revocation
	refused(t, toks["ci"], ctl1, ctl2)
	accepted(t, toks["dev"], ctl2)

	// Revoked with Redis up, then Redis restarted empty; and a third
	// replica, started after, with the stale file too.
	_, err = tokens.Revoke(files[0], "ops")
	require.NoError(t, err)
	require.NoError(t, one.gw.Reload())
	_, err = ctl(ctl2, bearer(toks["ops"]), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
	srv.RestartEmpty(t)
	three := more(files[1])
	ctl3 := three.dial(t, three.control, nil)
	for _, tok := range []string{toks["ci"], toks["ops"]} {
		refused(t, tok, ctl2, ctl3)
	}
	accepted(t, toks["dev"], ctl2, ctl3)
	assert.Contains(t, one.logs.String(), "the shared state was lost")
	assert.Contains(t, metricsText(t, one), `nodekeys_gateway_shared_state_errors_total{kind="lost"} 1`)
}

// A header accepted before Redis lost its entries is not accepted again
// at another replica. After an outage (Redis back with its data), a
// header that one replica accepted on its own guard alone is refused at
// the other; after Redis restarted empty, so is a header accepted before.
// Both are answered UNAVAILABLE (the SuperNode's next call is signed
// anew), and fresh headers pass and are shared again.
func TestReplayAfterRedisLostEntries(t *testing.T) {
	t.Parallel()
	srv := redistest.StartPersistent(t)
	rs, _, _, _ := replicas(t, srv, 2)
	one, two := rs[0], rs[1]
	s := one.signer(t, 0)
	fresh := func() []string {
		h, err := s.Sign()
		require.NoError(t, err)
		return headerPairs(h)
	}
	f1, f2 := one.dial(t, one.fleet, nil), two.dial(t, two.fleet, nil)
	before := fresh()
	_, _, _, err := call(f1, heartbeat, "echo:x", before...)
	require.NoError(t, err)

	srv.Stop()
	during := fresh()
	_, _, _, err = call(f1, heartbeat, "echo:x", during...)
	require.NoError(t, err, "accepted by one's own guard")
	watchSawOutage(t, two)
	srv.Restart(t) // with its data, which lacks the header accepted during the outage
	_, _, _, err = call(f2, heartbeat, "echo:x", during...)
	wantStatus(t, err, codes.Unavailable, "Authentication unavailable, try again")
	md := fresh()
	_, _, _, err = call(f2, heartbeat, "echo:x", md...)
	require.NoError(t, err)
	_, _, _, err = call(f1, heartbeat, "echo:x", md...)
	wantStatus(t, err, codes.Unauthenticated, "Invalid timestamp")

	srv.RestartEmpty(t)
	_, _, _, err = call(f2, heartbeat, "echo:x", before...)
	wantStatus(t, err, codes.Unavailable, "Authentication unavailable, try again")
	md = fresh()
	_, _, _, err = call(f2, heartbeat, "echo:x", md...)
	require.NoError(t, err)
	_, _, _, err = call(f1, heartbeat, "echo:x", md...)
	wantStatus(t, err, codes.Unauthenticated, "Invalid timestamp")
	assert.Contains(t, two.logs.String(), "signed before the shared replay guard lost its entries")
}
