package oidcauth

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
)

// A token whose sub is its client_id, or that names no sub, is a service
// client's; any other is its subject's, a user's.
func TestAccountPrincipal(t *testing.T) {
	a := &Authenticator{cfg: Config{GroupsClaim: "groups"}}
	for name, tc := range map[string]struct {
		claims map[string]any
		want   authz.Principal
	}{
		"a user's":                         {map[string]any{"sub": "bob", "client_id": "flwr-gateway"}, authz.Principal{Kind: authz.KindUser, Subject: "bob"}},
		"a user's, from userinfo":          {map[string]any{"sub": "bob"}, authz.Principal{Kind: authz.KindUser, Subject: "bob"}},
		"a client's, sub is client_id":     {map[string]any{"sub": "bob", "client_id": "bob"}, authz.Principal{Kind: authz.KindClient, Subject: "bob"}},
		"a client's, no sub":               {map[string]any{"client_id": "bob"}, authz.Principal{Kind: authz.KindClient, Subject: "bob"}},
		"a service account's (Keycloak's)": {map[string]any{"sub": "6a1e", "client_id": "bob"}, authz.Principal{Kind: authz.KindUser, Subject: "6a1e"}},
		"a client's, sub is azp":           {map[string]any{"sub": "bob", "azp": "bob"}, authz.Principal{Kind: authz.KindClient, Subject: "bob"}},
		"a user's, with azp":               {map[string]any{"sub": "bob", "azp": "flwr-gateway"}, authz.Principal{Kind: authz.KindUser, Subject: "bob"}},
		"client_id before azp":             {map[string]any{"sub": "bob", "client_id": "flwr-gateway", "azp": "bob"}, authz.Principal{Kind: authz.KindUser, Subject: "bob"}},
	} {
		acct, err := a.account(tc.claims)
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, acct.Principal, name)
	}
	_, err := a.account(map[string]any{"name": "nobody"})
	assert.ErrorContains(t, err, "names no subject and no client")
}
