//go:build unix

package filewatch

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loop runs Loop with a 1ms look until the test ends, and returns the
// count of looks and of reloads.
func loop(t *testing.T, sigs []os.Signal) (looks, reloads *atomic.Int64) {
	looks, reloads = new(atomic.Int64), new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Loop(ctx, time.Millisecond, sigs, func() bool { looks.Add(1); return false }, func() { reloads.Add(1) })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return looks, reloads
}

// await waits until n more looks have run, or fails after 10s.
func await(t *testing.T, looks *atomic.Int64, n int64) {
	t.Helper()
	want := looks.Load() + n
	deadline := time.Now().Add(10 * time.Second)
	for looks.Load() < want {
		if time.Now().After(deadline) {
			t.Fatal("the loop stopped looking")
		}
		time.Sleep(time.Millisecond)
	}
}

// A signal in sigs reloads; with no sigs (Windows' token file) Loop takes
// no signal at all, where signal.Notify with none would take them all.
func TestLoopSignals(t *testing.T) {
	looks, reloads := loop(t, []os.Signal{syscall.SIGHUP})
	await(t, looks, 2) // Notify has run
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for reloads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if reloads.Load() != 1 {
		t.Fatalf("SIGHUP made %d reloads, want 1", reloads.Load())
	}

	looks, reloads = loop(t, nil)
	await(t, looks, 2)
	// SIGWINCH is ignored by default, so it is safe to send.
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	await(t, looks, 50)
	if n := reloads.Load(); n != 0 {
		t.Fatalf("with no signals, SIGWINCH made %d reloads", n)
	}
}
