package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/oidcauth"
	"github.com/nodekeys/nodekeys/tokens"
)

// The metadata of Flower's account login (see package flwr).
const (
	HeaderAccessToken  = flwr.HeaderAccessToken
	HeaderRefreshToken = flwr.HeaderRefreshToken
)

// The login methods, which the gateway answers itself.
var (
	methodLoginDetails = flwr.Control("GetLoginDetails")
	methodAuthTokens   = flwr.Control("GetAuthTokens")
)

// unary reads the one request message of a unary call and answers it with
// resp, an encoded message.
func unary(ss grpc.ServerStream, in proto.Message, answer func() (proto.Message, error)) error {
	f := &frame{}
	if err := recvRequest(ss, f); err != nil {
		return err
	}
	if err := proto.Unmarshal(f.b, in); err != nil {
		return status.Error(codes.InvalidArgument, "the request does not decode")
	}
	out, err := answer()
	if err != nil {
		return err
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return err
	}
	return ss.SendMsg(&frame{b: b})
}

// login answers GetLoginDetails and GetAuthTokens itself: the device flow
// runs between the gateway and the provider, never through the SuperLink.
// What the provider is asked is bounded per client address and overall
// (see oidcauth.Config's provider rates); a caller past them is refused
// with ResourceExhausted, after the refusal delay.
func (g *Gateway) login(ss grpc.ServerStream, method string) error {
	ctx, cancel := context.WithTimeout(oidcauth.WithClient(ss.Context(), clientAddr(ss.Context())), 20*time.Second)
	defer cancel()
	busy := func() error {
		g.m.refusals.WithLabelValues("login_rate").Inc()
		if ok, dropped := g.refusal.Allow(time.Now()); ok {
			g.log.Warn("refused a login call: too many from this address", "method", method, "peer", clientAddr(ss.Context()), "suppressed", dropped)
		}
		g.holdBack(ss.Context())
		return status.Error(codes.ResourceExhausted, "too many login attempts from this address; try again in a minute")
	}
	if method == methodLoginDetails {
		return unary(ss, &flwrpb.GetLoginDetailsRequest{}, func() (proto.Message, error) {
			d, err := g.oidc.StartLogin(ctx)
			switch {
			case errors.Is(err, oidcauth.ErrBusy):
				return nil, busy()
			case err != nil:
				g.log.Warn("login: cannot start a device login", "error", err)
				return nil, status.Error(codes.Unavailable, "the identity provider cannot be reached for a new login; try again later")
			}
			return &flwrpb.GetLoginDetailsResponse{AuthnType: flwr.AuthnTypeOIDC, DeviceCode: d.DeviceCode,
				VerificationUriComplete: d.VerificationURIComplete, ExpiresIn: d.ExpiresIn, Interval: d.Interval}, nil
		})
	}
	req := &flwrpb.GetAuthTokensRequest{}
	return unary(ss, req, func() (proto.Message, error) {
		tok, err := g.oidc.PollLogin(ctx, req.DeviceCode)
		switch {
		case errors.Is(err, oidcauth.ErrBusy):
			return nil, busy()
		case errors.Is(err, oidcauth.ErrDenied):
			return nil, status.Error(codes.PermissionDenied, "the login was denied at the identity provider")
		case errors.Is(err, oidcauth.ErrExpired):
			return nil, status.Error(codes.Unauthenticated, "the login code expired: run flwr login again")
		case err != nil:
			g.log.Warn("login: polling the provider failed", "error", err)
			return nil, status.Error(codes.Unavailable, "the identity provider cannot be reached; try again")
		case tok == nil:
			return &flwrpb.GetAuthTokensResponse{}, nil // pending, as the CLI expects
		}
		if acct, _, err := g.oidc.Authenticate(ctx, tok.Access, ""); err == nil {
			g.log.Info("login completed", accountAttrs(acct)...)
		}
		return &flwrpb.GetAuthTokensResponse{AccessToken: tok.Access, RefreshToken: tok.Refresh}, nil
	})
}

// clientAddr is what the per-client budgets are kept by: the address a
// call comes from, grouped as the connection caps group it (an IPv4
// address, an IPv6 /64), so a host cannot pass them by changing the low
// bits of its address.
func clientAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if key, ok := clientKey(p.Addr); ok {
		return key.String()
	}
	return p.Addr.String()
}

// authenticateControl checks a Control call's login (flwr's token headers)
// or bearer token (authorization: Bearer), and returns the account and the
// metadata to send upstream, without any of them.
func (g *Gateway) authenticateControl(ss grpc.ServerStream, method string, md metadata.MD) (*oidcauth.Account, metadata.MD, error) {
	ctx := oidcauth.WithClient(ss.Context(), clientAddr(ss.Context()))
	// Refusals are held back as the Fleet API's are, so a caller that
	// waits for answers is slowed to its calls in flight per delay.
	refuseWith := func(reason, detail string, st *status.Status) error {
		g.m.refusals.WithLabelValues(reason).Inc()
		if ok, dropped := g.refusal.Allow(time.Now()); ok {
			g.log.Warn("refused a Control call", "method", method, "peer", clientAddr(ctx), "detail", detail, "suppressed", dropped)
		}
		g.holdBack(ctx)
		return st.Err()
	}
	refuse := func(detail string) error {
		return refuseWith("login", detail, status.New(codes.Unauthenticated, "not logged in, or the login has expired: run flwr login"))
	}
	if len(md.Get(HeaderAccessToken)) > 1 || len(md.Get(HeaderRefreshToken)) > 1 || len(md.Get("authorization")) > 1 {
		return nil, nil, status.Error(codes.Unauthenticated, "a login header is sent more than once")
	}
	first := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	access, refresh := first(HeaderAccessToken), first(HeaderRefreshToken)
	var acct *oidcauth.Account
	if h := first("authorization"); h != "" {
		bearer, ok := cutBearer(h)
		switch {
		case !ok:
			return nil, nil, refuse("an authorization header that is not Bearer")
		case access != "":
			return nil, nil, refuse("both a bearer token and a login")
		case strings.HasPrefix(bearer, tokens.Prefix):
			e, err := g.lookupToken(ctx, bearer)
			if err != nil {
				return nil, nil, err
			}
			if e == nil {
				return nil, nil, refuse("an unknown or revoked bearer token")
			}
			acct = &oidcauth.Account{Principal: authz.Principal{Kind: authz.KindToken, Subject: e.Name}, Name: e.Name, Groups: []string{e.Role}}
		default:
			access = bearer // an access token from the provider, e.g. a service's
		}
	}
	if acct == nil {
		if g.oidc == nil {
			return nil, nil, refuse("no bearer token, and this gateway has no account login")
		}
		var next *oidcauth.Tokens
		var err error
		acct, next, err = g.oidc.Authenticate(ctx, access, refresh)
		switch {
		case errors.Is(err, oidcauth.ErrBusy):
			return nil, nil, refuseWith("login_rate", err.Error(), status.New(codes.ResourceExhausted, "too many login attempts from this address; try again in a minute"))
		case errors.Is(err, oidcauth.ErrProvider):
			g.log.Warn("the identity provider cannot be reached to check a login", "method", method, "error", err)
			return nil, nil, status.Error(codes.Unavailable, "the identity provider cannot be reached to check the login; try again later")
		case err != nil:
			return nil, nil, refuse(err.Error())
		}
		if next != nil {
			// The CLI stores the pair it finds in the response's header.
			ss.SetHeader(metadata.Pairs(HeaderAccessToken, next.Access, HeaderRefreshToken, next.Refresh))
		}
	}
	up := outgoing(md, nil)
	delete(up, HeaderAccessToken)
	delete(up, HeaderRefreshToken)
	delete(up, "authorization")
	return acct, up, nil
}

// lookupToken returns the token file's entry of tok, or nil. With shared
// state, a token another replica revoked is refused too, and a failure to
// ask is an Unavailable status (fail closed).
func (g *Gateway) lookupToken(ctx context.Context, tok string) (*tokens.Entry, error) {
	if g.tokens == nil {
		return nil, nil
	}
	e := g.tokens.Set().Lookup(tok)
	if e == nil || g.shared == nil {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Redis.Timeout)
	defer cancel()
	revoked, err := g.shared.Revoked(ctx, e.Hash)
	if err != nil {
		return nil, revokedUnknown(err)
	}
	if revoked {
		return nil, nil
	}
	return e, nil
}

// cutBearer returns the token of an authorization header's value.
func cutBearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// rolesOf returns the roles the policy reads for acct: a bearer token's
// role, or the policy's roles claim (default: the login's groups).
func (g *Gateway) rolesOf(acct *oidcauth.Account) []string {
	if acct.Claims != nil && g.policy.RolesClaim != "" {
		return oidcauth.Strings(oidcauth.Claim(acct.Claims, g.policy.RolesClaim))
	}
	return acct.Groups
}

// accountAttrs are the log attributes of a: its principal's kind and
// subject ("kind=token sub=ci"), then what the provider says of it.
func accountAttrs(a *oidcauth.Account) []any {
	attrs := []any{"kind", string(a.Principal.Kind), "sub", a.Principal.Subject}
	if a.Name != "" {
		attrs = append(attrs, "name", a.Name)
	}
	if a.Email != "" {
		attrs = append(attrs, "email", a.Email)
	}
	if len(a.Groups) > 0 {
		attrs = append(attrs, "groups", strings.Join(a.Groups, ","))
	}
	return attrs
}
