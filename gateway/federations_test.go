package gateway_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/tokens"
)

// fedRig is a gateway with bearer tokens for an admin, two members and a
// guest, in front of a stand-in that answers federations as Flower 1.25
// does, or as 1.26 and later do (and serves 1.27's methods).
type fedRig struct {
	*rig
	c                        *grpc.ClientConn
	admin, bob, carol, guest as
	runB, runC, nodeB, nodeC uint64
}

func newFedRig(t *testing.T, v127 bool, tweak ...func(*gateway.Config)) *fedRig {
	t.Helper()
	var opts []standin.Option
	if v127 {
		opts = append(opts, standin.Federations127())
	}
	up, err := standin.Listen(opts...)
	require.NoError(t, err)
	t.Cleanup(up.Stop)
	file := filepath.Join(t.TempDir(), "tokens")
	tok := func(name, role string) as {
		s, _, err := tokens.New(file, name, role)
		require.NoError(t, err)
		return bearer(s)
	}
	f := &fedRig{admin: tok("ops", "admin"), bob: tok("bob", "member"), carol: tok("carol", "member"), guest: tok("visitor", "guest")}
	f.rig = newRig(t, 2, append([]func(*gateway.Config){func(c *gateway.Config) {
		c.Upstream, c.UpstreamControl, c.TokenList = up.Addr, up.Addr, file
	}}, tweak...)...)
	f.up = up
	f.c = f.dial(t, f.control, nil)
	f.runB, f.runC = startRun(t, f.c, f.bob), startRun(t, f.c, f.carol)
	f.nodeB = registerNode(t, f.c, f.bob, f.keys.Pairs[0].Public)
	f.nodeC = registerNode(t, f.c, f.carol, f.keys.Pairs[1].Public)
	return f
}

// show calls ShowFederation and returns the federation's bytes.
func (f *fedRig) show(t *testing.T, who as, name string) ([]byte, error) {
	t.Helper()
	out, err := ctl(f.c, who, "ShowFederation", &flwrpb.ShowFederationRequest{FederationName: name})
	if err != nil {
		return nil, err
	}
	m := &flwrpb.ShowFederationResponse{}
	require.NoError(t, proto.Unmarshal(out[0], m))
	assert.Equal(t, "now", m.Now)
	return m.Federation, nil
}

func nodeIDs(ns []*flwrpb.NodeInfo) (ids []uint64, owners []string) {
	for _, n := range ns {
		ids, owners = append(ids, n.NodeId), append(owners, n.OwnerAid)
	}
	return ids, owners
}

func runList(rs []*flwrpb.Run) (ids []uint64, owners []string) {
	for _, r := range rs {
		ids, owners = append(ids, r.RunId), append(owners, r.FlwrAid)
	}
	return ids, owners
}

// ShowFederation's answer carries the federation's runs and nodes (Flower
// 1.25's layout): a member sees its own, with its owner filled in, and
// no other member; an admin sees all. ListFederations is granted to
// members; a guest gets neither.
func TestShowFederationKeepsMembersToTheirOwn(t *testing.T) {
	t.Parallel()
	f := newFedRig(t, false)
	for _, tc := range []struct {
		who   as
		runs  []uint64
		nodes []uint64
		owner string
	}{
		{f.bob, []uint64{f.runB}, []uint64{f.nodeB}, "token:bob"},
		{f.carol, []uint64{f.runC}, []uint64{f.nodeC}, "token:carol"},
	} {
		b, err := f.show(t, tc.who, standin.Federation)
		require.NoError(t, err)
		m := &flwrpb.FederationV124{}
		require.NoError(t, proto.Unmarshal(b, m))
		assert.Equal(t, standin.Federation, m.Name)
		assert.Empty(t, m.MemberAids, "the SuperLink's only member is not the caller")
		ids, owners := runList(m.Runs)
		assert.Equal(t, tc.runs, ids)
		assert.Equal(t, []string{tc.owner}, owners)
		ids, owners = nodeIDs(m.Nodes)
		assert.Equal(t, tc.nodes, ids)
		assert.Equal(t, []string{tc.owner}, owners)
		assert.NotEmpty(t, m.Nodes[0].PublicKey, "NodeInfo's fields are kept")
		assert.Contains(t, string(b), standin.FabHash(tc.runs[0]), "a Run field the gateway does not declare is kept")
	}
	b, err := f.show(t, f.admin, standin.Federation)
	require.NoError(t, err)
	m := &flwrpb.FederationV124{}
	require.NoError(t, proto.Unmarshal(b, m))
	assert.Equal(t, []string{"<id:none>"}, m.MemberAids)
	ids, _ := runList(m.Runs)
	assert.ElementsMatch(t, []uint64{f.runB, f.runC}, ids)
	ids, owners := nodeIDs(m.Nodes)
	assert.ElementsMatch(t, []uint64{f.nodeB, f.nodeC}, ids)
	assert.ElementsMatch(t, []string{"token:bob", "token:carol"}, owners, "the admin sees the recorded owners")

	// Flower's own refusal of an unknown federation passes as it came.
	_, err = f.show(t, f.bob, "@bob/secret")
	wantStatus(t, err, codes.FailedPrecondition, "Federation '@bob/secret' does not exist or you are not a member of it.")
	_, err = f.show(t, f.guest, standin.Federation)
	wantStatus(t, err, codes.PermissionDenied, "ShowFederation needs the role admin or member (this account has roles guest)")

	out, err := ctl(f.c, f.bob, "ListFederations", &flwrpb.ListFederationsRequest{})
	require.NoError(t, err)
	l := &flwrpb.ListFederationsResponse{}
	require.NoError(t, proto.Unmarshal(out[0], l))
	require.Len(t, l.Federations, 1)
	require.NoError(t, proto.Unmarshal(l.Federations[0], m))
	assert.Equal(t, standin.Federation, m.Name)
	_, err = ctl(f.c, f.guest, "ListFederations", &flwrpb.ListFederationsRequest{})
	wantStatus(t, err, codes.PermissionDenied, "ListFederations needs the role admin or member (this account has roles guest)")
}

// Flower 1.26 and later renumbered Federation and added members: with
// flower_version unset or 1.27 the gateway filters that layout too, and a
// member sees itself only among the members. The 1.27 methods that change
// federations are an admin's by default; a method no table entry has is
// refused to all.
func TestFederationsOfFlower127(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"", "1.27"} {
		f := newFedRig(t, true, func(c *gateway.Config) { c.FlowerVersion = version })
		b, err := f.show(t, f.bob, standin.Federation)
		require.NoError(t, err, version)
		m := &flwrpb.Federation{}
		require.NoError(t, proto.Unmarshal(b, m))
		assert.Equal(t, "A federation for testing and development purposes.", m.Description)
		assert.Empty(t, m.Members, "only the caller among the members")
		ids, owners := runList(m.Runs)
		assert.Equal(t, []uint64{f.runB}, ids)
		assert.Equal(t, []string{"token:bob"}, owners)
		ids, _ = nodeIDs(m.Nodes)
		assert.Equal(t, []uint64{f.nodeB}, ids)

		b, err = f.show(t, f.admin, standin.Federation)
		require.NoError(t, err)
		require.NoError(t, proto.Unmarshal(b, m))
		require.Len(t, m.Members, 1)
		assert.Equal(t, "<id:none>", m.Members[0].GetAccount().GetId())
		assert.Len(t, m.Runs, 2)
		assert.Len(t, m.Nodes, 2)
	}
	f := newFedRig(t, true)
	for _, method := range []string{"CreateFederation", "ArchiveFederation", "AddNodeToFederation", "RemoveNodeFromFederation",
		"CreateInvitation", "AcceptInvitation", "RejectInvitation", "RevokeInvitation"} {
		_, err := ctl(f.c, f.bob, method, &flwrpb.ShowFederationRequest{FederationName: "@bob/x"})
		wantStatus(t, err, codes.PermissionDenied, method+" needs the role admin (this account has roles member)")
		_, err = ctl(f.c, f.admin, method, &flwrpb.ShowFederationRequest{FederationName: "@bob/x"})
		require.NoError(t, err, "%s reaches the SuperLink for an admin", method)
	}
	_, err := ctl(f.c, f.admin, "DeleteFederation", &flwrpb.ShowFederationRequest{})
	wantStatus(t, err, codes.PermissionDenied, "DeleteFederation is not granted to any role by this gateway's policy (this account has roles admin)")

	// ListInvitations names accounts: a member keeps those it made or
	// received. (The stand-in echoes the request, here the answer.)
	inv := func(fed, from, to string) *flwrpb.Invitation {
		return &flwrpb.Invitation{FederationName: fed, Inviter: &flwrpb.Account{Id: from}, Invitee: &flwrpb.Account{Id: to}}
	}
	all := &flwrpb.ListInvitationsResponse{
		CreatedInvitations:  []*flwrpb.Invitation{inv("@a/1", "token:bob", "x"), inv("@a/2", "token:carol", "y")},
		ReceivedInvitations: []*flwrpb.Invitation{inv("@a/3", "z", "token:bob"), inv("@a/4", "z", "token:carol")},
	}
	for who, want := range map[string][]string{"bob": {"@a/1", "@a/3"}, "admin": {"@a/1", "@a/2", "@a/3", "@a/4"}} {
		caller := map[string]as{"bob": f.bob, "admin": f.admin}[who]
		out, err := ctl(f.c, caller, "ListInvitations", all)
		require.NoError(t, err)
		got := &flwrpb.ListInvitationsResponse{}
		require.NoError(t, proto.Unmarshal(out[0], got))
		var names []string
		for _, x := range slices.Concat(got.CreatedInvitations, got.ReceivedInvitations) {
			names = append(names, x.FederationName)
		}
		assert.Equal(t, want, names, who)
	}
}

// A policy may name every method of the table, with or without see_all:
// the gateway starts, and warns of a role without see_all that changes
// every account's federations.
func TestPolicyNamingEveryMethodStarts(t *testing.T) {
	t.Parallel()
	f := newFedRig(t, true, func(c *gateway.Config) {
		c.Policy = &authz.Policy{Roles: map[string]authz.Role{
			"admin":  {Methods: slices.Clone(authz.Methods), SeeAll: true},
			"member": {Methods: slices.Clone(authz.Methods)},
		}}
	})
	assert.Contains(t, f.logs.String(), `role \"member\" grants CreateFederation without see_all`)
	// Named, so granted; its answer (here echoed by the stand-in) is a
	// federation, kept to the caller's own as ShowFederation's.
	fed := encode(&flwrpb.Federation{Name: "@bob/x", Runs: []*flwrpb.Run{{RunId: f.runB}, {RunId: f.runC}}})
	out, err := ctl(f.c, f.bob, "CreateFederation", &flwrpb.CreateFederationResponse{Federation: fed})
	require.NoError(t, err)
	created := &flwrpb.CreateFederationResponse{}
	require.NoError(t, proto.Unmarshal(out[0], created))
	m := &flwrpb.Federation{}
	require.NoError(t, proto.Unmarshal(created.Federation, m))
	ids, _ := runList(m.Runs)
	assert.Equal(t, []uint64{f.runB}, ids)
	b, err := f.show(t, f.bob, standin.Federation)
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(b, m))
	assert.Len(t, m.Runs, 1, "still kept to its own")
}
