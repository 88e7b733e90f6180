//go:build unix

package grpcauth_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// A header sent twice is refused as malformed through the interceptors,
// whichever value is valid.
func TestGRPCDuplicateHeaders(t *testing.T) {
	f := newFederation(t, 2)
	one := signerOf(t, f.pairs[0].Private)
	two := signerOf(t, f.pairs[1].Private)
	h1, err := one.Sign()
	require.NoError(t, err)
	h2, err := two.Sign()
	require.NoError(t, err)
	plain := f.conn(t, nil)
	md := func(h sign.Headers) []string {
		return []string{sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature)}
	}
	_, err = ping(plain, md(h1)...)
	require.NoError(t, err)
	for name, extra := range map[string][]string{
		"key":       {sign.HeaderPublicKey, string(h2.PublicKey)},
		"timestamp": {sign.HeaderTimestamp, h2.Timestamp},
		"signature": {sign.HeaderSignature, string(h2.Signature)},
		"same key":  {sign.HeaderPublicKey, string(h1.PublicKey)},
	} {
		_, err = ping(plain, append(md(h1), extra...)...)
		wantRefused(t, err, "Invalid signature")
		assert.Contains(t, f.logs.String(), "reason=malformed", name)
	}
	_, err = grpcauth.HeadersFromMetadata(metadata.Pairs(sign.HeaderTimestamp, "a", sign.HeaderTimestamp, "b"))
	assert.Equal(t, verify.Malformed, verify.ReasonOf(err))
}

// fleetNodeDesc is a Fleet method whose request names a node id (in a
// StringValue, for the test), served behind WithNodeBinding.
func TestGRPCNodeBinding(t *testing.T) {
	f := newFederation(t, 2)
	one := signerOf(t, f.pairs[0].Private)
	two := signerOf(t, f.pairs[1].Private)
	owners := map[uint64][]byte{1: one.PublicKeyPEM(), 2: two.PublicKeyPEM()}
	bind := grpcauth.WithNodeBinding(
		func(req any) (uint64, bool) {
			s, ok := req.(*wrapperspb.UInt64Value)
			if !ok {
				return 0, false
			}
			return s.GetValue(), true
		},
		func(_ context.Context, id uint64) ([]byte, bool) { k, ok := owners[id]; return k, ok })
	call := grpcauth.UnaryServerInterceptor(f.v, bind)
	handler := func(ctx context.Context, req any) (any, error) { return &emptypb.Empty{}, nil }
	invoke := func(s *sign.Signer, id uint64) error {
		h, err := s.Sign()
		require.NoError(t, err)
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
			sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature)))
		_, err = call(ctx, wrapperspb.UInt64(id), &grpc.UnaryServerInfo{FullMethod: "/flwr.proto.Fleet/SendNodeHeartbeat"}, handler)
		return err
	}
	require.NoError(t, invoke(one, 1))
	require.NoError(t, invoke(two, 2))
	for _, err := range []error{invoke(one, 2), invoke(two, 1), invoke(one, 99)} {
		st, _ := status.FromError(err)
		assert.Equal(t, codes.Unauthenticated, st.Code())
		assert.Equal(t, "Invalid node ID", st.Message())
	}
}

// A reload must not hang on a FIFO, read a device, or take an empty file
// as an allowlist that refuses every node.
func TestReloadRefusesHostileFiles(t *testing.T) {
	f := newFederation(t, 2)
	conn := f.conn(t, signerOf(t, f.pairs[0].Private).PerRPCCredentials())
	good, err := os.ReadFile(f.csv)
	require.NoError(t, err)

	fifo := filepath.Join(f.dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	require.NoError(t, os.Remove(f.csv))
	require.NoError(t, os.Symlink(fifo, f.csv))
	done := make(chan error, 1)
	go func() { _, _, err := f.reload.Reload(); done <- err }()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "FIFO")
	case <-time.After(5 * time.Second):
		t.Fatal("a reload of a FIFO blocked")
	}

	require.NoError(t, os.Remove(f.csv))
	require.NoError(t, os.Symlink("/dev/zero", f.csv))
	start := time.Now()
	_, _, err = f.reload.Reload()
	require.Error(t, err)
	assert.Less(t, time.Since(start), time.Second, "a device is refused before it is read")

	require.NoError(t, os.Remove(f.csv))
	require.NoError(t, os.WriteFile(f.csv, nil, 0o644))
	_, _, err = f.reload.Reload()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no keys")
	assert.Equal(t, 2, f.v.Allowlist().Len(), "the old list stays")
	_, err = ping(conn)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(f.csv, good, 0o644))
	_, _, err = f.reload.Reload()
	require.NoError(t, err)

	// AllowEmpty says an empty list is meant.
	v := verify.New(nil)
	_, err = allowlist.NewReloader(v, filepath.Join(f.dir, "empty.csv"), nil)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "empty.csv"), nil, 0o644))
	_, err = allowlist.NewReloader(v, filepath.Join(f.dir, "empty.csv"), nil, allowlist.AllowEmpty())
	require.NoError(t, err)
}

// A folder of .pub files is an allowlist too, alone or with a CSV.
func TestReloadFromPubFolder(t *testing.T) {
	f := newFederation(t, 3)
	pubs := filepath.Join(f.dir, "pubs")
	require.NoError(t, os.Mkdir(pubs, 0o700))
	copyPub := func(i int) {
		b, err := os.ReadFile(f.pairs[i].Public)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(pubs, filepath.Base(f.pairs[i].Public)), b, 0o644))
	}
	copyPub(2)
	k0, err := keys.ReadPublicKey(f.pairs[0].Public)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f.csv, csvlist.Marshal([]*keys.PublicKey{k0}), 0o644))

	v := verify.New(nil)
	r, err := allowlist.NewReloader(v, f.csv, nil, allowlist.AlsoFrom(pubs))
	require.NoError(t, err)
	assert.Equal(t, 2, v.Allowlist().Len())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)
	copyPub(1)
	require.Eventually(t, func() bool { return v.Allowlist().Len() == 3 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, os.Remove(filepath.Join(pubs, filepath.Base(f.pairs[2].Public))))
	require.Eventually(t, func() bool { return v.Allowlist().Len() == 2 }, 5*time.Second, 20*time.Millisecond)

	// A broken .pub keeps the old list.
	require.NoError(t, os.WriteFile(filepath.Join(pubs, "bad.pub"), []byte("ssh-rsa AAAA\n"), 0o644))
	_, _, err = r.Reload()
	require.Error(t, err)
	assert.Equal(t, 2, v.Allowlist().Len())
}

// A refusal ends with Flower's code and message for its reason, whichever
// package gave it.
func TestStatusOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{&verify.Error{Reason: verify.UnknownKey}, codes.Unauthenticated, "Public key not recognized"},
		{&verify.Error{Reason: verify.RateLimited}, codes.ResourceExhausted, "Too many calls"},
		{&replay.Error{Reason: replay.Replayed}, codes.Unauthenticated, "Invalid timestamp"},
		{&replay.Error{Reason: replay.RateLimited}, codes.ResourceExhausted, "Too many calls"},
		{&replay.Error{Reason: replay.Unavailable}, codes.Unavailable, "Authentication unavailable, try again"},
	} {
		st := grpcauth.StatusOf(c.err)
		assert.Equal(t, c.code, st.Code(), c.err.Error())
		assert.Equal(t, c.msg, st.Message(), c.err.Error())
	}
}
