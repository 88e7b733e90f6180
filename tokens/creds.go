package tokens

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc/credentials"
)

// bearer sends "authorization: Bearer TOKEN" on every call, over TLS only.
type bearer struct {
	src oauth2.TokenSource
}

// Static returns gRPC call credentials that send token as
// "authorization: Bearer TOKEN". gRPC refuses to send them over a
// connection without TLS.
func Static(token string) credentials.PerRPCCredentials {
	return bearer{src: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})}
}

// ClientCredentials returns gRPC call credentials for a service: an access
// token fetched from the provider's token endpoint with the OAuth 2.0
// client-credentials grant (RFC 6749, section 4.4), kept, and fetched
// again refreshBefore its expiry (10s if zero). ctx is used for every
// fetch; give it an oauth2.HTTPClient to trust a private CA. TLS only.
func ClientCredentials(ctx context.Context, cfg *clientcredentials.Config, refreshBefore time.Duration) credentials.PerRPCCredentials {
	if refreshBefore <= 0 {
		refreshBefore = 10 * time.Second
	}
	return bearer{src: oauth2.ReuseTokenSourceWithExpiry(nil, cfg.TokenSource(ctx), refreshBefore)}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
		return nil, errors.New("tokens: a bearer token is sent over TLS only")
	}
	tok, err := b.src.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (bearer) RequireTransportSecurity() bool { return true }
