package oidcauth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/oidcauth"
)

func TestClaimPaths(t *testing.T) {
	claims := map[string]any{
		"groups":       []any{"admin", "ops", 7},
		"realm_access": map[string]any{"roles": []any{"member"}},
		"scope":        "openid email",
	}
	assert.Equal(t, []string{"admin", "ops"}, oidcauth.Strings(oidcauth.Claim(claims, "groups")))
	assert.Equal(t, []string{"member"}, oidcauth.Strings(oidcauth.Claim(claims, "realm_access.roles")))
	assert.Equal(t, []string{"openid email"}, oidcauth.Strings(oidcauth.Claim(claims, "scope")), "a string is one value")
	assert.Nil(t, oidcauth.Strings(oidcauth.Claim(claims, "realm_access.roles.x")))
	assert.Nil(t, oidcauth.Strings(oidcauth.Claim(claims, "missing")))
}

// No configuration may let a token through on a shared secret or none.
func TestAlgorithmAllowlist(t *testing.T) {
	for _, alg := range []string{"none", "HS256", "hs512"} {
		_, err := oidcauth.New(context.Background(), oidcauth.Config{Issuer: "https://127.0.0.1:1", ClientID: "x", Algorithms: []string{"RS256", alg}})
		require.Error(t, err, alg)
		assert.Contains(t, err.Error(), "cannot be allowed")
	}
	_, err := oidcauth.New(context.Background(), oidcauth.Config{ClientID: "x"})
	assert.ErrorContains(t, err, "issuer and client_id")
	_, err = oidcauth.New(context.Background(), oidcauth.Config{Issuer: "https://127.0.0.1:1", ClientID: "x", ClientSecretEnv: "NODEKEYS_NO_SUCH_VARIABLE"})
	assert.ErrorContains(t, err, "holds no client secret")
}
