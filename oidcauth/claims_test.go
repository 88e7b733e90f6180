package oidcauth_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nodekeys/nodekeys/oidcauth"
)

// Claims named by a URL (namespaced claims, as Auth0 requires) have dots
// in their names: the whole name is read first, and a dotted path still
// reaches into nested objects, the longest existing name first at each
// level.
func TestClaimNamesWithDots(t *testing.T) {
	claims := map[string]any{
		"https://nodekeys.example/roles": []any{"member"},
		"https://nodekeys.example/claims": map[string]any{
			"roles":      []any{"nested"},
			"team.roles": []any{"dotted inside"},
		},
		"https://nodekeys": map[string]any{"example/other": "found at the dots"},
		"a":                map[string]any{"b": map[string]any{"c": "deep"}},
		"a.b":              map[string]any{"x": "shorter"},
		"realm_access":     map[string]any{"roles": []any{"admin"}},
	}
	for path, want := range map[string]any{
		"https://nodekeys.example/roles":             []any{"member"},
		"https://nodekeys.example/claims.roles":      []any{"nested"},
		"https://nodekeys.example/claims.team.roles": []any{"dotted inside"},
		"https://nodekeys.example/other":             "found at the dots", // no whole name: the dotted path
		"a.b.c":                                      "deep",              // "a.b" exists, has no c: "a", then "b"
		"a.b.x":                                      "shorter",
		"realm_access.roles":                         []any{"admin"},
		"https://nodekeys.example/missing":           nil,
		"a.b.c.d":                                    nil,
		"":                                           nil,
	} {
		assert.Equal(t, want, oidcauth.Claim(claims, path), path)
	}
	assert.Equal(t, []string{"member"}, oidcauth.Strings(oidcauth.Claim(claims, "https://nodekeys.example/roles")))
}
