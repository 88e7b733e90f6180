package verify

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/sign"
)

// FleetPrefix is the method prefix of Flower's Fleet service, the calls a
// SuperNode makes and the SuperLink authenticates.
const FleetPrefix = "/flwr.proto.Fleet/"

// InterceptorOption configures the gRPC interceptors.
type InterceptorOption func(*interceptor)

// WithMethodPrefix authenticates the methods whose full name starts with
// prefix (default FleetPrefix); other methods pass through.
func WithMethodPrefix(prefix string) InterceptorOption {
	return func(i *interceptor) { i.prefix = prefix }
}

// WithLogger logs each refused call through l (default slog.Default()),
// at most perSecond lines a second, with a count of the lines left out.
func WithLogger(l *slog.Logger, perSecond int) InterceptorOption {
	return func(i *interceptor) { i.log = l; i.limiter.perSecond = perSecond }
}

type interceptor struct {
	v       *Verifier
	prefix  string
	log     *slog.Logger
	limiter logLimiter
}

func (v *Verifier) newInterceptor(opts []InterceptorOption) *interceptor {
	i := &interceptor{v: v, prefix: FleetPrefix, log: slog.Default(), limiter: logLimiter{perSecond: 10}}
	for _, o := range opts {
		o(i)
	}
	return i
}

type nodeKeyCtx struct{}

// NodeFromContext returns the authenticated node's key, which the
// interceptors put in the context of each call they accept.
func NodeFromContext(ctx context.Context) (*Key, bool) {
	k, ok := ctx.Value(nodeKeyCtx{}).(*Key)
	return k, ok
}

// authenticate checks the call's metadata and returns the context for the
// handler, or a gRPC status error.
func (i *interceptor) authenticate(ctx context.Context, method string) (context.Context, error) {
	if !strings.HasPrefix(method, i.prefix) {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if vs := md.Get(k); len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	h := sign.Headers{
		PublicKey: []byte(first(sign.HeaderPublicKey)),
		Timestamp: first(sign.HeaderTimestamp),
		Signature: []byte(first(sign.HeaderSignature)),
	}
	k, err := i.v.Verify(h)
	if err != nil {
		var ve *Error
		reason := Reason("")
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		i.logRefusal(method, reason, h, err)
		return nil, status.Error(codes.Unauthenticated, reason.FlowerMessage())
	}
	return context.WithValue(ctx, nodeKeyCtx{}, k), nil
}

func (i *interceptor) logRefusal(method string, reason Reason, h sign.Headers, err error) {
	ok, dropped := i.limiter.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"method", method, "reason", string(reason), "detail", err.Error()}
	if k := i.v.Allowlist().lookup(h.PublicKey); k != nil {
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
func (v *Verifier) UnaryServerInterceptor(opts ...InterceptorOption) grpc.UnaryServerInterceptor {
	i := v.newInterceptor(opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates streaming calls when they open.
func (v *Verifier) StreamServerInterceptor(opts ...InterceptorOption) grpc.StreamServerInterceptor {
	i := v.newInterceptor(opts)
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

// logLimiter lets perSecond log lines through each second and counts the
// rest, so a flood of refused calls cannot fill a disk.
type logLimiter struct {
	perSecond int
	mu        sync.Mutex
	second    int64
	n         int
	dropped   int
}

// allow reports whether a line may be logged now and how many were
// dropped since the last one that was.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= l.perSecond {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}
