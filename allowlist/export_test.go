package allowlist

import (
	"context"
	"time"
)

// SetAfterRead makes r run f after it reads each file and before it looks
// at the file again: a test changes the file there, as a writer would.
func SetAfterRead(r *Reloader, f func(name string)) { r.afterRead = f }

// WatchWithoutSignals is r.Watch taking no signal, for a synctest bubble.
func WatchWithoutSignals(ctx context.Context, r *Reloader, interval time.Duration) {
	r.watch(ctx, interval, nil)
}
