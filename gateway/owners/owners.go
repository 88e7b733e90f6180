// Package owners keeps what a gateway must remember across restarts: which
// account started each run and registered each SuperNode. Flower's
// open-source SuperLink records no owner ("<id:none>"), so the gateway
// records it when StartRun and RegisterNode succeed through it, and checks
// it on every later call about that run or node.
//
// A Store is embedded (Open: one bbolt file, the default for one gateway)
// or shared (package gateway/shared, for several replicas). A record is
// an owner and a time, about 100 bytes; records are kept for as long as the
// store is (a million runs take about 100 MB), since an old run's logs
// and artifacts stay reachable upstream.
//
// # Owners and their kinds
//
// An owner is an authz.Principal: a kind (user, client or token) and a
// subject, compared both together, so that a service client, a user and a
// machine token of the same name are three owners. A record is one JSON
// object:
//
//	{"kind":"user","subject":"bob","name":"Bob","at":"2026-11-23T12:00:00Z"}
//	{"kind":"client","subject":"bob","at":"..."}
//	{"kind":"token","subject":"ci","name":"ci","at":"..."}
//
// Records written before owners had kinds hold only a subject, under
// another name: {"sub":"...","name":"...","at":"..."}. They are read so:
//
//   - "sub":"token:NAME" is the machine token NAME. That release refused
//     any login whose subject began with "token:", so no user or client
//     wrote one.
//   - Any other "sub" was a user's sub claim or, for a service's
//     client-credentials token, its client_id, and the record does not say
//     which. It matches a user or a client whose subject is exactly that
//     string, as that release compared it, and never a machine token. Such
//     a record keeps the ambiguity it was written with (a client and a user
//     of that one name both own it); records written from now on do not.
//     An admin who wants it gone stops the old run, or unregisters and
//     registers the node again.
//
// The subject of a record with a kind is under "subject", not "sub", so
// that a gateway of the earlier release (during a rolling upgrade, or
// after a downgrade) reads these records as owned by no one it knows: it
// refuses them to everyone but admins, rather than reading a token's or a
// client's name as a user's.
package owners

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/authz"
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
	// Kind and Subject are the owner's authz.Principal. A record written
	// before owners had kinds has no Kind, and Subject is its "sub" as
	// written then (see the package doc for how it is read).
	Kind    authz.Kind
	Subject string
	// Name is for people: the account's name or e-mail, or the token's name.
	Name string
	// At is when the record was made.
	At time.Time
}

// legacyToken starts the subject of a machine token's record written
// before owners had kinds.
const legacyToken = "token:"

// principal returns the principal o names; ok is false for a record
// written before kinds that is not a machine token's (a user or a client,
// not recorded which).
func (o Owner) principal() (p authz.Principal, ok bool) {
	if o.Kind != "" {
		return authz.Principal{Kind: o.Kind, Subject: o.Subject}, true
	}
	if name, ok := strings.CutPrefix(o.Subject, legacyToken); ok {
		return authz.Principal{Kind: authz.KindToken, Subject: name}, true
	}
	return authz.Principal{}, false
}

// Matches reports whether p is the owner o records: the same kind and
// subject. A record written before kinds matches as the package doc says.
// A record with no subject matches no one.
func (o Owner) Matches(p authz.Principal) bool {
	if o.Subject == "" || p.Subject == "" {
		return false
	}
	if q, ok := o.principal(); ok {
		return q == p
	}
	return (p.Kind == authz.KindUser || p.Kind == authz.KindClient) && p.Subject == o.Subject
}

// SameAs reports whether o and n record the same owner (for SetOwner: a
// second record of an id by its owner is no change).
func (o Owner) SameAs(n Owner) bool {
	if p, ok := n.principal(); ok {
		return o.Matches(p)
	}
	if p, ok := o.principal(); ok {
		return n.Matches(p)
	}
	return o.Subject != "" && o.Subject == n.Subject
}

// String is the owner as Flower's CLI shows it (authz.Principal.String):
// a user's subject, "client:NAME" or "token:NAME"; a record written before
// kinds shows its subject as written then.
func (o Owner) String() string {
	if p, ok := o.principal(); ok {
		return p.String()
	}
	return o.Subject
}

// ownerJSON is a record as stored: "kind" and "subject", or "sub" alone
// for a record written before kinds.
type ownerJSON struct {
	Kind    authz.Kind `json:"kind,omitempty"`
	Subject string     `json:"subject,omitempty"`
	Legacy  string     `json:"sub,omitempty"`
	Name    string     `json:"name,omitempty"`
	At      time.Time  `json:"at"`
}

// MarshalJSON stores o as the package doc shows.
func (o Owner) MarshalJSON() ([]byte, error) {
	j := ownerJSON{Kind: o.Kind, Subject: o.Subject, Name: o.Name, At: o.At}
	if o.Kind == "" {
		j.Subject, j.Legacy = "", o.Subject
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a record of either form.
func (o *Owner) UnmarshalJSON(b []byte) error {
	var j ownerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Owner{Kind: j.Kind, Subject: j.Subject, Name: j.Name, At: j.At}
	if j.Kind == "" {
		o.Subject = j.Legacy
	}
	return nil
}

// Store records owners. Implementations are safe for concurrent use.
type Store interface {
	// SetOwner records o as the owner of id. An existing record is kept:
	// the first owner stays the owner, and ErrOwned is returned when o is
	// another owner (Owner.SameAs).
	SetOwner(ctx context.Context, kind Kind, id uint64, o Owner) error
	// Owners returns the records of those ids that have one.
	Owners(ctx context.Context, kind Kind, ids []uint64) (map[uint64]Owner, error)
	// All returns every record of a kind, for inspection.
	All(ctx context.Context, kind Kind) (map[uint64]Owner, error)
	// Close releases the store.
	Close() error
}

// ErrOwned is returned by SetOwner when id is recorded for another owner.
var ErrOwned = errors.New("state: already recorded for another account")

// ErrUnavailable wraps errors of a store that cannot be reached now.
var ErrUnavailable = errors.New("state: the store is unavailable")
