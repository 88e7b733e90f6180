package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/tokens"
)

// jwtClaims decodes a JWT's payload, unverified (the test reads what the
// provider issued).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3, "a JWT")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	claims := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &claims))
	return claims
}

// serviceBob is a service client (client credentials) at the provider of
// TestRolesAndOwnership, named as its user bob is.
var serviceBob = oidctest.Client{ID: "bob", Secret: "bob-service-secret", GrantTypes: []string{oidctest.GrantClientCredentials}}

// principalsSharingANameStayApart runs on TestRolesAndOwnership's provider
// (whose accounts are bob, carol and "token:carol", and whose client
// serviceBob has the group service), with the users bob's and carol's
// logins: a client-credentials token's sub is its client_id, so the
// service bob and the user bob carry the same sub, and a machine token
// "carol" has a user "carol" and a user "token:carol" beside it. Each is a
// principal of its own: none sees or acts on what another started, and
// Flower's CLI shows them apart.
func principalsSharingANameStayApart(t *testing.T, p *oidctest.Provider, userBob, userCarol as) {
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	carolToken, _, err := tokens.New(tokenFile, "carol", "member")
	require.NoError(t, err)
	policy := authz.Default()
	policy.Roles["service"] = authz.Role{Methods: []string{authz.All}} // the service's own runs only
	r := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.AllowedClients = append(c.OIDC.AllowedClients, serviceBob.ID)
		c.TokenList = tokenFile
		c.Policy = policy
	})
	svcJWT := p.ClientCredentials(t, serviceBob, oidctest.Resource)
	claims := jwtClaims(t, svcJWT)
	require.Equal(t, "bob", claims["sub"], "the provider names the client in sub (RFC 9068, 2.2)")
	require.Equal(t, "bob", claims["client_id"])
	require.Equal(t, "bob", jwtClaims(t, userBob[1])["sub"], "the user's sub is the service's")
	svc, tok := bearer(svcJWT), bearer(carolToken)
	c := r.dial(t, r.control, nil)

	// sees checks that who sees its runs alone, its owner shown as Flower's
	// CLI prints it: a user's plain subject, a client's and a token's with
	// their kind.
	sees := func(who as, runs []uint64, aid string) {
		t.Helper()
		m, _ := runsOf(t, c, who)
		if assert.Equal(t, runs, runIDs(m), aid) && runs != nil {
			assert.Equal(t, aid, m.RunDict[runs[0]].FlwrAid)
		}
	}
	// cannot checks that who can stop, stream or pull none of run, and
	// that nothing reaches the SuperLink.
	cannot := func(name string, who as, run uint64) {
		t.Helper()
		before := r.up.Count()
		for _, method := range []string{"StopRun", "StreamLogs", "PullArtifacts"} {
			_, err := ctl(c, who, method, &flwrpb.StopRunRequest{RunId: run})
			wantStatus(t, err, codes.PermissionDenied, "run "+fmtID(run)+" was not started or registered by this account")
		}
		assert.Equal(t, before, r.up.Count(), name)
	}

	// The service bob and the user bob.
	runUser, runSvc := startRun(t, c, userBob), startRun(t, c, svc)
	nodeSvc := registerNode(t, c, svc, r.keys.Pairs[0].Public)
	sees(userBob, []uint64{runUser}, "bob")
	sees(svc, []uint64{runSvc}, "client:bob")
	cannot("the service bob on the user bob's run", svc, runUser)
	cannot("the user bob on the service bob's run", userBob, runSvc)
	nodes := nodesOf(t, c, svc)
	require.Contains(t, nodes, nodeSvc)
	assert.Equal(t, "client:bob", nodes[nodeSvc].OwnerAid)
	assert.Empty(t, nodesOf(t, c, userBob), "the user bob does not see the service bob's node")
	before := r.up.Count()
	_, err = ctl(c, userBob, "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: nodeSvc})
	wantStatus(t, err, codes.PermissionDenied, "SuperNode "+fmtID(nodeSvc)+" was not started or registered by this account")
	assert.Equal(t, before, r.up.Count())

	// The token carol, the user carol, and the user "token:carol".
	posing := user(login(t, r, p, "token:carol").Access)
	runTok, runPosing := startRun(t, c, tok), startRun(t, c, posing)
	sees(tok, []uint64{runTok}, "token:carol")
	sees(posing, []uint64{runPosing}, "user:token:carol")
	sees(userCarol, nil, "")
	cannot("the user carol on the token carol's run", userCarol, runTok)
	cannot("the user token:carol on the token carol's run", posing, runTok)
	cannot("the token carol on the user token:carol's run", tok, runPosing)

	// Each acts on its own.
	for _, tc := range []struct {
		who as
		run uint64
	}{{userBob, runUser}, {svc, runSvc}, {tok, runTok}, {posing, runPosing}} {
		_, err := ctl(c, tc.who, "StopRun", &flwrpb.StopRunRequest{RunId: tc.run})
		require.NoError(t, err)
		assert.True(t, r.up.Stopped(tc.run))
	}
	logs := r.logs.String()
	assert.Contains(t, logs, "kind=client sub=bob")
	assert.Contains(t, logs, "kind=user sub=bob")
	assert.Contains(t, logs, "kind=token sub=carol")
}

// rolesFromAURLNamedClaim runs on TestRolesAndOwnership's provider, whose
// access tokens carry the groups also under a claim named by a URL, dots
// and all: a gateway whose roles_claim names it reads the roles there.
func rolesFromAURLNamedClaim(t *testing.T, p *oidctest.Provider, userBob as) {
	policy := authz.Default()
	policy.RolesClaim = oidctest.RolesURLClaim
	r := newRig(t, 1, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.OIDC.AllowedClients = append(c.OIDC.AllowedClients, serviceBob.ID)
		c.Policy = policy
	})
	require.Equal(t, []any{"member"}, jwtClaims(t, userBob[1])[oidctest.RolesURLClaim])
	c := r.dial(t, r.control, nil)
	_, err := ctl(c, userBob, "ListRuns", &flwrpb.ListRunsRequest{})
	require.NoError(t, err, "the role member, read from "+oidctest.RolesURLClaim)
	_, err = ctl(c, bearer(p.ClientCredentials(t, serviceBob, oidctest.Resource)), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.PermissionDenied, "ListRuns needs the role admin or member (this account has roles service)")
}
