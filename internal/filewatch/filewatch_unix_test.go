//go:build unix

package filewatch

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// loop runs Loop with a 1ms look until the test ends, and returns a
// channel that gets a value at each look (dropped when one is waiting)
// and one that gets a value at each reload (up to 16). Real signals cannot reach a synctest bubble, so this test
// runs on the wall clock, waiting on those events rather than sleeping.
func loop(t *testing.T, sigs []os.Signal) (looks, reloads chan struct{}) {
	looks, reloads = make(chan struct{}, 1), make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	send := func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		Loop(ctx, time.Millisecond, sigs, func() bool { send(looks); return false }, func() { send(reloads) })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return looks, reloads
}

// await waits for n more looks, or fails after 10s.
func await(t *testing.T, looks chan struct{}, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-looks:
		case <-timeout:
			t.Fatal("the loop stopped looking")
		}
	}
}

// A signal in sigs reloads; with no sigs (Windows' token file) Loop takes
// no signal at all, where signal.Notify with none would take them all.
func TestLoopSignals(t *testing.T) {
	looks, reloads := loop(t, []os.Signal{syscall.SIGHUP})
	await(t, looks, 2) // Notify has run
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case <-reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP made no reload")
	}
	await(t, looks, 2)
	select {
	case <-reloads:
		t.Fatal("one SIGHUP made two reloads")
	default:
	}

	looks, reloads = loop(t, nil)
	await(t, looks, 2)
	// SIGWINCH is ignored by default, so it is safe to send.
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	await(t, looks, 50)
	select {
	case <-reloads:
		t.Fatal("with no signals, SIGWINCH made a reload")
	default:
	}
}
