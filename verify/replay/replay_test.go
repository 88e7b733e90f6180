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
