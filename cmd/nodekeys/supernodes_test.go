package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/supernodes"
)

// register, nodes, apply and rotate as an operator runs them, against a
// stand-in Control API that keeps Flower's registration rules.
func TestRegistrationCommands(t *testing.T) {
	t.Parallel()
	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "5", "-q").code)
	sl := []string{"--superlink", up.Addr, "--insecure"}
	// Flags before the files, as urfave/cli reads them.
	run := func(args ...string) result {
		return nk(t, dir, "", append(append([]string{args[0]}, sl...), args[1:]...)...)
	}

	r := run("register", "keys/client_credentials_1.pub", "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "2 registered, 0 already registered")
	r = run("register", "--dir", "keys", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var reg struct{ Outcomes []supernodes.Outcome }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &reg))
	require.Len(t, reg.Outcomes, 5)
	actions := map[string]int{}
	for _, o := range reg.Outcomes {
		actions[o.Action]++
	}
	assert.Equal(t, map[string]int{"registered": 3, "already-registered": 2}, actions)

	r = run("nodes", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var nodes []supernodes.Node
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &nodes))
	assert.Len(t, nodes, 5)
	r = run("nodes")
	assert.Contains(t, r.stdout, "NODE ID")
	assert.Equal(t, 6, strings.Count(r.stdout, "\n"))

	// Node 5 leaves the files: a dry run says so and changes nothing.
	require.NoError(t, os.Remove(filepath.Join(dir, "keys", "client_credentials_5.pub")))
	r = run("apply", "--dir", "keys", "--prune", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "plan: register 0, unregister 1, keep 4 registered")
	assert.Contains(t, r.stdout, "would unregister")
	assert.Equal(t, 5, up.Registered())
	r = run("apply", "--dir", "keys")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "leave 1 not in the files")
	assert.Equal(t, 5, up.Registered())
	r = run("apply", "--dir", "keys", "--prune")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 4, up.Registered())
	burned, err := supernodes.ReadBurned(filepath.Join(dir, "keys"))
	require.NoError(t, err)
	assert.Len(t, burned, 1, "the unregistered key is recorded")
	r = run("apply", "--dir", "keys", "--prune")
	assert.Contains(t, r.stderr, "plan: register 0, unregister 0, keep 4 registered", "idempotent")

	// Rotate node 2: a new pair beside the old, in the CSV, registered.
	r = run("rotate", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, filepath.Join(dir, "keys", "client_credentials_2.new"))
	assert.Contains(t, r.stdout, "registered the new key as node")
	assert.Contains(t, r.stdout, "left to do:")
	assert.Equal(t, 5, up.Registered())
	l, err := csvlist.ReadFile(filepath.Join(dir, "keys", "client_public_keys.csv"))
	require.NoError(t, err)
	assert.Len(t, l.Entries, 6)
	r = run("rotate", "2")
	assert.Equal(t, 1, r.code, "a rotation under way is not overwritten")
	// The steps it printed: move the new pair in place, prune the old key.
	k := filepath.Join(dir, "keys", "client_credentials_2")
	require.NoError(t, os.Rename(k+".new", k))
	require.NoError(t, os.Rename(k+".new.pub", k+".pub"))
	r = run("apply", "--dir", "keys", "--prune")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 4, up.Registered())

	// A SuperLink restart (in-memory state): apply registers all again.
	up.Restart()
	r = run("apply", "--dir", "keys")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 4, up.Registered())

	// Reaching it: one way or the other, said once.
	r = nk(t, dir, "", "nodes", "--superlink", up.Addr)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--root-certificates CA.crt (TLS) or --insecure")
	r = nk(t, dir, "", "register", "--superlink", "127.0.0.1:1", "--insecure", "--timeout", "2s", "keys/client_credentials_1.pub")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: cannot reach 127.0.0.1:1: connect: connection refused\n", r.stderr)
}

// What register and rotate tell an operator when things go wrong: a
// SuperLink that cannot be reached is said once, not once per key; keys
// the allowlist dropped are not registered; an interrupted rotation says
// how to finish it against the same SuperLink.
func TestRegistrationFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "5", "-q").code)
	gone := freePort(t) // nothing listens there any more

	r := nk(t, dir, "", "register", "--superlink", gone, "--insecure", "--timeout", "5s", "--dir", "keys")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: cannot reach "+gone+": connect: connection refused\n", r.stderr)
	assert.Empty(t, r.stdout, "no line per key")
	for _, args := range [][]string{{"nodes"}, {"apply", "--dir", "keys"}, {"login", "--out", "login.json"}} {
		r = nk(t, dir, "", append(args, "--superlink", gone, "--insecure", "--timeout", "5s")...)
		assert.Equal(t, 1, r.code, args)
		assert.Equal(t, "nodekeys: error: cannot reach "+gone+": connect: connection refused\n", r.stderr, args)
	}

	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	r = nk(t, dir, "", "csv", "remove", "keys/client_public_keys.csv", "keys/client_credentials_3.pub")
	require.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "register", "--superlink", up.Addr, "--insecure", "--dir", "keys")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "4 registered, 0 already registered")
	assert.NotContains(t, r.stdout, "client_credentials_3.pub")
	assert.Contains(t, r.stderr, "leaving out keys/client_credentials_3.pub (SHA256:")
	assert.Contains(t, r.stderr, "keys/client_public_keys.csv no longer holds it")
	assert.Equal(t, 4, up.Registered())

	// A SuperLink that cannot be reached: nothing is written, so the same
	// command works once it can be.
	csvBefore, err := os.ReadFile(filepath.Join(dir, "keys/client_public_keys.csv"))
	require.NoError(t, err)
	r = nk(t, dir, "", "rotate", "--superlink", gone, "--insecure", "--timeout", "5s", "2")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "cannot reach")
	assert.NotContains(t, r.stderr, "rpc error")
	assert.NoFileExists(t, filepath.Join(dir, "keys/client_credentials_2.new"))
	assert.NoFileExists(t, filepath.Join(dir, "keys/client_credentials_2.new.pub"))
	csvAfter, err := os.ReadFile(filepath.Join(dir, "keys/client_public_keys.csv"))
	require.NoError(t, err)
	assert.Equal(t, string(csvBefore), string(csvAfter), "the allowlist is as it was")
	r = nk(t, dir, "", "rotate", "--superlink", up.Addr, "--insecure", "2")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 5, up.Registered(), "the same command, once the SuperLink answers")
}

// register, nodes and apply --json print node ids as decimal strings, as
// flwr supernode ls --format json prints node-id: Flower's node ids are
// random 64-bit numbers, and a JSON number above 2^53 comes out changed in
// JavaScript and jq.
func TestRegistrationJSONIDsAsStrings(t *testing.T) {
	t.Parallel()
	const first, second = "18446744073709551615", "9007199254740993" // 2^64-1, 2^53+1
	up, err := standin.Listen(standin.WithNodeIDs(18446744073709551615, 9007199254740993))
	require.NoError(t, err)
	defer up.Stop()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
	run := func(args ...string) result {
		t.Helper()
		r := nk(t, dir, "", append([]string{args[0], "--superlink", up.Addr, "--insecure"}, args[1:]...)...)
		require.Equal(t, 0, r.code, r.stderr)
		return r
	}
	// ids reads what JSON holds as a JavaScript or jq reader does (numbers
	// as float64): the node_id of each object of list.
	ids := func(list any) []any {
		t.Helper()
		var out []any
		for _, x := range list.([]any) {
			out = append(out, x.(map[string]any)["node_id"])
		}
		return out
	}
	decode := func(s string) map[string]any {
		t.Helper()
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(s), &v), s)
		return v
	}

	// One call at a time: the first key gets the first id.
	r := run("register", "--json", "--parallel", "1", "keys/client_credentials_1.pub", "keys/client_credentials_2.pub")
	assert.Contains(t, r.stdout, `"node_id": "`+first+`"`)
	assert.Equal(t, []any{first, second}, ids(decode(r.stdout)["outcomes"]), r.stdout)
	var reg struct{ Outcomes []supernodes.Outcome }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &reg))
	assert.Equal(t, uint64(18446744073709551615), reg.Outcomes[0].NodeID)
	r = run("register", "--json", "--dir", "keys")
	assert.Equal(t, []any{first, second}, ids(decode(r.stdout)["outcomes"]), "already registered: its node id, from the SuperLink's list")

	r = run("nodes", "--json")
	var nodes []any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &nodes))
	assert.ElementsMatch(t, []any{first, second}, ids(nodes), r.stdout)
	r = run("nodes")
	assert.Contains(t, r.stdout, first)
	assert.Contains(t, r.stdout, second)

	// Node 2 leaves the files.
	require.NoError(t, os.Remove(filepath.Join(dir, "keys", "client_credentials_2.pub")))
	plan := decode(run("apply", "--dir", "keys", "--dry-run", "--json").stdout)
	assert.Equal(t, []any{first}, ids(plan["present"]))
	assert.Equal(t, []any{second}, ids(plan["extra"]))
	for _, k := range []string{"register", "burned", "unregister"} {
		assert.Equal(t, []any{}, plan[k], "%s: an empty list, not null (jq's .[] takes it)", k)
	}
	plan = decode(run("apply", "--dir", "keys", "--prune", "--dry-run", "--json").stdout)
	assert.Equal(t, []any{second}, ids(plan["unregister"]))
	res := decode(run("apply", "--dir", "keys", "--json").stdout)
	assert.Equal(t, []any{second}, ids(res["extra"]))
	res = decode(run("apply", "--dir", "keys", "--prune", "--json").stdout)
	assert.Equal(t, []any{second}, ids(res["outcomes"]))
	assert.Equal(t, "unregistered", res["outcomes"].([]any)[0].(map[string]any)["action"])

	for _, cmd := range []string{"register", "nodes", "apply"} {
		assert.Contains(t, nk(t, dir, "", cmd, "--help").stdout, "decimal string", cmd)
	}
}

// A --superlink without a port, or a login and a token at once, is a
// usage error before anything is dialled: gRPC would dial port 443, and
// the call could carry only one of the two.
func TestControlFlagUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "login.json"), []byte("{}"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t.token"), []byte("x\n"), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nodes", "--superlink", "localhost", "--insecure"}, `nodekeys: error: --superlink "localhost" is not HOST:PORT (Flower's Control API port is 9093)`},
		{[]string{"nodes", "--superlink", "https://localhost:9093", "--insecure"}, `is not HOST:PORT`},
		{[]string{"nodes", "--superlink", "127.0.0.1:9093", "--root-certificates", "ca.crt", "--login-file", "login.json", "--token-file", "t.token"},
			"nodekeys: error: --login-file and --token-file (or NODEKEYS_TOKEN) do not go together: a call carries one credential"},
	} {
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		assert.Contains(t, r.stderr, tc.want, tc.args)
	}
}
