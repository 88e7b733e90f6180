package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Loop looks once an interval, and reloads only when a look finds a
// change; it stops when its context ends. The clock is synctest's.
func TestLoopLooksEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var looks, reloads atomic.Int64
		var change atomic.Bool
		done := make(chan struct{})
		go func() {
			Loop(ctx, 3*time.Second, nil, func() bool { looks.Add(1); return change.Load() }, func() { reloads.Add(1) })
			close(done)
		}()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if looks.Load() != 3 || reloads.Load() != 0 {
			t.Fatalf("after 10 s at 3 s: %d looks, %d reloads; want 3, 0", looks.Load(), reloads.Load())
		}
		change.Store(true)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if looks.Load() != 4 || reloads.Load() != 1 {
			t.Fatalf("after a change: %d looks, %d reloads; want 4, 1", looks.Load(), reloads.Load())
		}
		cancel()
		<-done
	})
}

// A file replaced by another of the same size and time has another
// stamp: the inode tells them apart where the system has one.
func TestStampSeesAReplacedFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no file numbers")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	write := func(data string) {
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	before := Look(p)
	if before.Missing || before.Size != 3 || !before.ModTime.Equal(mtime) {
		t.Fatalf("stamp %+v", before)
	}
	write("two")
	if after := Look(p); after == before {
		t.Fatalf("a replaced file keeps its stamp %+v", after)
	}
	if !Look(filepath.Join(dir, "missing")).Missing {
		t.Fatal("a missing file is not Missing")
	}
}
