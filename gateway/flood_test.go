package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/sign"
)

// forged returns n headers that name the public key of s, with fresh
// timestamps and signatures that do not verify: what anyone can send,
// since public keys are not secret.
func forged(t *testing.T, s *sign.Signer, n int) [][]string {
	t.Helper()
	out := make([][]string, n)
	for i := range out {
		h, err := s.SignTimestamp(flwr.FormatTimestamp(time.Now().Add(-time.Duration(i) * time.Millisecond)))
		require.NoError(t, err)
		h.Signature = bytes.Clone(h.Signature)
		h.Signature[len(h.Signature)-1] ^= 1
		out[i] = headerPairs(h)
	}
	return out
}

// flood keeps inFlight forged calls in flight over conns until stop is
// closed, and returns how many were answered and how many of those were
// not refused.
func flood(conns []*grpc.ClientConn, hs [][]string, inFlight int, stop <-chan struct{}) (wait func() (sent, passed int64), answered *atomic.Int64) {
	answered = new(atomic.Int64)
	var passedN atomic.Int64
	var wg sync.WaitGroup
	for f := range inFlight {
		wg.Go(func() {
			c := conns[f%len(conns)]
			for i := f; ; i += inFlight {
				select {
				case <-stop:
					return
				default:
				}
				_, _, _, err := call(c, heartbeat, "flood", hs[i%len(hs)]...)
				if err == nil {
					passedN.Add(1)
				}
				answered.Add(1)
			}
		})
	}
	return func() (int64, int64) { wg.Wait(); return answered.Load(), passedN.Load() }, answered
}

// Public keys are not secret: anyone may flood the gateway with forged
// signatures under the keys of real nodes. The flood is refused, and none
// of those nodes' own valid calls is. (Before, the per-key rate limit was
// charged before the signature was checked, so the flood spent the real
// nodes' allowance and their calls were refused as over their limit.)
func TestForgedFloodSparesRealNodes(t *testing.T) {
	parallelUnlessLong(t)
	victims, inFlight, perVictim := 5, 256, 6
	if peer.Long() {
		inFlight, perVictim = 5000, 6
	}
	// A small allowance, so that a flood that could spend it does so at
	// once; each real node's own calls fit in it.
	r := newRig(t, victims, func(c *gateway.Config) { c.KeyRate, c.KeyBurst = 1, 20 })
	var hs [][]string
	for i := range victims {
		hs = append(hs, forged(t, r.signer(t, i), 32)...)
	}
	floodConns := make([]*grpc.ClientConn, (inFlight+gateway.DefaultStreamsPerConn-1)/gateway.DefaultStreamsPerConn+3)
	for i := range floodConns {
		floodConns[i] = r.dial(t, r.fleet, nil)
	}
	// The real nodes are connected before the flood, as SuperNodes are.
	real := make([]*grpc.ClientConn, victims)
	for i := range real {
		real[i] = r.dial(t, r.fleet, r.signer(t, i).PerRPCCredentials())
		_, _, _, err := call(real[i], heartbeat, "echo:hello")
		require.NoError(t, err)
	}

	stop := make(chan struct{})
	wait, answered := flood(floodConns, hs, inFlight, stop)
	defer func() {
		close(stop)
		sent, passed := wait()
		assert.Zero(t, passed, "no forged call is accepted")
		t.Logf("%d forged calls, %d in flight", sent, inFlight)
	}()
	// Every flood call has been answered once: the flood is on.
	require.Eventually(t, func() bool { return answered.Load() >= int64(inFlight) }, 30*time.Second, 5*time.Millisecond)

	var refused, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i, c := range real {
		wg.Go(func() {
			for j := range perVictim {
				body := fmt.Sprintf("echo:%d-%d", i, j)
				// Slow is not refused: with thousands of forgeries in
				// flight on two cores a valid call can take seconds.
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				req, resp := []byte(body), []byte{}
				err := c.Invoke(ctx, heartbeat, &req, &resp)
				cancel()
				out := string(resp)
				switch {
				case status.Code(err) == codes.ResourceExhausted:
					refused.Add(1)
				case err == nil && out != body:
					err = fmt.Errorf("got %q for %q", out, body)
					fallthrough
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("real nodes' valid calls refused: %d of %d, with %d forged calls in flight", refused.Load(), victims*perVictim, inFlight)
	assert.Zero(t, refused.Load(), "real nodes' valid calls refused as over their rate limit")
	assert.Zero(t, failed.Load(), "first error: %v", firstErr.Load())
	assert.Equal(t, victims*(perVictim+1), r.up.Count(), "only the real nodes' calls reached the upstream")
}

// A connection may send max_bad_signatures_per_conn calls whose signature
// does not verify, whether one after another or all at once; past that,
// its calls are refused before any verification, until it reconnects. The
// real node, on its own connection, is untouched.
func TestBadSignaturesBoundedPerConnection(t *testing.T) {
	t.Parallel()
	noDelay := time.Duration(0)
	r := newRig(t, 1, func(c *gateway.Config) { c.MaxBadSignaturesPerConn, c.RefusalDelay = 4, &noDelay })
	hs := forged(t, r.signer(t, 0), 200)
	outcome := func(err error) string {
		st, _ := status.FromError(err)
		return st.Code().String() + ": " + st.Message()
	}
	forger := r.dial(t, r.fleet, nil)
	var got []string
	for _, h := range hs[:8] {
		_, _, _, err := call(forger, heartbeat, "x", h...)
		got = append(got, outcome(err))
	}
	verified, refused := "Unauthenticated: Invalid signature", "ResourceExhausted: Too many calls"
	assert.Equal(t, []string{verified, verified, verified, verified, refused, refused, refused, refused}, got)
	h, err := r.signer(t, 0).Sign()
	require.NoError(t, err)
	_, _, _, err = call(forger, heartbeat, "x", headerPairs(h)...)
	assert.Equal(t, refused, outcome(err), "even a valid call, on that connection")
	node := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err = call(node, heartbeat, "x")
	require.NoError(t, err, "the node, on its own connection")

	// All at once, on a new connection: still at most 4 verified.
	burst := r.dial(t, r.fleet, nil)
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() {
			_, _, _, err := call(burst, heartbeat, "x", h...)
			mu.Lock()
			counts[outcome(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, counts[verified], 4, "%v", counts)
	assert.Equal(t, len(hs), counts[verified]+counts[refused], "%v", counts)
	m := metricsText(t, r)
	assert.Contains(t, m, `nodekeys_gateway_refusals_total{reason="connection-bad-signatures"}`)
	assert.Contains(t, m, "nodekeys_gateway_bad_signature_conns_total 2")
	assert.Contains(t, r.logs.String(), "max_bad_signatures_per_conn")
	assert.Equal(t, 1, r.up.Count())
}
