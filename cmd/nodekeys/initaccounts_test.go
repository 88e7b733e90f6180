package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/argon2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/accountstest"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/tokens"
)

var initPasswordRe = regexp.MustCompile(`account admin \(role admin\), password: (\S+)\n`)

// init --accounts writes a gateway config that loads and validates, an
// account file with the admin's hash, and the state file; the password it
// makes is shown once and is in no file; a second run replaces nothing;
// a password given on stdin is taken instead.
func TestInitAccounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "init", "--accounts", "--add-san", "superlink.example")
	require.Equal(t, 0, r.code, r.stderr)
	m := initPasswordRe.FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	password := m[1]
	assert.GreaterOrEqual(t, len(password), 26, "130 bits in base32")
	assert.Equal(t, 1, strings.Count(r.stdout+r.stderr, password), "shown once")
	assert.Contains(t, r.stdout, `root-certificates = "`+filepath.Join(dir, "certificates/ca.crt")+`"`, "flwr reads the path from wherever it runs")
	for name, text := range snapshot(t, dir) {
		assert.NotContains(t, text, password, name)
	}
	cfg, err := gateway.LoadConfig(filepath.Join(dir, "gateway.yaml"))
	require.NoError(t, err)
	cfg.Defaults()
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "https://superlink.example:9095", cfg.Accounts.Issuer)
	assert.Equal(t, ":9095", cfg.Accounts.Listen)
	assert.Equal(t, "accounts.json", cfg.Accounts.File)
	assert.Equal(t, "state.db", cfg.StateFile)
	assert.Equal(t, []string{"keys/client_public_keys.csv"}, cfg.Allowlist)
	assert.Equal(t, "certificates/ca.crt", cfg.UpstreamCA)
	f, err := accounts.ReadFile(filepath.Join(dir, "accounts.json"))
	require.NoError(t, err)
	require.Len(t, f.Accounts, 1)
	assert.Equal(t, []string{"admin"}, f.Accounts[0].Roles)
	assert.True(t, strings.HasPrefix(f.Accounts[0].Password, "$argon2id$v=19$m=65536,t=3,p=4$"), "the default parameters")

	// Nothing replaced: not the credentials, nor a config alone.
	before := snapshot(t, dir)
	r = nk(t, dir, "", "init", "--accounts")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, before, snapshot(t, dir))
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "gateway.yaml"), []byte("# mine\n"), 0o600))
	r = nk(t, other, "", "init", "--accounts")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite gateway.yaml")
	assert.NoDirExists(t, filepath.Join(other, "certificates"))

	// A password on stdin, JSON, another name, config and issuer.
	other = t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(other, "conf"), 0o700))
	r = nk(t, other, "alice's password\n", "init", "--accounts", "--json", "--admin", "alice",
		"--gateway-config", "conf/gw.yaml", "--issuer", "https://127.0.0.1:19095", "--supernodes", "0")
	require.Equal(t, 0, r.code, r.stderr)
	conf, err := os.ReadFile(filepath.Join(other, "conf/gw.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "\nallow_empty: true\n", "no node yet: the gateway starts on the empty allowlist")
	var out struct {
		Gateway map[string]any `json:"gateway"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	assert.Equal(t, map[string]any{"config": "conf/gw.yaml", "accounts_file": "conf/accounts.json", "state_file": "conf/state.db",
		"issuer": "https://127.0.0.1:19095", "accounts_listen": "127.0.0.1:19095", "admin": "alice"}, out.Gateway, "no password: it was given")
	f, err = accounts.ReadFile(filepath.Join(other, "conf/accounts.json"))
	require.NoError(t, err)
	require.NotNil(t, f.Account("alice"))
	assert.True(t, argon2idMatches(t, f.Account("alice").Password, "alice's password"), "the password given on stdin")

	for _, bad := range [][]string{{"--issuer", "https://elsewhere.example:9095"}, {"--issuer", "http://localhost:9095"}, {"--admin", "no spaces"}} {
		r = nk(t, t.TempDir(), "", append([]string{"init", "--accounts"}, bad...)...)
		assert.NotEqual(t, 0, r.code, bad)
	}
	r = nk(t, dir, "", "init", "--admin", "x")
	assert.Equal(t, 2, r.code, "--admin goes with --accounts")
	r = nk(t, dir, "", "init", "--help")
	assert.Contains(t, r.stdout, "nodekeys init --accounts --add-san superlink.example")
}

// argon2idMatches reports whether password matches the PHC-format hash.
func argon2idMatches(t *testing.T, hash, password string) bool {
	t.Helper()
	f := strings.Split(hash, "$")
	require.Len(t, f, 6, hash)
	var m, tm uint32
	var p uint8
	_, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &tm, &p)
	require.NoError(t, err)
	salt, err := base64.RawStdEncoding.DecodeString(f[4])
	require.NoError(t, err)
	tag, err := base64.RawStdEncoding.DecodeString(f[5])
	require.NoError(t, err)
	return bytes.Equal(argon2.IDKey([]byte(password), salt, tm, m, p, uint32(len(tag))), tag)
}

// A federation made by init --accounts, with nodekeys gateway run with its
// config (the addresses set by flags, as the test's ports are free ones):
// nodekeys login completes its device flow at the gateway's own sign-in
// page as the admin, and a service client added with nodekeys account
// client add gets tokens through tokens.ClientCredentials.
func TestInitAccountsGateway(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	accountsAddr := freePort(t)
	r := nk(t, dir, "", "init", "-q", "--accounts", "--supernodes", "1", "--issuer", "https://"+accountsAddr)
	require.Equal(t, 0, r.code, r.stderr)
	password := strings.TrimSpace(r.stdout)
	require.Len(t, password, 26, "-q prints the password alone")

	// The CLI waits poll_interval (5 s by default) before it first asks
	// whether the sign-in is done.
	config := filepath.Join(dir, "gateway.yaml")
	yaml, err := os.ReadFile(config)
	require.NoError(t, err)
	yaml = bytes.Replace(yaml, []byte("\naccounts:\n"), []byte("\naccounts:\n  poll_interval: 1s\n"), 1)
	require.NoError(t, os.WriteFile(config, yaml, 0o600))

	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "certificates/server.pem"), filepath.Join(dir, "certificates/server.key"))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	up := standin.Start(ln, standin.WithTLS(cert))
	defer up.Stop()
	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	gwLog := runConfigGateway(t, dir, metrics, "--listen-fleet", fleet, "--listen-control", control,
		"--upstream", up.Addr, "--upstream-control", up.Addr, "--metrics", metrics)

	pem, err := os.ReadFile(filepath.Join(dir, "certificates/ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()

	login, stdout, uri := startNodekeysLogin(t, dir, "--superlink", control, "--root-certificates", "certificates/ca.crt", "--out", "login.json")
	require.True(t, strings.HasPrefix(uri, "https://"+accountsAddr+"/device?user_code="), "login prints the gateway's sign-in page: %q", uri)
	b := accountstest.NewBrowser(tr)
	res := b.SignIn(t, uri, "admin", password, "")
	require.True(t, res.SignedIn(), "HTTP %d: %.300s", res.Status, res.Page)
	require.NoError(t, login.Wait(), gwLog.String())
	assert.Contains(t, stdout.String(), "logged in")
	r = nk(t, dir, "", "nodes", "--superlink", control, "--root-certificates", "certificates/ca.crt", "--login-file", "login.json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "NODE ID")

	// A service client, through the Go helper.
	r = nk(t, dir, "", "account", "client", "add", "ci", "--role", "member")
	require.Equal(t, 0, r.code, r.stderr)
	secret := strings.TrimSpace(r.stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc := &clientcredentials.Config{ClientID: "ci", ClientSecret: secret, TokenURL: "https://" + accountsAddr + "/oauth/token"}
	conn, err := grpc.NewClient(control, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		grpc.WithPerRPCCredentials(tokens.ClientCredentials(context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: tr}), cc, 0)))
	require.NoError(t, err)
	defer conn.Close()
	req, resp := []byte{}, []byte{}
	require.NoError(t, conn.Invoke(ctx, "/flwr.proto.Control/ListRuns", &req, &resp, grpc.ForceCodec(standin.Codec())))

	logs := gwLog.String()
	assert.Contains(t, logs, "name=admin")
	for _, s := range []string{password, secret} {
		assert.NotContains(t, logs, s)
	}
}
