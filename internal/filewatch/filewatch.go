// Package filewatch is how a long-running nodekeys process sees that a
// file it reads (an allowlist, a token file, the gateway's certificate and
// key) changed: a Stamp of each file, compared at a look every interval,
// and Loop, which reloads on a signal and when a look finds a change. A
// stat a second costs nothing and sees the atomic renames (a Kubernetes
// ConfigMap update, an editor's save, certgen --force) that inotify-based
// watchers can miss.
package filewatch

import (
	"context"
	"os"
	"os/signal"
	"time"
)

// DefaultInterval is the time between looks when none is given.
const DefaultInterval = time.Second

// Stamp tells whether a file changed without reading it: a file replaced
// (an atomic rename) has another inode, even with the same size and time;
// one rewritten in place has another size or modification time. Stamps
// compare with ==.
type Stamp struct {
	Ino     uint64 // 0 where the system has no file number (Windows)
	Size    int64
	ModTime time.Time
	Missing bool // the file could not be looked at
}

// StampOf returns the stamp of the file fi describes.
func StampOf(fi os.FileInfo) Stamp {
	return Stamp{Ino: FileID(fi), Size: fi.Size(), ModTime: fi.ModTime()}
}

// Look returns the stamp of the file at path, following symbolic links;
// one that cannot be looked at is Missing.
func Look(path string) Stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{Missing: true}
	}
	return StampOf(fi)
}

// Loop calls reload on each of sigs, and when changed reports true at a
// look every interval (DefaultInterval if not positive), until ctx ends.
// With no sigs it only looks.
func Loop(ctx context.Context, interval time.Duration, sigs []os.Signal, changed func() bool, reload func()) {
	if interval <= 0 {
		interval = DefaultInterval
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
