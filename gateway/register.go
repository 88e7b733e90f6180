package gateway

import (
	"context"
	"time"

	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/supernodes"
	"github.com/nodekeys/nodekeys/verify"
)

// registrar keeps the upstream SuperLink's registrations (Flower 1.23 and
// later) in step with the allowlist, as they were in Flower 1.9 to 1.22
// when the SuperLink read the allowlist itself: on start, after each
// allowlist reload, and whenever a look at ListNodes finds a key missing
// (a SuperLink with in-memory state forgets every registration when it
// restarts).
type registrar struct {
	g      *Gateway
	client *supernodes.Client
	kick   chan struct{}
	// want is the allowlist list in force as wanted keys, made again only
	// when a reload puts another list in force.
	list *verify.Allowlist
	want []supernodes.Want
}

func newRegistrar(g *Gateway) *registrar {
	return &registrar{g: g, client: supernodes.NewClient(g.controlUp), kick: make(chan struct{}, 1)}
}

// poke asks for a look now (after a reload).
func (r *registrar) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run looks at once, then at every interval or poke, until ctx ends.
func (r *registrar) run(ctx context.Context) {
	t := time.NewTicker(r.g.cfg.RegisterInterval)
	defer t.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// sync applies the plan that makes the upstream hold the allowlist.
func (r *registrar) sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*r.g.cfg.RegisterInterval+30*time.Second)
	defer cancel()
	if l := r.g.v.Allowlist(); l != r.list {
		r.list, r.want = l, r.want[:0]
		for _, k := range l.Keys() {
			if pk, err := keys.NewPublicKey(k.Public); err == nil {
				r.want = append(r.want, supernodes.Want{Key: pk})
			}
		}
	}
	want := r.want
	nodes, err := r.client.List(ctx)
	if err != nil {
		r.g.m.registrations.WithLabelValues("list-failed").Inc()
		r.g.log.Warn("registrations: cannot list the upstream's nodes", "error", err)
		return
	}
	plan := supernodes.MakePlan(nodes, want, r.g.cfg.RegisterPrune)
	for _, b := range plan.Burned {
		r.g.log.Warn("registrations: an allowed key was unregistered before and cannot be registered again", "fingerprint", b.Key.Fingerprint())
	}
	if plan.Empty() {
		return
	}
	r.g.log.Info("registrations: applying", "register", len(plan.Register), "unregister", len(plan.Unregister), "registered", len(plan.Present))
	res := r.client.Apply(ctx, plan, supernodes.Options{Parallel: 16})
	for _, o := range res.Outcomes {
		r.g.m.registrations.WithLabelValues(o.Action).Inc()
		if o.Action == "failed" {
			r.g.log.Warn("registrations: a call failed; the next look retries", "fingerprint", o.Fingerprint, "error", o.Error)
		}
	}
}
