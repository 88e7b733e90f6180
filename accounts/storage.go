package accounts

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the op.Storage of a Provider.
type storage struct{ p *Provider }

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.ClientCredentialsStorage   = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest  = (*storage)(nil)
)

var errNoCodeFlow = errors.New("the authorization code flow is not offered: sign in with flwr login (the device flow)")

func (s *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, oidc.ErrInvalidRequest().WithDescription("%s", errNoCodeFlow)
}
func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errNoCodeFlow
}
func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errNoCodeFlow
}
func (s *storage) SaveAuthCode(context.Context, string, string) error { return errNoCodeFlow }
func (s *storage) DeleteAuthRequest(context.Context, string) error    { return nil }

// CreateAccessToken is for the client-credentials grant: a JWT, no
// refresh token.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	return randomID("", 16), s.p.now().Add(s.p.cfg.AccessTokenLifetime), nil
}

// family is a chain of refresh tokens from one sign-in.
type family struct {
	ID         string    `json:"id"`
	Subject    string    `json:"sub"`
	ClientID   string    `json:"client_id"`
	Scopes     []string  `json:"scopes"`
	AMR        []string  `json:"amr,omitempty"`
	AuthTime   time.Time `json:"auth_time"`
	Generation int       `json:"generation"`
	Expires    time.Time `json:"expires"`
}

// refreshRecord is what the store holds of one refresh token, by its
// digest.
type refreshRecord struct {
	Family string `json:"family"`
}

// Keys in the store.
func familyKey(id string) string      { return "accounts:family:" + id }
func refreshKey(token string) string  { return "accounts:rt:" + digest(token) }
func usedKey(token string) string     { return "accounts:rt-used:" + digest(token) }
func deviceKey(code string) string    { return "accounts:dc:" + digest(code) }
func userCodeKey(code string) string  { return "accounts:uc:" + normalizeUserCode(code) }
func totpUsedKey(id, c string) string { return "accounts:totp-used:" + id + ":" + c }
func failKey(kind, k string) string   { return "accounts:fail:" + kind + ":" + digest(k) }
func lockKey(kind, k string) string   { return "accounts:lock:" + kind + ":" + digest(k) }
func normalizeUserCode(c string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(c))
}

// errSession: a refresh token that is unknown, expired, reused, or whose
// account has gone or changed.
var errSession = errors.New("the session has ended: run flwr login")

// CreateAccessAndRefreshTokens starts a family at a device sign-in, or
// rotates the refresh token presented: it is taken (once, whatever the
// replicas) and a new one of the same family issued.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	now := s.p.now()
	var fam *family
	if current == "" {
		st, ok := req.(*op.DeviceAuthorizationState)
		if !ok {
			return "", "", time.Time{}, errors.New("accounts: refresh tokens come from device sign-ins only")
		}
		f, err := s.p.accounts()
		if err != nil {
			return "", "", time.Time{}, err
		}
		a := f.AccountByID(st.Subject)
		if a == nil || a.Disabled {
			return "", "", time.Time{}, oidc.ErrAccessDenied()
		}
		fam = &family{ID: randomID("", 16), Subject: st.Subject, ClientID: st.ClientID, Scopes: st.Scopes, AMR: st.AMR,
			AuthTime: st.AuthTime, Generation: a.Generation, Expires: now.Add(s.p.cfg.SessionLifetime)}
		b, _ := json.Marshal(fam)
		if err := s.p.kv.set(ctx, familyKey(fam.ID), b, s.p.cfg.SessionLifetime); err != nil {
			return "", "", time.Time{}, err
		}
	} else {
		rr, ok := req.(*refreshRequest)
		if !ok {
			return "", "", time.Time{}, errors.New("accounts: not a refresh request")
		}
		fam = rr.fam
		b, err := s.p.kv.getDel(ctx, refreshKey(current))
		if err != nil {
			return "", "", time.Time{}, err
		}
		if b == nil {
			// Taken meanwhile by another call: a reuse.
			s.revokeFamily(ctx, fam.ID, "a refresh token was used twice at once")
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("%s", errSession)
		}
		// Remembered, to tell a reuse from a token never issued.
		s.p.kv.set(ctx, usedKey(current), []byte(fam.ID), fam.Expires.Sub(s.p.now()))
	}
	next := "nkr_" + randomID("", 32)
	b, _ := json.Marshal(refreshRecord{Family: fam.ID})
	ttl := min(s.p.cfg.RefreshTokenLifetime, fam.Expires.Sub(now))
	if err := s.p.kv.set(ctx, refreshKey(next), b, ttl); err != nil {
		return "", "", time.Time{}, err
	}
	return randomID("", 16), next, now.Add(s.p.cfg.AccessTokenLifetime), nil
}

// revokeFamily ends a family: every refresh token of it is refused.
func (s *storage) revokeFamily(ctx context.Context, id, why string) {
	if err := s.p.kv.del(ctx, familyKey(id)); err != nil {
		s.p.log.Error("cannot revoke a session", "error", err)
		return
	}
	s.p.log.Warn("session revoked", "reason", why)
}

// refreshRequest is a refresh token's family, as op asks for it.
type refreshRequest struct {
	fam    *family
	scopes []string
}

func (r *refreshRequest) GetAMR() []string            { return r.fam.AMR }
func (r *refreshRequest) GetAudience() []string       { return []string{GatewayClient} }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.fam.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.fam.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.fam.Subject }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

// TokenRequestByRefreshToken finds a refresh token's family, and checks
// that it and its account still stand. A refresh token already used
// revokes its family.
func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	fam, err := s.family(ctx, token)
	if err != nil {
		return nil, err
	}
	return &refreshRequest{fam: fam, scopes: fam.Scopes}, nil
}

func (s *storage) family(ctx context.Context, token string) (*family, error) {
	b, err := s.p.kv.get(ctx, refreshKey(token))
	if err != nil {
		return nil, err
	}
	if b == nil {
		if fid, err := s.p.kv.get(ctx, usedKey(token)); err == nil && fid != nil {
			s.revokeFamily(ctx, string(fid), "a refresh token was used again")
		}
		return nil, errSession
	}
	var rr refreshRecord
	if err := json.Unmarshal(b, &rr); err != nil {
		return nil, err
	}
	b, err = s.p.kv.get(ctx, familyKey(rr.Family))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errSession
	}
	fam := &family{}
	if err := json.Unmarshal(b, fam); err != nil {
		return nil, err
	}
	f, err := s.p.accounts()
	if err != nil {
		return nil, err
	}
	a := f.AccountByID(fam.Subject)
	if a == nil || a.Disabled || a.Generation != fam.Generation || s.p.now().After(fam.Expires) {
		s.revokeFamily(ctx, fam.ID, "the account was removed, disabled or changed")
		return nil, errSession
	}
	return fam, nil
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

// RevokeToken revokes a refresh token's family (RFC 7009); access tokens
// are JWTs, which live out their short lifetime.
func (s *storage) RevokeToken(ctx context.Context, token, userID, clientID string) *oidc.Error {
	if userID != "" {
		return nil
	}
	b, err := s.p.kv.get(ctx, refreshKey(token))
	if err != nil {
		return oidc.ErrServerError()
	}
	if b != nil {
		var rr refreshRecord
		if json.Unmarshal(b, &rr) == nil {
			s.revokeFamily(ctx, rr.Family, "revoked at the revocation endpoint")
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	fam, err := s.family(ctx, token)
	if err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	return fam.Subject, digest(token), nil
}

type signingKey struct{ k *ringKey }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k signingKey) Key() any                                    { return k.k.key }
func (k signingKey) ID() string                                  { return k.k.ID }

func (s *storage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	r, err := s.p.keys(ctx)
	if err != nil {
		return nil, err
	}
	return signingKey{r.current()}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}

type publicKey struct{ k jose.JSONWebKey }

func (k publicKey) ID() string                         { return k.k.KeyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.k.Key }

func (s *storage) KeySet(ctx context.Context) ([]op.Key, error) {
	r, err := s.p.keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []op.Key
	for _, k := range r.published(s.p.now()) {
		out = append(out, publicKey{k})
	}
	return out, nil
}

// client is an op.Client: the gateway's own, or a service.
type client struct {
	id       string
	grants   []oidc.GrantType
	lifetime time.Duration
}

func (c *client) GetID() string                        { return c.id }
func (c *client) RedirectURIs() []string               { return nil }
func (c *client) PostLogoutRedirectURIs() []string     { return nil }
func (c *client) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod          { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType   { return nil }
func (c *client) GrantTypes() []oidc.GrantType         { return c.grants }
func (c *client) LoginURL(string) string               { return "" }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return c.lifetime }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

var errUnknownClient = errors.New("unknown client")

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id == GatewayClient {
		return &client{id: id, lifetime: s.p.cfg.AccessTokenLifetime,
			grants: []oidc.GrantType{oidc.GrantTypeDeviceCode, oidc.GrantTypeRefreshToken}}, nil
	}
	if s.p.serviceClient(id) {
		return &client{id: id, lifetime: s.p.cfg.AccessTokenLifetime, grants: []oidc.GrantType{oidc.GrantTypeClientCredentials}}, nil
	}
	return nil, errUnknownClient
}

func (s *storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	if id == GatewayClient {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(s.p.secret)) == 1 {
			return nil
		}
		return errUnknownClient
	}
	_, err := s.ClientCredentials(ctx, id, secret)
	return err
}

func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	f, err := s.p.accounts()
	if err != nil {
		return nil, oidc.ErrServerError()
	}
	c := f.Client(id)
	if c == nil || c.Disabled || !c.secretMatches(secret) {
		return nil, errUnknownClient
	}
	return s.GetClientByClientID(ctx, id)
}

// ccRequest is a client-credentials token's request: the client is its
// own subject (RFC 9068, section 2.2), and the gateway the audience.
type ccRequest struct {
	id     string
	scopes []string
}

func (r *ccRequest) GetSubject() string    { return r.id }
func (r *ccRequest) GetAudience() []string { return []string{GatewayClient} }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &ccRequest{id: id, scopes: scopes}, nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// setUserinfo fills ui with what the file says of the account subject.
func (s *storage) setUserinfo(ui *oidc.UserInfo, subject string) error {
	f, err := s.p.accounts()
	if err != nil {
		return err
	}
	a := f.AccountByID(subject)
	if a == nil || a.Disabled {
		return errSession
	}
	ui.Subject = a.ID
	ui.Name = a.Name
	ui.PreferredUsername = a.Name
	ui.Email = a.Email
	ui.AppendClaims("groups", a.Roles)
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	return s.setUserinfo(ui, req.GetSubject())
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, _, subject, _ string) error {
	return s.setUserinfo(ui, subject)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, _, subject, clientID string) error {
	ui := &oidc.UserInfo{}
	if err := s.setUserinfo(ui, subject); err != nil {
		return nil // not active
	}
	resp.Active = true
	resp.Subject = subject
	resp.ClientID = clientID
	resp.SetUserInfo(ui)
	return nil
}

// GetPrivateClaimsFromScopes puts the account's (or the service
// client's) roles in the access token as "groups", with its name and
// email.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, subject, clientID string, _ []string) (map[string]any, error) {
	f, err := s.p.accounts()
	if err != nil {
		return nil, err
	}
	if c := f.Client(subject); c != nil && subject == clientID {
		return map[string]any{"groups": slices.Clone(c.Roles)}, nil
	}
	a := f.AccountByID(subject)
	if a == nil || a.Disabled {
		return nil, oidc.ErrAccessDenied()
	}
	claims := map[string]any{"groups": slices.Clone(a.Roles), "name": a.Name, "preferred_username": a.Name}
	if a.Email != "" {
		claims["email"] = a.Email
	}
	return claims, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("the JWT profile grant is not offered")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not offered")
}

func (s *storage) Health(context.Context) error { return nil }

// deviceAuth is a device authorization: a flwr login waiting for its
// user to sign in.
type deviceAuth struct {
	ClientID string    `json:"client_id"`
	Scopes   []string  `json:"scopes"`
	Expires  time.Time `json:"expires"`
	UserCode string    `json:"user_code"`
	Done     bool      `json:"done,omitempty"`
	Subject  string    `json:"sub,omitempty"`
	AMR      []string  `json:"amr,omitempty"`
	AuthTime time.Time `json:"auth_time,omitzero"`
}

func (s *storage) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	ttl := 2 * s.p.cfg.DeviceCodeLifetime // kept past expiry, to answer expired_token
	ok, err := s.p.kv.setNX(ctx, userCodeKey(userCode), []byte(deviceCode), s.p.cfg.DeviceCodeLifetime)
	if err != nil {
		return err
	}
	if !ok {
		return op.ErrDuplicateUserCode
	}
	b, _ := json.Marshal(deviceAuth{ClientID: clientID, Scopes: scopes, Expires: expires, UserCode: userCode})
	return s.p.kv.set(ctx, deviceKey(deviceCode), b, ttl)
}

func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	b, err := s.p.kv.get(ctx, deviceKey(deviceCode))
	if err != nil {
		return nil, err
	}
	var d deviceAuth
	if b == nil || json.Unmarshal(b, &d) != nil || d.ClientID != clientID {
		return nil, errors.New("unknown device code")
	}
	st := &op.DeviceAuthorizationState{ClientID: d.ClientID, Audience: []string{GatewayClient}, Scopes: d.Scopes, Expires: d.Expires}
	if d.Done {
		// Once: the tokens go to the first poll that sees it done.
		if b, err := s.p.kv.getDel(ctx, deviceKey(deviceCode)); err != nil || b == nil {
			return nil, errors.New("the device code was used")
		}
		st.Done, st.Subject, st.AMR, st.AuthTime = true, d.Subject, d.AMR, d.AuthTime
	}
	return st, nil
}

// errBadUserCode: no waiting login has this code (or it expired).
var errBadUserCode = errors.New("unknown or expired code")

// pendingDevice returns the device code of a user code waiting for its
// sign-in.
func (p *Provider) pendingDevice(ctx context.Context, userCode string) (string, *deviceAuth, error) {
	dc, err := p.kv.get(ctx, userCodeKey(userCode))
	if err != nil {
		return "", nil, err
	}
	if dc == nil {
		return "", nil, errBadUserCode
	}
	b, err := p.kv.get(ctx, deviceKey(string(dc)))
	if err != nil {
		return "", nil, err
	}
	var d deviceAuth
	if b == nil || json.Unmarshal(b, &d) != nil || d.Done || p.now().After(d.Expires) {
		return "", nil, errBadUserCode
	}
	return string(dc), &d, nil
}

// completeDevice marks the login of userCode done for account subject;
// the user code is taken, so it completes one login once.
func (p *Provider) completeDevice(ctx context.Context, userCode, subject string, amr []string) error {
	dc, err := p.kv.getDel(ctx, userCodeKey(userCode))
	if err != nil {
		return err
	}
	if dc == nil {
		return errBadUserCode
	}
	b, err := p.kv.get(ctx, deviceKey(string(dc)))
	if err != nil {
		return err
	}
	var d deviceAuth
	if b == nil || json.Unmarshal(b, &d) != nil || d.Done || p.now().After(d.Expires) {
		return errBadUserCode
	}
	d.Done, d.Subject, d.AMR, d.AuthTime = true, subject, amr, p.now()
	b, _ = json.Marshal(d)
	if err := p.kv.set(ctx, deviceKey(string(dc)), b, d.Expires.Sub(p.now())+p.cfg.DeviceCodeLifetime); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	return nil
}
