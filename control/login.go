package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
)

// Tokens are an account's access and refresh tokens.
type Tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// Login runs a device login: show is called once with the address the user
// opens to sign in; Login then polls until the tokens come, the login
// expires, or ctx ends.
func Login(ctx context.Context, conn grpc.ClientConnInterface, show func(uri string, expiresIn time.Duration)) (*Tokens, error) {
	control := flwrpb.NewControlClient(conn)
	d, err := control.GetLoginDetails(ctx, &flwrpb.GetLoginDetailsRequest{})
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if d.AuthnType != flwr.AuthnTypeOIDC {
		return nil, fmt.Errorf("login: the server offers no account login (authn_type %q)", d.AuthnType)
	}
	show(d.VerificationUriComplete, time.Duration(d.ExpiresIn)*time.Second)
	interval := max(time.Duration(d.Interval)*time.Second, time.Second)
	deadline := time.Now().Add(time.Duration(d.ExpiresIn) * time.Second)
	for {
		t, err := control.GetAuthTokens(ctx, &flwrpb.GetAuthTokensRequest{DeviceCode: d.DeviceCode})
		if err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		if t.AccessToken != "" && t.RefreshToken != "" {
			return &Tokens{Access: t.AccessToken, Refresh: t.RefreshToken}, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("login: the code expired before the sign-in was finished")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Credentials send an account's tokens with every call, and keep the new
// pair a server sends back after refreshing them (rewriting the login
// file when there is one).
type Credentials struct {
	mu     sync.Mutex
	tok    Tokens
	file   *LoginFile
	secure bool
}

// NewCredentials returns credentials for t; file, if not nil, is rewritten
// with refreshed tokens; secure requires TLS.
func NewCredentials(t *Tokens, file *LoginFile, secure bool) *Credentials {
	return &Credentials{tok: *t, file: file, secure: secure}
}

// GetRequestMetadata sends the current tokens.
func (c *Credentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	md := map[string]string{HeaderAccessToken: c.tok.Access}
	if c.tok.Refresh != "" {
		md[HeaderRefreshToken] = c.tok.Refresh
	}
	return md, nil
}

// RequireTransportSecurity is true unless made for a plaintext test.
func (c *Credentials) RequireTransportSecurity() bool { return c.secure }

// Tokens returns the current tokens.
func (c *Credentials) Tokens() Tokens {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

// UnaryInterceptor keeps refreshed tokens from the response header.
func (c *Credentials) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var h metadata.MD
		err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&h))...)
		c.keep(h)
		return err
	}
}

func (c *Credentials) keep(h metadata.MD) {
	a, r := h.Get(HeaderAccessToken), h.Get(HeaderRefreshToken)
	if len(a) != 1 || a[0] == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tok.Access = a[0]
	if len(r) == 1 && r[0] != "" {
		c.tok.Refresh = r[0]
	}
	if c.file != nil {
		c.file.Write(&c.tok)
	}
}
