package benchmark

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunSmall checks that a short run measures every figure; the figures
// themselves are for people, not assertions.
func TestRunSmall(t *testing.T) {
	r, err := Run(Config{Nodes: signers, Duration: 20 * time.Millisecond, Workers: 2, Headers: signers})
	require.NoError(t, err)
	for name, f := range map[string]float64{
		"load": r.LoadSeconds, "bytes": r.BytesPerKey, "fast1": r.FastOneCore, "fastN": r.FastAllCores,
		"std1": r.StdOneCore, "stdN": r.StdAllCores, "lookup": r.LookupNs, "stale": r.StaleNs, "unknown": r.UnknownNs,
		"first": r.FirstCallNs, "second": r.SecondCallNs, "active": r.ActiveKeyBytes,
	} {
		assert.Positive(t, f, name)
	}
	_, err = Run(Config{Nodes: 10})
	assert.Error(t, err)
}
