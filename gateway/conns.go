package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/nodekeys/nodekeys/internal/keyrate"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// What a call names cannot tell a SuperNode from a forger: public keys are
// not secret. The connection it comes on can. A SuperNode's connection
// never carries a signature that does not verify, and never resets calls
// by the hundred; so those are bounded per connection, and a flood on one
// connection never costs the real nodes on theirs.

// connState is the gateway's account of one client connection.
type connState struct {
	conn net.Conn

	// failed counts the calls whose signature did not verify; pending
	// those being verified while no call of the connection has verified
	// yet (proven), so that forgeries sent all at once are bounded as
	// well as forgeries sent one after another.
	failed, pending atomic.Int64
	proven          atomic.Bool

	mu     sync.Mutex // guards resets and closed
	resets keyrate.Bucket
	closed bool
}

// connInfo is the AuthInfo of a connection: its TLS state, as gRPC's TLS
// credentials give it, and the gateway's account of it.
type connInfo struct {
	credentials.TLSInfo
	state *connState
}

// accountedCreds are TLS credentials whose server connections carry a
// connState in their AuthInfo, where handlers find it (peer.FromContext)
// and from where a connection can be closed.
type accountedCreds struct {
	credentials.TransportCredentials
}

// ServerHandshake implements credentials.TransportCredentials.
func (c accountedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		return conn, info, nil
	}
	return conn, connInfo{TLSInfo: tlsInfo, state: &connState{conn: conn}}, nil
}

// Clone implements credentials.TransportCredentials.
func (c accountedCreds) Clone() credentials.TransportCredentials {
	return accountedCreds{c.TransportCredentials.Clone()}
}

// connOf returns the account of the connection a call came on, or nil.
func connOf(ctx context.Context) *connState {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ci, ok := p.AuthInfo.(connInfo)
	if !ok {
		return nil
	}
	return ci.state
}

var errConnBadSignatures = &verify.Error{Reason: verify.RateLimited,
	Detail: "this connection sent more calls whose signature does not verify than max_bad_signatures_per_conn allows"}

// verifyOn verifies h for a call on the connection of ctx. Once the
// connection has sent max_bad_signatures_per_conn calls whose signature
// did not verify, counting those in verification until one of its calls
// verifies, its further calls are refused before any verification.
func (g *Gateway) verifyOn(ctx context.Context, h sign.Headers, now time.Time) (*verify.Key, error) {
	cs, limit := connOf(ctx), int64(g.cfg.MaxBadSignaturesPerConn)
	if cs == nil || limit < 0 {
		return g.v.VerifyAt(h, now)
	}
	if cs.failed.Load() >= limit {
		return nil, errConnBadSignatures
	}
	counted := !cs.proven.Load()
	if counted && cs.pending.Add(1)+cs.failed.Load() > limit {
		cs.pending.Add(-1)
		return nil, errConnBadSignatures
	}
	k, err := g.v.VerifyAt(h, now)
	if verify.ReasonOf(err) == verify.BadSignature && cs.failed.Add(1) == limit {
		g.m.badSignatureConns.Inc()
		g.logConn(ctx, "refusing a connection's calls: it sent max_bad_signatures_per_conn calls whose signature does not verify", "limit", limit)
	}
	if counted {
		cs.pending.Add(-1)
	}
	if err == nil {
		cs.proven.Store(true)
	}
	return k, err
}

// countResets wraps a handler: a call whose client reset it before the
// handler returned (its context is cancelled, and no status has been sent)
// counts against the connection's max_resets_per_second, and a connection
// past it is closed. A reset costs the gateway a stream and a handler for
// nothing, and HTTP/2 lets a client reset thousands a second.
func (g *Gateway) countResets(h grpc.StreamHandler) grpc.StreamHandler {
	if g.cfg.MaxResetsPerSecond < 0 {
		return h
	}
	rate := float64(g.cfg.MaxResetsPerSecond)
	return func(srv any, ss grpc.ServerStream) error {
		err := h(srv, ss)
		ctx := ss.Context()
		if !errors.Is(ctx.Err(), context.Canceled) {
			return err
		}
		g.m.resets.Inc()
		cs := connOf(ctx)
		if cs == nil || !cs.reset(time.Now(), rate) {
			return err
		}
		g.m.resetCloses.Inc()
		g.logConn(ctx, "closed a connection that reset more calls than max_resets_per_second allows", "limit", g.cfg.MaxResetsPerSecond)
		cs.conn.Close()
		return err
	}
}

// reset counts a reset call at now, and reports whether the connection has
// just gone past rate resets a second (bursts of as many), and so is to be
// closed; it reports it once.
func (c *connState) reset(now time.Time, rate float64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.resets.Last.IsZero() {
		c.resets = keyrate.Bucket{Tokens: rate, Last: now}
	}
	if c.resets.Take(now, rate, rate) {
		return false
	}
	c.closed = true
	return true
}

// logConn logs a measure taken against a connection, at most
// refusal_logs_per_second a second, apart from the refusals' own lines,
// which a flood uses up.
func (g *Gateway) logConn(ctx context.Context, msg string, attrs ...any) {
	ok, dropped := g.connLog.Allow(time.Now())
	if !ok {
		return
	}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	g.log.Warn(msg, attrs...)
}
