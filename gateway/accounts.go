package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// accountsServer is the gateway's own OpenID Connect provider (accounts:
// in the config) and the HTTPS server of its sign-in page and endpoints.
type accountsServer struct {
	p   *accounts.Provider
	srv *http.Server
}

// newAccounts starts the provider of cfg.Accounts, and returns the oidc
// configuration that checks its tokens: the same checks as any provider's.
func (g *Gateway) newAccounts(ctx context.Context, tlsConf *tls.Config) (*oidcauth.Config, error) {
	cfg := g.cfg
	var shared *accounts.Shared
	if g.shared != nil {
		shared = &accounts.Shared{Client: g.shared.Client(), Prefix: cfg.Redis.Prefix}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := accounts.New(ctx, *cfg.Accounts, shared, g.log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"h2", "http/1.1"}
	g.accts = &accountsServer{p: p, srv: &http.Server{Handler: p.Handler(), TLSConfig: conf,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: log.New(discard{}, "", 0)}}
	oc := p.OIDCConfig()
	return &oc, nil
}

// discard drops the HTTP server's own log (TLS handshake errors of port
// scanners, mostly).
type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
