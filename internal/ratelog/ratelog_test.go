package ratelog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLimiter(t *testing.T) {
	l := &Limiter{PerSecond: 2}
	t0 := time.Unix(100, 0)
	ok, _ := l.Allow(t0)
	assert.True(t, ok)
	ok, _ = l.Allow(t0)
	assert.True(t, ok)
	for range 5 {
		ok, _ = l.Allow(t0.Add(time.Second - time.Nanosecond)) // the same second, to its last nanosecond
		assert.False(t, ok)
	}
	ok, dropped := l.Allow(t0.Add(time.Second))
	assert.True(t, ok)
	assert.Equal(t, 5, dropped)
}
