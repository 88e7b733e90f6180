package gateway

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// The Fleet verifier the gateway makes, on the gateway's clock: a key's
// rate limit refills at key_rate (refused 1 ns before its next token,
// served at it), and a call's headers are a replay up to the last
// nanosecond of Flower's window and stale from its end. On synctest's
// clock, which the gateway's time.Now reads: exact, and no wall time
// spent.
func TestFleetVerifierOnTheClock(t *testing.T) {
	t.Parallel()
	guard := true
	g := &Gateway{cfg: Config{KeyRate: 1, KeyBurst: 2, ReplayGuard: &guard}}
	require.NoError(t, g.newVerifier(context.Background()))
	var signers []*sign.Signer
	var pub []*keys.PublicKey
	for range 2 {
		p, err := keys.Generator{}.Pair(0)
		require.NoError(t, err)
		s, err := sign.New(p.Private)
		require.NoError(t, err)
		signers, pub = append(signers, s), append(pub, p.Public)
	}
	list, err := verify.NewAllowlist(pub)
	require.NoError(t, err)
	g.v.SetAllowlist(list)

	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		signedAt := func(i int, at time.Time) sign.Headers {
			h, err := signers[i].SignTimestamp(flwr.FormatTimestamp(at))
			require.NoError(t, err)
			return h
		}
		reason := func(h sign.Headers) verify.Reason {
			_, err := g.verifyOn(ctx, h, time.Now())
			return verify.ReasonOf(err)
		}
		// Each call its own timestamp, a microsecond apart, so that
		// only the rate limit can refuse them.
		t0 := time.Now()
		n := 0
		next := func() sign.Headers { n++; return signedAt(0, t0.Add(-time.Duration(n)*time.Microsecond)) }
		assert.Empty(t, reason(next()), "the burst")
		assert.Empty(t, reason(next()), "the burst")
		assert.Equal(t, verify.RateLimited, reason(next()), "the burst is spent")
		time.Sleep(time.Second - time.Nanosecond)
		assert.Equal(t, verify.RateLimited, reason(next()), "1 ns before the next token")
		time.Sleep(time.Nanosecond)
		assert.Empty(t, reason(next()), "a token a second")
		assert.Equal(t, verify.RateLimited, reason(next()))

		// The replay guard, with the other key's own bucket.
		h := signedAt(1, time.Now())
		signed := time.Now()
		assert.Empty(t, reason(h))
		time.Sleep(flwr.DefaultWindow.Past - time.Since(signed) - time.Nanosecond)
		assert.Equal(t, verify.Replayed, reason(h), "inside the window")
		time.Sleep(time.Nanosecond)
		assert.Equal(t, verify.StaleTimestamp, reason(h), "past the window, stale")
	})
}
