package verify_test

import (
	"crypto/elliptic"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// One allowlisted node flooding valid, distinct calls must not make
// another node's valid call fail: it runs into its own quota.
func TestReplayGuardKeyQuota(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	var overQuota atomic.Int64
	g := replay.NewGuard(20_000, replay.WithKeyQuota(200), replay.OnKeyQuota(func(string) { overQuota.Add(1) }))
	v := verify.New(allowlist(t, a, b), verify.WithReplay(g))
	refused := 0
	for i := range 700 {
		at := now.Add(-time.Duration(i+1) * time.Millisecond)
		if _, err := v.VerifyAt(a.at(t, at), now); err != nil {
			require.Equal(t, verify.RateLimited, reasonOf(err))
			refused++
		}
	}
	assert.Equal(t, 500, refused, "node a's calls past its quota")
	assert.EqualValues(t, 500, overQuota.Load())
	for i := range 20 {
		_, err := v.VerifyAt(b.at(t, now.Add(-time.Duration(i+1)*time.Millisecond)), now)
		require.NoError(t, err, "node b is not locked out by node a")
	}
	// The flood's entries expire with the window, and node a works again.
	later := now.Add(flwr.DefaultWindow.Past + 2*time.Second)
	_, err := v.VerifyAt(a.at(t, later), later)
	require.NoError(t, err)
}

func TestExactPEM(t *testing.T) {
	a := newNode(t, elliptic.P384())
	h := a.at(t, now)
	h.PublicKey = []byte(strings.ReplaceAll(string(h.PublicKey), "\n", "\r\n"))
	_, err := verify.New(allowlist(t, a)).VerifyAt(h, now)
	require.NoError(t, err, "a CRLF variant is recognised by default")
	_, err = verify.New(allowlist(t, a), verify.ExactPEM()).VerifyAt(h, now)
	assert.Equal(t, verify.UnknownKey, reasonOf(err), "as Flower's exact-bytes match refuses it")
	_, err = verify.New(allowlist(t, a), verify.ExactPEM()).VerifyAt(a.at(t, now), now)
	require.NoError(t, err)
}

// WithKeyCheck runs only for calls whose signature verifies: forged
// signatures under a real node's public key (which is not secret) never
// spend that node's allowance, however many there are. A replay, whose
// signature does verify, is checked, then refused by the replay guard.
func TestKeyCheckAfterSignature(t *testing.T) {
	a := newNode(t, elliptic.P384())
	var calls int
	v := verify.New(allowlist(t, a), verify.WithReplay(replay.NewGuard(0)),
		verify.WithKeyCheck(func(k *verify.Key, _ time.Time) error {
			calls++
			if calls > 2 {
				return &verify.Error{Reason: verify.RateLimited, Detail: "limited"}
			}
			return nil
		}))
	for i := range 50 {
		bad := a.at(t, now.Add(-time.Duration(i)*time.Millisecond))
		bad.Signature[len(bad.Signature)-1] ^= 1
		_, err := v.VerifyAt(bad, now)
		require.Equal(t, verify.BadSignature, reasonOf(err))
	}
	stale := a.at(t, now.Add(-time.Hour))
	_, err := v.VerifyAt(stale, now)
	assert.Equal(t, verify.StaleTimestamp, reasonOf(err))
	assert.Zero(t, calls, "no forged or stale call reaches the key check")

	h := a.at(t, now)
	_, err = v.VerifyAt(h, now)
	require.NoError(t, err, "the node's own call, after the forgeries")
	_, err = v.VerifyAt(h, now)
	assert.Equal(t, verify.Replayed, reasonOf(err))
	_, err = v.VerifyAt(a.at(t, now.Add(-time.Millisecond)), now)
	assert.Equal(t, verify.RateLimited, reasonOf(err), "the third verified call is over the limit")
	assert.Equal(t, 3, calls)
}

// The replay guard's per-key quota is spent only by calls whose signature
// verifies: forged signatures under a key never fill it.
func TestForgeriesDoNotFillReplayQuota(t *testing.T) {
	a := newNode(t, elliptic.P384())
	g := replay.NewGuard(0, replay.WithKeyQuota(4))
	v := verify.New(allowlist(t, a), verify.WithReplay(g))
	for i := range 100 {
		bad := a.at(t, now.Add(-time.Duration(i)*time.Millisecond))
		bad.Signature[len(bad.Signature)-1] ^= 1
		_, err := v.VerifyAt(bad, now)
		require.Equal(t, verify.BadSignature, reasonOf(err))
	}
	assert.Zero(t, g.Len())
	for i := range 4 {
		_, err := v.VerifyAt(a.at(t, now.Add(-time.Duration(i)*time.Millisecond)), now)
		require.NoError(t, err, "the node's own calls fill its quota")
	}
	_, err := v.VerifyAt(a.at(t, now.Add(-time.Second)), now)
	assert.Equal(t, verify.RateLimited, reasonOf(err))
}
