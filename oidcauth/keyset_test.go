package oidcauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jwksServer serves a key set that the test changes, counting fetches.
type jwksServer struct {
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches int
	down    bool
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches++
	if s.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys})
}

func (s *jwksServer) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.fetches }

type testKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newTestKey(t *testing.T, kid string) testKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return testKey{k, kid}
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

func (k testKey) sign(t *testing.T) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", k.kid))
	require.NoError(t, err)
	obj, err := s.Sign([]byte(`{"sub":"x"}`))
	require.NoError(t, err)
	tok, err := obj.CompactSerialize()
	require.NoError(t, err)
	return tok
}

// The key set asks the provider only for an unknown key id, at most once
// per minRefresh, and once its keys are maxAge old; a known key id with a
// bad signature costs nothing; a provider that cannot be reached leaves
// the keys held in force.
func TestKeySetFetches(t *testing.T) {
	a, b, stranger := newTestKey(t, "a"), newTestKey(t, "b"), newTestKey(t, "a")
	srv := &jwksServer{keys: []jose.JSONWebKey{a.public()}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	now := time.Unix(1_000_000, 0)
	ks := &keySet{url: hs.URL, client: hs.Client(), algs: []jose.SignatureAlgorithm{jose.ES256},
		minRefresh: 10 * time.Second, maxAge: 5 * time.Minute, now: func() time.Time { return now }}
	ctx := context.Background()
	verify := func(tok string) error { _, err := ks.VerifySignature(ctx, tok); return err }

	require.NoError(t, verify(a.sign(t)))
	assert.Equal(t, 1, srv.count(), "the first call fetches")
	for range 100 {
		assert.Error(t, verify(stranger.sign(t)), "a known key id, another key's signature")
	}
	assert.Equal(t, 1, srv.count(), "a bad signature of a known key id fetches nothing")

	// Key b appears at the provider: a token of it is refused until
	// minRefresh has passed since the last fetch, then fetched once.
	srv.mu.Lock()
	srv.keys = append(srv.keys, b.public())
	srv.mu.Unlock()
	assert.ErrorIs(t, verify(b.sign(t)), errUnknownKey)
	assert.Equal(t, 1, srv.count())
	now = now.Add(10 * time.Second)
	require.NoError(t, verify(b.sign(t)))
	assert.Equal(t, 2, srv.count())
	for i := range 100 {
		now = now.Add(100 * time.Millisecond)
		verify(newTestKey(t, string(rune('c'+i%20))).sign(t))
	}
	assert.Equal(t, 3, srv.count(), "unknown key ids for 10 s: one fetch")

	// Key a removed at the provider: trusted until the keys are maxAge
	// old, then refused.
	srv.mu.Lock()
	srv.keys = []jose.JSONWebKey{b.public()}
	srv.mu.Unlock()
	now = now.Add(4 * time.Minute)
	require.NoError(t, verify(a.sign(t)))
	now = now.Add(time.Minute)
	assert.Error(t, verify(a.sign(t)), "a removed key, once the keys are maxAge old")
	require.NoError(t, verify(b.sign(t)))

	// The provider down: the keys held stay in force, asked again at
	// most once per minRefresh.
	srv.mu.Lock()
	srv.down = true
	srv.mu.Unlock()
	n := srv.count()
	now = now.Add(6 * time.Minute)
	for range 50 {
		require.NoError(t, verify(b.sign(t)))
	}
	assert.Equal(t, n+1, srv.count())
}

// A caller that goes away at once (a reset call, a 1 ms deadline) does not
// end the fetch it started, nor hold off the next one: the keys are
// fetched all the same.
func TestKeySetFetchOutlivesTheCaller(t *testing.T) {
	a, b := newTestKey(t, "a"), newTestKey(t, "b")
	srv := &jwksServer{keys: []jose.JSONWebKey{a.public()}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	now := time.Unix(1_000_000, 0)
	ks := &keySet{url: hs.URL, client: hs.Client(), algs: []jose.SignatureAlgorithm{jose.ES256},
		minRefresh: 10 * time.Second, maxAge: 5 * time.Minute, now: func() time.Time { return now }}
	_, err := ks.VerifySignature(context.Background(), a.sign(t))
	require.NoError(t, err)
	srv.mu.Lock()
	srv.keys = []jose.JSONWebKey{b.public()}
	srv.mu.Unlock()
	now = now.Add(time.Minute)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ks.VerifySignature(gone, newTestKey(t, "x").sign(t))
	require.Error(t, err)
	_, err = ks.VerifySignature(context.Background(), b.sign(t))
	require.NoError(t, err, "the fetch the gone caller started brought key b")
	_, err = ks.VerifySignature(context.Background(), a.sign(t))
	assert.Error(t, err, "and dropped the removed key a")
}
