package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is the provider's JWKS as the gateway trusts it. Unlike go-oidc's
// RemoteKeySet, which fetches the keys again after any failed signature,
// it fetches:
//   - when a token names a key id it does not hold, at most once per
//     minRefresh (so random key ids cost one request per interval, and a
//     known key id with a bad signature costs none);
//   - when the keys it holds are older than maxAge, so a key the provider
//     removed is trusted at most maxAge after its removal (while the
//     provider can be reached; when it cannot, the keys held are kept).
type keySet struct {
	url        string
	client     *http.Client
	algs       []jose.SignatureAlgorithm
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time
	onFetch    func(error)

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // the keys held were fetched then
	tried   time.Time // the last fetch, successful or not
}

// fetchTimeout bounds one fetch of the key set.
const fetchTimeout = 10 * time.Second

// errUnknownKey: a token signed by a key the provider does not list.
var errUnknownKey = errors.New("the token's key is not in the provider's key set")

// VerifySignature implements go-oidc's KeySet.
func (s *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, s.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed JWT: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a JWT needs exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := s.current(ctx, kid)
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	if kid != "" && !hasKey(keys, kid) {
		return nil, errUnknownKey
	}
	return nil, errors.New("the token's signature does not verify")
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// current returns the keys to check a token of key id kid with, fetching
// them again if they are too old, or if kid is unknown and no fetch was
// tried within minRefresh.
func (s *keySet) current(ctx context.Context, kid string) []jose.JSONWebKey {
	s.mu.Lock()
	keys, stale := s.keys, s.due(kid)
	s.mu.Unlock()
	if !stale {
		return keys
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	s.mu.Lock()
	if !s.due(kid) { // another call fetched them meanwhile
		keys = s.keys
		s.mu.Unlock()
		return keys
	}
	s.tried = s.now()
	s.mu.Unlock()
	// The fetch is the key set's, not the caller's: a caller that goes
	// away (a call reset at once, a 1 ms deadline) must not end it, or it
	// could keep the keys from ever being fetched again.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	fresh, err := s.fetch(fctx)
	if s.onFetch != nil {
		s.onFetch(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.keys, s.fetched = fresh, s.now()
	}
	return s.keys
}

// due reports whether a fetch is due; s.mu is held.
func (s *keySet) due(kid string) bool {
	now := s.now()
	if now.Sub(s.tried) < s.minRefresh {
		return false
	}
	return now.Sub(s.fetched) >= s.maxAge || (kid != "" && !hasKey(s.keys, kid))
}

// fetch reads the provider's JWKS.
func (s *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProvider, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: the key set at %s answered HTTP %d", ErrProvider, s.url, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("%w: the key set at %s does not decode: %v", ErrProvider, s.url, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use == "" || k.Use == "sig" {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
