// Package oidcauth is the server side of the account login that Flower's
// CLI speaks (flwr login), against any standard OpenID Connect provider
// (Keycloak, Dex, Auth0, Entra ID): the OAuth 2.0 device authorization
// grant (RFC 8628) for GetLoginDetails and GetAuthTokens, and, for every
// other Control call, a check of the access token the CLI sends in
// flwr-oidc-access-token, refreshed with flwr-oidc-refresh-token when it
// has expired. Its entry points are New, then Authenticator.Authenticate,
// StartLogin and PollLogin.
//
// A token is accepted only if it was issued for this gateway: its audience
// is the configured one, and the client it was issued to (client_id, or
// azp) is the gateway's own or one of AllowedClients. A token of another
// application at the same provider is refused, JWT or opaque.
//
// JWT access tokens are checked with github.com/coreos/go-oidc: issuer,
// audience, expiry, not-before and issued-at (each with the one stated
// leeway) and a signature algorithm from an allowlist (RS256, ES256 by
// default; never "none" or an HMAC), against the provider's JWKS. The JWKS
// is fetched at start, again when a token names an unknown key id (at most
// once per JWKSMinRefresh), and again once it is JWKSMaxAge old, so a key
// the provider removed is trusted at most that long.
//
// Opaque access tokens are checked by token introspection (RFC 7662) with
// the gateway's client credentials, and only active tokens of this
// gateway's audience or clients pass. A provider that offers no
// introspection gets opaque tokens refused, unless OpaqueTokens is
// "userinfo": then the userinfo endpoint decides, which any application's
// token passes.
//
// What a caller with no valid login can make the gateway ask the provider
// is bounded: a refused token or refresh token is remembered and refused
// again without asking, and every provider request made for an
// unauthenticated caller (device login, polling, opaque tokens, refresh)
// spends a budget per client address and one overall.
package oidcauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/internal/keyrate"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/internal/tlsconf"
)

// Config says which provider to trust and how this gateway is known to it.
type Config struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer + "/.well-known/openid-configuration").
	Issuer string `yaml:"issuer"`
	// ClientID and the client secret are this gateway's client at the
	// provider (a confidential client allowed the device-code and
	// refresh-token grants). The secret comes from ClientSecretFile or the
	// environment variable ClientSecretEnv, never from a flag or the config
	// itself.
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// Scopes are asked for besides openid and offline_access.
	Scopes []string `yaml:"scopes"`
	// Audience is the aud an access token must carry (default ClientID).
	// An opaque token's introspection answer that names no audience must
	// name one of the accepted clients instead.
	Audience string `yaml:"audience"`
	// AllowedClients are the OAuth clients, besides ClientID, whose access
	// tokens are accepted: services using the client-credentials grant,
	// say. A token that names its client (client_id, or azp) is refused
	// unless that client is ClientID or listed here.
	AllowedClients []string `yaml:"allowed_clients"`
	// CAFile verifies the provider's certificate (default: the system's).
	CAFile string `yaml:"ca_file"`
	// Algorithms are the accepted signature algorithms (default RS256,
	// ES256).
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock difference allowed on a token's expiry,
	// not-before and issued-at times (default 30s).
	Leeway time.Duration `yaml:"leeway"`
	// OpaqueTokens says how an access token that is not a JWT is checked:
	// "introspect" (default: RFC 7662 at the provider's introspection
	// endpoint; refused where the provider has none), "userinfo" (the
	// userinfo endpoint, which cannot tell whose application a token is
	// for: any application's token of the same provider passes), or
	// "refuse".
	OpaqueTokens string `yaml:"opaque_tokens"`
	// OpaqueCache is how long an accepted opaque token's check is kept
	// (default 60s, never past the token's expiry): a token revoked at the
	// provider is refused at most this long after.
	OpaqueCache time.Duration `yaml:"opaque_cache"`
	// UserinfoCache is the former name of OpaqueCache.
	//
	// Deprecated: use OpaqueCache.
	UserinfoCache time.Duration `yaml:"userinfo_cache"`
	// RefusedCache is how long a refused opaque token or refresh token is
	// refused again without asking the provider (default 5m).
	RefusedCache time.Duration `yaml:"refused_cache"`
	// JWKSMinRefresh is the shortest time between two fetches of the
	// provider's keys for tokens of unknown key ids (default 10s).
	// JWKSMaxAge is the age at which the keys are fetched again (default
	// 5m): the longest a key removed at the provider stays trusted.
	JWKSMinRefresh time.Duration `yaml:"jwks_min_refresh"`
	JWKSMaxAge     time.Duration `yaml:"jwks_max_age"`
	// ProviderRatePerClient and ProviderBurstPerClient bound the provider
	// requests one client address can cause before it is authenticated
	// (device logins, polls, opaque tokens, refreshes): requests a second
	// and the bucket's size (default 0.25 and 8: a flwr login takes one,
	// and one per poll every few seconds; a refresh or a new opaque token
	// one). ProviderRate and ProviderBurst
	// bound them for all clients together (default 50 and 100). Past them, calls are refused with ErrBusy.
	ProviderRatePerClient  float64 `yaml:"provider_rate_per_client"`
	ProviderBurstPerClient int     `yaml:"provider_burst_per_client"`
	ProviderRate           float64 `yaml:"provider_rate"`
	ProviderBurst          int     `yaml:"provider_burst"`
	// GroupsClaim is the claim that holds the account's groups or roles,
	// a dotted path (default "groups"; Keycloak: "realm_access.roles").
	GroupsClaim string `yaml:"groups_claim"`

	// ClientSecret, Transport and ClientAllowed are for a provider in this
	// process (package accounts), never from a file: the gateway client's
	// secret, the transport that reaches the provider instead of HTTPS,
	// and a check of clients besides ClientID and AllowedClients (a
	// service client added while the gateway runs).
	ClientSecret  string               `yaml:"-"`
	Transport     http.RoundTripper    `yaml:"-"`
	ClientAllowed func(id string) bool `yaml:"-"`

	// Now is the clock a token's times, the caches and the provider
	// budgets are kept by (default time.Now), never from a file: a test
	// moves it to expire tokens that a real provider issued.
	Now func() time.Time `yaml:"-"`
}

// The ways of checking opaque tokens (Config.OpaqueTokens).
const (
	OpaqueIntrospect = "introspect"
	OpaqueUserinfo   = "userinfo"
	OpaqueRefuse     = "refuse"
)

// Defaults fills the zero fields of c.
func (c *Config) Defaults() {
	if c.Audience == "" {
		c.Audience = c.ClientID
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{oidc.RS256, oidc.ES256}
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&c.Leeway, 30*time.Second)
	if c.OpaqueCache <= 0 {
		c.OpaqueCache = c.UserinfoCache
	}
	setDur(&c.OpaqueCache, time.Minute)
	setDur(&c.RefusedCache, 5*time.Minute)
	setDur(&c.JWKSMinRefresh, 10*time.Second)
	setDur(&c.JWKSMaxAge, 5*time.Minute)
	if c.OpaqueTokens == "" {
		c.OpaqueTokens = OpaqueIntrospect
	}
	if c.ProviderRatePerClient <= 0 {
		c.ProviderRatePerClient = 0.25
	}
	if c.ProviderBurstPerClient <= 0 {
		c.ProviderBurstPerClient = 8
	}
	if c.ProviderRate <= 0 {
		c.ProviderRate = 50
	}
	if c.ProviderBurst <= 0 {
		c.ProviderBurst = 100
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
}

// Validate says what is missing or contradictory, after Defaults.
func (c *Config) Validate() error {
	if c.Issuer == "" || c.ClientID == "" {
		return errors.New("oidc: issuer and client_id are needed")
	}
	for _, a := range c.Algorithms {
		if a == "none" || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return fmt.Errorf("oidc: the algorithm %q cannot be allowed: tokens are checked with the provider's public keys", a)
		}
	}
	switch c.OpaqueTokens {
	case OpaqueIntrospect, OpaqueUserinfo, OpaqueRefuse:
	default:
		return fmt.Errorf("oidc: opaque_tokens must be introspect, userinfo or refuse, got %q", c.OpaqueTokens)
	}
	if c.Leeway > 5*time.Minute {
		return fmt.Errorf("oidc: leeway must be at most 5m, got %s", c.Leeway)
	}
	return nil
}

// Account is the caller of a Control call.
type Account struct {
	// Principal is who the caller is: a user, or a service client (see
	// account for how a token tells them apart). Ownership compares
	// principals, never a subject alone.
	Principal authz.Principal `json:"principal"`
	// Subject is the token's sub claim as the provider sent it (empty if
	// it sent none).
	Subject string   `json:"sub,omitempty"`
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// ClientID is the OAuth client a token was issued to (its client_id,
	// or azp): the application a user signed in through, or the service
	// itself.
	ClientID string         `json:"client_id,omitempty"`
	Claims   map[string]any `json:"-"`
}

// Tokens are an access and a refresh token.
type Tokens struct {
	Access, Refresh string
}

// Errors the gRPC layer maps to statuses.
var (
	// ErrNoToken: the call carries no access token.
	ErrNoToken = errors.New("no access token: run flwr login")
	// ErrInvalid: the token is not one this gateway accepts (bad
	// signature, issuer, audience, client, algorithm, or expired with no
	// working refresh token).
	ErrInvalid = errors.New("the login is not valid or has expired: run flwr login")
	// ErrProvider: the provider cannot be reached.
	ErrProvider = errors.New("the identity provider cannot be reached")
	// ErrBusy: the caller has made the gateway ask the provider too often.
	ErrBusy = errors.New("too many login attempts: try again in a minute")
	// ErrDenied and ErrExpired end a device login.
	ErrDenied  = errors.New("the login was denied at the identity provider")
	ErrExpired = errors.New("the login code expired: run flwr login again")
)

// Authenticator checks logins against one provider.
type Authenticator struct {
	cfg      Config
	secret   string
	clients  []string // accepted clients: ClientID and AllowedClients
	client   *http.Client
	provider *oidc.Provider
	keys     *keySet
	verifier *oidc.IDTokenVerifier // expiry checked
	expired  *oidc.IDTokenVerifier // expiry not checked, for a refresh
	scopes   []string
	token    string // the token endpoint
	device   string // the device authorization endpoint
	userinfo string
	intro    string // the introspection endpoint
	warnings []string
	now      func() time.Time // Config.Now

	perClient *keyrate.Limiter
	overall   *keyrate.Limiter
	accepted  *ttlCache[*Account] // opaque token digest -> account
	refused   *ttlCache[bool]     // refused opaque and refresh token digests: refreshable?
	inflight  singleflight.Group  // opaque checks under way, by digest
}

// New reads the provider's discovery document and key set, and returns an
// Authenticator. The provider must be reachable now.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	a := &Authenticator{cfg: cfg, now: now,
		clients:   append([]string{cfg.ClientID}, cfg.AllowedClients...),
		perClient: keyrate.New(cfg.ProviderRatePerClient, cfg.ProviderBurstPerClient),
		overall:   keyrate.New(cfg.ProviderRate, cfg.ProviderBurst),
		accepted:  newTTLCache[*Account](1<<16, now),
		refused:   newTTLCache[bool](1<<16, now),
	}
	var err error
	if a.secret, err = readSecret(cfg); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Idle connections are dropped before the usual server keep-alive
	// timeouts (Node's 5 s, among the shortest), so a request seldom goes
	// out on a connection the provider is closing.
	tr.IdleConnTimeout = 4 * time.Second
	if tr.TLSClientConfig, err = tlsconf.Client(cfg.CAFile, ""); err != nil {
		return nil, fmt.Errorf("oidc: ca_file: %w", err)
	}
	a.client = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	if cfg.Transport != nil {
		a.client.Transport = cfg.Transport
	}
	ctx = oidc.ClientContext(ctx, a.client)
	if a.provider, err = oidc.NewProvider(ctx, cfg.Issuer); err != nil {
		return nil, fmt.Errorf("oidc: discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		Device        string `json:"device_authorization_endpoint"`
		Userinfo      string `json:"userinfo_endpoint"`
		Introspection string `json:"introspection_endpoint"`
		JWKS          string `json:"jwks_uri"`
	}
	if err := a.provider.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.Device == "" {
		return nil, fmt.Errorf("oidc: %s offers no device authorization endpoint: enable the device flow for the client", cfg.Issuer)
	}
	a.device, a.userinfo, a.intro, a.token = meta.Device, meta.Userinfo, meta.Introspection, a.provider.Endpoint().TokenURL
	switch {
	case cfg.OpaqueTokens == OpaqueUserinfo:
		a.warnings = append(a.warnings, "opaque access tokens are checked at the userinfo endpoint (opaque_tokens: userinfo): "+
			"a token the provider issued to ANY application passes as a login here; use introspection if the provider offers it")
	case cfg.OpaqueTokens == OpaqueIntrospect && a.intro == "":
		a.warnings = append(a.warnings, "the provider offers no token introspection: opaque access tokens are refused (only JWT access tokens log in)")
	case cfg.OpaqueTokens == OpaqueIntrospect && a.secret == "":
		a.warnings = append(a.warnings, "introspection needs the gateway's client secret, and none is configured: opaque access tokens are refused")
	}
	algs := make([]jose.SignatureAlgorithm, len(cfg.Algorithms))
	for i, alg := range cfg.Algorithms {
		algs[i] = jose.SignatureAlgorithm(alg)
	}
	a.keys = &keySet{url: meta.JWKS, client: a.client, algs: algs, minRefresh: cfg.JWKSMinRefresh, maxAge: cfg.JWKSMaxAge, now: a.now}
	if a.keys.keys, err = a.keys.fetch(ctx); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	a.keys.fetched, a.keys.tried = a.now(), a.now()
	// go-oidc checks the signature, issuer, audience and expiry; the
	// not-before and issued-at times get the same leeway in claims().
	early := func() time.Time { return a.now().Add(-cfg.Leeway) }
	a.verifier = oidc.NewVerifier(cfg.Issuer, a.keys, &oidc.Config{ClientID: cfg.Audience, SupportedSigningAlgs: cfg.Algorithms, Now: early})
	a.expired = oidc.NewVerifier(cfg.Issuer, a.keys, &oidc.Config{ClientID: cfg.Audience, SupportedSigningAlgs: cfg.Algorithms, Now: early, SkipExpiryCheck: true})
	a.scopes = append([]string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess}, cfg.Scopes...)
	return a, nil
}

// Warnings are what an operator should be told at start about this
// configuration and provider: how opaque tokens fare.
func (a *Authenticator) Warnings() []string { return a.warnings }

// OnKeysFetched sets a function called after each fetch of the provider's
// key set, with its error (nil when it succeeded), for metrics and logs.
// Call it before the first Authenticate.
func (a *Authenticator) OnKeysFetched(f func(error)) { a.keys.onFetch = f }

type clientKey struct{}

// WithClient returns ctx carrying the caller's client address (an IP
// address, without port), which the per-client budget of provider
// requests is kept by.
func WithClient(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientKey{}, addr)
}

// freeKey marks a check that spends no budget: of a token the provider
// has just issued to this gateway.
type freeKey struct{}

// spend takes one provider request from the caller's budget and the
// overall one.
func (a *Authenticator) spend(ctx context.Context) error {
	if free, _ := ctx.Value(freeKey{}).(bool); free {
		return nil
	}
	now := a.now()
	addr, _ := ctx.Value(clientKey{}).(string)
	if !a.perClient.Allow(addr, now) || !a.overall.Allow("", now) {
		return ErrBusy
	}
	return nil
}

func readSecret(cfg Config) (string, error) {
	switch {
	case cfg.ClientSecret != "":
		return cfg.ClientSecret, nil
	case cfg.ClientSecretFile != "":
		b, err := safefile.ReadRegular(cfg.ClientSecretFile, 64<<10)
		if err != nil {
			return "", fmt.Errorf("oidc: the client secret: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case cfg.ClientSecretEnv != "":
		s, ok := os.LookupEnv(cfg.ClientSecretEnv)
		if !ok || s == "" {
			return "", fmt.Errorf("oidc: the environment variable %s holds no client secret", cfg.ClientSecretEnv)
		}
		return s, nil
	}
	return "", nil // a public client
}

// DeviceLogin is a device authorization the user completes in a browser.
type DeviceLogin struct {
	DeviceCode              string
	VerificationURIComplete string
	ExpiresIn, Interval     int64
}

// StartLogin starts a device login (RFC 8628, section 3.1). The request
// authenticates this client (client_secret_basic), as confidential
// clients must.
func (a *Authenticator) StartLogin(ctx context.Context) (*DeviceLogin, error) {
	if err := a.spend(ctx); err != nil {
		return nil, err
	}
	var body struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int64  `json:"expires_in"`
		Interval                int64  `json:"interval"`
		Error                   string `json:"error"`
	}
	form := url.Values{"scope": {strings.Join(a.scopes, " ")}}
	if err := a.post(ctx, a.device, form, &body, true); err != nil {
		return nil, err
	}
	if body.Error != "" || body.DeviceCode == "" {
		return nil, fmt.Errorf("oidc: the provider refused a device login: %s", body.Error)
	}
	uri := body.VerificationURIComplete
	if uri == "" {
		uri = body.VerificationURI + "?user_code=" + url.QueryEscape(body.UserCode)
	}
	if body.Interval <= 0 {
		body.Interval = 5 // RFC 8628's default
	}
	return &DeviceLogin{DeviceCode: body.DeviceCode, VerificationURIComplete: uri, ExpiresIn: body.ExpiresIn, Interval: body.Interval}, nil
}

// PollLogin asks the token endpoint once whether the device login is done
// (RFC 8628, section 3.4). It returns nil tokens and no error while the
// user has not finished.
func (a *Authenticator) PollLogin(ctx context.Context, deviceCode string) (*Tokens, error) {
	if err := a.spend(ctx); err != nil {
		return nil, err
	}
	body, err := a.tokenRequest(ctx, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}, true)
	if err != nil {
		return nil, err
	}
	switch body.Error {
	case "":
	case "authorization_pending", "slow_down":
		return nil, nil
	case "access_denied":
		return nil, ErrDenied
	case "expired_token", "invalid_grant":
		return nil, ErrExpired
	default:
		return nil, fmt.Errorf("oidc: the provider answered %q", body.Error)
	}
	if body.Access == "" {
		return nil, fmt.Errorf("oidc: the provider sent no access token")
	}
	return &Tokens{Access: body.Access, Refresh: body.Refresh}, nil
}

// Authenticate checks the access token of a call. When it has expired
// (or, opaque, is no longer active) and a refresh token is given, it
// refreshes them at the provider, once, and returns the new pair, which
// the caller sends back to the CLI. Errors wrap ErrNoToken, ErrInvalid,
// ErrProvider (the provider could not be asked) or ErrBusy.
func (a *Authenticator) Authenticate(ctx context.Context, access, refresh string) (*Account, *Tokens, error) {
	if access == "" {
		return nil, nil, ErrNoToken
	}
	acct, err := a.check(ctx, access)
	if err == nil {
		return acct, nil, nil
	}
	if refresh == "" || !errors.Is(err, errRefreshable) {
		return nil, nil, err
	}
	next, err := a.refresh(ctx, refresh)
	if err != nil {
		return nil, nil, err
	}
	// The refreshed token was just issued to this gateway: checking it
	// spends no budget, so the new pair is not lost to a busy caller (the
	// provider may have retired the old refresh token already).
	acct, err = a.check(context.WithValue(ctx, freeKey{}, true), next.Access)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (the refreshed token)", err)
	}
	return acct, next, nil
}

// errRefreshable marks a refusal that a refresh may cure: a JWT that is
// valid but for its expiry, or an opaque token that is not active.
var errRefreshable = errors.New("expired")

// check verifies an access token: a JWT locally, an opaque token at the
// provider.
func (a *Authenticator) check(ctx context.Context, token string) (*Account, error) {
	if strings.Count(token, ".") == 2 {
		return a.checkJWT(ctx, token)
	}
	return a.checkOpaque(ctx, token)
}

func (a *Authenticator) checkJWT(ctx context.Context, token string) (*Account, error) {
	ctx = oidc.ClientContext(ctx, a.client)
	t, err := a.verifier.Verify(ctx, token)
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) && expired.Expiry.IsZero() {
		return nil, fmt.Errorf("%w (the token names no expiry)", ErrInvalid)
	}
	if errors.As(err, &expired) {
		// The signature, issuer and audience verified (go-oidc checks the
		// expiry last): refreshable if the rest holds too.
		if t, err = a.expired.Verify(ctx, token); err == nil {
			claims := map[string]any{}
			if err = t.Claims(&claims); err == nil {
				if _, err = a.claims(claims); err == nil {
					return nil, fmt.Errorf("%w (%w at %s)", ErrInvalid, errRefreshable, expired.Expiry.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrInvalid, err)
	}
	claims := map[string]any{}
	if err := t.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrInvalid, err)
	}
	acct, err := a.claims(claims)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrInvalid, err)
	}
	return acct, nil
}

// claims checks what go-oidc leaves to its caller, for JWTs and
// introspection answers alike: the token's client, and its not-before and
// issued-at times within the leeway; and reads the account.
func (a *Authenticator) claims(claims map[string]any) (*Account, error) {
	client, _ := claims["client_id"].(string)
	if client == "" {
		client, _ = claims["azp"].(string)
	}
	if client != "" && !slices.Contains(a.clients, client) && (a.cfg.ClientAllowed == nil || !a.cfg.ClientAllowed(client)) {
		return nil, fmt.Errorf("the token was issued to the client %q, which this gateway does not accept (allowed_clients)", client)
	}
	late := a.now().Add(a.cfg.Leeway)
	for _, name := range []string{"nbf", "iat"} {
		t, ok, err := unixTime(claims[name])
		if err != nil {
			return nil, fmt.Errorf("the token's %s is not a time", name)
		}
		if ok && t.After(late) {
			return nil, fmt.Errorf("the token's %s is in the future (%s), beyond the leeway of %s", name, t.UTC().Format(time.RFC3339), a.cfg.Leeway)
		}
	}
	return a.account(claims)
}

// unixTime reads a NumericDate claim: a JSON number, or a string of one
// (which go-oidc accepts too). ok is false when the claim is absent.
func unixTime(v any) (t time.Time, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, false, nil
	case float64:
		return time.Unix(int64(v), 0), true, nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return time.Time{}, false, err
		}
		return time.Unix(int64(f), 0), true, nil
	}
	return time.Time{}, false, fmt.Errorf("a %T", v)
}

// digest names a token in the caches; the token itself is never kept.
func digest(kind, token string) [32]byte { return sha256.Sum256([]byte(kind + "\x00" + token)) }

// refresh exchanges a refresh token for new tokens at the provider, once.
func (a *Authenticator) refresh(ctx context.Context, refresh string) (*Tokens, error) {
	key := digest("refresh", refresh)
	if _, ok := a.refused.get(key); ok {
		return nil, fmt.Errorf("%w (the refresh token was refused before)", ErrInvalid)
	}
	if err := a.spend(ctx); err != nil {
		return nil, err
	}
	body, err := a.tokenRequest(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, false)
	if err != nil {
		return nil, err
	}
	switch {
	case body.Error == "invalid_grant" || body.Error == "unauthorized_client":
		// The refresh token is no good: remember it.
		a.refused.put(key, false, a.cfg.RefusedCache)
		return nil, fmt.Errorf("%w (refresh: the provider answered %q)", ErrInvalid, body.Error)
	case body.Error != "" || body.Access == "":
		// Busy, or something at the provider: no verdict on the token.
		return nil, fmt.Errorf("%w: the provider did not refresh the login (%q)", ErrProvider, body.Error)
	}
	next := &Tokens{Access: body.Access, Refresh: body.Refresh}
	if next.Refresh == "" {
		next.Refresh = refresh
	}
	return next, nil
}

// account reads the account from a token's or userinfo's claims; one that
// names neither a subject nor a client is refused.
//
// A token is a service client's when it names no sub, or when its sub is
// its client_id (or azp, where it has no client_id): RFC 9068 (section 2.2) has the sub of a token obtained
// with no resource owner, as by the client-credentials grant, name the
// client, and providers such as oidc-provider do so. Any other token is a
// user's, whose sub is the user and whose client_id is the application the
// user signed in through. Providers that give each service an account of
// its own (Keycloak's service-account users, Entra ID's service
// principals, Auth0's "ID@clients") put that account's id in sub, so such
// a service is a user principal with an id no person has.
func (a *Authenticator) account(claims map[string]any) (*Account, error) {
	s := func(k string) string { v, _ := claims[k].(string); return v }
	acct := &Account{Subject: s("sub"), Name: s("name"), Email: s("email"), ClientID: s("client_id"), Claims: claims}
	if acct.Name == "" {
		acct.Name = s("preferred_username")
	}
	if acct.ClientID == "" {
		acct.ClientID = s("azp") // as claims reads the client (Auth0's tokens name it so)
	}
	switch {
	case acct.Subject == "" && acct.ClientID == "":
		return nil, errors.New("the token names no subject and no client")
	case acct.Subject == "" && acct.ClientID == a.cfg.ClientID:
		// The gateway's own client signs users in: a token of it with no
		// subject would make every user one account.
		return nil, errors.New("a login that names no subject (sub)")
	case acct.Subject == "" || acct.Subject == acct.ClientID:
		acct.Principal = authz.Principal{Kind: authz.KindClient, Subject: acct.ClientID}
	default:
		acct.Principal = authz.Principal{Kind: authz.KindUser, Subject: acct.Subject}
	}
	acct.Groups = Strings(Claim(claims, a.cfg.GroupsClaim))
	return acct, nil
}

// Claim returns the claim at path, or nil. path is a claim's name
// ("groups", "https://example.org/roles") or a dotted path into nested
// objects ("realm_access.roles"). At each level the longest name that
// exists is taken first, and a shorter one only if the rest of the path
// is not found under it: "https://example.org/roles" is read as one name
// when the claims have it, and "https://example.org/claims.roles" finds
// {"https://example.org/claims": {"roles": ...}}.
func Claim(claims map[string]any, path string) any {
	v, _ := claim(claims, strings.Split(path, "."))
	return v
}

// claim looks parts, the path split at its dots, up in m.
func claim(m map[string]any, parts []string) (any, bool) {
	for n := len(parts); n > 0; n-- {
		v, ok := m[strings.Join(parts[:n], ".")]
		if !ok {
			continue
		}
		if n == len(parts) {
			return v, true
		}
		if sub, isMap := v.(map[string]any); isMap {
			if v, ok := claim(sub, parts[n:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// Strings turns a claim value (a string or a list) into strings. A string
// is one value, spaces and all: a role "not admin" is not the role admin.
func Strings(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
