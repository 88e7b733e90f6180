package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// checkOpaque checks an opaque access token at the provider, as
// cfg.OpaqueTokens says, remembering the answer: an accepted token for
// OpaqueCache (never past its expiry), a refused one for RefusedCache.
func (a *Authenticator) checkOpaque(ctx context.Context, token string) (*Account, error) {
	switch {
	case a.cfg.OpaqueTokens == OpaqueRefuse:
		return nil, fmt.Errorf("%w (an opaque access token, and opaque_tokens is refuse)", ErrInvalid)
	case a.cfg.OpaqueTokens == OpaqueIntrospect && (a.intro == "" || a.secret == ""):
		return nil, fmt.Errorf("%w (an opaque access token, and the provider cannot be asked whose it is: no introspection)", ErrInvalid)
	case a.cfg.OpaqueTokens == OpaqueUserinfo && a.userinfo == "":
		return nil, fmt.Errorf("%w (an opaque access token, and the provider has no userinfo endpoint)", ErrInvalid)
	}
	key := digest("access", token)
	if acct, ok := a.accepted.get(key); ok {
		return acct, nil
	}
	if refreshable, ok := a.refused.get(key); ok {
		if refreshable {
			return nil, fmt.Errorf("%w (%w: an opaque token refused before)", ErrInvalid, errRefreshable)
		}
		return nil, fmt.Errorf("%w (an opaque token refused before)", ErrInvalid)
	}
	// Each caller pays from its own budget; calls with the same token at
	// once then share one request, which is the gateway's, not the first
	// caller's: it goes on if that caller goes away.
	if err := a.spend(ctx); err != nil {
		return nil, err
	}
	v, err, _ := a.inflight.Do(string(key[:]), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), providerTimeout)
		defer cancel()
		return a.askOpaque(ctx, key, token)
	})
	acct, _ := v.(*Account)
	return acct, err
}

// providerTimeout bounds one request to the provider made on behalf of
// several callers.
const providerTimeout = 15 * time.Second

// errInactive: the provider says the token is not (or no longer) active:
// a refresh may cure it.
var errInactive = errors.New("the provider says the token is not active, or it has expired")

// askOpaque checks an opaque token at the provider, and remembers the
// answer.
func (a *Authenticator) askOpaque(ctx context.Context, key [32]byte, token string) (*Account, error) {
	var acct *Account
	var until time.Time
	var err error
	if a.cfg.OpaqueTokens == OpaqueUserinfo {
		acct, err = a.userinfoAccount(ctx, token, "")
		until = a.now().Add(a.cfg.OpaqueCache)
	} else {
		acct, until, err = a.introspect(ctx, token)
	}
	switch {
	case errors.Is(err, ErrProvider):
		return nil, err
	case errors.Is(err, errInactive):
		a.refused.put(key, true, a.cfg.RefusedCache)
		return nil, fmt.Errorf("%w (%w: %v)", ErrInvalid, errRefreshable, err)
	case err != nil:
		a.refused.put(key, false, a.cfg.RefusedCache)
		return nil, fmt.Errorf("%w (%v)", ErrInvalid, err)
	}
	a.accepted.put(key, acct, min(a.cfg.OpaqueCache, until.Sub(a.now())))
	return acct, nil
}

// introspect asks the provider about an opaque token (RFC 7662) and
// accepts it only if it is active, unexpired, of this issuer, and for this
// gateway: of an accepted client, or, naming no client, of the audience.
// The account's profile claims (name, groups) come from the userinfo
// endpoint where the answer lacks them. It returns when the token expires.
func (a *Authenticator) introspect(ctx context.Context, token string) (*Account, time.Time, error) {
	claims := map[string]any{}
	if err := a.post(ctx, a.intro, url.Values{"token": {token}, "token_type_hint": {"access_token"}}, &claims, true); err != nil {
		return nil, time.Time{}, err
	}
	active, ok := claims["active"].(bool)
	switch {
	case !ok:
		// Not an introspection answer (an error, a rate limit): no
		// verdict on the token.
		return nil, time.Time{}, fmt.Errorf("%w: introspection answered without \"active\" (%v)", ErrProvider, claims["error"])
	case !active:
		return nil, time.Time{}, errInactive
	}
	if iss, ok := claims["iss"].(string); ok && iss != a.cfg.Issuer {
		return nil, time.Time{}, fmt.Errorf("the token was issued by %q", iss)
	}
	exp, _ := claims["exp"].(float64)
	until := time.Unix(int64(exp), 0)
	switch {
	case exp == 0:
		return nil, time.Time{}, errors.New("the token names no expiry")
	case until.Before(a.now().Add(-a.cfg.Leeway)):
		return nil, time.Time{}, errInactive
	}
	client, _ := claims["client_id"].(string)
	switch {
	case client == "" && !slices.Contains(Strings(claims["aud"]), a.cfg.Audience):
		return nil, time.Time{}, fmt.Errorf("the token names no client and is not for the audience %q", a.cfg.Audience)
	case client != "" && !slices.Contains(a.clients, client):
		return nil, time.Time{}, fmt.Errorf("the token was issued to the client %q, which this gateway does not accept (allowed_clients)", client)
	}
	delete(claims, "active")
	if Claim(claims, a.cfg.GroupsClaim) == nil && a.userinfo != "" && claims["sub"] != nil && claims["sub"] != client {
		// The token is this gateway's; its profile is at userinfo.
		sub, _ := claims["sub"].(string)
		info, err := a.userinfoAccount(ctx, token, sub)
		if err != nil {
			return nil, time.Time{}, err
		}
		for k, v := range info.Claims {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	acct, err := a.claims(claims)
	return acct, until, err
}

// userinfoAccount reads the account of token at the userinfo endpoint;
// with sub set, the answer must name that subject.
func (a *Authenticator) userinfoAccount(ctx context.Context, token, sub string) (*Account, error) {
	info, err := a.provider.UserInfo(oidc.ClientContext(ctx, a.client), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	if err != nil {
		// go-oidc says "401 Unauthorized: ..." for a token the endpoint
		// refuses; anything else (unreachable, 429, 5xx) is no verdict.
		msg := err.Error()
		if strings.HasPrefix(msg, "401 ") || strings.HasPrefix(msg, "403 ") {
			return nil, fmt.Errorf("%w (userinfo: %s)", errInactive, msg[:3])
		}
		return nil, fmt.Errorf("%w: userinfo: %v", ErrProvider, err)
	}
	claims := map[string]any{}
	if err := info.Claims(&claims); err != nil {
		return nil, err
	}
	if sub != "" && claims["sub"] != sub {
		return nil, errors.New("userinfo names another subject than introspection")
	}
	if sub != "" {
		return &Account{Claims: claims}, nil
	}
	return a.account(claims)
}

// tokenAnswer is what the token endpoint answers.
type tokenAnswer struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Error   string `json:"error"`
}

// tokenRequest posts a grant to the token endpoint; see post for
// repeatable.
func (a *Authenticator) tokenRequest(ctx context.Context, form url.Values, repeatable bool) (*tokenAnswer, error) {
	var body tokenAnswer
	if err := a.post(ctx, a.token, form, &body, repeatable); err != nil {
		return nil, err
	}
	return &body, nil
}

// post sends a form to one of the provider's endpoints with this client's
// credentials (client_secret_basic, as confidential clients must) and
// decodes the JSON answer, whatever its status. A provider that cannot be
// reached, or answers with a server error or no JSON, is ErrProvider.
//
// A request that may be sent twice (repeatable) is sent again once when
// the first try fails in transit: a kept-alive connection the provider
// closed as the request went out fails a POST, which Go's transport does
// not resend by itself. A refresh is never sent twice, as the provider
// may have used up the refresh token on the first.
func (a *Authenticator) post(ctx context.Context, endpoint string, form url.Values, out any, repeatable bool) error {
	if a.secret == "" {
		form.Set("client_id", a.cfg.ClientID)
	}
	body := form.Encode()
	send := func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if a.secret != "" {
			req.SetBasicAuth(url.QueryEscape(a.cfg.ClientID), url.QueryEscape(a.secret))
		}
		return a.client.Do(req)
	}
	resp, err := send()
	if err != nil && repeatable && ctx.Err() == nil {
		resp, err = send()
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProvider, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%w: HTTP %d from %s", ErrProvider, resp.StatusCode, endpoint)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%w: an answer that is not JSON (HTTP %d)", ErrProvider, resp.StatusCode)
	}
	return nil
}

// ttlCache maps token digests to values that expire, holding at most max
// entries: when full, the expired ones go, and if none has, half of the
// rest (in Go's random map order).
type ttlCache[V any] struct {
	mu  sync.Mutex
	max int
	now func() time.Time
	m   map[[32]byte]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v   V
	exp time.Time
}

func newTTLCache[V any](max int, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{max: max, now: now, m: map[[32]byte]ttlEntry[V]{}}
}

func (c *ttlCache[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || c.now().After(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k [32]byte, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if now.After(e.exp) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max/2 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = ttlEntry[V]{v, now.Add(ttl)}
}
