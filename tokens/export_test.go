package tokens

import (
	"context"
	"time"
)

// WatchWithoutSignals is f.Watch taking no signal, for a synctest bubble.
func WatchWithoutSignals(ctx context.Context, f *File, interval time.Duration) {
	f.watch(ctx, interval, nil)
}
