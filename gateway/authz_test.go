package gateway_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/tokens"
)

const controlPrefix = "/flwr.proto.Control/"

// as is how a caller authenticates: flwr's login header, or a bearer token.
type as []string

func user(access string) as         { return as{gateway.HeaderAccessToken, access} }
func bearer(token string) as        { return as{"authorization", "Bearer " + token} }
func encode(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }

// ctl makes one Control call with a Flower message and returns the raw
// response (unary) or the messages (StreamLogs).
func ctl(c *grpc.ClientConn, who as, method string, req proto.Message) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), who...), 10*time.Second)
	defer cancel()
	in := encode(req)
	if method == "StreamLogs" {
		cs, err := c.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, controlPrefix+method)
		if err != nil {
			return nil, err
		}
		if err := cs.SendMsg(&in); err != nil {
			return nil, err
		}
		cs.CloseSend()
		var out [][]byte
		for {
			var m []byte
			if err := cs.RecvMsg(&m); err == io.EOF {
				return out, nil
			} else if err != nil {
				return out, err
			}
			out = append(out, m)
		}
	}
	var out []byte
	err := c.Invoke(ctx, controlPrefix+method, &in, &out)
	return [][]byte{out}, err
}

func startRun(t *testing.T, c *grpc.ClientConn, who as) uint64 {
	t.Helper()
	out, err := ctl(c, who, "StartRun", &flwrpb.ListNodesRequest{}) // the Fab is the upstream's business
	require.NoError(t, err)
	m := &flwrpb.StartRunResponse{}
	require.NoError(t, proto.Unmarshal(out[0], m))
	require.NotNil(t, m.RunId)
	return *m.RunId
}

func runsOf(t *testing.T, c *grpc.ClientConn, who as) (*flwrpb.ListRunsResponse, []byte) {
	t.Helper()
	out, err := ctl(c, who, "ListRuns", &flwrpb.ListRunsRequest{})
	require.NoError(t, err)
	m := &flwrpb.ListRunsResponse{}
	require.NoError(t, proto.Unmarshal(out[0], m))
	return m, out[0]
}

func runIDs(m *flwrpb.ListRunsResponse) []uint64 {
	var ids []uint64
	for id := range m.RunDict {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func registerNode(t *testing.T, c *grpc.ClientConn, who as, pub string) uint64 {
	t.Helper()
	b, err := os.ReadFile(pub)
	require.NoError(t, err)
	k, err := keys.ParsePublicKey(b)
	require.NoError(t, err)
	out, err := ctl(c, who, "RegisterNode", &flwrpb.RegisterNodeRequest{PublicKey: k.PEM()})
	require.NoError(t, err)
	m := &flwrpb.RegisterNodeResponse{}
	require.NoError(t, proto.Unmarshal(out[0], m))
	return m.GetNodeId()
}

func nodesOf(t *testing.T, c *grpc.ClientConn, who as) map[uint64]*flwrpb.NodeInfo {
	t.Helper()
	out, err := ctl(c, who, "ListNodes", &flwrpb.ListNodesRequest{})
	require.NoError(t, err)
	m := &flwrpb.ListNodesResponse{}
	require.NoError(t, proto.Unmarshal(out[0], m))
	got := map[uint64]*flwrpb.NodeInfo{}
	for _, n := range m.NodesInfo {
		got[n.NodeId] = n
	}
	return got
}

// Two members and an admin from a real provider, and bearer tokens: each
// member sees and acts on its own runs and nodes only, the admin on all;
// owners survive a restart; a revoked token is refused from the next
// reload.
func TestRolesAndOwnership(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.State{Accounts: map[string][]string{"alice": {"admin"}, "bob": {"member"}, "carol": {"member"}, "token:carol": {"member"}},
		Clients: []oidctest.Client{serviceBob}})
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	ci, _, err := tokens.New(tokenFile, "ci-pipeline", "member")
	require.NoError(t, err)
	guest, _, err := tokens.New(tokenFile, "visitor", "guest")
	require.NoError(t, err)
	r := newRig(t, 3, func(c *gateway.Config) {
		c.OIDC = oidcConfig(t, p)
		c.TokenList = tokenFile
	})
	bob, carol, alice := user(login(t, r, p, "bob").Access), user(login(t, r, p, "carol").Access), user(login(t, r, p, "alice").Access)
	c := r.dial(t, r.control, nil)

	// Runs: each member sees its own, with its owner filled in and
	// Flower's other fields intact; the admin sees both.
	runB, runC := startRun(t, c, bob), startRun(t, c, carol)
	m, raw := runsOf(t, c, bob)
	assert.Equal(t, []uint64{runB}, runIDs(m))
	assert.Equal(t, "bob", m.RunDict[runB].FlwrAid)
	assert.Contains(t, string(raw), standin.FabHash(runB), "a field the gateway does not declare is kept")
	m, _ = runsOf(t, c, carol)
	assert.Equal(t, []uint64{runC}, runIDs(m))
	m, _ = runsOf(t, c, alice)
	assert.ElementsMatch(t, []uint64{runB, runC}, runIDs(m))
	out, err := ctl(c, carol, "ListRuns", &flwrpb.ListRunsRequest{RunId: &runB})
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(out[0], m))
	assert.Empty(t, m.RunDict, "asking for another's run by id shows nothing")

	// Carol cannot stop, stream or pull Bob's run; nothing reaches the
	// SuperLink.
	before := r.up.Count()
	for _, method := range []string{"StopRun", "StreamLogs", "PullArtifacts"} {
		_, err := ctl(c, carol, method, &flwrpb.StopRunRequest{RunId: runB})
		wantStatus(t, err, codes.PermissionDenied, "run "+fmtID(runB)+" was not started or registered by this account")
	}
	assert.Equal(t, before, r.up.Count())
	assert.False(t, r.up.Stopped(runB))
	logs, err := ctl(c, bob, "StreamLogs", &flwrpb.StreamLogsRequest{RunId: runB})
	require.NoError(t, err)
	assert.Len(t, logs, 3, "the owner streams its logs")
	_, err = ctl(c, alice, "StreamLogs", &flwrpb.StreamLogsRequest{RunId: runC})
	require.NoError(t, err, "the admin streams anyone's")
	_, err = ctl(c, alice, "StopRun", &flwrpb.StopRunRequest{RunId: runB})
	require.NoError(t, err)
	assert.True(t, r.up.Stopped(runB), "the admin stops anyone's")
	_, err = ctl(c, carol, "PullArtifacts", &flwrpb.PullArtifactsRequest{RunId: runC})
	require.NoError(t, err)

	// Nodes: a member cannot unregister another member's node.
	nodeB := registerNode(t, c, bob, r.keys.Pairs[0].Public)
	nodeC := registerNode(t, c, carol, r.keys.Pairs[1].Public)
	got := nodesOf(t, c, carol)
	require.Len(t, got, 1)
	assert.Equal(t, "carol", got[nodeC].OwnerAid)
	assert.NotEmpty(t, got[nodeC].PublicKey, "NodeInfo's fields are kept")
	_, err = ctl(c, carol, "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: nodeB})
	wantStatus(t, err, codes.PermissionDenied, "SuperNode "+fmtID(nodeB)+" was not started or registered by this account")
	assert.Len(t, nodesOf(t, c, alice), 2)
	_, err = ctl(c, bob, "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: nodeB})
	require.NoError(t, err)
	assert.Equal(t, "unregistered", nodesOf(t, c, bob)[nodeB].Status)

	// Roles: a role the policy does not know, and a method it does not.
	_, err = ctl(c, bearer(guest), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.PermissionDenied, "ListRuns needs the role admin or member (this account has roles guest)")
	_, err = ctl(c, alice, "DeleteEverything", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.PermissionDenied, "DeleteEverything is not granted to any role by this gateway's policy (this account has roles admin)")

	// A bearer token is an account of its own, with its role.
	runT := startRun(t, c, bearer(ci))
	m, _ = runsOf(t, c, bearer(ci))
	assert.Equal(t, []uint64{runT}, runIDs(m))
	assert.Equal(t, "token:ci-pipeline", m.RunDict[runT].FlwrAid)
	m, _ = runsOf(t, c, bob)
	assert.Equal(t, []uint64{runB}, runIDs(m))
	seen := r.up.Calls()[len(r.up.Calls())-1]
	assert.Empty(t, seen.Metadata.Get("authorization"), "the token stays at the gateway")

	// Revoked: refused from the next reload on.
	_, err = tokens.Revoke(tokenFile, "ci-pipeline")
	require.NoError(t, err)
	require.NoError(t, r.gw.Reload())
	_, err = ctl(c, bearer(ci), "ListRuns", &flwrpb.ListRunsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
	assert.NotContains(t, r.logs.String(), ci)
	assert.NotContains(t, r.logs.String(), guest)

	// The owners survive a restart of the gateway.
	r.stop(t)
	r.start(t, r.cfg)
	c = r.dial(t, r.control, nil)
	m, _ = runsOf(t, c, carol)
	assert.Equal(t, []uint64{runC}, runIDs(m))
	_, err = ctl(c, carol, "StopRun", &flwrpb.StopRunRequest{RunId: runB})
	wantStatus(t, err, codes.PermissionDenied, "")
	m, _ = runsOf(t, c, alice)
	assert.ElementsMatch(t, []uint64{runB, runC, runT}, runIDs(m))
	assert.Equal(t, "token:ci-pipeline", m.RunDict[runT].FlwrAid)

	// On the same provider (one start is most of such a test's time).
	t.Run("principals sharing a name stay apart", func(t *testing.T) { principalsSharingANameStayApart(t, p, bob, carol) })
	t.Run("roles from a URL-named claim", func(t *testing.T) { rolesFromAURLNamedClaim(t, p, bob) })
}

func fmtID(n uint64) string { return strconv.FormatUint(n, 10) }

// serviceClients returns two connections of the provider's service client
// (client credentials): one with the Go credentials, which fetch a token
// and fetch another before it expires, and one that sends a single token
// as it is; and that token.
func serviceClients(t *testing.T, r *rig, p *oidctest.Provider) (svc, fixed *grpc.ClientConn, token string) {
	t.Helper()
	cc := &clientcredentials.Config{ClientID: oidctest.ServiceID, ClientSecret: oidctest.ServiceSecret,
		TokenURL: p.Issuer + "/token", EndpointParams: map[string][]string{"resource": {oidctest.Resource}}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, p.HTTPClient())
	svc = r.dial(t, r.control, tokens.ClientCredentials(ctx, cc, 500*time.Millisecond))
	tok, err := cc.Token(ctx)
	require.NoError(t, err)
	fixed = r.dial(t, r.control, tokens.Static(tok.AccessToken))
	// Bearer credentials are never sent without TLS.
	_, err = grpc.NewClient(r.control, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokens.Static(tok.AccessToken)))
	assert.ErrorContains(t, err, "transport level security")
	return svc, fixed, tok.AccessToken
}

// A state file that is missing or damaged stops the gateway at start,
// with the file's name and what to do, rather than starting empty.
func TestStateFileMissingOrDamaged(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	tokenFile := filepath.Join(r.dir, "tokens")
	_, _, err := tokens.New(tokenFile, "ops", "admin")
	require.NoError(t, err)
	cfg := r.cfg
	cfg.TokenList = tokenFile
	cfg.StateFile = ""
	_, err = gateway.New(context.Background(), cfg, testLog(t))
	assert.ErrorContains(t, err, "need a state_file")

	cfg.StateFile = filepath.Join(r.dir, "state.db")
	_, err = gateway.New(context.Background(), cfg, testLog(t))
	assert.ErrorIs(t, err, owners.ErrNotExist)
	assert.ErrorContains(t, err, cfg.StateFile)

	require.NoError(t, os.WriteFile(cfg.StateFile, []byte(strings.Repeat("not a database ", 1000)), 0o600))
	_, err = gateway.New(context.Background(), cfg, testLog(t))
	assert.ErrorContains(t, err, cfg.StateFile+": the file is damaged")

	require.NoError(t, os.Remove(cfg.StateFile))
	require.NoError(t, owners.Create(cfg.StateFile))
	gw, err := gateway.New(context.Background(), cfg, testLog(t))
	require.NoError(t, err)
	defer gw.Close()
	_, err = gateway.New(context.Background(), cfg, testLog(t))
	assert.ErrorContains(t, err, "in use by another process")
}

// With fleet_token_role, a Fleet call needs a bearer token of that role
// besides its signature, and the token does not go upstream.
func TestFleetBearerTokens(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	node, _, err := tokens.New(tokenFile, "site-a", "supernode")
	require.NoError(t, err)
	member, _, err := tokens.New(tokenFile, "ci", "member")
	require.NoError(t, err)
	r := newRig(t, 1, func(c *gateway.Config) {
		c.TokenList = tokenFile
		c.FleetTokenRole = "supernode"
		c.RefusalDelay = new(time.Duration)
	})
	signed := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	for name, md := range map[string][]string{
		"no token":             nil,
		"another role's token": bearer(member),
		"not bearer":           {"authorization", "Basic " + node},
		"two tokens":           {"authorization", "Bearer " + node, "authorization", "Bearer " + node},
	} {
		_, _, _, err := call(signed, heartbeat, "echo:x", md...)
		wantStatus(t, err, codes.Unauthenticated, "this gateway needs a valid bearer token on Fleet calls")
		assert.Zero(t, r.up.Count(), name)
	}
	out, _, _, err := call(signed, heartbeat, "echo:x", bearer(node)...)
	require.NoError(t, err)
	assert.Equal(t, "echo:x", out)
	assert.Empty(t, r.up.Calls()[0].Metadata.Get("authorization"))
	// The token alone is not enough: the signature is still checked.
	_, _, _, err = call(r.dial(t, r.fleet, nil), heartbeat, "echo:x", bearer(node)...)
	wantStatus(t, err, codes.Unauthenticated, "Missing authentication metadata")
	assert.NotContains(t, r.logs.String(), node)
}

// The authorization and shared-state settings, read from YAML as an
// operator writes them, and the contradictions refused at start.
func TestAuthorizationConfig(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`
upstream: 127.0.0.1:7000
upstream_insecure: true
tls_cert: c
tls_key: k
allowlist: [a.csv]
token_list: tokens.txt
policy:
  roles_claim: realm_access.roles
  roles:
    fl-admin: {methods: ["*"], see_all: true}
    auditor: {methods: [ListRuns, ListNodes], see_all: true}
redis:
  addrs: [127.0.0.1:6379]
  password_env: REDIS_PASSWORD
  replay_fallback: closed
`), 0o600))
	c, err := gateway.LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, "realm_access.roles", c.Policy.RolesClaim)
	assert.True(t, c.Policy.Roles["auditor"].SeeAll)
	assert.Equal(t, shared.Closed, c.Redis.ReplayFallback)
	c.Defaults()
	require.NoError(t, c.Validate(), "owners go to Redis: no state_file needed")
	assert.Equal(t, shared.Local, c.Redis.RateFallback, "the default")

	for name, tc := range map[string]struct {
		tweak func(*gateway.Config)
		want  string
	}{
		"state file and redis": {func(c *gateway.Config) { c.StateFile = "s.db" }, "contradict"},
		"no state at all":      {func(c *gateway.Config) { c.Redis = nil }, "need a state_file"},
		"unknown method":       {func(c *gateway.Config) { c.Policy.Roles["x"] = authz.Role{Methods: []string{"Nuke"}} }, `unknown method "Nuke"`},
		"bad fallback":         {func(c *gateway.Config) { c.Redis.ReplayFallback = "maybe" }, `"maybe"`},
		"fleet role, no file":  {func(c *gateway.Config) { c.TokenList, c.FleetTokenRole = "", "supernode" }, "fleet_token_role needs a token_list"},
	} {
		c, err := gateway.LoadConfig(p)
		require.NoError(t, err)
		tc.tweak(c)
		c.Defaults()
		assert.ErrorContains(t, c.Validate(), tc.want, name)
	}
	require.NoError(t, os.WriteFile(p, []byte("policy:\n  roles:\n    admin: {methods: [\"*\"], see_al: true}\n"), 0o600))
	_, err = gateway.LoadConfig(p)
	assert.ErrorContains(t, err, "see_al", "a misspelt grant is an error")
}
