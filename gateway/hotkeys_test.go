package gateway_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/verify"
)

// hot_key_bytes sizes the verifier's hot-key tables, a node that calls
// often gets one, and -1 turns them off.
func TestHotKeyBytes(t *testing.T) {
	t.Parallel()
	if verify.HotKeyBytesPerKey == 0 {
		t.Skip("no tables are built with purego or off amd64")
	}
	r := newRig(t, 1, func(c *gateway.Config) { c.HotKeyBytes = 3*int(verify.HotKeyBytesPerKey) + 1 })
	_, most := r.gw.Verifier().HotKeys()
	assert.Equal(t, 3, most)
	signed := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	for range verify.DefaultPromoteAfter {
		_, _, _, err := call(signed, heartbeat, "x")
		require.NoError(t, err)
	}
	held, _ := r.gw.Verifier().HotKeys()
	assert.Equal(t, 1, held, "the node's key has a table after %d calls", verify.DefaultPromoteAfter)

	off := newRig(t, 1, func(c *gateway.Config) { c.HotKeyBytes = -1 })
	_, most = off.gw.Verifier().HotKeys()
	assert.Equal(t, 0, most)

	c := gateway.Config{TLSCert: "c", TLSKey: "k", Allowlist: []string{"a"}, UpstreamInsecure: true, HotKeyBytes: 100}
	c.Defaults()
	require.ErrorContains(t, c.Validate(), "hot_key_bytes")
}
