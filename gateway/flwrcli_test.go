package gateway_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/accountstest"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// flowerCLI returns the real flwr CLI of Flower version: from
// $NODEKEYS_FLOWER, or .peers/flower at the module root (see
// ../shared/peers/flower). It skips when there is none, and fails under
// NODEKEYS_REQUIRE_PEERS.
func flowerCLI(t *testing.T, version string) string {
	t.Helper()
	dir := os.Getenv("NODEKEYS_FLOWER")
	if dir == "" {
		dir = filepath.Join("..", ".peers", "flower")
	}
	bin := filepath.Join(dir, version, "bin", "flwr")
	if _, err := os.Stat(bin); err != nil {
		if peer.Required() {
			t.Fatalf("the flwr CLI is missing (NODEKEYS_REQUIRE_PEERS is set): %v", err)
		}
		t.Skipf("the flwr CLI is missing: %v (run ../shared/peers/flower/setup.sh)", err)
	}
	return bin
}

// The unmodified flwr CLI of Flower 1.27 logs in to a gateway with
// accounts: (flwr login prints the gateway's sign-in address with the
// user code; the sign-in is made there over HTTPS), then lists and stops
// runs with the stored login, as with an external provider.
func TestAccountsWithTheRealFlwrCLI(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("the real flwr CLI takes seconds a command to start here: it runs with NODEKEYS_LONG=1 " +
			"(TestAccountsAtTheGateway runs the same device flow from Go)")
	}
	flwr := flowerCLI(t, "1.27")
	file, _ := accountFile(t)
	r := newRig(t, 1, func(c *gateway.Config) {
		c.Accounts = &accounts.Config{File: file, PollInterval: time.Second}
		c.RefusalDelay = new(time.Duration)
	})
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, "config.toml"), fmt.Appendf(nil,
		"[superlink]\ndefault = \"gw\"\n\n[superlink.gw]\naddress = %q\nroot-certificates = %q\n", r.control, r.tls.CACert), 0o600))
	env := append(os.Environ(), "FLWR_HOME="+home, "BROWSER=/bin/true", "FLWR_TELEMETRY_ENABLED=0")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("timeout", append([]string{"60", flwr}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "flwr %v: %s", args, out)
		return string(out)
	}

	login := exec.Command("timeout", "60", flwr, "login", "gw")
	login.Env = env
	stdout, err := login.StdoutPipe()
	require.NoError(t, err)
	login.Stderr = login.Stdout
	require.NoError(t, login.Start())
	var printed []string
	uri := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		printed = append(printed, sc.Text())
		if m := regexp.MustCompile(`https://\S+/device\?user_code=\S+`).FindString(sc.Text()); m != "" {
			uri = m
			break
		}
	}
	require.NotEmpty(t, uri, "flwr login printed no sign-in address: %s", strings.Join(printed, "\n"))
	assert.True(t, strings.HasPrefix(uri, r.cfg.Accounts.Issuer+"/device?user_code="), uri)
	b := accountstest.NewBrowser(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.caPool}})
	res := b.SignIn(t, uri, "bob", "bob's password", "")
	require.True(t, res.SignedIn(), "HTTP %d: %.300s", res.Status, res.Page)
	for sc.Scan() {
		printed = append(printed, sc.Text())
	}
	require.NoError(t, login.Wait(), strings.Join(printed, "\n"))
	assert.Contains(t, strings.Join(printed, "\n"), "Login successful")

	// alice's run, and bob's: bob, a member, sees and stops his own only.
	alice := accountsLogin(t, r, "alice", "alice's password", nil)
	raw := r.dial(t, r.control, nil)
	aliceRun := startRun(t, raw, user(alice.Access))
	bobRun := startRun(t, raw, user(bobToken(t, home)))
	ls := run("ls", "gw", "--format", "json")
	assert.Contains(t, ls, fmt.Sprint(bobRun))
	assert.NotContains(t, ls, fmt.Sprint(aliceRun))
	run("stop", fmt.Sprint(bobRun), "gw")
	cmd := exec.Command("timeout", "60", flwr, "stop", fmt.Sprint(aliceRun), "gw")
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	assert.Contains(t, string(out), "was not started or registered by this account", "bob cannot stop alice's run")
	assert.Contains(t, r.logs.String(), "name=bob")
}

// bobToken reads the access token flwr 1.27 stored in FLWR_HOME's
// credentials.yaml (base64, under the connection's oidc-access-token
// key).
func bobToken(t *testing.T, home string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "credentials.yaml"))
	require.NoError(t, err)
	m := regexp.MustCompile(`oidc-access-token:\s*(\S+)`).FindSubmatch(b)
	require.NotNil(t, m, "no access token in credentials.yaml")
	tok, err := decodeB64(string(m[1]))
	require.NoError(t, err)
	return tok
}

func decodeB64(s string) (string, error) {
	s = strings.Trim(s, `"'`)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.URLEncoding.DecodeString(s)
	}
	return string(b), err
}
