package gateway_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// TestMain lets more of this package's tests run at once than the default
// (one per core): most of their time is spent waiting (for token expiry,
// refusal delays, drains and peers starting), not computing.
func TestMain(m *testing.M) {
	peer.Parallel(8)
	// As nodekeys gateway does: what zitadel's op logs while a gateway's
	// provider serves goes to that gateway's logger (r.logs).
	slog.SetDefault(slog.New(accounts.LogHandler(slog.NewTextHandler(os.Stderr, nil))))
	code := peer.Main(m) // with a line counting tests skipped for a missing peer
	removeFixtures()
	os.Exit(code)
}
