package authz_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nodekeys/nodekeys/authz"
)

// A principal is shown as Flower's CLI shows accounts: users plainly,
// others with their kind, and never two principals alike.
func TestPrincipalStrings(t *testing.T) {
	seen := map[string]authz.Principal{}
	for _, tc := range []struct {
		p        authz.Principal
		str, key string
	}{
		{authz.Principal{Kind: authz.KindUser, Subject: "bob"}, "bob", "user:bob"},
		{authz.Principal{Kind: authz.KindClient, Subject: "bob"}, "client:bob", "client:bob"},
		{authz.Principal{Kind: authz.KindToken, Subject: "bob"}, "token:bob", "token:bob"},
		{authz.Principal{Kind: authz.KindUser, Subject: "token:bob"}, "user:token:bob", "user:token:bob"},
		{authz.Principal{Kind: authz.KindUser, Subject: "client:bob"}, "user:client:bob", "user:client:bob"},
		{authz.Principal{Kind: authz.KindUser, Subject: "user:bob"}, "user:user:bob", "user:user:bob"},
		{authz.Principal{Kind: authz.KindUser, Subject: "https://idp.example/u/1"}, "https://idp.example/u/1", "user:https://idp.example/u/1"},
	} {
		assert.Equal(t, tc.str, tc.p.String())
		assert.Equal(t, tc.key, tc.p.Key())
		_, dup := seen[tc.str]
		assert.False(t, dup, tc.str)
		seen[tc.str] = tc.p
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "alice", "ci-pipeline", "bob@example.org", "v1.2_x", strings.Repeat("a", 64)} {
		assert.True(t, authz.ValidName(ok), ok)
	}
	for _, bad := range []string{"", "-a", ".a", "@a", "a b", "a/b", "ä", strings.Repeat("a", 65), "token:x"} {
		assert.False(t, authz.ValidName(bad), bad)
	}
}
