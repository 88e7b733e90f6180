package authz_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/flwr"
)

func TestDefaultPolicy(t *testing.T) {
	p := authz.Default()
	require.NoError(t, p.Validate())
	assert.Empty(t, p.Warnings())
	for _, m := range authz.Methods {
		d, err := p.Decide("/flwr.proto.Control/"+m, []string{"admin"})
		require.NoError(t, err, m)
		assert.True(t, d.SeeAll)
		if !slices.Contains(authz.DefaultRoles(m), "member") {
			// Changes to federations and invitations are made for every
			// account: an admin's only.
			_, err = p.Decide(m, []string{"member"})
			assert.EqualError(t, err, m+" needs the role admin (this account has roles member)")
			continue
		}
		assert.Contains(t, authz.OwnMethods, m, "a member's method is kept to its own")
		d, err = p.Decide(m, []string{"member"})
		require.NoError(t, err, m)
		assert.False(t, d.SeeAll, "a member sees only its own")
		_, err = p.Decide(m, []string{"service", "guest"})
		assert.EqualError(t, err, m+" needs the role admin or member (this account has roles service, guest)")
	}
	for _, m := range []string{"ListFederations", "ShowFederation", "ListInvitations"} {
		assert.Equal(t, []string{"admin", "member"}, authz.DefaultRoles(m), "a member sees its own federations, filtered")
	}
	_, err := p.Decide("StartRun", nil)
	assert.EqualError(t, err, "StartRun needs the role admin or member (this account has no role)")
	// A method Flower may add later is closed, even to "*".
	_, err = p.Decide("/flwr.proto.Control/DeleteFederation", []string{"admin"})
	assert.EqualError(t, err, "DeleteFederation is not granted to any role by this gateway's policy (this account has roles admin)")
	assert.Empty(t, authz.DefaultRoles("DeleteFederation"))
	_, err = p.Decide("/other.Service/StartRun", []string{"admin"})
	assert.Error(t, err, "another service's method of the same name")
}

// Every Control method of Flower 1.22 to 1.27 but the login itself can be
// granted, and has a default role set.
func TestEveryMethodHasDefaultRoles(t *testing.T) {
	var want []string
	for _, m := range flwr.ControlMethods("") {
		if !m.Login {
			want = append(want, m.Name)
		}
	}
	assert.ElementsMatch(t, want, authz.Methods)
	assert.Len(t, authz.Methods, 19)
	for _, m := range authz.Methods {
		assert.Contains(t, authz.DefaultRoles(m), "admin", m)
	}
	for _, m := range authz.OwnMethods {
		assert.Contains(t, authz.Methods, m)
	}
}

func TestPolicyValidate(t *testing.T) {
	for name, p := range map[string]*authz.Policy{
		"no roles":       {},
		"unknown method": {Roles: map[string]authz.Role{"x": {Methods: []string{"StartRuns"}}}},
		"empty role":     {Roles: map[string]authz.Role{"x": {}}},
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
	// its own runs, nodes and memberships, not the changes to federations.
	own := &authz.Policy{Roles: map[string]authz.Role{"all-own": {Methods: []string{authz.All}}}}
	require.NoError(t, own.Validate())
	assert.Empty(t, own.Warnings())
	for _, m := range []string{"StopRun", "ShowFederation", "ListFederations"} {
		_, err = own.Decide(m, []string{"all-own"})
		require.NoError(t, err, m)
	}
	_, err = own.Decide("CreateFederation", []string{"all-own"})
	assert.EqualError(t, err, "CreateFederation is not granted to any role by this gateway's policy (this account has roles all-own)")

	// Any method of the table may be named, with or without see_all; one
	// that changes every account's federations is granted as named, with
	// a warning.
	for _, m := range authz.Methods {
		for _, seeAll := range []bool{false, true} {
			p := &authz.Policy{Roles: map[string]authz.Role{"r": {Methods: []string{m}, SeeAll: seeAll}}}
			require.NoError(t, p.Validate(), m)
			d, err := p.Decide(m, []string{"r"})
			require.NoError(t, err, m)
			assert.Equal(t, seeAll, d.SeeAll)
			if !seeAll && !slices.Contains(authz.OwnMethods, m) {
				assert.Equal(t, []string{`role "r" grants ` + m + ` without see_all: ` + m + ` acts on every account's federations, so this role's holders act as admins for it`}, p.Warnings())
			} else {
				assert.Empty(t, p.Warnings(), m)
			}
		}
	}
}
