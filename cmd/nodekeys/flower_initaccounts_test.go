package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/accountstest"
	"github.com/nodekeys/nodekeys/internal/flowerpeer"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// TestFlowerInitAccounts: a federation made by nodekeys init --accounts,
// its gateway run with the config init wrote and no other service (only
// the addresses set by flags, as the ports are free ones), a real 1.27
// SuperLink behind it. The real flwr login completes at the gateway's own
// sign-in page as the admin; flwr ls, run and stop work; a member added
// with nodekeys account add cannot stop the admin's run. Long form only
// (NODEKEYS_LONG=1).
func TestFlowerInitAccounts(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("the real Flower CLI runs in the long form, NODEKEYS_LONG=1 (TestInitAccountsGateway is the short one)")
	}
	f := flowerpeer.Require(t, flowerpeer.V127)
	dir := t.TempDir()
	accountsAddr := freePort(t)
	r := nk(t, dir, "", "init", "-q", "--accounts", "--issuer", "https://"+accountsAddr)
	require.Equal(t, 0, r.code, r.stderr)
	password := strings.TrimSpace(r.stdout)
	c := filepath.Join(dir, "certificates")
	ca := filepath.Join(c, "ca.crt")
	sl := f.StartSuperLink(t, flowerpeer.SuperLinkOptions{SupernodeAuth: true,
		TLS: &flowerpeer.TLS{CACert: ca, ServerCert: filepath.Join(c, "server.pem"), ServerKey: filepath.Join(c, "server.key")}})
	r = nk(t, dir, "bob's password\n", "account", "add", "bob", "--role", "member")
	require.Equal(t, 0, r.code, r.stderr)
	sl.WaitReady(t)

	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	gwLog := runConfigGateway(t, dir, metrics, "--listen-fleet", fleet, "--listen-control", control,
		"--upstream", sl.Fleet, "--upstream-control", sl.Control, "--metrics", metrics)

	pem, err := os.ReadFile(ca)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	cli := map[string]*flowerpeer.CLI{}
	for name, pw := range map[string]string{"admin": password, "bob": "bob's password"} {
		cli[name] = f.NewCLI(t, "gw", control, ca)
		l := startLogin(t, cli[name])
		l.completeWith(t, func(uri string) {
			assert.True(t, strings.HasPrefix(uri, "https://"+accountsAddr+"/device?user_code="), uri)
			res := accountstest.NewBrowser(tr).SignIn(t, uri, name, pw, "")
			require.True(t, res.SignedIn(), "HTTP %d: %.300s", res.Status, res.Page)
		})
	}

	out, rr := flwrJSON(t, cli["admin"], "ls")
	assert.Empty(t, runIDs(t, out, rr))
	rr = cli["admin"].Flwr(t, flwrTimeout, append(append([]string{"run"}, cli["admin"].Target("run")...), "--format", "json")...)
	out = map[string]any{}
	require.NoError(t, json.Unmarshal([]byte(rr.Stdout), &out), rr)
	require.Equal(t, true, out["success"], rr)
	run, _ := out["run-id"].(string)
	require.NotEmpty(t, run)
	out, rr = flwrJSON(t, cli["admin"], "ls")
	assert.Equal(t, []string{run}, runIDs(t, out, rr))
	out, rr = flwrJSON(t, cli["bob"], "ls")
	assert.Empty(t, runIDs(t, out, rr), "a member sees its own runs only")
	out, rr = flwrJSON(t, cli["bob"], "stop", run)
	refused(t, out, rr, "run "+run+" was not started or registered by this account")
	out, rr = flwrJSON(t, cli["admin"], "stop", run)
	assert.Equal(t, map[string]any{"success": true, "run-id": run}, out, rr)
	out, rr = flwrJSON(t, cli["admin"], "ls")
	runs, _ := out["runs"].([]any)
	require.Len(t, runs, 1, rr)
	assert.Equal(t, "finished:stopped", runs[0].(map[string]any)["status"], rr)
	assert.Contains(t, gwLog.String(), "name=admin")
	assert.NotContains(t, gwLog.String(), password)
}
