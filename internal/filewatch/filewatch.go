// Package filewatch is the reload loop of the files a long-running
// nodekeys process reads (allowlists, token files): reload on a signal,
// and when a look every interval finds a file changed. A stat a second
// costs nothing and sees the atomic renames (a Kubernetes ConfigMap
// update, an editor's save) that inotify-based watchers can miss.
package filewatch

import (
	"context"
	"os"
	"os/signal"
	"time"
)

// Loop calls reload on each of sigs, and when changed reports true at a
// look every interval (1s if not positive), until ctx ends. With no sigs
// it only looks.
func Loop(ctx context.Context, interval time.Duration, sigs []os.Signal, changed func() bool, reload func()) {
	if interval <= 0 {
		interval = time.Second
	}
	ch := make(chan os.Signal, 1)
	if len(sigs) > 0 { // Notify with none would relay every signal
		signal.Notify(ch, sigs...)
		defer signal.Stop(ch)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			reload()
		case <-t.C:
			if changed() {
				reload()
			}
		}
	}
}
