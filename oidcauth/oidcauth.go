// Package oidcauth is the server side of the account login that Flower's
// CLI speaks (flwr login), against any standard OpenID Connect provider
// (Keycloak, Dex, Auth0, Entra ID): the OAuth 2.0 device authorization
// grant (RFC 8628) for GetLoginDetails and GetAuthTokens, and, for every
// other Control call, a check of the access token the CLI sends in
// flwr-oidc-access-token, refreshed with flwr-oidc-refresh-token when it
// has expired.
//
// JWT access tokens are checked with github.com/coreos/go-oidc: issuer,
// audience, expiry (with a stated leeway) and a signature algorithm from an
// allowlist (RS256, ES256 by default; never "none" or an HMAC), against the
// provider's JWKS, which is fetched once, cached, and fetched again only
// for an unknown key id. Opaque access tokens are checked at the provider's
// userinfo endpoint, and the answer cached for a short, stated time.
package oidcauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/safefile"
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
	Audience string `yaml:"audience"`
	// CAFile verifies the provider's certificate (default: the system's).
	CAFile string `yaml:"ca_file"`
	// Algorithms are the accepted signature algorithms (default RS256,
	// ES256).
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock difference allowed on a token's expiry (default
	// 30s).
	Leeway time.Duration `yaml:"leeway"`
	// UserinfoCache is how long an opaque token's userinfo answer is kept
	// (default 60s).
	UserinfoCache time.Duration `yaml:"userinfo_cache"`
	// GroupsClaim is the claim that holds the account's groups or roles,
	// a dotted path (default "groups"; Keycloak: "realm_access.roles").
	GroupsClaim string `yaml:"groups_claim"`
}

// Account is the caller of a Control call.
type Account struct {
	Subject string   `json:"sub"`
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// ClientID is the OAuth client a token was issued to (a service using
	// client credentials has no other identity).
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
	// signature, issuer, audience, algorithm, or expired with no working
	// refresh token).
	ErrInvalid = errors.New("the login is not valid or has expired: run flwr login")
	// ErrProvider: the provider cannot be reached for a new login.
	ErrProvider = errors.New("the identity provider cannot be reached")
	// ErrDenied and ErrExpired end a device login.
	ErrDenied  = errors.New("the login was denied at the identity provider")
	ErrExpired = errors.New("the login code expired: run flwr login again")
)

// Authenticator checks logins against one provider.
type Authenticator struct {
	cfg      Config
	secret   string
	client   *http.Client
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
	device   string // the device authorization endpoint
	userinfo string

	mu    sync.Mutex
	cache map[[32]byte]cached // opaque token digest -> account
}

type cached struct {
	acct *Account
	exp  time.Time
}

// New reads the provider's discovery document and returns an
// Authenticator. The provider must be reachable now.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: issuer and client_id are needed")
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.ClientID
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{oidc.RS256, oidc.ES256}
	}
	for _, a := range cfg.Algorithms {
		if a == "none" || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return nil, fmt.Errorf("oidc: the algorithm %q cannot be allowed: tokens are checked with the provider's public keys", a)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.UserinfoCache == 0 {
		cfg.UserinfoCache = time.Minute
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	a := &Authenticator{cfg: cfg, cache: map[[32]byte]cached{}}
	var err error
	if a.secret, err = readSecret(cfg); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pool, err := certs.ReadCertPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a.client = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	ctx = oidc.ClientContext(ctx, a.client)
	if a.provider, err = oidc.NewProvider(ctx, cfg.Issuer); err != nil {
		return nil, fmt.Errorf("oidc: discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		Device   string `json:"device_authorization_endpoint"`
		Userinfo string `json:"userinfo_endpoint"`
	}
	if err := a.provider.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.Device == "" {
		return nil, fmt.Errorf("oidc: %s offers no device authorization endpoint: enable the device flow for the client", cfg.Issuer)
	}
	a.device, a.userinfo = meta.Device, meta.Userinfo
	// The key set outlives this call's context: it refetches on unknown
	// key ids, with the gateway's own client.
	keyCtx := oidc.ClientContext(context.Background(), a.client)
	keySet := oidc.NewRemoteKeySet(keyCtx, a.jwksURL())
	a.verifier = oidc.NewVerifier(cfg.Issuer, keySet, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: cfg.Algorithms,
		Now:                  func() time.Time { return time.Now().Add(-cfg.Leeway) },
	})
	scopes := append([]string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess}, cfg.Scopes...)
	a.oauth = &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: a.secret, Endpoint: a.provider.Endpoint(), Scopes: scopes}
	a.oauth.Endpoint.DeviceAuthURL = a.device
	return a, nil
}

func (a *Authenticator) jwksURL() string {
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	a.provider.Claims(&meta)
	return meta.JWKS
}

func readSecret(cfg Config) (string, error) {
	switch {
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
	var body struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int64  `json:"expires_in"`
		Interval                int64  `json:"interval"`
		Error                   string `json:"error"`
	}
	form := url.Values{"scope": {strings.Join(a.oauth.Scopes, " ")}}
	if err := a.post(ctx, a.device, form, &body); err != nil {
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

// post sends a form to one of the provider's endpoints with this client's
// credentials and decodes the JSON answer, whatever its status.
func (a *Authenticator) post(ctx context.Context, endpoint string, form url.Values, out any) error {
	if a.secret == "" {
		form.Set("client_id", a.cfg.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a.secret != "" {
		req.SetBasicAuth(url.QueryEscape(a.cfg.ClientID), url.QueryEscape(a.secret))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProvider, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%w: an answer that is not JSON (HTTP %d)", ErrProvider, resp.StatusCode)
	}
	return nil
}

// PollLogin asks the token endpoint once whether the device login is done
// (RFC 8628, section 3.4). It returns nil tokens and no error while the
// user has not finished.
func (a *Authenticator) PollLogin(ctx context.Context, deviceCode string) (*Tokens, error) {
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}
	var body struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		Error   string `json:"error"`
	}
	if err := a.post(ctx, a.oauth.Endpoint.TokenURL, form, &body); err != nil {
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

// Authenticate checks the access token of a call. When it has expired and
// a refresh token is given, it refreshes them at the provider and returns
// the new pair, which the caller sends back to the CLI.
func (a *Authenticator) Authenticate(ctx context.Context, access, refresh string) (*Account, *Tokens, error) {
	if access == "" {
		return nil, nil, ErrNoToken
	}
	acct, err := a.check(ctx, access)
	if err == nil {
		return acct, nil, nil
	}
	var expired *oidc.TokenExpiredError
	if !errors.As(err, &expired) || refresh == "" {
		return nil, nil, fmt.Errorf("%w (%v)", ErrInvalid, err)
	}
	tok, err := a.oauth.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, a.client),
		&oauth2.Token{RefreshToken: refresh, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, nil, fmt.Errorf("%w (refresh: %v)", ErrInvalid, err)
	}
	acct, err = a.check(ctx, tok.AccessToken)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (the refreshed token: %v)", ErrInvalid, err)
	}
	next := &Tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken}
	if next.Refresh == "" {
		next.Refresh = refresh
	}
	return acct, next, nil
}

// check verifies an access token: a JWT locally, an opaque token at the
// userinfo endpoint.
func (a *Authenticator) check(ctx context.Context, token string) (*Account, error) {
	if strings.Count(token, ".") == 2 {
		t, err := a.verifier.Verify(oidc.ClientContext(ctx, a.client), token)
		if err != nil {
			return nil, err
		}
		claims := map[string]any{}
		if err := t.Claims(&claims); err != nil {
			return nil, err
		}
		return a.account(claims)
	}
	return a.checkOpaque(ctx, token)
}

func (a *Authenticator) checkOpaque(ctx context.Context, token string) (*Account, error) {
	if a.userinfo == "" {
		return nil, errors.New("an opaque token, and the provider has no userinfo endpoint")
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	a.mu.Lock()
	if c, ok := a.cache[key]; ok && now.Before(c.exp) {
		a.mu.Unlock()
		return c.acct, nil
	}
	a.mu.Unlock()
	info, err := a.provider.UserInfo(oidc.ClientContext(ctx, a.client), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	if err != nil {
		return nil, err
	}
	claims := map[string]any{}
	if err := info.Claims(&claims); err != nil {
		return nil, err
	}
	acct, err := a.account(claims)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	for k, c := range a.cache { // keep the cache small
		if now.After(c.exp) {
			delete(a.cache, k)
		}
	}
	a.cache[key] = cached{acct, now.Add(a.cfg.UserinfoCache)}
	a.mu.Unlock()
	return acct, nil
}

// account reads the account from a token's or userinfo's claims; one that
// names neither a subject nor a client is refused.
func (a *Authenticator) account(claims map[string]any) (*Account, error) {
	s := func(k string) string { v, _ := claims[k].(string); return v }
	acct := &Account{Subject: s("sub"), Name: s("name"), Email: s("email"), ClientID: s("client_id"), Claims: claims}
	if acct.Name == "" {
		acct.Name = s("preferred_username")
	}
	if acct.Subject == "" {
		acct.Subject = acct.ClientID // a client-credentials token may name only its client
	}
	if acct.Subject == "" {
		return nil, errors.New("the token names no subject and no client")
	}
	acct.Groups = Strings(Claim(claims, a.cfg.GroupsClaim))
	return acct, nil
}

// Claim follows a dotted path ("realm_access.roles") into claims.
func Claim(claims map[string]any, path string) any {
	var v any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// Strings turns a claim value (a string or a list) into strings.
func Strings(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
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
