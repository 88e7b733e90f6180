package gateway_test

import (
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

	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/redistest"
	"github.com/nodekeys/nodekeys/state/redisstate"
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
			c.Redis = &redisstate.Config{Addrs: []string{srv.Addr}, Timeout: 200 * time.Millisecond}
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

func metricsText(t *testing.T, r *rig) string {
	t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
