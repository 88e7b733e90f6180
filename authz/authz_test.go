package authz_test

import (
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
}
