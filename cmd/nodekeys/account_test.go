package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/authz"
)

func TestAccountCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The password comes from stdin (one line), never a flag; flags may
	// follow the name.
	r := nk(t, dir, "alice's password\n", "account", "add", "alice", "--role", "admin", "--email", "alice@example.org")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `account "alice"`)
	assert.Equal(t, 2, nk(t, dir, "", "account", "add", "bob", "--role", "member", "--password", "x").code, "no password flag")
	assert.Equal(t, 1, nk(t, dir, "short\n", "account", "add", "bob", "--role", "member").code, "too short")
	assert.Equal(t, 1, nk(t, dir, "another password\n", "account", "add", "alice", "--role", "member").code, "a name once")
	r = nk(t, dir, "", "account", "client", "add", "ci", "--role", "member")
	require.Equal(t, 0, r.code, r.stderr)
	secret := strings.TrimSpace(r.stdout)
	assert.True(t, strings.HasPrefix(secret, "nks_"), secret)

	info, err := os.Stat(filepath.Join(dir, "accounts.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	raw, _ := os.ReadFile(filepath.Join(dir, "accounts.json"))
	assert.NotContains(t, string(raw), "alice's password")
	assert.NotContains(t, string(raw), secret)
	assert.Contains(t, string(raw), "$argon2id$v=19$m=65536,t=3,p=4$", "the default parameters")

	r = nk(t, dir, "", "account", "totp", "alice")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "otpauth://totp/"), r.stdout)

	r = nk(t, dir, "", "account", "list", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	require.Len(t, rows, 2)
	assert.Equal(t, "alice", rows[0]["name"])
	assert.Equal(t, true, rows[0]["totp"])
	assert.NotContains(t, r.stdout, "argon2id")

	f, err := accounts.ReadFile(filepath.Join(dir, "accounts.json"))
	require.NoError(t, err)
	gen := f.Account("alice").Generation
	require.Equal(t, 0, nk(t, dir, "a new password\n", "account", "passwd", "alice").code)
	require.Equal(t, 0, nk(t, dir, "", "account", "disable", "alice").code)
	f, _ = accounts.ReadFile(filepath.Join(dir, "accounts.json"))
	assert.True(t, f.Account("alice").Disabled)
	assert.Equal(t, gen+2, f.Account("alice").Generation, "each change ends the sessions")
	require.Equal(t, 0, nk(t, dir, "", "account", "remove", "ci").code)
	r = nk(t, dir, "", "account", "remove", "ci")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, `no account or client of that name: "ci"`)

	// rotate-keys finds the keys through the gateway's config.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gw.yaml"), []byte("accounts:\n  issuer: https://127.0.0.1:9095\n  file: "+
		filepath.Join(dir, "accounts.json")+"\n"), 0o600))
	for i := range 2 {
		r = nk(t, dir, "", "account", "rotate-keys", "--config", "gw.yaml")
		require.Equal(t, 0, r.code, r.stderr)
		made := "nodekeys: warning: made " + filepath.Join(dir, "accounts-keys.json") + ", which did not exist"
		if i == 0 {
			assert.Contains(t, r.stderr, made, "a gateway running elsewhere reads another file")
		} else {
			assert.NotContains(t, r.stderr, "warning")
		}
	}
	keys, err := os.ReadFile(filepath.Join(dir, "accounts-keys.json"))
	require.NoError(t, err)
	assert.Equal(t, 3, strings.Count(string(keys), `"kid"`), "the first key, and two rotations")

	// Every subcommand's help has an example.
	for _, sub := range [][]string{{"add"}, {"passwd"}, {"disable"}, {"remove"}, {"list"}, {"client", "add"}, {"totp"}, {"rotate-keys"}} {
		r := nk(t, dir, "", append(append([]string{"account"}, sub...), "--help")...)
		assert.Contains(t, r.stdout, "nodekeys account "+strings.Join(sub, " "), sub)
	}
}

// account add, account client add and token new check --role against the
// policy of the gateway config named by --config (the default policy when
// it has no policy:, as the gateway itself does), and without --config say
// that only the default policy was checked.
func TestRolesCheckedAgainstConfiguredPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	files := "token_list: tokens.txt\naccounts:\n  issuer: https://127.0.0.1:19095\n  file: accounts.json\n"
	write("gw.yaml", files+"policy:\n  roles:\n    fl-admin: {methods: [\"*\"], see_all: true}\n    data-science: {methods: [StartRun, ListRuns]}\n")
	write("plain.yaml", files)
	write("bare.yaml", "upstream: 127.0.0.1:9092\n")
	write("fleet.yaml", "token_list: conf/fleet-tokens.txt\nfleet_token_role: supernode\naccounts:\n  issuer: https://127.0.0.1:19095\n  file: conf/people.json\n")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "conf"), 0o700))
	write("bad.yaml", "policy:\n  roles:\n    ops: {methods: [Nothing]}\n")

	// A role of the configured policy: no warning, though the default
	// policy has no such role.
	r := nk(t, dir, "a long password\n", "account", "add", "bob", "--role", "data-science", "--config", "gw.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning", "data-science is in gw.yaml's policy")
	// A role of the default policy only: the configured one is checked.
	r = nk(t, dir, "a long password\n", "account", "add", "carol", "--role", "member", "--config", "gw.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `nodekeys: warning: role "member" is not in the policy of gw.yaml (roles: data-science, fl-admin): that gateway grants it no Control method`+"\n")
	r = nk(t, dir, "", "account", "client", "add", "ci", "--role", "member", "-c", "gw.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `role "member" is not in the policy of gw.yaml`)
	r = nk(t, dir, "", "token", "new", "--name", "ci", "--role", "data-science", "--config", "gw.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning")

	// A config without policy: is checked against the default policy,
	// which is the one that gateway uses, and the warning says so.
	r = nk(t, dir, "a long password\n", "account", "add", "dave", "--role", "data-science", "--config", "plain.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `nodekeys: warning: role "data-science" is not in the default policy (roles: admin, member), which the gateway of plain.yaml uses, as it has no policy: section; that gateway grants it no Control method`+"\n")
	r = nk(t, dir, "a long password\n", "account", "add", "erin", "--role", "member", "--config", "plain.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning")

	// No config: the warning says that only the default policy was checked.
	r = nk(t, dir, "", "token", "new", "--name", "ops", "--role", "data-science")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `nodekeys: warning: role "data-science" is not in the default policy (roles: admin, member); no --config named the gateway's config, so its own policy: was not checked`+"\n")

	// A config that cannot be read, or whose policy the gateway would
	// refuse, is an error naming the file, and nothing is added.
	before := snapshot(t, dir)
	r = nk(t, dir, "a long password\n", "account", "add", "frank", "--role", "member", "--config", "missing.yaml")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "missing.yaml")
	r = nk(t, dir, "a long password\n", "account", "add", "frank", "--role", "ops", "--config", "bad.yaml")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: bad.yaml: policy: authz: role \"ops\": unknown method \"Nothing\" (known: "+strings.Join(authz.Methods, ", ")+", or \"*\")\n", r.stderr)
	r = nk(t, dir, "", "token", "new", "--name", "frank", "--role", "member", "--config", "missing.yaml")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, before, snapshot(t, dir), "nothing added")

	// The config's fleet_token_role is granted by the gateway's Fleet
	// check, not its policy: no warning. Without --file, the files the
	// config names are written; a --file of another is written, with a
	// warning that this gateway does not read it.
	r = nk(t, dir, "", "token", "new", "--name", "node-1", "--role", "supernode", "--config", "fleet.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning")
	assert.Contains(t, r.stderr, "added to conf/fleet-tokens.txt")
	assert.FileExists(t, filepath.Join(dir, "conf/fleet-tokens.txt"))
	r = nk(t, dir, "a long password\n", "account", "add", "grace", "--role", "member", "--config", "fleet.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "account \"grace\" ", r.stderr[:len("account \"grace\" ")], r.stderr)
	assert.Contains(t, r.stderr, "added to conf/people.json\n")
	r = nk(t, dir, "a long password\n", "account", "add", "heidi", "--role", "member", "--config", "fleet.yaml", "--file", "other.json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "nodekeys: warning: writing other.json, but the gateway of fleet.yaml reads conf/people.json\n")
	people, err := accounts.ReadFile(filepath.Join(dir, "conf/people.json"))
	require.NoError(t, err)
	assert.NotNil(t, people.Account("grace"))
	assert.Nil(t, people.Account("heidi"))

	// A config without the setting reads no such file: a warning. A
	// relative path in a config of another folder is read by the gateway
	// from the folder it runs in: the warning names the file written.
	r = nk(t, dir, "", "token", "new", "--name", "ivan", "--role", "member", "--config", "bare.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "nodekeys: warning: writing tokens.txt, but the gateway of bare.yaml reads no such file (it has no token_list)\n")
	r = nk(t, dir, "a long password\n", "account", "add", "ivan", "--role", "member", "--config", "bare.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "nodekeys: warning: writing accounts.json, but the gateway of bare.yaml reads no such file (it has no accounts: section)\n")
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o700))
	r = nk(t, sub, "", "token", "new", "--name", "judy", "--role", "member", "--config", "../gw.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "nodekeys: warning: ../gw.yaml names tokens.txt, which the gateway reads from the folder it runs in: writing "+filepath.Join(sub, "tokens.txt")+"\n")

	f, err := accounts.ReadFile(filepath.Join(dir, "accounts.json"))
	require.NoError(t, err)
	assert.Equal(t, []string{"data-science"}, f.Account("bob").Roles)
	r = nk(t, dir, "", "account", "add", "--help")
	assert.Contains(t, r.stdout, "--config FILE")
}
