//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

// Machine tokens end to end: made by nodekeys token, accepted by a
// gateway started from the CLI, used by nodekeys register and nodes,
// revoked with effect at the next SIGUSR1, and the owners kept in the
// state file.
func TestTokenAndStateCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2").code)
	r := nk(t, dir, "", "state", "init", "state.db")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 1, nk(t, dir, "", "state", "init", "state.db").code, "never replaced")

	tokens := map[string]string{}
	for name, role := range map[string]string{"ci": "member", "ops": "admin"} {
		r := nk(t, dir, "", "token", "new", "--name", name, "--role", role)
		require.Equal(t, 0, r.code, r.stderr)
		tokens[name] = strings.TrimSpace(r.stdout)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".token"), []byte(r.stdout), 0o600))
		assert.Contains(t, r.stderr, "shown only now")
	}
	list := nk(t, dir, "", "token", "list", "--json")
	require.Equal(t, 0, list.code)
	for _, tok := range tokens {
		assert.NotContains(t, list.stdout, tok[4:])
	}
	assert.Contains(t, list.stdout, `"role": "admin"`)

	// The library names the file; the CLI says which command makes it.
	gw := []string{"gateway", "--upstream-insecure", "--tls-cert", "certificates/server.pem", "--tls-key", "certificates/server.key",
		"--allowlist", "keys/client_public_keys.csv", "--metrics", "-", "--token-list", "tokens.txt"}
	r = nk(t, dir, "", append(gw, "--state-file", "missing.db")...)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "state: missing.db: the state file does not exist")
	assert.Contains(t, r.stderr, "hint: make it once with: nodekeys state init missing.db\n")
	r = nk(t, dir, "", gw...)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "need a state_file")
	assert.Contains(t, r.stderr, "hint: make one with: nodekeys state init FILE, and name it in state_file (--state-file)\n")
	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	// Files are looked at hourly: the revocation below takes effect by the signal.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte("reload_interval: 1h\n"), 0o600))
	cmd := exec.Command(bin, "gateway", "--config", "gateway.yaml", "--listen-fleet", fleet, "--listen-control", control, "--metrics", metrics,
		"--upstream", up.Addr, "--upstream-control", up.Addr, "--upstream-insecure",
		"--allowlist", "keys/client_public_keys.csv", "--token-list", "tokens.txt", "--state-file", "state.db")
	cmd.Dir = dir
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, stderr.String())

	ctl := func(token string, args ...string) result {
		full := append([]string{args[0], "--superlink", control, "--root-certificates", "certificates/ca.crt", "--token-file", token + ".token"}, args[1:]...)
		return nk(t, dir, "", full...)
	}
	r = ctl("ci", "register", "--json", "keys/client_credentials_1.pub")
	require.Equal(t, 0, r.code, r.stderr+stderr.String())
	r = ctl("ops", "register", "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)

	var nodes []struct {
		Owner string `json:"owner"`
	}
	r = ctl("ci", "nodes", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &nodes))
	require.Len(t, nodes, 1, "a member sees its own node only")
	assert.Equal(t, "ci", nodes[0].Owner, "the owner's name, as Flower fills owner_name")
	r = ctl("ops", "nodes", "--json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &nodes))
	assert.Len(t, nodes, 2, "an admin sees both")

	// A member's apply plans with the nodes it may see, says so, and
	// reports the admin's key as another account's, not as its own.
	r = ctl("ci", "apply", "--dir", "keys")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "the plan is made from the nodes this account may see")
	assert.Contains(t, r.stderr, "plan: register 1, unregister 0, keep 1 registered")
	assert.Contains(t, r.stdout, "other-account      SHA256:")
	assert.Contains(t, r.stdout, "keys/client_credentials_2.pub: the SuperLink holds this key, and this account may not see it")
	assert.Contains(t, r.stdout, "0 registered, 0 already registered, 1 held by other accounts, 0 unregistered")
	// So does its register: its own key is already registered, with its
	// node id; the admin's is another account's.
	r = ctl("ci", "register", "--dir", "keys")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `already-registered SHA256:\S+  node \d+  keys/client_credentials_1.pub\n`, r.stdout)
	assert.Contains(t, r.stdout, "other-account      SHA256:")
	assert.Contains(t, r.stdout, "0 registered, 1 already registered, 1 held by other accounts, 0 unregistered")

	// A token never goes over plaintext.
	r = nk(t, dir, "", "nodes", "--superlink", control, "--insecure", "--token-file", "ops.token")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "a bearer token is sent over TLS only")

	r = nk(t, dir, "", "token", "revoke", "--name", "ci")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, cmd.Process.Signal(syscall.SIGUSR1)) // as ai4flwr's token interceptor reloads
	require.Eventually(t, func() bool { return ctl("ci", "nodes").code == 1 }, 5*time.Second, 50*time.Millisecond)
	r = ctl("ci", "nodes")
	assert.Contains(t, r.stderr, "Unauthenticated")
	assert.Equal(t, 0, ctl("ops", "nodes").code)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), stderr.String())
	logs := stderr.String()
	for _, tok := range tokens {
		assert.NotContains(t, logs, tok)
	}
	r = nk(t, dir, "", "state", "show", "--json", "state.db")
	require.Equal(t, 0, r.code, r.stderr)
	var rows []struct {
		Kind, Owner string
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	owners := fmt.Sprint(rows)
	assert.Contains(t, owners, "{nodes token:ci}")
	assert.Contains(t, owners, "{nodes token:ops}")
}
