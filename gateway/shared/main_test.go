package shared_test

import (
	"os"
	"testing"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// TestMain ends the run with a line counting the tests skipped for a
// missing peer, if any was.
func TestMain(m *testing.M) { os.Exit(peer.Main(m)) }
