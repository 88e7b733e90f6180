// Package state keeps what a gateway must remember across restarts: which
// account started each run and registered each SuperNode. Flower's
// open-source SuperLink records no owner ("<id:none>"), so the gateway
// records it when StartRun and RegisterNode succeed through it, and checks
// it on every later call about that run or node.
//
// A Store is embedded (Open: one bbolt file, the default for one gateway)
// or shared (package state/redisstate, for several replicas). A record is
// an owner and a time, about 100 bytes; records are kept for as long as the
// store is (a million runs take about 100 MB), since an old run's logs
// and artifacts stay reachable upstream.
package state

import (
	"context"
	"errors"
	"time"
)

// Kind is what a record is about.
type Kind string

// The kinds of records.
const (
	Runs  Kind = "runs"
	Nodes Kind = "nodes"
)

// Owner is who started a run or registered a node.
type Owner struct {
	// Subject identifies the account: the provider's sub claim, or
	// "token:NAME" for a bearer token from the token file.
	Subject string `json:"sub"`
	// Name is for people: the account's name or e-mail, or the token's name.
	Name string `json:"name,omitempty"`
	// At is when the record was made.
	At time.Time `json:"at"`
}

// Store records owners. Implementations are safe for concurrent use.
type Store interface {
	// SetOwner records o as the owner of id. An existing record is kept:
	// the first owner stays the owner, and ErrOwned is returned when o is
	// another subject.
	SetOwner(ctx context.Context, kind Kind, id uint64, o Owner) error
	// Owners returns the records of those ids that have one.
	Owners(ctx context.Context, kind Kind, ids []uint64) (map[uint64]Owner, error)
	// All returns every record of a kind, for inspection.
	All(ctx context.Context, kind Kind) (map[uint64]Owner, error)
	// Close releases the store.
	Close() error
}

// ErrOwned is returned by SetOwner when id is recorded for another subject.
var ErrOwned = errors.New("state: already recorded for another account")

// ErrUnavailable wraps errors of a store that cannot be reached now.
var ErrUnavailable = errors.New("state: the store is unavailable")
