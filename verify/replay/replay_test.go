package replay_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/verify/replay"
)

func reasonOf(err error) replay.Reason {
	var re *replay.Error
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// A call is refused the second time inside its window, and passes again
// once the window has passed; another timestamp or key is a new call.
func TestGuardRefusesTheSameCallInsideTheWindow(t *testing.T) {
	g := replay.NewGuard(0)
	now := time.Unix(1_700_000_000, 0)
	exp := now.Add(305 * time.Second)
	require.NoError(t, g.Check("key-a", "ts-1", now, now, exp))
	err := g.Check("key-a", "ts-1", now, now, exp)
	assert.Equal(t, replay.Replayed, reasonOf(err))
	assert.EqualError(t, err, "verify: replayed: the same key and timestamp were accepted before, inside the window")
	require.NoError(t, g.Check("key-a", "ts-2", now, now, exp), "another timestamp")
	require.NoError(t, g.Check("key-b", "ts-1", now, now, exp), "another key")
	assert.Equal(t, 3, g.Len())

	later := exp.Add(2 * time.Second)
	require.NoError(t, g.Check("key-a", "ts-1", now, later, later.Add(time.Minute)), "the window has passed")
}

// A key over its quota is refused as rate-limited, and reported; another
// key still passes. A full guard refuses rather than forgets.
func TestGuardQuotaAndFull(t *testing.T) {
	var over []string
	g := replay.NewGuard(0, replay.WithKeyQuota(2), replay.OnKeyQuota(func(k string) { over = append(over, k) }))
	now := time.Unix(1_700_000_000, 0)
	exp := now.Add(time.Minute)
	require.NoError(t, g.Check("key-a", "1", now, now, exp))
	require.NoError(t, g.Check("key-a", "2", now, now, exp))
	assert.Equal(t, replay.RateLimited, reasonOf(g.Check("key-a", "3", now, now, exp)))
	assert.Equal(t, []string{"key-a"}, over)
	require.NoError(t, g.Check("key-b", "1", now, now, exp))

	full := replay.NewGuard(1) // one entry in each shard; one key's calls share a shard
	refused := 0
	for i := range 200 {
		if err := full.Check("key", string(rune('a'+i)), now, now, exp); err != nil {
			assert.Equal(t, replay.Replayed, reasonOf(err))
			refused++
		}
	}
	assert.Equal(t, 199, refused)
	assert.Equal(t, 1, full.Len())
}

// An entry is refused up to the last nanosecond of its window and passes
// at its end. Its room in the key's quota comes back at the first sweep
// after the window (sweeps are a second apart at most), not before.
func TestGuardExpiryAtTheInstant(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	exp := t0.Add(2 * time.Second)
	g := replay.NewGuard(0)
	require.NoError(t, g.Check("key", "a", t0, t0, exp))
	assert.Equal(t, replay.Replayed, reasonOf(g.Check("key", "a", t0, exp.Add(-time.Nanosecond), exp)), "inside the window")
	require.NoError(t, g.Check("key", "a", t0, exp, exp.Add(time.Minute)), "the window has passed: a new call")

	g = replay.NewGuard(0, replay.WithKeyQuota(1))
	require.NoError(t, g.Check("key", "a", t0, t0, exp))
	require.NoError(t, g.Check("key", "b", t0, exp, exp.Add(time.Minute)), "a sweep at the window's end drops a")

	g = replay.NewGuard(0, replay.WithKeyQuota(1))
	require.NoError(t, g.Check("key", "a", t0, t0, exp)) // a sweep; the next is due after t0+1s
	mid := t0.Add(1500 * time.Millisecond)
	assert.Equal(t, replay.RateLimited, reasonOf(g.Check("key", "b", t0, mid, mid.Add(time.Minute))), "a sweep, and a still inside its window")
	sweep := mid.Add(time.Second) // the next sweep is due after this
	for _, at := range []time.Time{exp, sweep} {
		assert.Equal(t, replay.RateLimited, reasonOf(g.Check("key", "b", t0, at, at.Add(time.Minute))), "a is held until the sweep (at %s)", at.Sub(t0))
		assert.Equal(t, 1, g.Len())
	}
	at := sweep.Add(time.Nanosecond)
	require.NoError(t, g.Check("key", "b", t0, at, at.Add(time.Minute)), "swept: the quota is free")
	assert.Equal(t, 1, g.Len(), "a is gone")
}
