package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/oidcauth"
)

func oidcConfig(t *testing.T, p *oidctest.Provider) *oidcauth.Config {
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte(oidctest.ClientSecret+"\n"), 0o600))
	return &oidcauth.Config{Issuer: p.Issuer, ClientID: oidctest.ClientID, ClientSecretFile: secret,
		Audience: oidctest.Resource, CAFile: p.CAFile, Scopes: []string{"email", "profile"}, Leeway: time.Second,
		AllowedClients: []string{oidctest.ServiceID},
		// These tests log many accounts in from one address; the default
		// budget is tested in attack_test.go.
		ProviderBurstPerClient: 1000}
}

// login runs flwr login's device flow through the gateway, completing the
// sign-in at the provider's own pages as account.
func login(t *testing.T, r *rig, p *oidctest.Provider, account string) *control.Tokens {
	t.Helper()
	c := r.dialProto(t, r.control, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The sign-in finishes before the first poll, as a quick user's would.
	tok, err := control.Login(ctx, c, func(uri string, _ time.Duration) {
		p.CompleteDeviceLogin(t, uri, account)
	})
	require.NoError(t, err)
	return tok
}

// dialProto dials with the proto codec (for the login methods).
func (r *rig) dialProto(t *testing.T, addr string, creds *control.Credentials) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tlsCreds(r))}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds), grpc.WithUnaryInterceptor(creds.UnaryInterceptor()))
	}
	c, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func listRuns(c *grpc.ClientConn, md ...string) (metadata.MD, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var header metadata.MD
	req, out := []byte{}, []byte{} // an empty ListRunsRequest: every run
	err := c.Invoke(ctx, "/flwr.proto.Control/ListRuns", &req, &out, grpc.Header(&header))
	return header, err
}

func TestAccountLoginWithARealProvider(t *testing.T) {
	t.Parallel()
	// Tokens live 60 s, refreshed ones 600 s. They expire on the
	// gateway's clock, which the test moves past 60 s, so no step waits
	// and none depends on how soon after its issue a token is used.
	p := oidctest.Start(t, oidctest.State{AccessTTL: 60, RefreshedAccessTTL: 600, HoldKey: true})
	policy := authz.Default()
	policy.RolesClaim = "groups"
	policy.Roles["service"] = authz.Role{Methods: []string{"StartRun", "ListRuns"}}
	var ahead atomic.Int64 // how far the gateway's clock is ahead of time.Now
	r := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
		c.OIDC.JWKSMinRefresh = 50 * time.Millisecond // the key rotation below comes soon after start
		c.Policy = policy
	})
	raw := r.dial(t, r.control, nil)

	// Without a login nothing gets through.
	before := r.up.Count()
	_, err := listRuns(raw)
	wantStatus(t, err, codes.Unauthenticated, "not logged in, or the login has expired: run flwr login")

	tok := login(t, r, p, "alice")
	assert.Contains(t, tok.Access, ".", "a JWT access token")
	_, err = listRuns(raw, gateway.HeaderAccessToken, tok.Access, gateway.HeaderRefreshToken, tok.Refresh)
	require.NoError(t, err)
	assert.Equal(t, before+1, r.up.Count())
	seen := r.up.Calls()[len(r.up.Calls())-1]
	assert.Empty(t, seen.Metadata.Get(gateway.HeaderAccessToken), "the tokens stay at the gateway")
	assert.Empty(t, seen.Metadata.Get(gateway.HeaderRefreshToken))
	logs := r.logs.String()
	assert.Contains(t, logs, "sub=alice")
	assert.Contains(t, logs, "groups=admin")
	assert.NotContains(t, logs, tok.Access)
	assert.NotContains(t, logs, tok.Refresh)

	// Forged and foreign tokens, each refused before the upstream.
	before = r.up.Count()
	for name, access := range forgedTokens(t, p, tok.Access) {
		_, err := listRuns(raw, gateway.HeaderAccessToken, access)
		wantStatus(t, err, codes.Unauthenticated, "")
		assert.NotContains(t, r.logs.String(), access, name)
	}
	assert.Equal(t, before, r.up.Count())

	// A service's token from the client-credentials grant, fetched by the
	// Go credentials and sent as it is.
	svc, fixed, svcToken := serviceClients(t, r, p)
	run := startRun(t, svc, nil)
	m, _ := runsOf(t, svc, nil)
	assert.Equal(t, []uint64{run}, runIDs(m))
	assert.Equal(t, "client:"+oidctest.ServiceID, m.RunDict[run].FlwrAid, "a token whose sub is its client_id is the client's")
	_, err = ctl(svc, nil, "StopRun", &flwrpb.StopRunRequest{RunId: run})
	wantStatus(t, err, codes.PermissionDenied, "StopRun needs the role admin or member (this account has roles service)")
	_, err = ctl(fixed, nil, "ListRuns", &flwrpb.ListRunsRequest{})
	require.NoError(t, err)

	// Expired: refused without a refresh token; with one, refreshed, and
	// the new pair comes back in the header, as the CLI reads it.
	ahead.Store(int64(62 * time.Second)) // past the tokens' 60 s and the 1 s leeway
	_, err = listRuns(raw, gateway.HeaderAccessToken, tok.Access)
	wantStatus(t, err, codes.Unauthenticated, "")
	c := r.dial(t, r.control, nil)
	h, err := listRuns(c, gateway.HeaderAccessToken, tok.Access, gateway.HeaderRefreshToken, tok.Refresh)
	require.NoError(t, err)
	fresh := h.Get(gateway.HeaderAccessToken)
	require.Len(t, fresh, 1)
	assert.NotEqual(t, tok.Access, fresh[0])
	require.Len(t, h.Get(gateway.HeaderRefreshToken), 1)
	lifetime := func(jwt string) int64 {
		body, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[1])
		require.NoError(t, err)
		var c struct{ Iat, Exp int64 }
		require.NoError(t, json.Unmarshal(body, &c))
		return c.Exp - c.Iat
	}
	assert.Equal(t, []int64{60, 600}, []int64{lifetime(tok.Access), lifetime(fresh[0])}, "a login's token, a refreshed one")
	_, err = listRuns(raw, gateway.HeaderAccessToken, fresh[0])
	require.NoError(t, err, "the refreshed token works")
	// The service's fixed token has expired too. (Its credentials fetch a
	// new token by their own clock: tokens' TestClientCredentials.)
	_, err = ctl(fixed, nil, "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
	assert.NotContains(t, r.logs.String(), svcToken)
	// The clock stays ahead (never back: the budgets and the key set's
	// fetch times would stand still): the tokens below outlive it.

	tok2 := login(t, r, p, "bob")
	// A token the provider really issued, for another audience than the
	// gateway's, is refused (a second gateway, on the same provider).
	r2 := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.Audience = "https://another-service"
	})
	_, err = listRuns(r2.dial(t, r2.control, nil), gateway.HeaderAccessToken, tok2.Access)
	wantStatus(t, err, codes.Unauthenticated, "")
	assert.Zero(t, r2.up.Count())

	// The provider down: a valid login keeps working, a new one is
	// refused with a clear status.
	// (A token signed with the provider's key, which needs no login.)
	lasting := p.Mint(t, map[string]any{"sub": "bob", "groups": []string{"member"}, "exp": time.Now().Add(10 * time.Minute).Unix()})
	p.Stop()
	_, err = listRuns(raw, gateway.HeaderAccessToken, lasting)
	require.NoError(t, err, "keys are cached: no call to the provider")
	_, err = control.Login(context.Background(), r.dialProto(t, r.control, nil), func(string, time.Duration) {})
	wantStatus(t, err, codes.Unavailable, "")
	assert.Contains(t, err.Error(), "identity provider cannot be reached")

	// A key rotation at the provider (new keys on restart) is picked up
	// without restarting the gateway.
	p.Restart(t, oidctest.State{AccessTTL: 600, AccessAlg: "ES256"}) // new keys, ES256 tokens
	tok3 := login(t, r, p, "alice")
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok3.Access, ".")[0])
	assert.Contains(t, string(hdr), `"alg":"ES256"`)
	_, err = listRuns(raw, gateway.HeaderAccessToken, tok3.Access)
	require.NoError(t, err, "a token of the new key verifies")
}

// forgedTokens returns tokens the gateway must refuse: garbage, alg none,
// HS256 keyed with the provider's public key, a key the JWKS lacks, a
// token of another issuer, and one for another audience.
func forgedTokens(t *testing.T, p *oidctest.Provider, good string) map[string]string {
	t.Helper()
	return forgedTokensOf(t, p.HTTPClient(), p.Issuer+"/jwks", good)
}

// forgedTokensOf is forgedTokens for the provider whose key set is at
// jwksURL.
func forgedTokensOf(t *testing.T, client *http.Client, jwksURL, good string) map[string]string {
	t.Helper()
	parts := strings.Split(good, ".")
	var claims map[string]any
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(payload, &claims))
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	out := map[string]string{
		"garbage":  "not-a-token",
		"alg none": enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".",
	}
	// HS256 with the provider's public key (as PEM) as the HMAC secret.
	resp, err := client.Get(jwksURL)
	require.NoError(t, err)
	var jwks jose.JSONWebKeySet
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&jwks))
	resp.Body.Close()
	der, err := x509.MarshalPKIXPublicKey(jwks.Keys[0].Key)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	sign := func(alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
		opts := (&jose.SignerOptions{}).WithType("at+jwt")
		if kid != "" {
			opts = opts.WithHeader("kid", kid)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
		require.NoError(t, err)
		b, _ := json.Marshal(c)
		obj, err := s.Sign(b)
		require.NoError(t, err)
		tok, err := obj.CompactSerialize()
		require.NoError(t, err)
		return tok
	}
	out["HS256 with the public key"] = sign(jose.HS256, pubPEM, jwks.Keys[0].KeyID, claims)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	out["unknown key"] = sign(jose.ES256, stranger, "not-in-the-jwks", claims)
	other := map[string]any{}
	for k, v := range claims {
		other[k] = v
	}
	other["iss"] = "https://127.0.0.1:1"
	out["another issuer"] = sign(jose.ES256, stranger, "", other)
	aud := map[string]any{}
	for k, v := range claims {
		aud[k] = v
	}
	aud["aud"] = "https://another-service"
	out["another audience (re-signed, so also an unknown key)"] = sign(jose.ES256, stranger, "x", aud)
	return out
}

// A refresh happens for an opaque token the provider no longer calls
// active, as for an expired JWT.
func refreshOpaque(t *testing.T, p *oidctest.Provider) {
	r := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p); c.RefusalDelay = new(time.Duration) })
	tok := login(t, r, p, "bob")
	raw := r.dial(t, r.control, nil)
	h, err := listRuns(raw, gateway.HeaderAccessToken, "no-longer-active", gateway.HeaderRefreshToken, tok.Refresh)
	require.NoError(t, err, "refreshed")
	require.Len(t, h.Get(gateway.HeaderAccessToken), 1)
	fresh := h.Get(gateway.HeaderAccessToken)[0]
	assert.NotContains(t, fresh, ".", "an opaque token again")
	_, err = listRuns(raw, gateway.HeaderAccessToken, fresh)
	require.NoError(t, err)

	// A caller whose budget runs out after the refresh still gets the
	// refreshed pair: checking a token just issued to the gateway costs
	// none (the provider has retired the old refresh token).
	tight := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.ProviderBurstPerClient, c.OIDC.ProviderRatePerClient = 2, 0.001
		c.RefusalDelay = new(time.Duration)
	})
	h, err = listRuns(tight.dial(t, tight.control, nil), gateway.HeaderAccessToken, "also-no-longer-active",
		gateway.HeaderRefreshToken, h.Get(gateway.HeaderRefreshToken)[0])
	require.NoError(t, err, "refreshed within a budget of two requests")
	require.Len(t, h.Get(gateway.HeaderAccessToken), 1)
}

// A provider that cannot be reached during a refresh is UNAVAILABLE, not
// "run flwr login". It stops the provider.
func refreshDuringAnOutage(t *testing.T, p *oidctest.Provider) {
	s := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p); c.RefusalDelay = new(time.Duration) })
	tok := login(t, s, p, "alice")
	expired := p.Mint(t, map[string]any{"sub": "alice", "groups": []string{"admin"}, "exp": time.Now().Unix() - 600})
	p.Stop()
	_, err := listRuns(s.dial(t, s.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, tok.Refresh)
	wantStatus(t, err, codes.Unavailable, "the identity provider cannot be reached to check the login; try again later")
}

// An accepted opaque token's check is cached: the provider is not asked
// again within the cache time. It stops the provider.
func opaqueCachedThenDown(t *testing.T, p *oidctest.Provider) {
	r := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p) })
	tok := login(t, r, p, "bob")
	assert.NotContains(t, tok.Access, ".", "an opaque token")
	raw := r.dial(t, r.control, nil)
	_, err := listRuns(raw, gateway.HeaderAccessToken, tok.Access)
	require.NoError(t, err)
	assert.Contains(t, r.logs.String(), "sub=bob")
	p.Stop()
	_, err = listRuns(raw, gateway.HeaderAccessToken, tok.Access)
	require.NoError(t, err, "cached: the provider is not asked again within the cache time")
	_, err = listRuns(raw, gateway.HeaderAccessToken, tok.Access+"x")
	wantStatus(t, err, codes.Unavailable, "the identity provider cannot be reached to check the login; try again later")
}
