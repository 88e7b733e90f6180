package grpcauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// fleetDesc is a stand-in for Flower's Fleet service: Ping answers with the
// authenticated node's fingerprint, Watch streams it once.
var fleetDesc = grpc.ServiceDesc{
	ServiceName: "flwr.proto.Fleet",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				k, ok := grpcauth.NodeFromContext(ctx)
				if !ok {
					return nil, status.Error(codes.Internal, "no node in context")
				}
				return wrapperspb.String(k.Fingerprint()), nil
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/flwr.proto.Fleet/Ping"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			k, ok := grpcauth.NodeFromContext(ss.Context())
			if !ok {
				return status.Error(codes.Internal, "no node in context")
			}
			return ss.SendMsg(wrapperspb.String(k.Fingerprint()))
		},
	}},
}

type federation struct {
	dir    string
	csv    string
	pairs  []*keyset.File
	ca     string
	addr   string
	v      *verify.Verifier
	reload *allowlist.Reloader
	logs   *syncbuf.Buffer
}

// newFederation writes certificates and n key pairs, and starts a gRPC
// server over TLS on loopback with the interceptors.
func newFederation(t *testing.T, n int, vopts ...verify.Option) *federation {
	t.Helper()
	dir := t.TempDir()
	tlsRes, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "certificates")})
	require.NoError(t, err)
	ks, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Count: n})
	require.NoError(t, err)
	f := &federation{dir: dir, csv: ks.CSV, ca: tlsRes.CACert, logs: &syncbuf.Buffer{}}
	for i := range ks.Pairs {
		f.pairs = append(f.pairs, &ks.Pairs[i])
	}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	f.v = verify.New(nil, vopts...)
	f.reload, err = allowlist.NewReloader(f.v, f.csv, log)
	require.NoError(t, err)

	pair, err := tls.LoadX509KeyPair(tlsRes.ServerCert, tlsRes.ServerKey)
	require.NoError(t, err)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})),
		grpc.UnaryInterceptor(grpcauth.UnaryServerInterceptor(f.v, grpcauth.WithLogger(log, 5))),
		grpc.StreamInterceptor(grpcauth.StreamServerInterceptor(f.v, grpcauth.WithLogger(log, 5))),
	)
	srv.RegisterService(&fleetDesc, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	f.addr = ln.Addr().String()
	return f
}

// conn dials the server; creds may be nil for a client that does not sign.
func (f *federation) conn(t *testing.T, creds credentials.PerRPCCredentials) *grpc.ClientConn {
	t.Helper()
	pem, err := os.ReadFile(f.ca)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"}))}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds))
	}
	c, err := grpc.NewClient(f.addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func signerOf(t *testing.T, path string, opts ...sign.Option) *sign.Signer {
	t.Helper()
	s, err := sign.ReadKey(path, opts...)
	require.NoError(t, err)
	return s
}

func ping(c *grpc.ClientConn, md ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	out := new(wrapperspb.StringValue)
	err := c.Invoke(ctx, "/flwr.proto.Fleet/Ping", new(emptypb.Empty), out)
	return out.GetValue(), err
}

func wantRefused(t *testing.T, err error, msg string) {
	t.Helper()
	require.Error(t, err)
	st, _ := status.FromError(err)
	assert.Equal(t, codes.Unauthenticated, st.Code(), err.Error())
	assert.Equal(t, msg, st.Message())
}

func TestGRPCEndToEnd(t *testing.T) {
	f := newFederation(t, 2)
	node := signerOf(t, f.pairs[0].Private)

	// Accepted: the handler sees the node.
	fp, err := ping(f.conn(t, node.PerRPCCredentials()))
	require.NoError(t, err)
	assert.Equal(t, f.pairs[0].Fingerprint, fp)

	// Streams too.
	c := f.conn(t, node.PerRPCCredentials())
	st, err := c.NewStream(context.Background(), &fleetDesc.Streams[0], "/flwr.proto.Fleet/Watch")
	require.NoError(t, err)
	require.NoError(t, st.CloseSend())
	got := new(wrapperspb.StringValue)
	require.NoError(t, st.RecvMsg(got))
	assert.Equal(t, f.pairs[0].Fingerprint, got.GetValue())

	// Unknown key.
	p, err := keys.Generator{}.Pair(1)
	require.NoError(t, err)
	stranger, err := sign.New(p.Private)
	require.NoError(t, err)
	_, err = ping(f.conn(t, stranger.PerRPCCredentials()))
	wantRefused(t, err, "Public key not recognized")

	// Stale and future clocks.
	old := signerOf(t, f.pairs[0].Private, sign.WithClock(func() time.Time { return time.Now().Add(-6 * time.Minute) }))
	_, err = ping(f.conn(t, old.PerRPCCredentials()))
	wantRefused(t, err, "Invalid timestamp")
	ahead := signerOf(t, f.pairs[0].Private, sign.WithClock(func() time.Time { return time.Now().Add(time.Minute) }))
	_, err = ping(f.conn(t, ahead.PerRPCCredentials()))
	wantRefused(t, err, "Invalid timestamp")

	// Missing metadata, and tampered headers sent by hand.
	plain := f.conn(t, nil)
	_, err = ping(plain)
	wantRefused(t, err, "Missing authentication metadata")
	h, err := node.Sign()
	require.NoError(t, err)
	_, err = ping(plain, sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, flwr.FormatTimestamp(time.Now()),
		sign.HeaderSignature, string(h.Signature))
	wantRefused(t, err, "Invalid signature")
	_, err = ping(plain, sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp,
		sign.HeaderSignature, string(h.Signature))
	require.NoError(t, err, "the same headers replayed pass: Flower has no replay guard, and it is off by default")

	// Other services pass through without authentication.
	hr, err := healthpb.NewHealthClient(plain).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.Status)

	// Refusals are logged with their reason; never key material.
	logs := f.logs.String()
	assert.Contains(t, logs, "reason=unknown-key")
	assert.Contains(t, logs, "reason=stale-timestamp")
	assert.Contains(t, logs, "fingerprint="+f.pairs[0].Fingerprint)
	assert.NotContains(t, logs, "BEGIN")
}

func TestGRPCReplayGuard(t *testing.T) {
	f := newFederation(t, 1, verify.WithReplay(replay.NewGuard(0)))
	node := signerOf(t, f.pairs[0].Private)
	h, err := node.Sign()
	require.NoError(t, err)
	plain := f.conn(t, nil)
	md := []string{sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature)}
	_, err = ping(plain, md...)
	require.NoError(t, err)
	_, err = ping(plain, md...)
	wantRefused(t, err, "Invalid timestamp")
	assert.Contains(t, f.logs.String(), "reason=replayed")
	// Fresh signatures keep working.
	for range 5 {
		_, err = ping(f.conn(t, node.PerRPCCredentials()))
		require.NoError(t, err)
	}
}

func TestGRPCReload(t *testing.T) {
	f := newFederation(t, 2)
	one := f.conn(t, signerOf(t, f.pairs[0].Private).PerRPCCredentials())
	two := f.conn(t, signerOf(t, f.pairs[1].Private).PerRPCCredentials())
	_, err := ping(two)
	require.NoError(t, err)

	// Remove node 2 from the CSV: refused after a reload, no restart.
	l, err := csvlist.ReadFile(f.csv)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f.csv, csvlist.Marshal(l.Keys()[:1]), 0o644))
	added, removed, err := f.reload.Reload()
	require.NoError(t, err)
	assert.Equal(t, 0, added)
	assert.Equal(t, 1, removed)
	_, err = ping(two)
	wantRefused(t, err, "Public key not recognized")
	_, err = ping(one)
	require.NoError(t, err)

	// A broken CSV keeps the old list serving.
	require.NoError(t, os.WriteFile(f.csv, []byte("ssh-rsa AAAA\n"), 0o644))
	_, _, err = f.reload.Reload()
	require.Error(t, err)
	_, err = ping(one)
	require.NoError(t, err)
	assert.Contains(t, f.logs.String(), "allowlist reload failed; the old list stays")

	// Watch notices a changed file by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.reload.Watch(ctx, 20*time.Millisecond)
	require.NoError(t, os.WriteFile(f.csv, csvlist.Marshal(l.Keys()), 0o644))
	require.Eventually(t, func() bool { _, err := ping(two); return err == nil }, 5*time.Second, 20*time.Millisecond)
}

// TestGRPCLoadDuringReloads runs many clients while the allowlist is
// rewritten and reloaded over and over: no call may fail. Bounded in calls
// and time, on loopback only.
func TestGRPCLoadDuringReloads(t *testing.T) {
	clients, calls := 16, 30
	if testing.Short() {
		clients, calls = 6, 10
	}
	f := newFederation(t, clients)
	l, err := csvlist.ReadFile(f.csv)
	require.NoError(t, err)
	all := l.Keys()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var reloads atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			// The same keys, in another order: every reload swaps the list.
			ks := append(append([]*keys.PublicKey{}, all[i%len(all):]...), all[:i%len(all)]...)
			if err := os.WriteFile(f.csv, csvlist.Marshal(ks), 0o644); err != nil {
				return
			}
			if _, _, err := f.reload.Reload(); err == nil {
				reloads.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	for i := range clients {
		c := f.conn(t, signerOf(t, f.pairs[i].Private).PerRPCCredentials())
		wg.Go(func() {
			for range calls {
				if _, err := ping(c); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
	cancel()
	<-done
	assert.Zero(t, failures.Load(), "first error: %v", firstErr.Load())
	assert.Positive(t, reloads.Load())
	t.Logf("%d calls by %d clients during %d reloads", clients*calls, clients, reloads.Load())
	assert.False(t, strings.Contains(f.logs.String(), "refused"), "no call was refused")
}
