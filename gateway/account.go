package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// The metadata of Flower's account login.
const (
	HeaderAccessToken  = "flwr-oidc-access-token"
	HeaderRefreshToken = "flwr-oidc-refresh-token"
	methodLoginDetails = "/flwr.proto.Control/GetLoginDetails"
	methodAuthTokens   = "/flwr.proto.Control/GetAuthTokens"
	authnTypeOIDC      = "oidc"
)

// accountCtx carries the authenticated account of a Control call.
type accountCtx struct{}

// AccountFromContext returns the account a Control call was made by.
func AccountFromContext(ctx context.Context) (*oidcauth.Account, bool) {
	a, ok := ctx.Value(accountCtx{}).(*oidcauth.Account)
	return a, ok
}

// unary reads the one request message of a unary call and answers it with
// resp, an encoded message.
func unary(ss grpc.ServerStream, in proto.Message, answer func() (proto.Message, error)) error {
	f := &frame{}
	if err := ss.RecvMsg(f); err != nil {
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
func (g *Gateway) login(ss grpc.ServerStream, method string) error {
	ctx, cancel := context.WithTimeout(ss.Context(), 20*time.Second)
	defer cancel()
	if method == methodLoginDetails {
		return unary(ss, &flwrpb.GetLoginDetailsRequest{}, func() (proto.Message, error) {
			d, err := g.oidc.StartLogin(ctx)
			if err != nil {
				g.log.Warn("login: cannot start a device login", "error", err)
				return nil, status.Error(codes.Unavailable, "the identity provider cannot be reached for a new login; try again later")
			}
			return &flwrpb.GetLoginDetailsResponse{AuthnType: authnTypeOIDC, DeviceCode: d.DeviceCode,
				VerificationUriComplete: d.VerificationURIComplete, ExpiresIn: d.ExpiresIn, Interval: d.Interval}, nil
		})
	}
	req := &flwrpb.GetAuthTokensRequest{}
	return unary(ss, req, func() (proto.Message, error) {
		tok, err := g.oidc.PollLogin(ctx, req.DeviceCode)
		switch {
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

// authenticateControl checks a Control call's login and returns the
// context with the account, and the metadata to send upstream (without
// the tokens).
func (g *Gateway) authenticateControl(ss grpc.ServerStream, method string, md metadata.MD) (context.Context, metadata.MD, error) {
	ctx := ss.Context()
	first := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if len(md.Get(HeaderAccessToken)) > 1 || len(md.Get(HeaderRefreshToken)) > 1 {
		return nil, nil, status.Error(codes.Unauthenticated, "a login header is sent more than once")
	}
	acct, next, err := g.oidc.Authenticate(ctx, first(HeaderAccessToken), first(HeaderRefreshToken))
	if err != nil {
		g.m.refusals.WithLabelValues("login").Inc()
		if ok, dropped := g.refusal.Allow(time.Now()); ok {
			g.log.Warn("refused a Control call", "method", method, "detail", err.Error(), "suppressed", dropped)
		}
		return nil, nil, status.Error(codes.Unauthenticated, "not logged in, or the login has expired: run flwr login")
	}
	if next != nil {
		// The CLI stores the pair it finds in the response's header.
		ss.SetHeader(metadata.Pairs(HeaderAccessToken, next.Access, HeaderRefreshToken, next.Refresh))
	}
	g.log.Info("control call", append([]any{"method", method}, accountAttrs(acct)...)...)
	up := outgoing(md, nil)
	delete(up, HeaderAccessToken)
	delete(up, HeaderRefreshToken)
	delete(up, "authorization")
	return context.WithValue(ctx, accountCtx{}, acct), up, nil
}

func accountAttrs(a *oidcauth.Account) []any {
	attrs := []any{"sub", a.Subject}
	if a.Name != "" {
		attrs = append(attrs, "name", a.Name)
	}
	if a.Email != "" {
		attrs = append(attrs, "email", a.Email)
	}
	if len(a.Groups) > 0 {
		attrs = append(attrs, "groups", strings.Join(a.Groups, ","))
	}
	if a.ClientID != "" && a.Subject == a.ClientID {
		attrs = append(attrs, "client", a.ClientID)
	}
	return attrs
}
