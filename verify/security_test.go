package verify_test

import (
	"context"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

	listfile "github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// One allowlisted node flooding valid, distinct calls must not make
// another node's valid call fail: it runs into its own quota.
func TestReplayGuardKeyQuota(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	var overQuota atomic.Int64
	g := replay.NewGuard(20_000, replay.WithKeyQuota(200), replay.OnKeyQuota(func(string) { overQuota.Add(1) }))
	v := verify.New(allowlist(t, a, b), verify.WithReplay(g))
	refused := 0
	for i := range 700 {
		at := now.Add(-time.Duration(i+1) * time.Millisecond)
		if _, err := v.VerifyAt(a.at(t, at), now); err != nil {
			require.Equal(t, verify.RateLimited, reasonOf(err))
			refused++
		}
	}
	assert.Equal(t, 500, refused, "node a's calls past its quota")
	assert.EqualValues(t, 500, overQuota.Load())
	for i := range 20 {
		_, err := v.VerifyAt(b.at(t, now.Add(-time.Duration(i+1)*time.Millisecond)), now)
		require.NoError(t, err, "node b is not locked out by node a")
	}
	// The flood's entries expire with the window, and node a works again.
	later := now.Add(verify.DefaultWindow.Past + 2*time.Second)
	_, err := v.VerifyAt(a.at(t, later), later)
	require.NoError(t, err)
	assert.Equal(t, codes.ResourceExhausted, verify.StatusOf(&verify.Error{Reason: verify.RateLimited}).Code())
}

func TestExactPEM(t *testing.T) {
	a := newNode(t, elliptic.P384())
	h := a.at(t, now)
	h.PublicKey = []byte(strings.ReplaceAll(string(h.PublicKey), "\n", "\r\n"))
	_, err := verify.New(allowlist(t, a)).VerifyAt(h, now)
	require.NoError(t, err, "a CRLF variant is recognised by default")
	_, err = verify.New(allowlist(t, a), verify.ExactPEM()).VerifyAt(h, now)
	assert.Equal(t, verify.UnknownKey, reasonOf(err), "as Flower's exact-bytes match refuses it")
	_, err = verify.New(allowlist(t, a), verify.ExactPEM()).VerifyAt(a.at(t, now), now)
	require.NoError(t, err)
}

// WithKeyCheck runs only for calls whose signature verifies: forged
// signatures under a real node's public key (which is not secret) never
// spend that node's allowance, however many there are. A replay, whose
// signature does verify, is checked, then refused by the replay guard.
func TestKeyCheckAfterSignature(t *testing.T) {
	a := newNode(t, elliptic.P384())
	var calls int
	v := verify.New(allowlist(t, a), verify.WithReplay(replay.NewGuard(0)),
		verify.WithKeyCheck(func(k *verify.Key, _ time.Time) error {
			calls++
			if calls > 2 {
				return &verify.Error{Reason: verify.RateLimited, Detail: "limited"}
			}
			return nil
		}))
	for i := range 50 {
		bad := a.at(t, now.Add(-time.Duration(i)*time.Millisecond))
		bad.Signature[len(bad.Signature)-1] ^= 1
		_, err := v.VerifyAt(bad, now)
		require.Equal(t, verify.BadSignature, reasonOf(err))
	}
	stale := a.at(t, now.Add(-time.Hour))
	_, err := v.VerifyAt(stale, now)
	assert.Equal(t, verify.StaleTimestamp, reasonOf(err))
	assert.Zero(t, calls, "no forged or stale call reaches the key check")

	h := a.at(t, now)
	_, err = v.VerifyAt(h, now)
	require.NoError(t, err, "the node's own call, after the forgeries")
	_, err = v.VerifyAt(h, now)
	assert.Equal(t, verify.Replayed, reasonOf(err))
	_, err = v.VerifyAt(a.at(t, now.Add(-time.Millisecond)), now)
	assert.Equal(t, verify.RateLimited, reasonOf(err), "the third verified call is over the limit")
	assert.Equal(t, 3, calls)
}

// The replay guard's per-key quota is spent only by calls whose signature
// verifies: forged signatures under a key never fill it.
func TestForgeriesDoNotFillReplayQuota(t *testing.T) {
	a := newNode(t, elliptic.P384())
	g := replay.NewGuard(0, replay.WithKeyQuota(4))
	v := verify.New(allowlist(t, a), verify.WithReplay(g))
	for i := range 100 {
		bad := a.at(t, now.Add(-time.Duration(i)*time.Millisecond))
		bad.Signature[len(bad.Signature)-1] ^= 1
		_, err := v.VerifyAt(bad, now)
		require.Equal(t, verify.BadSignature, reasonOf(err))
	}
	assert.Zero(t, g.Len())
	for i := range 4 {
		_, err := v.VerifyAt(a.at(t, now.Add(-time.Duration(i)*time.Millisecond)), now)
		require.NoError(t, err, "the node's own calls fill its quota")
	}
	_, err := v.VerifyAt(a.at(t, now.Add(-time.Second)), now)
	assert.Equal(t, verify.RateLimited, reasonOf(err))
}

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
	_, err = verify.HeadersFromMetadata(metadata.Pairs(sign.HeaderTimestamp, "a", sign.HeaderTimestamp, "b"))
	assert.Equal(t, verify.Malformed, reasonOf(err))
}

// fleetNodeDesc is a Fleet method whose request names a node id (in a
// StringValue, for the test), served behind WithNodeBinding.
func TestGRPCNodeBinding(t *testing.T) {
	f := newFederation(t, 2)
	one := signerOf(t, f.pairs[0].Private)
	two := signerOf(t, f.pairs[1].Private)
	owners := map[uint64][]byte{1: one.PublicKeyPEM(), 2: two.PublicKeyPEM()}
	bind := verify.WithNodeBinding(
		func(req any) (uint64, bool) {
			s, ok := req.(*wrapperspb.UInt64Value)
			if !ok {
				return 0, false
			}
			return s.GetValue(), true
		},
		func(_ context.Context, id uint64) ([]byte, bool) { k, ok := owners[id]; return k, ok })
	call := f.v.UnaryServerInterceptor(bind)
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
	_, err = listfile.NewReloader(v, filepath.Join(f.dir, "empty.csv"), nil)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "empty.csv"), nil, 0o644))
	_, err = listfile.NewReloader(v, filepath.Join(f.dir, "empty.csv"), nil, listfile.AllowEmpty())
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
	r, err := listfile.NewReloader(v, f.csv, nil, listfile.AlsoFrom(pubs))
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
