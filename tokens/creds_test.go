package tokens_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc/credentials"

	"github.com/nodekeys/nodekeys/tokens"
)

// tokenEndpoint answers the client-credentials grant with svc-1, svc-2,
// ..., each for 60 s, or with 401 while refuse is set.
type tokenEndpoint struct {
	fetches int
	refuse  bool
}

func (e *tokenEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	req.Body.Close()
	answer := func(code int, s string) *http.Response {
		return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(s)), Request: req}
	}
	if e.refuse || !strings.Contains(string(body), "grant_type=client_credentials") {
		return answer(http.StatusUnauthorized, `{"error":"invalid_client"}`), nil
	}
	e.fetches++
	return answer(http.StatusOK, fmt.Sprintf(`{"access_token":"svc-%d","token_type":"Bearer","expires_in":60}`, e.fetches)), nil
}

// overTLS is a call's context as gRPC gives it to credentials on a TLS
// connection, or on one without TLS.
func overTLS(tls bool) context.Context {
	level := credentials.PrivacyAndIntegrity
	if !tls {
		level = credentials.NoSecurity
	}
	return credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{
		AuthInfo: credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: level}}})
}

// A service's token is fetched once, kept, and fetched again refreshBefore
// its expiry, to the nanosecond; it is never sent, nor fetched, without
// TLS; a refused fetch fails the call.
func TestClientCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &tokenEndpoint{}
		cfg := &clientcredentials.Config{ClientID: "ci", ClientSecret: "ci-secret", TokenURL: "https://provider.example/token"}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: e})
		creds := tokens.ClientCredentials(ctx, cfg, 20*time.Second)
		assert.True(t, creds.RequireTransportSecurity())
		sent := func() string {
			md, err := creds.GetRequestMetadata(overTLS(true))
			require.NoError(t, err)
			return md["authorization"]
		}

		_, err := creds.GetRequestMetadata(overTLS(false))
		assert.ErrorContains(t, err, "sent over TLS only")
		assert.Zero(t, e.fetches, "nothing fetched for a call without TLS")

		assert.Equal(t, "Bearer svc-1", sent())
		time.Sleep(40 * time.Second) // 60 s, less refreshBefore
		assert.Equal(t, "Bearer svc-1", sent(), "kept until refreshBefore its expiry")
		time.Sleep(time.Nanosecond)
		assert.Equal(t, "Bearer svc-2", sent(), "fetched again")
		assert.Equal(t, 2, e.fetches)

		e.refuse = true
		time.Sleep(time.Minute)
		_, err = creds.GetRequestMetadata(overTLS(true))
		assert.ErrorContains(t, err, "invalid_client")
	})
}
