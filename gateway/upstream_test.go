package gateway_test

import (
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
)

// downUpstream holds a stopped SuperLink's address: it accepts each
// connection and closes it at once, as Docker's port proxy does for a
// stopped container, and notes when: each is a connection attempt of the
// gateway's.
type downUpstream struct {
	ln   net.Listener
	done chan struct{}

	mu       sync.Mutex
	attempts []time.Time
}

func takeDown(t *testing.T, r *rig) *downUpstream {
	t.Helper()
	r.up.Stop()
	// The stand-in's connections close after Stop returns, and until they
	// have the port cannot be bound again: tries for 5 s at most.
	ln, err := net.Listen("tcp", r.upstream)
	for try := 0; err != nil && try < 500; try++ {
		time.Sleep(10 * time.Millisecond)
		ln, err = net.Listen("tcp", r.upstream)
	}
	require.NoError(t, err, "the stopped stand-in's address")
	d := &downUpstream{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.attempts = append(d.attempts, time.Now())
			d.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(d.stop)
	return d
}

// tries returns when the attempts so far were made.
func (d *downUpstream) tries() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.attempts...)
}

func (d *downUpstream) stop() {
	d.ln.Close()
	<-d.done
}

// bringBack starts a stand-in SuperLink again on the address d held.
func (d *downUpstream) bringBack(t *testing.T, r *rig) {
	t.Helper()
	d.stop()
	ln, err := net.Listen("tcp", r.upstream)
	require.NoError(t, err)
	r.up = standin.Start(ln)
	t.Cleanup(r.up.Stop)
}

// calls are signed calls started on c every interval, each in its own
// goroutine as calls from many SuperNodes are, until end or limit calls.
type calls struct {
	mu      sync.Mutex
	results []callResult
	stop    chan struct{}
	done    sync.WaitGroup
}

type callResult struct {
	end time.Time
	err error
}

func startCalls(c *grpc.ClientConn, interval time.Duration, limit int) *calls {
	k := &calls{stop: make(chan struct{})}
	k.done.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for range limit {
			k.done.Go(func() {
				_, _, _, err := call(c, heartbeat, "x")
				k.mu.Lock()
				defer k.mu.Unlock()
				k.results = append(k.results, callResult{time.Now(), err})
			})
			select {
			case <-k.stop:
				return
			case <-tick.C:
			}
		}
	})
	return k
}

// firstOK returns when the first successful call ended, if one has.
func (k *calls) firstOK() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.results {
		if r.err == nil {
			return r.end, true
		}
	}
	return time.Time{}, false
}

// end stops starting calls, waits for those started, and returns how many
// failed before and after t.
func (k *calls) end(t time.Time) (before, after int) {
	close(k.stop)
	k.done.Wait()
	for _, r := range k.results {
		switch {
		case r.err == nil:
		case r.end.Before(t):
			before++
		default:
			after++
		}
	}
	return before, after
}

// waitOK waits up to d for a successful call, and returns when it ended.
func (k *calls) waitOK(d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if t, ok := k.firstOK(); ok {
			return t, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return k.firstOK()
}

// Calls that find the upstream down start a connection attempt at once,
// at most one every quarter second however many calls come, instead of
// waiting out gRPC's backoff (1 s after the first failure, then 1.6 s,
// 2.6 s, ... up to 120 s, each but the first +-20%); once the SuperLink is
// back, a call is served at once.
func TestCallsReconnectTheUpstreamAtOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err := call(c, heartbeat, "x")
	require.NoError(t, err)

	down := takeDown(t, r)
	require.Eventually(t, func() bool {
		_, _, _, err := call(c, heartbeat, "x")
		wantStatus(t, err, codes.Unavailable, "")
		return len(down.tries()) > 0
	}, 5*time.Second, 10*time.Millisecond, "a call tries to connect")
	// After this first attempt gRPC alone waits 1 s for the next, then
	// 1.6 s +-20%, and so on: no two attempts less than 1 s apart. Calls
	// every 20 ms until three more attempts:
	k := startCalls(c, 20*time.Millisecond, 500)
	require.Eventually(t, func() bool { return len(down.tries()) >= 4 }, 10*time.Second, 10*time.Millisecond)
	tries := down.tries()
	var gaps []time.Duration
	for i := 1; i < len(tries); i++ {
		gaps = append(gaps, tries[i].Sub(tries[i-1]).Round(time.Millisecond))
	}
	assert.Less(t, slices.Min(gaps), 800*time.Millisecond, "calls started attempts sooner than gRPC's backoff: %v", gaps)
	// The first call to find it down may start one right after gRPC's
	// own; from then on, the calls' attempts are a quarter second apart.
	assert.Greater(t, slices.Min(gaps[1:]), 100*time.Millisecond, "not one a call (every 20 ms) but one a quarter second at most: %v", gaps)

	down.bringBack(t, r)
	back := time.Now()
	ok, served := k.waitOK(10 * time.Second)
	failed, _ := k.end(back)
	require.True(t, served, "a call served within 10 s of the SuperLink's return")
	t.Logf("connection attempts to a SuperLink down, calls coming every 20 ms: %v apart (%d calls failed); served %s after its return",
		gaps, failed, ok.Sub(back).Round(time.Millisecond))
}

// The review's case: SuperNodes call 10 times a second through a
// SuperLink outage; the first call after the SuperLink's return must
// succeed within 2 s. Only in the long form (NODEKEYS_LONG=1), with an
// outage of 32 s: gRPC's own backoff has by then made its attempts at
// about 0, 1, 2.6, 5.2, 9.3, 15.8 and 26.3 s (each wait but the first
// +-20%), the last at 31.4 s at the latest, and its next is 34.7 s at the
// soonest, so without the fix no call succeeds within 2 s of the return.
// NODEKEYS_OUTAGES=5s,30s,70s,200s measures other outages (at once, each
// with its gateway) and logs the figures.
func TestUpstreamRecoveryAfterOutage(t *testing.T) {
	t.Parallel()
	outages := []time.Duration{32 * time.Second}
	if s := os.Getenv("NODEKEYS_OUTAGES"); s != "" {
		outages = nil
		for f := range strings.SplitSeq(s, ",") {
			d, err := time.ParseDuration(f)
			require.NoError(t, err, "NODEKEYS_OUTAGES")
			outages = append(outages, d)
		}
	} else if !peer.Long() {
		t.Skip("a 32 s outage: long form only (NODEKEYS_LONG=1)")
	}
	for _, outage := range outages {
		t.Run(outage.String(), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, 1)
			c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
			_, _, _, err := call(c, heartbeat, "x")
			require.NoError(t, err)

			down := takeDown(t, r)
			k := startCalls(c, 100*time.Millisecond, int((outage+30*time.Second)/(100*time.Millisecond)))
			time.Sleep(outage)
			down.bringBack(t, r)
			back := time.Now()
			ok, served := k.waitOK(30 * time.Second)
			before, after := k.end(back)
			require.True(t, served, "no call served within 30 s of the SuperLink's return")
			t.Logf("outage %s: first successful call %s after the SuperLink's return; calls failed: %d during the outage, %d after it",
				outage, ok.Sub(back).Round(10*time.Millisecond), before, after)
			assert.Less(t, ok.Sub(back), 2*time.Second)
		})
	}
}
