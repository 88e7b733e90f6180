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
	for range 2 {
		r = nk(t, dir, "", "account", "rotate-keys", "--config", "gw.yaml")
		require.Equal(t, 0, r.code, r.stderr)
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
