package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A connection may reset max_resets_per_second calls at once, and one
// more each 1/rate s after; the first reset past that closes it, and is
// reported once. On an injected clock: exact instants.
func TestResetRateAtTheInstant(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	const rate = 4 // a token each 250 ms, exact in binary
	burst := func() *connState {
		c := &connState{}
		for i := range rate {
			assert.False(t, c.reset(t0, rate), "reset %d of the burst", i)
		}
		return c
	}
	c := burst()
	assert.True(t, c.reset(t0.Add(250*time.Millisecond-time.Nanosecond), rate), "1 ns before the next token: closed")
	assert.False(t, c.reset(t0.Add(time.Hour), rate), "reported once")

	c = burst()
	assert.False(t, c.reset(t0.Add(250*time.Millisecond), rate), "a token each 250 ms")
	assert.True(t, c.reset(t0.Add(250*time.Millisecond), rate), "and only one")
}
