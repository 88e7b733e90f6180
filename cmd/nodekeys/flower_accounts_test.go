package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/internal/flowerpeer"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
)

// TestFlowerAccounts runs the real Flower 1.27 CLI through nodekeys gateway
// in front of one real 1.27 SuperLink, as several accounts of the real
// OIDC provider: roles and run ownership as the CLI's own output shows
// them, and the transparent refresh of expired JWT and opaque access
// tokens, with the provider down during a refresh. Each subtest has its
// provider and gateway; the SuperLink is shared. Long form only
// (NODEKEYS_LONG=1): some forty Python processes.
func TestFlowerAccounts(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("the real Flower CLI's accounts run in the long form, NODEKEYS_LONG=1")
	}
	f := flowerpeer.Require(t, flowerpeer.V127)
	fed := newFederation(t)
	sl := f.StartSuperLink(t, flowerpeer.SuperLinkOptions{TLS: fed.tls, SupernodeAuth: true})
	sl.WaitReady(t)
	t.Run("roles", func(t *testing.T) { t.Parallel(); flowerRoles(t, f, fed, sl) })
	t.Run("refresh/jwt", func(t *testing.T) { t.Parallel(); flowerRefresh(t, f, fed, sl, false) })
	t.Run("refresh/opaque", func(t *testing.T) { t.Parallel(); flowerRefresh(t, f, fed, sl, true) })
}

var providerStarts sync.Mutex

// accountGateway starts a provider with st and a gateway in front of sl
// that logs its accounts in there, in a folder of its own with the
// federation's certificates and keys.
func accountGateway(t *testing.T, fed *federation, sl *flowerpeer.SuperLink, st oidctest.State, oidcExtra string) (*oidctest.Provider, *flowerGateway, string) {
	t.Helper()
	// One provider starts at a time: Node's start-up is CPU-bound, and
	// three at once on a loaded machine can each miss oidctest's bound.
	var p *oidctest.Provider
	func() {
		providerStarts.Lock()
		defer providerStarts.Unlock()
		p = oidctest.Start(t, st)
	}()
	dir := t.TempDir()
	for _, sub := range []string{"certificates", "keys"} {
		require.NoError(t, os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(fed.dir, sub))))
	}
	r := nk(t, dir, "", "state", "init", "state.db")
	require.Equal(t, 0, r.code, r.stderr)
	// Every login and refresh of these tests comes from 127.0.0.1.
	gw := startFlowerGateway(t, dir, sl.Fleet, sl.Control, "state_file: state.db\n"+oidcConfig(t, dir, p)+
		"  provider_burst_per_client: 100\n"+oidcExtra)
	return p, gw, dir
}

// loginAll logs each account in with the real flwr login through gw, at
// once, and returns their CLIs.
func loginAll(t *testing.T, f *flowerpeer.Flower, p *oidctest.Provider, gw *flowerGateway, caFile string, accounts ...string) map[string]*flowerpeer.CLI {
	t.Helper()
	clis := map[string]*flowerpeer.CLI{}
	logins := map[string]*flwrLogin{}
	for _, a := range accounts {
		clis[a] = f.NewCLI(t, "gw", gw.control, caFile)
		logins[a] = startLogin(t, clis[a])
	}
	for _, a := range accounts {
		logins[a].complete(t, p, a)
	}
	return clis
}

// flwrJSON runs a flwr command with --format json and decodes its answer
// (on success and on failure the CLI prints one JSON object).
func flwrJSON(t *testing.T, c *flowerpeer.CLI, command string, args ...string) (map[string]any, flowerpeer.Result) {
	t.Helper()
	full := append(append(append(strings.Fields(command), args...), c.Target(command)...), "--format", "json")
	r := c.Flwr(t, flwrTimeout, full...)
	require.False(t, r.TimedOut, r)
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &out), r)
	return out, r
}

// runIDs returns the run ids of flwr ls's JSON, sorted.
func runIDs(t *testing.T, out map[string]any, r flowerpeer.Result) []string {
	t.Helper()
	require.Equal(t, true, out["success"], r)
	var ids []string
	runs, _ := out["runs"].([]any)
	for _, run := range runs {
		ids = append(ids, run.(map[string]any)["run-id"].(string))
	}
	sort.Strings(ids)
	return ids
}

// refused checks a command's JSON answer: no success, and the CLI's
// words for a PERMISSION_DENIED with the gateway's message.
func refused(t *testing.T, out map[string]any, r flowerpeer.Result, msg string) {
	t.Helper()
	// (The 1.27 CLI's JSON form exits with status 0 after an error.)
	assert.Equal(t, false, out["success"], r)
	em, _ := out["error-message"].(string)
	assert.Contains(t, em, "Permission denied.\n"+msg, r)
}

// flowerRoles: an admin (alice), two members (bob, carol) and a guest
// (dave) use flwr run, ls, log and stop through the gateway. A member
// sees, follows and stops only their own runs, the admin sees and stops
// all, the guest is refused with the gateway's message.
func flowerRoles(t *testing.T, f *flowerpeer.Flower, fed *federation, sl *flowerpeer.SuperLink) {
	p, gw, _ := accountGateway(t, fed, sl, oidctest.State{Accounts: map[string][]string{
		"alice": {"admin"}, "bob": {"member"}, "carol": {"member"}, "dave": {"guest"},
	}}, "")
	cli := loginAll(t, f, p, gw, fed.tls.CACert, "alice", "bob", "carol", "dave")

	// bob and carol each start a run (no SuperNode: it stays unfinished)
	// and register a SuperNode (bob key 1, carol key 2) with flwr
	// supernode register.
	runs, nodes := map[string]string{}, map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, a := range []string{"bob", "carol"} {
		wg.Go(func() {
			r := cli[a].Flwr(t, flwrTimeout, append(append([]string{"run"}, cli[a].Target("run")...), "--format", "json")...)
			var out map[string]any
			if assert.NoError(t, json.Unmarshal([]byte(r.Stdout), &out), r) && assert.Equal(t, true, out["success"], r) {
				mu.Lock()
				runs[a], _ = out["run-id"].(string)
				mu.Unlock()
			}
		})
		wg.Go(func() {
			r := cli[a].Flwr(t, flwrTimeout, append(append([]string{"supernode", "register", fed.key(i+1, true)}, cli[a].Target("supernode")...), "--format", "json")...)
			// The node id is a uint64 the CLI prints as a JSON number.
			var out struct {
				Success bool   `json:"success"`
				NodeID  uint64 `json:"node-id"`
			}
			if assert.NoError(t, json.Unmarshal([]byte(r.Stdout), &out), r) && assert.True(t, out.Success, r) && assert.NotZero(t, out.NodeID, r) {
				mu.Lock()
				nodes[a] = strconv.FormatUint(out.NodeID, 10)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, runs, 2)
	require.Len(t, nodes, 2)
	bobs, carols := runs["bob"], runs["carol"]
	require.NotEmpty(t, bobs)
	require.NotEmpty(t, carols)

	t.Run("ls", func(t *testing.T) {
		out, r := flwrJSON(t, cli["bob"], "ls")
		assert.Equal(t, []string{bobs}, runIDs(t, out, r), "bob sees his run only")
		out, r = flwrJSON(t, cli["carol"], "ls")
		assert.Equal(t, []string{carols}, runIDs(t, out, r), "carol sees her run only")
		out, r = flwrJSON(t, cli["alice"], "ls")
		assert.Subset(t, runIDs(t, out, r), []string{bobs, carols}, "the admin sees every run")
		// Another's run, asked for by id, is as one that does not exist.
		out, r = flwrJSON(t, cli["bob"], "ls", "--run-id", carols)
		assert.Equal(t, false, out["success"], r)
		assert.Contains(t, out["error-message"], "Run ID "+carols+" not found", r)
		out, r = flwrJSON(t, cli["dave"], "ls")
		refused(t, out, r, "ListRuns needs the role admin or member (this account has roles guest)")
	})
	t.Run("log", func(t *testing.T) {
		// flwr log has no JSON form: its words.
		r := cli["bob"].Flwr(t, flwrTimeout, append([]string{"log", carols}, append(cli["bob"].Target("log"), "--show")...)...)
		assert.Equal(t, 1, r.Code, r)
		assert.Contains(t, r.Stderr, "run "+carols+" was not started or registered by this account", r)
		r = cli["dave"].Flwr(t, flwrTimeout, append([]string{"log", bobs}, append(cli["dave"].Target("log"), "--show")...)...)
		assert.Equal(t, 1, r.Code, r)
		assert.Contains(t, r.Stderr, "StreamLogs needs the role admin or member (this account has roles guest)", r)
		for _, a := range []string{"bob", "alice"} {
			r = cli[a].Flwr(t, flwrTimeout, append([]string{"log", bobs}, append(cli[a].Target("log"), "--show")...)...)
			assert.Equal(t, 0, r.Code, r)
			assert.NotContains(t, r.Stdout+r.Stderr, "denied", r)
		}
	})
	t.Run("federation", func(t *testing.T) {
		// Flower 1.27's list and show are one command: flwr federation
		// list, and with --federation NAME the federation's members,
		// SuperNodes and runs. The SuperLink has one federation, Flower's
		// NoOp one, that holds every run and SuperNode (the refresh
		// subtests on the same SuperLink start none and register none).
		var name string
		for _, a := range []string{"alice", "bob", "carol"} {
			out, r := flwrJSON(t, cli[a], "federation list")
			feds, _ := out["federations"].([]any)
			require.Len(t, feds, 1, "%s: %s", a, r)
			fed := feds[0].(map[string]any)
			if name == "" {
				name, _ = fed["name"].(string)
				require.NotEmpty(t, name, r)
			}
			assert.Equal(t, name, fed["name"], "%s: %s", a, r)
			assert.Equal(t, false, fed["archived"], "%s: %s", a, r)
		}
		out, r := flwrJSON(t, cli["dave"], "federation list")
		refused(t, out, r, "ListFederations needs the role admin or member (this account has roles guest)")

		// show returns the run ids, the node ids and their owners' names
		// of the federation as the CLI prints them; a member is shown no
		// member of the federation but itself.
		show := func(a string) (runs, nodes []string, owners map[string]string) {
			t.Helper()
			out, r := flwrJSON(t, cli[a], "federation list", "--federation", name)
			fed, ok := out["federation"].(map[string]any)
			require.True(t, ok, "%s: %s", a, r)
			if a != "alice" {
				for _, x := range fed["members"].([]any) {
					assert.Equal(t, a, x.(map[string]any)["member_id"], "%s: %s", a, r)
				}
			}
			owners = map[string]string{}
			for _, x := range fed["runs"].([]any) {
				runs = append(runs, x.(map[string]any)["run_id"].(string))
			}
			for _, x := range fed["nodes"].([]any) {
				n := x.(map[string]any)
				id := n["node_id"].(string)
				nodes = append(nodes, id)
				owners[id], _ = n["owner"].(string)
			}
			sort.Strings(runs)
			sort.Strings(nodes)
			return runs, nodes, owners
		}
		all := []string{bobs, carols}
		sort.Strings(all)
		allNodes := []string{nodes["bob"], nodes["carol"]}
		sort.Strings(allNodes)
		runsOf, nodesOf, owners := show("alice")
		assert.Equal(t, all, runsOf, "the admin sees every run of the federation")
		assert.Equal(t, allNodes, nodesOf, "the admin sees every SuperNode of the federation")
		assert.Equal(t, map[string]string{nodes["bob"]: "bob", nodes["carol"]: "carol"}, owners, "each SuperNode with its owner")
		for _, a := range []string{"bob", "carol"} {
			runsOf, nodesOf, owners = show(a)
			assert.Equal(t, []string{runs[a]}, runsOf, "%s sees his or her own run only", a)
			assert.Equal(t, []string{nodes[a]}, nodesOf, "%s sees his or her own SuperNode only", a)
			assert.Equal(t, map[string]string{nodes[a]: a}, owners, a)
		}
		out, r = flwrJSON(t, cli["dave"], "federation list", "--federation", name)
		refused(t, out, r, "ShowFederation needs the role admin or member (this account has roles guest)")
	})
	t.Run("stop", func(t *testing.T) {
		out, r := flwrJSON(t, cli["bob"], "stop", carols)
		refused(t, out, r, "run "+carols+" was not started or registered by this account")
		out, r = flwrJSON(t, cli["dave"], "stop", bobs)
		refused(t, out, r, "StopRun needs the role admin or member (this account has roles guest)")
		out, r = flwrJSON(t, cli["carol"], "stop", carols)
		assert.Equal(t, map[string]any{"success": true, "run-id": carols}, out, r)
		out, r = flwrJSON(t, cli["alice"], "stop", bobs)
		assert.Equal(t, map[string]any{"success": true, "run-id": bobs}, out, r)
		// The SuperLink has both stopped: the refusals stopped nothing
		// early, the stops did.
		out, r = flwrJSON(t, cli["alice"], "ls")
		runs, _ := out["runs"].([]any)
		stopped := 0
		for _, run := range runs {
			m := run.(map[string]any)
			if id := m["run-id"]; id == bobs || id == carols {
				assert.Equal(t, "finished:stopped", m["status"], r)
				stopped++
			}
		}
		assert.Equal(t, 2, stopped, r)
	})
}

// The access tokens' lifetime and the gateway's leeway in the refresh
// tests: a token is expired for the gateway accessTTL+leeway after it
// was issued.
const (
	accessTTL = 2 * time.Second
	leeway    = time.Second
)

// flowerRefresh: a member logs in with the real flwr login; after the
// access token expired, flwr ls still works without a new login (the
// gateway refreshed the pair and the CLI stored it), twice; after a third
// expiry with the provider down, the CLI is told UNAVAILABLE (its words:
// "Connection to the SuperLink is unavailable"), not to run flwr login, and
// the same call with the tokens the CLI holds gets the gateway's "the
// identity provider cannot be reached".
func flowerRefresh(t *testing.T, f *flowerpeer.Flower, fed *federation, sl *flowerpeer.SuperLink, opaque bool) {
	p, gw, _ := accountGateway(t, fed, sl, oidctest.State{AccessTTL: int(accessTTL / time.Second), Opaque: opaque,
		Accounts: map[string][]string{"bob": {"member"}}},
		"  leeway: 1s\n  opaque_cache: 1s\n")
	cli := loginAll(t, f, p, gw, fed.tls.CACert, "bob")["bob"]
	access, _ := storedTokens(t, cli, gw.control)
	issued := time.Now() // no earlier than the provider issued it
	if opaque {
		assert.NotContains(t, access, ".", "an opaque access token")
	} else {
		assert.Equal(t, 2, strings.Count(access, "."), "a JWT access token")
	}

	for round := 1; round <= 2; round++ {
		time.Sleep(time.Until(issued.Add(accessTTL + leeway + 500*time.Millisecond)))
		before := p.Counts(t)["/token"]
		out, r := flwrJSON(t, cli, "ls")
		assert.Equal(t, []string(nil), runIDs(t, out, r), "round %d", round)
		next, _ := storedTokens(t, cli, gw.control)
		assert.NotEqual(t, access, next, "round %d: the CLI stored the refreshed access token", round)
		assert.Equal(t, before+1, p.Counts(t)["/token"], "round %d: one refresh at the provider", round)
		access, issued = next, time.Now()
	}

	time.Sleep(time.Until(issued.Add(accessTTL + leeway + 500*time.Millisecond)))
	p.Stop()
	out, r := flwrJSON(t, cli, "ls")
	assert.Equal(t, false, out["success"], r)
	em, _ := out["error-message"].(string)
	// The 1.27 CLI shows its own words for UNAVAILABLE, not the details.
	assert.Contains(t, em, "Connection to the SuperLink is unavailable", r)
	assert.NotContains(t, em, "flwr login", r)
	assert.Contains(t, gw.log.String(), "the identity provider cannot be reached to check a login")

	// The call the CLI made, with the tokens it holds, as a Go client sees it.
	access, refresh := storedTokens(t, cli, gw.control)
	pem, err := os.ReadFile(fed.tls.CACert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := grpc.NewClient(gw.control, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "flwr-oidc-access-token", access, "flwr-oidc-refresh-token", refresh)
	req, resp := []byte{}, []byte{}
	err = c.Invoke(ctx, "/flwr.proto.Control/ListRuns", &req, &resp, grpc.ForceCodec(standin.Codec()))
	st := status.Convert(err)
	assert.Equal(t, codes.Unavailable, st.Code(), err)
	assert.Equal(t, "the identity provider cannot be reached to check the login; try again later", st.Message())
}

// storedTokens returns the access and refresh tokens the 1.27 CLI keeps
// for address in $FLWR_HOME/credentials.yaml (base64 values).
func storedTokens(t *testing.T, c *flowerpeer.CLI, address string) (access, refresh string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Home, "credentials.yaml"))
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, yaml.Unmarshal(b, &m))
	get := func(kind string) string {
		v, ok := m["flower.account-auth."+address+".oidc-"+kind+"-token"]
		require.True(t, ok, "no %s token for %s in credentials.yaml", kind, address)
		d, err := base64.StdEncoding.DecodeString(v)
		require.NoError(t, err)
		return string(d)
	}
	return get("access"), get("refresh")
}
