package gateway

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

// A refusal is held back by refusal_delay while a slot is free; with every
// slot taken it is answered at once; a call that ends is let go at once.
// On synctest's clock: exact, and no wall time spent.
func TestHoldBackOnTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		delay := 5 * time.Second
		g := &Gateway{cfg: Config{RefusalDelay: &delay}, tarpit: make(chan struct{}, 2)}
		start := time.Now()
		took := make([]time.Duration, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				g.holdBack(context.Background())
				took[i] = time.Since(start)
			})
			synctest.Wait() // the slots are taken in order
		}
		wg.Wait()
		assert.Equal(t, []time.Duration{delay, delay, 0}, took, "two slots: the third refusal is answered at once")

		ctx, cancel := context.WithCancel(context.Background())
		start = time.Now()
		done := make(chan time.Duration)
		go func() {
			g.holdBack(ctx)
			done <- time.Since(start)
		}()
		time.Sleep(time.Second)
		cancel()
		assert.Equal(t, time.Second, <-done, "a call that ends is let go")

		zero := time.Duration(0)
		g.cfg.RefusalDelay = &zero
		start = time.Now()
		g.holdBack(context.Background())
		assert.Zero(t, time.Since(start))
	})
}
