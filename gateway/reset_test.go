package gateway_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/rapidreset"
)

// HTTP/2 lets a client open a stream and reset it at once, thousands of
// times a second on one connection, each costing the server a stream and
// a handler (CVE-2023-44487); gRPC bounds the handlers at once, not the
// resets. A connection that resets more calls than max_resets_per_second
// is closed; other connections go on.
func TestRapidResetClosesConnection(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c, err := rapidreset.Dial(r.fleet, &tls.Config{RootCAs: r.caPool, ServerName: "localhost"})
	require.NoError(t, err)
	defer c.Close()
	const pairs = 5000
	sent := 0
	for ; sent < pairs; sent++ {
		if c.Reset(heartbeat) != nil {
			break
		}
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatalf("the connection is still open after %d resets", sent)
	}
	t.Logf("closed after %d of %d resets were sent", sent, pairs)
	m := metricsText(t, r)
	assert.Contains(t, m, "nodekeys_gateway_reset_closes_total 1")
	assert.Contains(t, r.logs.String(), "max_resets_per_second")

	node := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err = call(node, heartbeat, "x")
	require.NoError(t, err, "other connections go on")
}
