//go:build darwin || freebsd || openbsd || netbsd || dragonfly

package atomicfile

// haveSyncfs: there is no syncfs(2), so Batch.Add syncs each file.
const haveSyncfs = false

func (d *Dir) syncfs() error { return nil }
