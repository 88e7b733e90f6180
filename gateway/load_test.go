package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys"
)

// TestLoadDuringReloadsAndRenewals runs many signing SuperNodes through the
// gateway while the allowlist is rewritten and reloaded and the server
// certificate renewed, over and over: not one valid call may fail. Bounded
// in calls and time, on loopback only.
func TestLoadDuringReloadsAndRenewals(t *testing.T) {
	parallelUnlessLong(t)
	nodes, calls := 8, 15
	if peer.Long() {
		nodes, calls = 24, 40
	}
	r := newRig(t, nodes)
	conns := make([]*grpc.ClientConn, nodes)
	for i := range conns {
		conns[i] = r.dial(t, r.fleet, r.signer(t, i).PerRPCCredentials())
	}
	l, err := csvlist.ReadFile(r.keys.CSV)
	require.NoError(t, err)
	all := l.Keys()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var churn sync.WaitGroup
	var reloads, renewals atomic.Int64
	churn.Go(func() {
		// Rewrite the allowlist with the same keys in another order, and
		// with an extra key in and out: every valid node stays allowed.
		extra, err := keys.Generator{}.Pair(0)
		if !assert.NoError(t, err) {
			return
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ks := append([]*keys.PublicKey(nil), all...)
			if i%2 == 0 {
				ks = append(ks, extra.Public)
			}
			ks[0], ks[len(ks)-1] = ks[len(ks)-1], ks[0]
			tmp := filepath.Join(r.dir, fmt.Sprintf("csv.tmp%d", i))
			if !assert.NoError(t, os.WriteFile(tmp, csvlist.Marshal(ks), 0o600)) ||
				!assert.NoError(t, os.Rename(tmp, r.keys.CSV)) ||
				!assert.NoError(t, r.gw.Reload()) {
				return
			}
			reloads.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	churn.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			if _, err := certs.Write(certs.Options{Dir: filepath.Dir(r.tls.ServerCert), Force: true}); !assert.NoError(t, err) {
				return
			}
			renewals.Add(1)
		}
	})

	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for j := range calls {
				if ctx.Err() != nil {
					return
				}
				body := fmt.Sprintf("echo:%d-%d", i, j)
				out, _, _, err := call(c, heartbeat, body)
				if err == nil && out != body {
					err = fmt.Errorf("got %q for %q", out, body)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
		// New connections too, so that renewed certificates are served.
		wg.Go(func() {
			c := r.dial(t, r.fleet, r.signer(t, i).PerRPCCredentials())
			_, _, _, err := call(c, heartbeat, "echo:new")
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	require.NoError(t, ctx.Err(), "the load finished in time")
	assert.Zero(t, failed.Load(), "first error: %v", firstErr.Load())
	assert.Equal(t, nodes*calls+nodes, r.up.Count())
	assert.Positive(t, reloads.Load())
	t.Logf("%d calls by %d nodes, %d allowlist reloads, %d certificate renewals", nodes*calls+nodes, nodes, reloads.Load(), renewals.Load())
}
