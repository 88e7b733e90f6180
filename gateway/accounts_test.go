package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc/codes"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/accountstest"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/redistest"
	"github.com/nodekeys/nodekeys/tokens"
)

// The hash's parameters are read from each hash: cheap ones keep the
// tests quick and check the same.
var cheapHash = accounts.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

// accountFile writes an account file with alice (admin), bob (member)
// and the service client ci (member), whose secret it returns.
func accountFile(t *testing.T) (file, ciSecret string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "accounts.json")
	_, err := accounts.Add(file, "alice", []string{"admin"}, "alice@example.org", "alice's password", cheapHash)
	require.NoError(t, err)
	_, err = accounts.Add(file, "bob", []string{"member"}, "", "bob's password", cheapHash)
	require.NoError(t, err)
	ciSecret, err = accounts.AddClient(file, "ci", []string{"member"})
	require.NoError(t, err)
	return file, ciSecret
}

// accountsLogin runs flwr login's device flow through the gateway's
// Control API, signing in at the gateway's own page as name; rewrite, if
// not nil, changes the address the browser opens (another replica).
func accountsLogin(t *testing.T, r *rig, name, password string, rewrite func(string) string) *control.Tokens {
	t.Helper()
	b := accountstest.NewBrowser(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.caPool}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := control.Login(ctx, r.dialProto(t, r.control, nil), func(uri string, expires time.Duration) {
		assert.True(t, strings.HasPrefix(uri, r.cfg.Accounts.Issuer+"/device?user_code="), uri)
		assert.Equal(t, accounts.DefaultDeviceCodeLifetime, expires)
		if rewrite != nil {
			uri = rewrite(uri)
		}
		res := b.SignIn(t, uri, name, password, "")
		require.True(t, res.SignedIn(), "HTTP %d: %.400s", res.Status, res.Page)
	})
	require.NoError(t, err)
	return tok
}

// resign signs claims, changed by change, with the gateway's current
// signing key from keysFile: a token the provider could have issued.
func resign(t *testing.T, keysFile, token string, change map[string]any) string {
	t.Helper()
	b, err := os.ReadFile(keysFile)
	require.NoError(t, err)
	return resignWith(t, b, token, change)
}

// resignWith is resign with the key ring's JSON.
func resignWith(t *testing.T, ringJSON []byte, token string, change map[string]any) string {
	t.Helper()
	var ring struct {
		Keys []struct {
			ID    string `json:"kid"`
			PKCS8 []byte `json:"pkcs8"`
		} `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(ringJSON, &ring))
	k := ring.Keys[len(ring.Keys)-1]
	key, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
	require.NoError(t, err)
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	require.NoError(t, err)
	claims := map[string]any{}
	require.NoError(t, json.Unmarshal(payload, &claims))
	for name, v := range change {
		claims[name] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key.(*ecdsa.PrivateKey)},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	require.NoError(t, err)
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	require.NoError(t, err)
	out, err := obj.CompactSerialize()
	require.NoError(t, err)
	return out
}

// Account login with the gateway's own provider, end to end over the
// network: flwr login's device flow through the Control API, the sign-in
// at the gateway's page over HTTPS, roles and run ownership, a service's
// client credentials, refresh with rotation, and the same forged-token
// table as an external provider's.
func TestAccountsAtTheGateway(t *testing.T) {
	t.Parallel()
	file, ciSecret := accountFile(t)
	r := newRig(t, 1, func(c *gateway.Config) {
		c.Accounts = &accounts.Config{File: file}
		c.RefusalDelay = new(time.Duration)
	})
	raw := r.dial(t, r.control, nil)
	_, err := listRuns(raw)
	wantStatus(t, err, codes.Unauthenticated, "not logged in, or the login has expired: run flwr login")

	alice := accountsLogin(t, r, "alice", "alice's password", nil)
	_, err = listRuns(raw, gateway.HeaderAccessToken, alice.Access, gateway.HeaderRefreshToken, alice.Refresh)
	require.NoError(t, err)
	logs := r.logs.String()
	assert.Contains(t, logs, "name=alice")
	assert.Contains(t, logs, "groups=admin")
	for _, secret := range []string{alice.Access, alice.Refresh, "alice's password", ciSecret} {
		assert.NotContains(t, logs, secret)
	}

	// Roles and run ownership, as with an external provider.
	bob := accountsLogin(t, r, "bob", "bob's password", nil)
	bobRun := startRun(t, raw, user(bob.Access))
	aliceRun := startRun(t, raw, user(alice.Access))
	m, _ := runsOf(t, raw, user(bob.Access))
	assert.Equal(t, []uint64{bobRun}, runIDs(m), "a member sees its own runs")
	m, _ = runsOf(t, raw, user(alice.Access))
	assert.ElementsMatch(t, []uint64{bobRun, aliceRun}, runIDs(m), "an admin sees every run")
	_, err = ctl(raw, user(bob.Access), "StopRun", &flwrpb.StopRunRequest{RunId: aliceRun})
	wantStatus(t, err, codes.PermissionDenied, "")

	// A service with the client-credentials grant, through the Go helper.
	pool := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.caPool}}}
	cc := &clientcredentials.Config{ClientID: "ci", ClientSecret: ciSecret, TokenURL: r.cfg.Accounts.Issuer + "/oauth/token"}
	svc := r.dial(t, r.control, tokens.ClientCredentials(context.WithValue(context.Background(), oauth2.HTTPClient, pool), cc, 0))
	run := startRun(t, svc, nil)
	m, _ = runsOf(t, svc, nil)
	assert.Equal(t, []uint64{run}, runIDs(m))
	assert.Equal(t, "client:ci", m.RunDict[run].FlwrAid)

	// Forged and foreign tokens are refused, before the upstream: the
	// external provider's table, and tokens signed with the gateway's own
	// key but for another issuer, audience or client, or expired.
	keysFile := strings.TrimSuffix(file, ".json") + "-keys.json"
	forged := forgedTokensOf(t, pool, r.cfg.Accounts.Issuer+"/keys", alice.Access)
	forged["another issuer"] = resign(t, keysFile, alice.Access, map[string]any{"iss": "https://127.0.0.1:1"})
	forged["another audience"] = resign(t, keysFile, alice.Access, map[string]any{"aud": []string{"https://another-service"}})
	forged["another client"] = resign(t, keysFile, alice.Access, map[string]any{"client_id": "stranger-app"})
	forged["expired"] = resign(t, keysFile, alice.Access, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	before := r.up.Count()
	for name, access := range forged {
		_, err := listRuns(raw, gateway.HeaderAccessToken, access)
		wantStatus(t, err, codes.Unauthenticated, "")
		assert.NotContains(t, r.logs.String(), access, name)
	}
	assert.Equal(t, before, r.up.Count())

	// Refresh: an expired token with its refresh token gets a new pair in
	// the header, as flwr reads it; the old refresh token, used again,
	// revokes the family, so the new one stops working too.
	expired := forged["expired"]
	h, err := listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, alice.Refresh)
	require.NoError(t, err)
	require.Len(t, h.Get(gateway.HeaderRefreshToken), 1)
	next := h.Get(gateway.HeaderRefreshToken)[0]
	assert.NotEqual(t, alice.Refresh, next, "rotated")
	_, err = listRuns(raw, gateway.HeaderAccessToken, h.Get(gateway.HeaderAccessToken)[0])
	require.NoError(t, err, "the refreshed token works")
	_, err = listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, alice.Refresh)
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, next)
	wantStatus(t, err, codes.Unauthenticated, "")

	// An account disabled mid-session is refused at its next refresh.
	require.NoError(t, accounts.SetDisabled(file, "bob", true))
	bobExpired := resign(t, keysFile, bob.Access, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	_, err = listRuns(r.dial(t, r.control, nil), gateway.HeaderAccessToken, bobExpired, gateway.HeaderRefreshToken, bob.Refresh)
	wantStatus(t, err, codes.Unauthenticated, "")
}

// With redis:, a login on one replica works on every replica: the sign-in
// is made at replica B's page for a flwr login started at replica A, the
// tokens A hands out work at B and refresh there, and a name locked at A
// is locked at B.
func TestAccountsSharedByReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	file, _ := accountFile(t)
	shared := func(c *gateway.Config) {
		c.Redis = &shared.Config{Addrs: []string{srv.Addr}}
		c.RefusalDelay = new(time.Duration)
	}
	// The replicas' clock, which the test stops while it checks a lock
	// (a second long), however slow the machine.
	var stopped atomic.Int64
	now := func() time.Time {
		if at := stopped.Load(); at != 0 {
			return time.Unix(0, at)
		}
		return time.Now()
	}
	a := newRig(t, 1, shared, func(c *gateway.Config) { c.Accounts = &accounts.Config{File: file, Now: now} })
	b := newRig(t, 1, shared, func(c *gateway.Config) {
		c.Accounts = &accounts.Config{File: file, Issuer: a.cfg.Accounts.Issuer, Now: now} // one address, behind a balancer
		c.TLSCert, c.TLSKey = a.cfg.TLSCert, a.cfg.TLSKey                                  // and one certificate
	})
	b.caPool = a.caPool
	atB := func(uri string) string {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		u.Host = b.accounts
		return u.String()
	}
	tok := accountsLogin(t, a, "alice", "alice's password", atB)
	_, err := listRuns(b.dial(t, b.control, nil), gateway.HeaderAccessToken, tok.Access)
	require.NoError(t, err, "replica B knows replica A's signing key")
	_, err = os.Stat(strings.TrimSuffix(file, ".json") + "-keys.json")
	assert.True(t, os.IsNotExist(err), "with redis, the keys are kept there, not in a file")

	// Refreshed at B, with the family A started; the old refresh token,
	// used again at A, revokes it.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ring, err := rdb.Get(context.Background(), a.cfg.Redis.Prefix+"accounts:keys").Bytes()
	require.NoError(t, err)
	expired := resignWith(t, ring, tok.Access, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	h, err := listRuns(b.dial(t, b.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, tok.Refresh)
	require.NoError(t, err)
	require.Len(t, h.Get(gateway.HeaderRefreshToken), 1)
	_, err = listRuns(a.dial(t, a.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, tok.Refresh)
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = listRuns(b.dial(t, b.control, nil), gateway.HeaderAccessToken, expired, gateway.HeaderRefreshToken, h.Get(gateway.HeaderRefreshToken)[0])
	wantStatus(t, err, codes.Unauthenticated, "")

	// Failures at A lock the name at B, until the lock's end on the
	// replicas' clock.
	browser := accountstest.NewBrowser(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.caPool}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = control.Login(ctx, a.dialProto(t, a.control, nil), func(uri string, _ time.Duration) {
		stopped.Store(time.Now().UnixNano())
		for range accounts.FreeAccountFailures {
			assert.Equal(t, http.StatusUnauthorized, browser.SignIn(t, uri, "bob", "a guess", "").Status)
		}
		res := browser.SignIn(t, atB(uri), "bob", "bob's password", "")
		assert.Equal(t, http.StatusTooManyRequests, res.Status, "locked at B too")
		stopped.Add(int64(time.Second))
		require.True(t, browser.SignIn(t, atB(uri), "bob", "bob's password", "").SignedIn(), "unlocked at its end")
		stopped.Store(0)
	})
	require.NoError(t, err)
}
