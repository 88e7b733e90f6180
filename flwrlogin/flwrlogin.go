// Package flwrlogin is the client side of Flower's account login, as the
// flwr CLI speaks it, for Go programs and scripts: a device login through
// a Control API (GetLoginDetails, then GetAuthTokens every interval until
// the user has signed in), a token file (0600), and call credentials that
// send the tokens and keep the new pair a server returns after refreshing
// them.
package flwrlogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// The metadata keys of the tokens.
const (
	HeaderAccessToken  = flwr.HeaderAccessToken
	HeaderRefreshToken = flwr.HeaderRefreshToken
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
	if d.AuthnType != "oidc" {
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

// ReadFile reads a token file.
func ReadFile(path string) (*Tokens, error) {
	b, err := safefile.ReadRegular(path, 64<<10)
	if err != nil {
		return nil, err
	}
	t := &Tokens{}
	if err := json.Unmarshal(b, t); err != nil || t.Access == "" {
		return nil, fmt.Errorf("%s: not a login file with an access_token", path)
	}
	return t, nil
}

// WriteFile writes a token file atomically, mode 0600, in a folder made
// 0700 if it is new.
func WriteFile(path string, t *Tokens) error {
	if err := atomicfile.MkdirPrivate(filepath.Dir(path)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600, true)
}

// Credentials send an account's tokens with every call, and keep the new
// pair a server sends back after refreshing them (rewriting the token file
// when there is one).
type Credentials struct {
	mu     sync.Mutex
	tok    Tokens
	path   string
	secure bool
}

// NewCredentials returns credentials for t; path, if not empty, is
// rewritten with refreshed tokens; secure requires TLS.
func NewCredentials(t *Tokens, path string, secure bool) *Credentials {
	return &Credentials{tok: *t, path: path, secure: secure}
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
	if c.path != "" {
		WriteFile(c.path, &c.tok)
	}
}

// DefaultFile is where nodekeys login keeps tokens:
// $XDG_CONFIG_HOME/nodekeys/login.json, or ~/.config/nodekeys/login.json.
func DefaultFile() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "nodekeys", "login.json")
}
