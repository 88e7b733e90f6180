package keyrate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/nodekeys/nodekeys/internal/keyrate"
)

func TestLimiter(t *testing.T) {
	l := keyrate.New(2, 3)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		assert.True(t, l.Allow("a", t0), "burst %d", i)
	}
	assert.False(t, l.Allow("a", t0), "the burst is spent")
	assert.True(t, l.Allow("b", t0), "another key has its own bucket")
	assert.False(t, l.Allow("a", t0.Add(500*time.Millisecond-time.Nanosecond)), "just under one token")
	assert.True(t, l.Allow("a", t0.Add(500*time.Millisecond)), "one token at 2 a second")
	assert.False(t, l.Allow("a", t0.Add(500*time.Millisecond)), "and only one")
	// Forgotten once full again: a minute later the whole burst is back.
	later := t0.Add(time.Minute)
	for range 3 {
		assert.True(t, l.Allow("a", later))
	}
	assert.False(t, l.Allow("a", later))
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := keyrate.Bucket{Tokens: 1, Last: t0}
	assert.True(t, b.Take(t0, 10, 1))
	assert.False(t, b.Take(t0.Add(50*time.Millisecond), 10, 1))
	assert.True(t, b.Take(t0.Add(100*time.Millisecond), 10, 1))
	assert.False(t, b.Take(t0.Add(-time.Second), 10, 1), "time going back adds nothing")
}
