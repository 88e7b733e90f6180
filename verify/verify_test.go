package verify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/replay"
)

var now = time.Date(2026, 11, 22, 17, 45, 3, 123456000, time.UTC)

type node struct {
	priv   *ecdsa.PrivateKey
	pub    *keys.PublicKey
	signer *sign.Signer
}

func newNode(t testing.TB, curve elliptic.Curve) node {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	require.NoError(t, err)
	pub, err := keys.NewPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	s, err := sign.New(priv)
	require.NoError(t, err)
	return node{priv, pub, s}
}

func (n node) at(t testing.TB, ts time.Time) sign.Headers {
	t.Helper()
	h, err := n.signer.SignTimestamp(flwr.FormatTimestamp(ts))
	require.NoError(t, err)
	return h
}

func reasonOf(err error) verify.Reason { return verify.ReasonOf(err) }

func allowlist(t testing.TB, nodes ...node) *verify.Allowlist {
	t.Helper()
	var ks []*keys.PublicKey
	for _, n := range nodes {
		ks = append(ks, n.pub)
	}
	l, err := verify.NewAllowlist(ks)
	require.NoError(t, err)
	return l
}

func TestReasons(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	p256, p521 := newNode(t, elliptic.P256()), newNode(t, elliptic.P521())
	v := verify.New(allowlist(t, a, p256, p521))
	good := a.at(t, now.Add(-time.Second))
	mutate := func(f func(h *sign.Headers)) sign.Headers {
		h := good
		h.PublicKey = append([]byte(nil), h.PublicKey...)
		h.Signature = append([]byte(nil), h.Signature...)
		f(&h)
		return h
	}
	for _, tc := range []struct {
		name string
		h    sign.Headers
		want verify.Reason
	}{
		{"valid", good, ""},
		{"valid P-256", p256.at(t, now), ""},
		{"valid P-521", p521.at(t, now), ""},
		{"no key", mutate(func(h *sign.Headers) { h.PublicKey = nil }), verify.MissingMetadata},
		{"no timestamp", mutate(func(h *sign.Headers) { h.Timestamp = "" }), verify.MissingMetadata},
		{"no signature", mutate(func(h *sign.Headers) { h.Signature = nil }), verify.MissingMetadata},
		{"huge key", mutate(func(h *sign.Headers) { h.PublicKey = make([]byte, 1<<20) }), verify.Malformed},
		{"huge timestamp", mutate(func(h *sign.Headers) { h.Timestamp = strings.Repeat("9", 65) }), verify.Malformed},
		{"huge signature", mutate(func(h *sign.Headers) { h.Signature = make([]byte, 1000) }), verify.Malformed},
		{"unknown key", b.at(t, now), verify.UnknownKey},
		{"garbage key", mutate(func(h *sign.Headers) { h.PublicKey = []byte("not a key") }), verify.UnknownKey},
		{"naive timestamp", mutate(func(h *sign.Headers) { h.Timestamp = "2026-11-22T17:45:02.123456" }), verify.Malformed},
		{"non-ASCII timestamp", mutate(func(h *sign.Headers) { h.Timestamp = "2026-11-22T17:45:02.12345é+00:00" }), verify.Malformed},
		{"stale", a.at(t, now.Add(-10*time.Minute)), verify.StaleTimestamp},
		{"future", a.at(t, now.Add(time.Minute)), verify.FutureTimestamp},
		{"tampered timestamp", mutate(func(h *sign.Headers) { h.Timestamp = flwr.FormatTimestamp(now.Add(-2 * time.Second)) }), verify.BadSignature},
		{"flipped signature bit", mutate(func(h *sign.Headers) { h.Signature[len(h.Signature)-1] ^= 1 }), verify.BadSignature},
		{"signature of another key", mutate(func(h *sign.Headers) { h.Signature = b.at(t, now.Add(-time.Second)).Signature }), verify.BadSignature},
		{"BER signature", mutate(func(h *sign.Headers) { h.Signature = berLength(h.Signature) }), verify.Malformed},
		{"trailing bytes", mutate(func(h *sign.Headers) { h.Signature = append(h.Signature, 0) }), verify.Malformed},
		{"r = 0", mutate(func(h *sign.Headers) { h.Signature = []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01} }), verify.BadSignature},
		{"negative s", mutate(func(h *sign.Headers) { h.Signature = []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0xff} }), verify.Malformed},
		{"r = n", mutate(func(h *sign.Headers) { h.Signature = sigOf(elliptic.P384().Params().N.Bytes(), []byte{1}) }), verify.BadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := v.VerifyAt(tc.h, now)
			assert.Equal(t, tc.want, reasonOf(err), "%v", err)
			if tc.want == "" {
				require.NotNil(t, k)
				assert.Equal(t, string(tc.h.PublicKey), k.PEM)
			} else {
				assert.Nil(t, k)
				assert.NotEmpty(t, reasonOf(err).FlowerMessage())
			}
		})
	}
}

// berLength re-encodes the outer SEQUENCE length in the long form.
func berLength(sig []byte) []byte {
	return append([]byte{0x30, 0x81, sig[1]}, sig[2:]...)
}

func sigOf(r, s []byte) []byte {
	in := func(v []byte) []byte {
		if v[0]&0x80 != 0 {
			v = append([]byte{0}, v...)
		}
		return append([]byte{0x02, byte(len(v))}, v...)
	}
	body := append(in(r), in(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestWindowEdges(t *testing.T) {
	a := newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a))
	for _, tc := range []struct {
		d    time.Duration // now - timestamp
		want verify.Reason
	}{
		{-5 * time.Second, verify.FutureTimestamp},
		{-5*time.Second + time.Microsecond, ""},
		{0, ""},
		{305*time.Second - time.Microsecond, ""},
		{305 * time.Second, verify.StaleTimestamp},
	} {
		_, err := v.VerifyAt(a.at(t, now.Add(-tc.d)), now)
		assert.Equal(t, tc.want, reasonOf(err), "d = %v", tc.d)
	}
	// Flower 1.19: -5 s < d < 15 s.
	w, err := flwr.WindowOf("1.19")
	require.NoError(t, err)
	v = verify.New(allowlist(t, a), verify.WithWindow(w))
	_, err = v.VerifyAt(a.at(t, now.Add(-15*time.Second)), now)
	assert.Equal(t, verify.StaleTimestamp, reasonOf(err))
	_, err = v.VerifyAt(a.at(t, now.Add(-14*time.Second)), now)
	assert.NoError(t, err)
}

func TestPEMFormattingIsRecognised(t *testing.T) {
	a := newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a))
	h := a.at(t, now)
	// The same key with CRLF line ends and no final newline.
	h.PublicKey = []byte(strings.TrimSuffix(strings.ReplaceAll(string(h.PublicKey), "\n", "\r\n"), "\r\n"))
	k, err := v.VerifyAt(h, now)
	require.NoError(t, err)
	assert.Equal(t, a.pub.Fingerprint(), k.Fingerprint())
	// One PEM block followed by junk is not the key.
	h.PublicKey = append(a.pub.PEM(), []byte("junk")...)
	_, err = v.VerifyAt(h, now)
	assert.Equal(t, verify.UnknownKey, reasonOf(err))
}

func TestAnyKey(t *testing.T) {
	a, p256 := newNode(t, elliptic.P384()), newNode(t, elliptic.P256())
	v := verify.New(nil, verify.AnyKey())
	_, err := v.VerifyAt(a.at(t, now), now)
	require.NoError(t, err)
	_, err = v.VerifyAt(p256.at(t, now), now)
	assert.Equal(t, verify.UnknownKey, reasonOf(err))
	h := a.at(t, now)
	h.PublicKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})
	_, err = v.VerifyAt(h, now)
	assert.Equal(t, verify.Malformed, reasonOf(err))
	// Without AnyKey, an empty allowlist accepts nothing.
	_, err = verify.New(nil).VerifyAt(a.at(t, now), now)
	assert.Equal(t, verify.UnknownKey, reasonOf(err))
}

func TestClock(t *testing.T) {
	a := newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a), verify.WithClock(func() time.Time { return now }))
	_, err := v.Verify(a.at(t, now))
	require.NoError(t, err)
	s, err := sign.New(a.priv, sign.WithClock(func() time.Time { return now.Add(-time.Hour) }))
	require.NoError(t, err)
	h, err := s.Sign()
	require.NoError(t, err)
	_, err = v.Verify(h)
	assert.Equal(t, verify.StaleTimestamp, reasonOf(err))
}

// Verify runs while the allowlist is swapped between two lists: each call
// sees one list whole, never a mix, and nothing races.
func TestConcurrentSwap(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	onlyA, onlyB := allowlist(t, a), allowlist(t, b)
	v := verify.New(onlyA)
	ha, hb := a.at(t, now), b.at(t, now)
	var stop atomic.Bool
	var swapper, wg sync.WaitGroup
	swapper.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				v.SetAllowlist(onlyB)
			} else {
				v.SetAllowlist(onlyA)
			}
		}
	})
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 100 {
				_, ea := v.VerifyAt(ha, now)
				_, eb := v.VerifyAt(hb, now)
				for _, err := range []error{ea, eb} {
					if err != nil && reasonOf(err) != verify.UnknownKey {
						bad.Add(1)
					}
				}
			}
		})
	}
	wg.Wait() // the swaps go on for as long as the calls do
	stop.Store(true)
	swapper.Wait()
	assert.Zero(t, bad.Load())
}

// The refusal paths a flood takes must not allocate.
func TestRefusalsDoNotAllocate(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a))
	stale := a.at(t, now.Add(-time.Hour))
	unknown := b.at(t, now)
	unknown.PublicKey = []byte("x")
	missing := sign.Headers{}
	for name, h := range map[string]sign.Headers{"stale": stale, "unknown": unknown, "missing": missing} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := v.VerifyAt(h, now); err == nil {
				t.Fatal("accepted")
			}
		})
		assert.Zero(t, allocs, name)
	}
}

func TestVerifyBatch(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a))
	var hs []sign.Headers
	for i := range 40 {
		if i%4 == 3 {
			hs = append(hs, b.at(t, now))
		} else {
			hs = append(hs, a.at(t, now))
		}
	}
	for _, workers := range []int{0, 1, 3, 100} {
		res := v.VerifyBatch(hs, now, workers)
		require.Len(t, res, len(hs))
		for i, r := range res {
			if i%4 == 3 {
				assert.Equal(t, verify.UnknownKey, reasonOf(r.Err))
			} else {
				assert.NoError(t, r.Err)
				assert.Equal(t, a.pub.Fingerprint(), r.Key.Fingerprint())
			}
		}
	}
	assert.Empty(t, v.VerifyBatch(nil, now, 0))
}

func TestReplayGuard(t *testing.T) {
	a := newNode(t, elliptic.P384())
	g := replay.NewGuard(64)
	v := verify.New(allowlist(t, a), verify.WithReplay(g))
	h := a.at(t, now)
	_, err := v.VerifyAt(h, now)
	require.NoError(t, err)
	_, err = v.VerifyAt(h, now.Add(time.Second))
	assert.Equal(t, verify.Replayed, reasonOf(err))
	assert.Equal(t, "Invalid timestamp", reasonOf(err).FlowerMessage())
	// The malleable twin (r, n-s) of the signature is the same call.
	twin := h
	twin.Signature = malleate(t, h.Signature)
	_, err = v.VerifyAt(twin, now.Add(time.Second))
	assert.Equal(t, verify.Replayed, reasonOf(err))
	// A refused call is not recorded: a bad signature cannot block a slot.
	bad := a.at(t, now.Add(-time.Second))
	bad.Signature = h.Signature
	_, err = v.VerifyAt(bad, now)
	assert.Equal(t, verify.BadSignature, reasonOf(err))
	good := a.at(t, now.Add(-time.Second))
	_, err = v.VerifyAt(good, now)
	require.NoError(t, err)
	assert.Equal(t, 2, g.Len())

	// Full: refuse rather than forget; entries expire with the window.
	for i := range 200 {
		v.VerifyAt(a.at(t, now.Add(-time.Duration(i+2)*time.Millisecond)), now)
	}
	assert.LessOrEqual(t, g.Len(), 64)
	_, err = v.VerifyAt(a.at(t, now.Add(-500*time.Millisecond)), now)
	assert.Equal(t, verify.Replayed, reasonOf(err))
	later := now.Add(flwr.DefaultWindow.Past + time.Second)
	_, err = v.VerifyAt(a.at(t, later), later)
	require.NoError(t, err, "expired entries make room")
	assert.LessOrEqual(t, g.Len(), 64)
}

// malleate returns the other valid signature of the same message, (r, n-s).
func malleate(t *testing.T, sig []byte) []byte {
	t.Helper()
	var parsed struct{ R, S *big.Int }
	_, err := asn1.Unmarshal(sig, &parsed)
	require.NoError(t, err)
	parsed.S.Sub(elliptic.P384().Params().N, parsed.S)
	out, err := asn1.Marshal(parsed)
	require.NoError(t, err)
	return out
}

func TestUnknownKeyFloodDoesNotAllocate(t *testing.T) {
	a, b := newNode(t, elliptic.P384()), newNode(t, elliptic.P384())
	v := verify.New(allowlist(t, a))
	h := b.at(t, now) // a well-formed PEM key, not in the list
	_, err := v.VerifyAt(h, now)
	require.Equal(t, verify.UnknownKey, reasonOf(err))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.VerifyAt(h, now); err == nil {
			t.Fatal("accepted")
		}
	})
	assert.Zero(t, allocs)
}
