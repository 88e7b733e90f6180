package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/internal/standin"
)

// nodekeys login through a gateway with account login, against a real
// OIDC provider; then the token file opens the Control API to nodes.
func TestLoginCommand(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.State{})
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte(oidctest.ClientSecret+"\n"), 0o600))
	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	conf := fmt.Sprintf("listen_fleet: %s\nlisten_control: %s\nupstream: %s\nupstream_control: %s\nupstream_insecure: true\n"+
		"tls_cert: certificates/server.pem\ntls_key: certificates/server.key\nallowlist: [keys]\nmetrics: %s\nstate_file: state.db\n"+
		"oidc:\n  issuer: %s\n  client_id: %s\n  client_secret_file: secret\n  audience: %s\n  ca_file: %s\n  scopes: [email, profile]\n",
		fleet, control, up.Addr, up.Addr, metrics, p.Issuer, oidctest.ClientID, oidctest.Resource, p.CAFile)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(conf), 0o600))
	require.Equal(t, 0, nk(t, dir, "", "state", "init", "state.db").code)
	gwLog := runConfigGateway(t, dir, metrics)

	tokens := filepath.Join(dir, "conf", "login.json")
	login, stdout, uri := startNodekeysLogin(t, dir, "--superlink", control, "--root-certificates", "certificates/ca.crt", "--out", tokens)
	require.NotEmpty(t, uri, "login prints the address to sign in at")
	p.CompleteDeviceLogin(t, uri, "alice")
	require.NoError(t, login.Wait())
	assert.Contains(t, stdout.String(), "logged in")
	fi, err := os.Stat(tokens)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	r := nk(t, dir, "", "nodes", "--superlink", control, "--root-certificates", "certificates/ca.crt", "--login-file", tokens)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "NODE ID")
	// The same login as the flwr CLI (1.26 and later) stores it, in
	// FLWR_HOME/credentials.yaml: nodekeys uses the entry for --superlink.
	var tok struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
	}
	b, err := os.ReadFile(tokens)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &tok))
	home := filepath.Join(dir, "flwrhome")
	require.NoError(t, os.Mkdir(home, 0o700))
	b64 := base64.StdEncoding.EncodeToString
	require.NoError(t, os.WriteFile(filepath.Join(home, "credentials.yaml"), []byte(fmt.Sprintf(
		"flower.account-auth.%[1]s.authn-type: b2lkYw==\nflower.account-auth.%[1]s.oidc-access-token: %[2]s\nflower.account-auth.%[1]s.oidc-refresh-token: %[3]s\n",
		control, b64([]byte(tok.Access)), b64([]byte(tok.Refresh)))), 0o600))
	r = nk(t, dir, "", "nodes", "--superlink", control, "--root-certificates", "certificates/ca.crt", "--login-file", "flwrhome")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "NODE ID")
	r = nk(t, dir, "", "nodes", "--superlink", control, "--root-certificates", "certificates/ca.crt", "--login-file", "conf")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "nodekeys: error: conf holds no login: looked for conf/credentials.yaml (flwr 1.26 and later) and conf/.flwr/.credentials/FEDERATION.json (flwr 1.25 and earlier)\n")

	r = nk(t, dir, "", "nodes", "--superlink", control, "--root-certificates", "certificates/ca.crt")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: ListNodes: not logged in, or the login has expired: run flwr login (Unauthenticated)\n"+
		"hint: log in with 'nodekeys login --superlink "+control+" --root-certificates certificates/ca.crt' and pass --login-file, or use --token-file\n", r.stderr)
	assert.Contains(t, gwLog.String(), "sub=alice")
	b, _ = os.ReadFile(tokens)
	assert.NotContains(t, gwLog.String(), strings.Split(string(b), "\"")[3], "no token in the logs")
}

// startNodekeysLogin starts nodekeys login with args in dir and returns it
// running, its stdout (complete once it has ended) and the sign-in
// address it printed on stderr ("" if none).
func startNodekeysLogin(t *testing.T, dir string, args ...string) (login *exec.Cmd, stdout *strings.Builder, uri string) {
	t.Helper()
	login = exec.Command(bin, append([]string{"login"}, args...)...)
	login.Dir = dir
	stderr, err := login.StderrPipe()
	require.NoError(t, err)
	stdout = &strings.Builder{}
	login.Stdout = stdout
	require.NoError(t, login.Start())
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "https://") {
			uri = line
			break
		}
	}
	return login, stdout, uri
}
