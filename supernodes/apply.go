package supernodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/nodekeys/nodekeys/keys"
)

// Want is a key the SuperLink should hold, and the file it came from.
type Want struct {
	Key  *keys.PublicKey
	File string
}

// Plan says what Apply will do to make the SuperLink's registrations equal
// a set of keys.
type Plan struct {
	// Register are the wanted keys the SuperLink does not hold.
	Register []Want `json:"-"`
	// Present are the wanted keys already registered.
	Present []Node `json:"present"`
	// Burned are wanted keys the SuperLink unregistered before: Flower
	// never registers them again; the node needs a new key.
	Burned []Want `json:"-"`
	// Unregister are registered keys that are not wanted (with prune).
	Unregister []Node `json:"unregister"`
	// Extra are registered keys that are not wanted, left alone (without
	// prune).
	Extra []Node `json:"extra"`
	// Scoped, set by the caller, says the nodes the plan was made from are
	// those the caller may see, not all the SuperLink holds: a gateway
	// lists a member's own nodes only. A key to Register that the
	// SuperLink turns out to hold is then another account's (action
	// "other-account"), not "already-registered".
	Scoped bool `json:"scoped,omitempty"`
}

// MakePlan compares the SuperLink's nodes with the wanted keys. Keys are
// matched by their exact PEM bytes, as Flower matches them.
func MakePlan(nodes []Node, want []Want, prune bool) *Plan {
	p := &Plan{}
	byPEM := nodesByPEM(nodes)
	wanted := map[string]bool{}
	for _, w := range want {
		pem := string(w.Key.PEM())
		if wanted[pem] {
			continue
		}
		wanted[pem] = true
		switch n, ok := byPEM[pem]; {
		case !ok:
			p.Register = append(p.Register, w)
		case n.Unregistered:
			p.Burned = append(p.Burned, w)
		default:
			p.Present = append(p.Present, n)
		}
	}
	for _, n := range nodes {
		if n.Unregistered || wanted[string(n.PEM)] {
			continue
		}
		if prune {
			p.Unregister = append(p.Unregister, n)
		} else {
			p.Extra = append(p.Extra, n)
		}
	}
	sort.Slice(p.Unregister, func(i, j int) bool { return p.Unregister[i].ID < p.Unregister[j].ID })
	sort.Slice(p.Extra, func(i, j int) bool { return p.Extra[i].ID < p.Extra[j].ID })
	return p
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Register) == 0 && len(p.Unregister) == 0 }

// Outcome is what happened to one key.
type Outcome struct {
	Fingerprint string `json:"fingerprint"`
	File        string `json:"file,omitempty"`
	// NodeID is the node id, 0 (and not in JSON) when the call gave none.
	// JSON holds it as a decimal string, as Node's ID.
	NodeID uint64 `json:"node_id,string,omitempty"`
	// Action is "registered", "already-registered", "other-account" (held
	// by the SuperLink, not in the caller's scoped list), "unregistered",
	// "burned" or "failed".
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
}

// UnmarshalJSON reads an Outcome, its node_id a decimal string or a
// number.
func (o *Outcome) UnmarshalJSON(b []byte) error {
	type plain Outcome // without this method
	v := struct {
		*plain
		NodeID json.RawMessage `json:"node_id"` // shallower: wins over plain's
	}{plain: (*plain)(o)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return readNodeID(v.NodeID, &o.NodeID)
}

// Result lists the outcome of every key a run touched, in the plan's
// order: registrations, then unregistrations.
type Result struct {
	Outcomes []Outcome `json:"outcomes"`
}

// Failed returns the outcomes that failed.
func (r *Result) Failed() []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.Action == "failed" {
			out = append(out, o)
		}
	}
	return out
}

// Count returns how many outcomes have the action.
func (r *Result) Count(action string) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Action == action {
			n++
		}
	}
	return n
}

// Options tune Apply and RegisterAll.
type Options struct {
	// Parallel is how many calls are in flight at once (default 16).
	Parallel int
	// OnUnregistered, if set, is called for each node unregistered, to
	// record its key as burned.
	OnUnregistered func(Node)
	// Progress, if set, is called after each call with the count done.
	Progress func(done int)
	// Scoped is Plan.Scoped for RegisterAll: the caller sees only the
	// nodes its account may (a gateway's member).
	Scoped bool
}

// RegisterAll registers every key, in parallel. Flower answers a key it
// already holds "Public key already in use" whether that key is
// registered or was unregistered before (burned), so those keys are then
// looked up in the SuperLink's list, once for all of them: a registered
// key is "already-registered" (with its node id), a burned one "burned"
// (a failure: Flower never registers it again), and, with opts.Scoped, a
// key the list does not show "other-account". If the list cannot be had,
// they stay "already-registered".
func (c *Client) RegisterAll(ctx context.Context, want []Want, opts Options) *Result {
	res := c.Apply(ctx, &Plan{Register: want}, opts)
	if res.Count("already-registered") == 0 {
		return res
	}
	nodes, err := c.List(ctx)
	if err != nil {
		return res
	}
	byPEM := nodesByPEM(nodes)
	for i, o := range res.Outcomes {
		if o.Action != "already-registered" {
			continue
		}
		switch n, ok := byPEM[string(want[i].Key.PEM())]; {
		case ok && n.Unregistered:
			res.Outcomes[i].Action, res.Outcomes[i].Error = "burned", errBurned
		case ok:
			res.Outcomes[i].NodeID = n.ID
		case opts.Scoped:
			res.Outcomes[i].Action, res.Outcomes[i].Error = "other-account", errOtherAccount
		}
	}
	return res
}

// errOtherAccount is the error of a key held by another account.
const errOtherAccount = "the SuperLink holds this key, and this account may not see it: another account registered it (or unregistered it before)"

// errBurned is a burned key's outcome's error.
const errBurned = "unregistered before: Flower never registers a key again; give the node a new key (nodekeys rotate)"

// nodesByPEM indexes nodes by their exact PEM bytes, as Flower matches
// keys; a live registration wins over a burned one of the same key.
func nodesByPEM(nodes []Node) map[string]Node {
	byPEM := map[string]Node{}
	for _, n := range nodes {
		if old, ok := byPEM[string(n.PEM)]; ok && !old.Unregistered {
			continue
		}
		byPEM[string(n.PEM)] = n
	}
	return byPEM
}

// Apply carries out a plan: registers its Register keys and unregisters
// its Unregister nodes, Parallel calls at a time. A call that fails is
// reported in the Result and the others go on: running Apply on a fresh
// plan again finishes the job.
func (c *Client) Apply(ctx context.Context, p *Plan, opts Options) *Result {
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	res := &Result{Outcomes: make([]Outcome, len(p.Register)+len(p.Unregister)+len(p.Burned))}
	var done int
	var mu sync.Mutex
	tick := func() {
		if opts.Progress != nil {
			mu.Lock()
			done++
			opts.Progress(done)
			mu.Unlock()
		}
	}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, w := range p.Register {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := Outcome{Fingerprint: w.Key.Fingerprint(), File: w.File}
			id, err := c.Register(ctx, w.Key.PEM())
			switch {
			case err == nil:
				o.Action, o.NodeID = "registered", id
			case errors.Is(err, ErrAlreadyRegistered) && p.Scoped:
				o.Action, o.Error = "other-account", errOtherAccount
			case errors.Is(err, ErrAlreadyRegistered):
				o.Action = "already-registered"
			default:
				o.Action, o.Error = "failed", err.Error()
			}
			res.Outcomes[i] = o
			tick()
		})
	}
	base := len(p.Register)
	for i, n := range p.Unregister {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := Outcome{Fingerprint: n.Fingerprint, NodeID: n.ID}
			if err := c.Unregister(ctx, n.ID); err != nil {
				o.Action, o.Error = "failed", err.Error()
			} else {
				o.Action = "unregistered"
				if opts.OnUnregistered != nil {
					mu.Lock()
					opts.OnUnregistered(n)
					mu.Unlock()
				}
			}
			res.Outcomes[base+i] = o
			tick()
		})
	}
	wg.Wait()
	base += len(p.Unregister)
	for i, w := range p.Burned {
		res.Outcomes[base+i] = Outcome{Fingerprint: w.Key.Fingerprint(), File: w.File, Action: "burned", Error: errBurned}
	}
	return res
}

// String describes an outcome in one line.
func (o Outcome) String() string {
	s := fmt.Sprintf("%-18s %s", o.Action, o.Fingerprint)
	if o.NodeID != 0 {
		s += fmt.Sprintf("  node %d", o.NodeID)
	}
	if o.File != "" {
		s += "  " + o.File
	}
	if o.Error != "" {
		s += ": " + o.Error
	}
	return s
}
