package gateway_test

import (
	"flag"
	"log/slog"
	"os"
	"testing"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// TestMain lets more of this package's tests run at once than the default
// (one per core): most of their time is spent waiting (for token expiry,
// refusal delays, drains and peers starting), not computing, and the
// default would run those waits one after another.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.parallel"); f != nil && !isSet("test.parallel") {
		f.Value.Set("4")
	}
	// As nodekeys gateway does: what zitadel's op logs while a gateway's
	// provider serves goes to that gateway's logger (r.logs).
	slog.SetDefault(slog.New(accounts.LogHandler(slog.NewTextHandler(os.Stderr, nil))))
	code := peer.Main(m) // with a line counting tests skipped for a missing peer
	removeFixtures()
	os.Exit(code)
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
