//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGatewayStalledHandshakes is the review's case: `nodekeys gateway`
// with its default settings, under an open-file limit of 1,024 (soft and
// hard, as `ulimit -n 1024` sets them), takes 2,000 stalled handshakes
// from one address (TCP connected, nothing sent); a SuperNode from another
// address is then served (in milliseconds; the bound is 3 s for a loaded
// machine). Without caps, the gateway stopped accepting at 1,025 and held
// them for gRPC's 120 s handshake timeout.
func TestGatewayStalledHandshakes(t *testing.T) {
	t.Parallel()
	const n = 2000
	fleet, metrics := freePort(t), freePort(t)
	g := startGateway(t, 1, metrics, `ulimit -n 1024 && exec "$0" "$@"`, func(_, upstream string) []string {
		return []string{"--listen-fleet", fleet, "--listen-control", "-", "--upstream", upstream, "--upstream-insecure",
			"--allowlist", "keys/client_public_keys.csv", "--metrics", metrics}
	})

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	var stalled []net.Conn
	closeAll := func() {
		for _, c := range stalled {
			c.Close()
		}
		stalled = nil
	}
	defer closeAll()
	reset := 0
	for range n {
		c, err := d.Dial("tcp", fleet)
		if errors.Is(err, syscall.ECONNRESET) {
			reset++ // refused as soon as it was accepted
			continue
		}
		require.NoError(t, err)
		stalled = append(stalled, c)
	}

	conn := g.dial(t, fleet, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, out := []byte("echo:served"), []byte{}
	start := time.Now()
	require.NoError(t, conn.Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out),
		"a SuperNode after %d stalled handshakes (%d reset at once)", n, reset)
	assert.Equal(t, "echo:served", string(out))
	t.Logf("a SuperNode served in %s after %d stalled handshakes (%d reset at once)", time.Since(start).Round(time.Millisecond), n, reset)

	// 768 connections in all (3/4 of 1,024), 384 from one address.
	stderr := g.stderr.String()
	assert.Contains(t, stderr, "max_connections lowered to three quarters of the open-file limit")
	assert.Contains(t, stderr, "open_files=1024 max_connections=768 max_connections_per_address=384")
	_, body := g.get(t, "/metrics")
	assert.Contains(t, body, fmt.Sprintf(`nodekeys_gateway_connections_refused_total{reason="max_connections_per_address"} %d`, n-384))

	closeAll() // a handshake in progress holds up the shutdown until its timeout
	g.stop(t)
}
