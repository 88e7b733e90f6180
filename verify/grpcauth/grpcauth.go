// Package grpcauth authenticates Flower's Fleet calls on a gRPC server
// with a verify.Verifier: the SuperLink's per-call check of a SuperNode.
//
// Check is that check: the three headers taken from a call's metadata,
// verified, and on a refusal the status Flower's SuperLink ends the call
// with (StatusOf). UnaryServerInterceptor and StreamServerInterceptor
// make it for a gRPC server, and put the node's key in the handler's
// context (NodeFromContext); the gateway makes it on every Fleet call it
// forwards.
package grpcauth

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/ratelog"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// Option configures the gRPC interceptors.
type Option func(*interceptor)

// WithMethodPrefix authenticates the methods whose full name starts with
// prefix (default flwr.FleetPrefix); other methods pass through.
func WithMethodPrefix(prefix string) Option {
	return func(i *interceptor) { i.prefix = prefix }
}

// WithLogger logs each refused call through l (default slog.Default()),
// at most perSecond lines a second, with a count of the lines left out.
func WithLogger(l *slog.Logger, perSecond int) Option {
	return func(i *interceptor) { i.log = l; i.limiter.PerSecond = perSecond }
}

// WithNodeBinding refuses a unary call whose request names a node that the
// call's key does not own, with codes.Unauthenticated "Invalid node ID", as
// Flower's SuperLink does after it has checked the signature. nodeID
// returns the node id a request names (ok false for a request that names
// none, such as ActivateNode's); owner returns the flwr-public-key-bin
// bytes the server recorded for a node id (ok false for an unknown id).
// The two must be byte-equal. Without this option the interceptors check
// only the key, the timestamp and the signature: which node the request
// speaks for is then the handler's to check.
func WithNodeBinding(nodeID func(req any) (id uint64, ok bool), owner func(ctx context.Context, id uint64) (pemKey []byte, ok bool)) Option {
	return func(i *interceptor) { i.nodeID, i.owner = nodeID, owner }
}

type interceptor struct {
	v       *verify.Verifier
	prefix  string
	log     *slog.Logger
	limiter ratelog.Limiter
	nodeID  func(req any) (uint64, bool)
	owner   func(ctx context.Context, id uint64) ([]byte, bool)
}

func newInterceptor(v *verify.Verifier, opts []Option) *interceptor {
	i := &interceptor{v: v, prefix: flwr.FleetPrefix, log: slog.Default(), limiter: ratelog.Limiter{PerSecond: 10}}
	for _, o := range opts {
		o(i)
	}
	return i
}

type nodeKeyCtx struct{}

// NodeFromContext returns the authenticated node's key, which the
// interceptors put in the context of each call they accept.
func NodeFromContext(ctx context.Context) (*verify.Key, bool) {
	k, ok := ctx.Value(nodeKeyCtx{}).(*verify.Key)
	return k, ok
}

var errDuplicate = &verify.Error{Reason: verify.Malformed, Detail: "a flwr-* header has more than one value"}

// HeadersFromMetadata takes the three authentication values from a call's
// metadata. A header sent more than once is refused as Malformed: Flower's
// SuperLink reads the last value, so a check of the first would let one
// key be verified and another admitted. A missing header is left empty
// (Verify refuses it as MissingMetadata).
func HeadersFromMetadata(md metadata.MD) (sign.Headers, error) {
	var vals [3]string
	for n, k := range [3]string{sign.HeaderPublicKey, sign.HeaderTimestamp, sign.HeaderSignature} {
		vs := md[k]
		if len(vs) > 1 {
			return sign.Headers{}, errDuplicate
		}
		if len(vs) == 1 {
			vals[n] = vs[0]
		}
	}
	return sign.Headers{PublicKey: []byte(vals[0]), Timestamp: vals[1], Signature: []byte(vals[2])}, nil
}

// StatusOf returns the gRPC status a refused call ends with: the code
// Flower's SuperLink uses (Unauthenticated; ResourceExhausted for
// RateLimited, which Flower has no counterpart of) and Flower's message.
func StatusOf(err error) *status.Status {
	reason := verify.ReasonOf(err)
	code := codes.Unauthenticated
	switch reason {
	case verify.RateLimited:
		code = codes.ResourceExhausted
	case verify.Unavailable:
		code = codes.Unavailable
	}
	return status.New(code, reason.FlowerMessage())
}

// Check is the Fleet check of one call: it takes the authentication
// headers from the call's metadata md and verifies them with check (a
// Verifier's Verify, or a function that wraps it). It returns the headers,
// and the node's key or the refusal (a header sent twice, or check's
// error); StatusOf gives the status the refused call ends with.
func Check(md metadata.MD, check func(sign.Headers) (*verify.Key, error)) (sign.Headers, *verify.Key, error) {
	h, err := HeadersFromMetadata(md)
	if err != nil {
		return h, nil, err
	}
	k, err := check(h)
	return h, k, err
}

// authenticate checks the call's metadata and returns the context for the
// handler, or a gRPC status error.
func (i *interceptor) authenticate(ctx context.Context, method string) (context.Context, error) {
	if !strings.HasPrefix(method, i.prefix) {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	h, k, err := Check(md, i.v.Verify)
	if err != nil {
		i.logRefusal(method, verify.ReasonOf(err), h, err)
		return nil, StatusOf(err).Err()
	}
	return context.WithValue(ctx, nodeKeyCtx{}, k), nil
}

var errNodeID = &verify.Error{Reason: verify.InvalidNodeID, Detail: "the request's node id belongs to another key, or to none"}

// bind checks that the request speaks for a node the call's key owns.
func (i *interceptor) bind(ctx context.Context, method string, req any) error {
	if i.nodeID == nil || !strings.HasPrefix(method, i.prefix) {
		return nil
	}
	id, ok := i.nodeID(req)
	if !ok {
		return nil
	}
	k, _ := NodeFromContext(ctx)
	pemKey, found := i.owner(ctx, id)
	if k == nil || !found || string(pemKey) != k.PEM {
		i.logRefusal(method, verify.InvalidNodeID, sign.Headers{}, errNodeID)
		return StatusOf(errNodeID).Err()
	}
	return nil
}

func (i *interceptor) logRefusal(method string, reason verify.Reason, h sign.Headers, err error) {
	ok, dropped := i.limiter.Allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"method", method, "reason", string(reason), "detail", err.Error()}
	if k := i.v.Allowlist().Lookup(h.PublicKey); k != nil {
		attrs = append(attrs, "fingerprint", k.Fingerprint())
	}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	i.log.Warn("refused a node call", attrs...)
}

// UnaryServerInterceptor authenticates unary calls, as Flower's SuperLink
// does, and refuses the others with codes.Unauthenticated and Flower's
// message for the reason.
func UnaryServerInterceptor(v *verify.Verifier, opts ...Option) grpc.UnaryServerInterceptor {
	i := newInterceptor(v, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if err := i.bind(ctx, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates streaming calls when they open, and
// only then: a key removed from the allowlist later keeps a stream it
// opened before. Flower's Fleet methods are all unary; a server with long
// streams should bound their age (the gateway's --max-stream-age does).
func StreamServerInterceptor(v *verify.Verifier, opts ...Option) grpc.StreamServerInterceptor {
	i := newInterceptor(v, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := i.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
