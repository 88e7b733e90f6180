package authz_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
)

func TestDefaultPolicy(t *testing.T) {
	p := authz.Default()
	require.NoError(t, p.Validate())
	for _, m := range authz.Methods {
		d, err := p.Decide("/flwr.proto.Control/"+m, []string{"admin"})
		require.NoError(t, err, m)
		assert.True(t, d.SeeAll)
		if !slices.Contains(authz.OwnMethods, m) {
			// Federations and invitations show every account's runs and
			// nodes: an admin's only.
			_, err = p.Decide(m, []string{"member"})
			assert.EqualError(t, err, m+" needs the role admin (this account has roles member)")
			continue
		}
		d, err = p.Decide(m, []string{"member"})
		require.NoError(t, err, m)
		assert.False(t, d.SeeAll, "a member sees only its own")
		_, err = p.Decide(m, []string{"service", "guest"})
		assert.EqualError(t, err, m+" needs the role admin or member (this account has roles service, guest)")
	}
	_, err := p.Decide("StartRun", nil)
	assert.EqualError(t, err, "StartRun needs the role admin or member (this account has no role)")
	// A method Flower may add later is closed, even to "*".
	_, err = p.Decide("/flwr.proto.Control/DeleteFederation", []string{"admin"})
	assert.EqualError(t, err, "DeleteFederation is not granted to any role by this gateway's policy (this account has roles admin)")
	_, err = p.Decide("/other.Service/StartRun", []string{"admin"})
	assert.Error(t, err, "another service's method of the same name")
	// Every Control method of Flower 1.27 but the login is known.
	assert.Len(t, authz.Methods, 19)
	assert.Contains(t, authz.Methods, "ShowFederation")
	assert.Contains(t, authz.Methods, "RevokeInvitation")
}

func TestPolicyValidate(t *testing.T) {
	for name, p := range map[string]*authz.Policy{
		"no roles":                    {},
		"unknown method":              {Roles: map[string]authz.Role{"x": {Methods: []string{"StartRuns"}}}},
		"empty role":                  {Roles: map[string]authz.Role{"x": {}}},
		"federations without see_all": {Roles: map[string]authz.Role{"x": {Methods: []string{"ListRuns", "ShowFederation"}}}},
	} {
		assert.Error(t, p.Validate(), name)
	}
	viewer := &authz.Policy{Roles: map[string]authz.Role{"auditor": {Methods: []string{"ListRuns", "ListNodes"}, SeeAll: true}}}
	require.NoError(t, viewer.Validate())
	d, err := viewer.Decide("ListRuns", []string{"auditor"})
	require.NoError(t, err)
	assert.True(t, d.SeeAll)
	_, err = viewer.Decide("StopRun", []string{"auditor"})
	assert.EqualError(t, err, "StopRun is not granted to any role by this gateway's policy (this account has roles auditor)")

	// "*" for a role that sees only its own grants the methods kept to
	// its own runs and nodes, not the federations'.
	own := &authz.Policy{Roles: map[string]authz.Role{"all-own": {Methods: []string{authz.All}}}}
	require.NoError(t, own.Validate())
	_, err = own.Decide("StopRun", []string{"all-own"})
	require.NoError(t, err)
	_, err = own.Decide("ShowFederation", []string{"all-own"})
	assert.EqualError(t, err, "ShowFederation is not granted to any role by this gateway's policy (this account has roles all-own)")
	fed := &authz.Policy{Roles: map[string]authz.Role{"fed": {Methods: []string{"ListFederations", "ShowFederation"}, SeeAll: true}}}
	require.NoError(t, fed.Validate(), "any method of the table, with see_all")
}
