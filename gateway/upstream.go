package gateway

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// How the gateway reconnects to its SuperLink. gRPC's default backoff
// between connection attempts grows to 120 s, so after an outage of a
// minute or more the gateway could go on refusing calls for as long again
// once the SuperLink was back. The backoff here stops growing at
// upstreamMaxBackoff (one connection attempt every 2 s, +-20%, costs a
// SuperLink that is down nothing); and a call that finds the connection
// down has it try again at once, at most once every reconnectEvery, so
// that a flood of calls does not become a flood of connection attempts.
const (
	upstreamMaxBackoff = 2 * time.Second
	// upstreamConnectTimeout bounds one connection attempt (gRPC's default
	// is 20 s), for a SuperLink whose host is up but does not answer yet.
	upstreamConnectTimeout = 5 * time.Second
	reconnectEvery         = 250 * time.Millisecond
	// reconnectWait is how long the call that started an attempt waits
	// for it, rather than failing at once.
	reconnectWait = time.Second
)

// upstreamOptions are the dial options of one upstream connection.
func upstreamOptions() []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.MaxDelay = upstreamMaxBackoff
	r := &reconnector{}
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: upstreamConnectTimeout}),
		grpc.WithChainUnaryInterceptor(r.unary),
		grpc.WithChainStreamInterceptor(r.stream),
	}
}

// reconnector cuts short the backoff of an upstream connection that a call
// finds in TRANSIENT_FAILURE.
type reconnector struct {
	last atomic.Int64 // when an attempt was last started early (Unix ns)
}

// await starts a connection attempt at once if cc is down and none was
// started in the last reconnectEvery, and then waits up to reconnectWait
// (or ctx's end) for cc to be ready. Calls that do not start an attempt
// go on at once, and fail at once while cc is down, as before.
func (r *reconnector) await(ctx context.Context, cc *grpc.ClientConn) {
	if cc.GetState() != connectivity.TransientFailure {
		return
	}
	now, last := time.Now().UnixNano(), r.last.Load()
	if now-last < int64(reconnectEvery) || !r.last.CompareAndSwap(last, now) {
		return
	}
	cc.ResetConnectBackoff()
	ctx, cancel := context.WithTimeout(ctx, reconnectWait)
	defer cancel()
	// gRPC keeps a connection that failed in TRANSIENT_FAILURE while it
	// tries again, until it is READY.
	for s := cc.GetState(); s == connectivity.TransientFailure || s == connectivity.Connecting; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			return
		}
	}
}

func (r *reconnector) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r.await(ctx, cc)
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (r *reconnector) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	r.await(ctx, cc)
	return streamer(ctx, desc, cc, method, opts...)
}
