package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// otherApp is a second application at the same provider: its users' tokens
// are for it, not for the gateway.
var otherApp = oidctest.Client{ID: "other-app", Secret: "other-app-secret",
	GrantTypes: []string{oidctest.GrantDevice, oidctest.GrantRefresh, oidctest.GrantClientCredentials}}

// dialFrom dials addr from the loopback address from (127.0.0.0/8 is all
// this machine's), so that calls have a client address of their own;
// protoCodec picks the codec of the login methods.
func (r *rig) dialFrom(t *testing.T, addr, from string, protoCodec bool) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tlsCreds(r)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) })}
	if !protoCodec {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())))
	}
	c, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTokenChecksJWT: the token checks against a provider that issues
// JWT access tokens, with a second application (other-app) and a key the
// test holds; one provider for all, stopped by the last subtest.
func TestTokenChecksJWT(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.State{HoldKey: true, Clients: []oidctest.Client{otherApp}})
	t.Run("another application's tokens", func(t *testing.T) { anotherApplication(t, p, false) })
	t.Run("token times", func(t *testing.T) { tokenTimes(t, p) })
	t.Run("Control refusals delayed", func(t *testing.T) { controlRefusalsDelayed(t, p) })
	t.Run("hostile calls", func(t *testing.T) { hostileCalls(t, p) })
	t.Run("the provider down during a refresh", func(t *testing.T) { refreshDuringAnOutage(t, p) })
}

// TestTokenChecksOpaque: the same against a provider that issues opaque
// access tokens, checked by introspection.
func TestTokenChecksOpaque(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.State{Opaque: true, Clients: []oidctest.Client{otherApp}})
	t.Run("another application's tokens", func(t *testing.T) { anotherApplication(t, p, true) })
	t.Run("refresh of a token no longer active", func(t *testing.T) { refreshOpaque(t, p) })
	t.Run("cached, then the provider down", func(t *testing.T) { opaqueCachedThenDown(t, p) })
}

// The high finding: a token the provider issued to another application,
// opaque or JWT, is refused; the gateway's own still log in, by JWT and by
// introspection of an opaque token.
func anotherApplication(t *testing.T, p *oidctest.Provider, opaque bool) {
	r := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p); c.RefusalDelay = new(time.Duration) })
	raw := r.dial(t, r.control, nil)

	own := login(t, r, p, "alice")
	assert.Equal(t, !opaque, strings.Count(own.Access, ".") == 2)
	_, err := listRuns(raw, gateway.HeaderAccessToken, own.Access)
	require.NoError(t, err, "the gateway's own login")

	before := r.up.Count()
	foreign := map[string]string{
		"opaque, signed in to other-app":         p.DeviceLogin(t, otherApp, "alice", "").Access,
		"JWT for the gateway's audience":         p.DeviceLogin(t, otherApp, "alice", oidctest.Resource).Access,
		"JWT for another API":                    p.DeviceLogin(t, otherApp, "alice", "https://other-api").Access,
		"client credentials, opaque":             p.ClientCredentials(t, otherApp, ""),
		"client credentials, gateway's audience": p.ClientCredentials(t, otherApp, oidctest.Resource),
	}
	for what, tok := range foreign {
		_, err := listRuns(raw, gateway.HeaderAccessToken, tok)
		wantStatus(t, err, codes.Unauthenticated, "")
		_, err = listRuns(raw, "authorization", "Bearer "+tok)
		wantStatus(t, err, codes.Unauthenticated, "")
		assert.NotContains(t, r.logs.String(), tok, what)
	}
	assert.Equal(t, before, r.up.Count(), "nothing reached the SuperLink")
	assert.Contains(t, r.logs.String(), `issued to the client \"other-app\"`)

	// Another application's token with a refresh token makes no refresh:
	// it was refused for whose it is, not for its age.
	asked := p.Counts(t)["/token"]
	for _, tok := range foreign {
		_, err := listRuns(raw, gateway.HeaderAccessToken, tok, gateway.HeaderRefreshToken, "a-refresh-token")
		wantStatus(t, err, codes.Unauthenticated, "")
	}
	assert.Equal(t, asked, p.Counts(t)["/token"], "no refresh request")
}

// A provider without introspection: opaque tokens are refused, and said so
// at start, unless the operator turns the userinfo check on, which is
// warned about.
func TestOpaqueTokensWithoutIntrospection(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.State{Opaque: true, NoIntrospection: true, Clients: []oidctest.Client{otherApp}})
	strict := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p); c.RefusalDelay = new(time.Duration) })
	assert.Contains(t, strict.logs.String(), "offers no token introspection: opaque access tokens are refused")
	own := login(t, strict, p, "bob")
	_, err := listRuns(strict.dial(t, strict.control, nil), gateway.HeaderAccessToken, own.Access)
	wantStatus(t, err, codes.Unauthenticated, "")

	loose := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.OpaqueTokens = "userinfo"
	})
	assert.Contains(t, loose.logs.String(), "a token the provider issued to ANY application passes")
	_, err = listRuns(loose.dial(t, loose.control, nil), gateway.HeaderAccessToken, own.Access)
	require.NoError(t, err, "userinfo, as the operator chose")

	cfg := oidcConfig(t, p)
	cfg.OpaqueTokens = "sometimes"
	_, err = gateway.New(context.Background(), gateway.Config{TLSCert: "x", TLSKey: "y", Allowlist: []string{"z"}, UpstreamInsecure: true, OIDC: cfg, StateFile: "s"}, testLog(t))
	assert.ErrorContains(t, err, "opaque_tokens must be introspect, userinfo or refuse")
}

// The leeway is one setting, for expiry, not-before and issued-at alike.
func tokenTimes(t *testing.T, p *oidctest.Provider) {
	r := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.Leeway = 10 * time.Second
		c.RefusalDelay = new(time.Duration)
	})
	raw := r.dial(t, r.control, nil)
	now := time.Now().Unix()
	for what, claims := range map[string]map[string]any{
		"nbf a minute ahead":  {"nbf": now + 60},
		"iat a minute ahead":  {"iat": now + 60},
		"expired a minute":    {"exp": now - 60},
		"no client, no aud":   {"client_id": nil, "aud": "https://another-service"},
		"another client":      {"client_id": "other-app"},
		"azp another client":  {"client_id": nil, "azp": "other-app"},
		"nbf ahead, a string": {"nbf": fmt.Sprint(now + 60)},
		"no expiry":           {"exp": nil},
	} {
		claims["sub"], claims["groups"] = "mallory", []string{"admin"}
		_, err := listRuns(raw, gateway.HeaderAccessToken, p.Mint(t, claims))
		wantStatus(t, err, codes.Unauthenticated, "")
		assert.NotContains(t, r.logs.String(), "sub=mallory", what)
	}
	// A login through the gateway's own client that names no subject
	// would make every user one account.
	_, err := listRuns(raw, gateway.HeaderAccessToken, p.Mint(t, map[string]any{"sub": nil, "groups": []string{"admin"}}))
	wantStatus(t, err, codes.Unauthenticated, "")
	for what, claims := range map[string]map[string]any{
		"nbf and iat within the leeway": {"nbf": now + 5, "iat": now + 5},
		"expired within the leeway":     {"exp": now - 5},
		"no client, the audience":       {"client_id": nil},
		"an allowed client":             {"client_id": oidctest.ServiceID},
	} {
		claims["sub"], claims["groups"] = "carol", []string{"admin"}
		_, err := listRuns(raw, gateway.HeaderAccessToken, p.Mint(t, claims))
		require.NoError(t, err, what)
	}
}

// Control refusals are held back as Fleet refusals are.
func controlRefusalsDelayed(t *testing.T, p *oidctest.Provider) {
	delay := 400 * time.Millisecond
	r := newRig(t, 1, func(c *gateway.Config) { c.OIDC = oidcConfig(t, p); c.RefusalDelay = &delay })
	raw := r.dial(t, r.control, nil)
	_, err := listRuns(raw, gateway.HeaderAccessToken, "warm-up") // the connection made before the timing
	wantStatus(t, err, codes.Unauthenticated, "")
	start := time.Now()
	_, err = listRuns(raw, gateway.HeaderAccessToken, "not-a-token")
	wantStatus(t, err, codes.Unauthenticated, "")
	assert.GreaterOrEqual(t, time.Since(start), delay)
}

// hostile runs n calls of f at once, 32 at a time.
func hostile(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Hostile calls of each kind, each kind from a client address of its own,
// make the gateway ask the provider at most 10 times per 1,000; a
// legitimate login from another address is unaffected.
func hostileCalls(t *testing.T, p *oidctest.Provider) {
	n := 200
	if peer.Long() {
		n = 1000
	}
	r := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.ProviderBurstPerClient = 0 // the default
		c.RefusalDelay = new(time.Duration)
	})
	budget := oidcauth.Config{}
	budget.Defaults()
	good := login(t, r, p, "alice")
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	expired := p.Mint(t, map[string]any{"sub": "alice", "exp": time.Now().Unix() - 3600, "iat": time.Now().Unix() - 7200})
	parts := strings.Split(good.Access, ".")

	kinds := []struct {
		name  string
		paths []string
		call  func(raw, pc *grpc.ClientConn, i int) error
	}{
		{"JWT of a random key id", []string{"/jwks"}, func(raw, _ *grpc.ClientConn, i int) error {
			_, err := listRuns(raw, gateway.HeaderAccessToken, signWith(t, stranger, random(8), p.Issuer))
			return err
		}},
		{"JWT of the right key id, bad signature", []string{"/jwks"}, func(raw, _ *grpc.ClientConn, i int) error {
			_, err := listRuns(raw, gateway.HeaderAccessToken, parts[0]+"."+parts[1]+"."+random(64))
			return err
		}},
		{"random opaque tokens", []string{"/token/introspection", "/me"}, func(raw, _ *grpc.ClientConn, i int) error {
			_, err := listRuns(raw, gateway.HeaderAccessToken, random(24))
			return err
		}},
		{"one opaque token, sent again", []string{"/token/introspection", "/me"}, func(raw, _ *grpc.ClientConn, i int) error {
			_, err := listRuns(raw, gateway.HeaderAccessToken, "the-same-opaque-token")
			return err
		}},
		{"an expired token with random refresh tokens", []string{"/token"}, func(raw, _ *grpc.ClientConn, i int) error {
			_, err := listRuns(raw, gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, random(24))
			return err
		}},
		{"GetLoginDetails", []string{"/device/auth"}, func(_, pc *grpc.ClientConn, i int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return pc.Invoke(ctx, "/flwr.proto.Control/GetLoginDetails", &flwrpb.GetLoginDetailsRequest{}, &flwrpb.GetLoginDetailsResponse{})
		}},
		{"GetAuthTokens of random device codes", []string{"/token"}, func(_, pc *grpc.ClientConn, i int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return pc.Invoke(ctx, "/flwr.proto.Control/GetAuthTokens", &flwrpb.GetAuthTokensRequest{DeviceCode: random(16)}, &flwrpb.GetAuthTokensResponse{})
		}},
	}
	upBefore := r.up.Count()
	for k, kind := range kinds {
		from := fmt.Sprintf("127.0.0.%d", 2+k)
		raw, pc := r.dialFrom(t, r.control, from, false), r.dialFrom(t, r.control, from, true)
		before := p.Counts(t)
		var mu sync.Mutex
		codesSeen := map[codes.Code]int{}
		start := time.Now()
		hostile(n, func(i int) {
			err := kind.call(raw, pc, i)
			mu.Lock()
			codesSeen[status.Code(err)]++
			mu.Unlock()
		})
		after := p.Counts(t)
		asked := 0
		for _, path := range kind.paths {
			asked += after[path] - before[path]
		}
		took := time.Since(start)
		t.Logf("%-45s %4d calls in %5.1f s: %2d provider requests (%v); statuses %v", kind.name, n, took.Seconds(), asked, kind.paths, codesSeen)
		// The bound is the address's budget: its burst, and what its rate
		// refills while the calls go on. At full speed that is at most 10
		// per 1,000 calls; a loaded machine that takes longer over them
		// refills a little more.
		assert.LessOrEqual(t, asked, max(10, budget.ProviderBurstPerClient+int(budget.ProviderRatePerClient*took.Seconds())+1), kind.name)
		if kind.name != "GetLoginDetails" { // a device login started is no login
			assert.Zero(t, codesSeen[codes.OK], kind.name)
		}
	}
	assert.Equal(t, upBefore, r.up.Count(), "no hostile call reached the SuperLink")

	// A legitimate login, from the usual address, goes through, and so do
	// the calls of the login made before.
	_, err = listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, good.Access)
	require.NoError(t, err)
	c := r.dialProto(t, r.control, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := control.Login(ctx, c, func(uri string, _ time.Duration) { p.CompleteDeviceLogin(t, uri, "bob") })
	require.NoError(t, err)
	_, err = listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, tok.Access)
	require.NoError(t, err)
}

// signWith signs a JWT of iss for the gateway, with a key of key id kid.
func signWith(t *testing.T, key *ecdsa.PrivateKey, kid, iss string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	require.NoError(t, err)
	now := time.Now().Unix()
	b, _ := json.Marshal(map[string]any{"iss": iss, "aud": oidctest.Resource, "sub": "mallory", "iat": now, "exp": now + 60})
	obj, err := s.Sign(b)
	require.NoError(t, err)
	tok, err := obj.CompactSerialize()
	require.NoError(t, err)
	return tok
}
