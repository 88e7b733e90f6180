package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/flowerpeer"
	"github.com/nodekeys/nodekeys/internal/oidctest"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

// The bounds of the real Flower CLI's commands on a loaded two-core
// machine: a command starts a Python process importing Flower (about 2 s
// of CPU), and a run waits for SuperNodes to start a ClientApp process for
// each message.
const (
	flwrTimeout    = 90 * time.Second
	flwrRunTimeout = 240 * time.Second
)

// federation is a folder made by nodekeys init: certificates/ and two key
// pairs in keys/.
type federation struct {
	dir string
	tls *flowerpeer.TLS
}

func newFederation(t *testing.T) *federation {
	t.Helper()
	dir := t.TempDir()
	r := nk(t, dir, "", "init", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	c := filepath.Join(dir, "certificates")
	return &federation{dir: dir, tls: &flowerpeer.TLS{
		CACert: filepath.Join(c, "ca.crt"), ServerCert: filepath.Join(c, "server.pem"), ServerKey: filepath.Join(c, "server.key"),
	}}
}

// key returns the path of node i's private key (1-based), or its .pub.
func (f *federation) key(i int, pub bool) string {
	p := filepath.Join(f.dir, "keys", fmt.Sprintf("supernode_credentials_%d", i))
	if pub {
		p += ".pub"
	}
	return p
}

// flowerGateway is `nodekeys gateway` run as a process with a config file,
// in front of a real Flower SuperLink.
type flowerGateway struct {
	fleet, control, metrics string
	log                     *syncbuf.Buffer
}

// startGateway runs nodekeys gateway in dir in front of sl, with extra
// YAML appended to the config (oidc:, token_list:, ...), and waits until
// it is ready.
func startFlowerGateway(t *testing.T, dir, fleet, control, extra string) *flowerGateway {
	t.Helper()
	g := &flowerGateway{fleet: freePort(t), control: freePort(t), metrics: freePort(t)}
	conf := fmt.Sprintf("listen_fleet: %s\nlisten_control: %s\nmetrics: %s\nupstream: %s\nupstream_control: %s\n"+
		"upstream_ca: certificates/ca.crt\ntls_cert: certificates/server.pem\ntls_key: certificates/server.key\n"+
		"allowlist: [keys/client_public_keys.csv]\n%s",
		g.fleet, g.control, g.metrics, fleet, control, extra)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(conf), 0o600))
	g.log = runConfigGateway(t, dir, g.metrics)
	return g
}

// runConfigGateway runs `nodekeys gateway --config gateway.yaml ARGS` in
// dir, stops it when the test ends (SIGTERM, then a kill after 10 s), and
// waits until its /readyz on metrics answers. It returns the gateway's log.
func runConfigGateway(t *testing.T, dir, metrics string, args ...string) *syncbuf.Buffer {
	t.Helper()
	log := &syncbuf.Buffer{}
	cmd := exec.Command(bin, append([]string{"gateway", "--config", "gateway.yaml"}, args...)...)
	cmd.Dir, cmd.Stderr = dir, log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("the gateway's log:\n%s", log.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, 20*time.Second, 50*time.Millisecond, log.String())
	return log
}

// oidcConfig is the gateway's oidc: section for provider p, with the
// client secret in dir/secret.
func oidcConfig(t *testing.T, dir string, p *oidctest.Provider) string {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte(oidctest.ClientSecret+"\n"), 0o600))
	return fmt.Sprintf("oidc:\n  issuer: %s\n  client_id: %s\n  client_secret_file: secret\n  audience: %s\n  ca_file: %s\n  scopes: [email, profile]\n",
		p.Issuer, oidctest.ClientID, oidctest.Resource, p.CAFile)
}

// flwrLogin is the real flwr login against a CLI's connection, started.
type flwrLogin struct {
	cmd  *flowerpeer.Command
	done chan flowerpeer.Result
}

func startLogin(t *testing.T, cli *flowerpeer.CLI) *flwrLogin {
	t.Helper()
	l := &flwrLogin{cmd: cli.Command(flwrTimeout, append([]string{"login"}, cli.Target("login")...)...), done: make(chan flowerpeer.Result, 1)}
	require.NoError(t, l.cmd.Start())
	go func() { l.done <- l.cmd.Wait() }()
	return l
}

// complete completes the device sign-in at provider p as account, once
// the CLI has printed its address, and waits for the CLI's success.
func (l *flwrLogin) complete(t *testing.T, p *oidctest.Provider, account string) {
	t.Helper()
	l.completeWith(t, func(uri string) { p.CompleteDeviceLogin(t, uri, account) })
}

// completeWith calls signIn with the address the CLI printed, and waits
// for the CLI's success.
func (l *flwrLogin) completeWith(t *testing.T, signIn func(uri string)) {
	t.Helper()
	var uri string
	for uri == "" {
		// 1.27 prints the address on a line of its own; 1.25 after
		// "Please log into your Flower account here: ".
		for _, line := range strings.Split(l.cmd.Stdout.String(), "\n") {
			if _, u, ok := strings.Cut(line, "https://"); ok {
				uri = "https://" + strings.TrimSpace(u)
			}
		}
		if uri != "" {
			break
		}
		select {
		case r := <-l.done:
			t.Fatalf("flwr login printed no sign-in address:\n%s", r)
		case <-time.After(50 * time.Millisecond):
		}
	}
	signIn(uri)
	r := <-l.done
	require.Equal(t, 0, r.Code, r)
	assert.Contains(t, r.Stdout, "Login successful", r)
}

// flwrRun runs the test app to completion with flwr run --stream and
// checks that both SuperNodes trained in every round.
func flwrRun(t *testing.T, cli *flowerpeer.CLI, rounds int) {
	t.Helper()
	args := append(append([]string{"run"}, cli.Target("run")...), "--stream",
		"--run-config", fmt.Sprintf("num-server-rounds=%d fraction-evaluate=0.0", rounds))
	r := cli.Flwr(t, flwrRunTimeout, args...)
	require.Equal(t, 0, r.Code, r)
	assert.Contains(t, r.Stdout, "Successfully started run", r)
	assert.Equal(t, rounds, strings.Count(r.Stdout, "aggregate_train: Received 2 results and 0 failures"), r)
	assert.Contains(t, r.Stdout, fmt.Sprintf("fedapp: done after %d rounds, mean %d.0", rounds, rounds), r)
}

// TestFlowerThroughGateway runs real Flower behind nodekeys gateway, as a
// federation would: a SuperLink with TLS and --enable-supernode-auth, the
// gateway in front with account login and a machine token, one SuperNode's
// key registered by nodekeys register with the token and the other's by
// the real flwr supernode register after a real flwr login, both
// SuperNodes connecting through the gateway, and flwr run --stream of a
// small numpy app to completion, with Flower 1.27 and 1.25 (the CLI's
// project form). Like every real-Flower test it runs in the long form
// (NODEKEYS_LONG=1, as CI runs it): its Python processes take about 20 s of
// the two cores, which the default go test ./... keeps for the rest.
func TestFlowerThroughGateway(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("real Flower runs in the long form: NODEKEYS_LONG=1")
	}
	versions := []string{flowerpeer.V127, flowerpeer.V125}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			flowerThroughGateway(t, flowerpeer.Require(t, v))
		})
	}
}

func flowerThroughGateway(t *testing.T, f *flowerpeer.Flower) {
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	defer step("done")
	fed := newFederation(t)
	sl := f.StartSuperLink(t, flowerpeer.SuperLinkOptions{TLS: fed.tls, SupernodeAuth: true})
	p := oidctest.Start(t, oidctest.State{}) // while the SuperLink starts
	for _, args := range [][]string{{"state", "init", "state.db"}, {"token", "new", "--name", "ci", "--role", "member"}} {
		r := nk(t, fed.dir, "", args...)
		require.Equal(t, 0, r.code, r.stderr)
		if args[0] == "token" {
			require.NoError(t, os.WriteFile(filepath.Join(fed.dir, "ci.token"), []byte(r.stdout), 0o600))
		}
	}
	sl.WaitReady(t)
	step("superlink")
	gw := startFlowerGateway(t, fed.dir, sl.Fleet, sl.Control,
		"state_file: state.db\ntoken_list: tokens.txt\n"+oidcConfig(t, fed.dir, p))
	step("gateway")

	// The real flwr CLI logs in through the gateway as bob (the CLI waits
	// the device flow's interval, 5 s, before it asks for the tokens)...
	cli := f.NewCLI(t, "gw", gw.control, fed.tls.CACert)
	cli.EnableAccountAuth(t)
	login := startLogin(t, cli)

	// ... while node 1 is registered by nodekeys register with the
	// machine token, and starts, through the gateway.
	r := nk(t, fed.dir, "", "register", "--superlink", gw.control, "--root-certificates", "certificates/ca.crt",
		"--token-file", "ci.token", fed.key(1, true))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "1 registered, 0 already registered")
	f.StartSuperNode(t, flowerpeer.SuperNodeOptions{SuperLink: gw.fleet, CA: fed.tls.CACert, PrivateKey: fed.key(1, false)})

	login.complete(t, p, "bob")
	step("flwr login")
	// Node 2 is registered by the real flwr supernode register.
	reg := cli.Flwr(t, flwrTimeout, append([]string{"supernode", "register", fed.key(2, true)}, cli.Target("supernode")...)...)
	require.Equal(t, 0, reg.Code, reg)
	assert.Contains(t, reg.Stdout, "registered successfully", reg)
	step("flwr supernode register")
	f.StartSuperNode(t, flowerpeer.SuperNodeOptions{SuperLink: gw.fleet, CA: fed.tls.CACert, PrivateKey: fed.key(2, false)})

	flwrRun(t, cli, 2) // the app waits for both SuperNodes
	step("flwr run")

	// The gateway keeps a member to their own nodes, as the CLI shows:
	// bob sees the node he registered, not the machine token's.
	m := regexp.MustCompile(`SuperNode (\d+) registered successfully`).FindStringSubmatch(reg.Stdout)
	require.NotNil(t, m, reg)
	ls := cli.Flwr(t, flwrTimeout, append(append([]string{"supernode", "list"}, cli.Target("supernode")...), "--format", "json")...)
	require.Equal(t, 0, ls.Code, ls)
	var listed struct {
		Success bool `json:"success"`
		Nodes   []struct {
			ID     string `json:"node-id"`
			Status string `json:"status"`
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(ls.Stdout), &listed), ls)
	require.True(t, listed.Success, ls)
	require.Len(t, listed.Nodes, 1, ls)
	assert.Equal(t, m[1], listed.Nodes[0].ID, ls)
	assert.Equal(t, "online", listed.Nodes[0].Status, ls)
	step("flwr supernode list")

	// Flower answers "Public key already in use" for a key registered by
	// anyone and for one unregistered before; nodekeys register tells them
	// apart by the list the caller may see. The machine token's own key is
	// already registered (with its node id), bob's is another account's.
	ctl := func(args ...string) result {
		return nk(t, fed.dir, "", append([]string{args[0], "--superlink", gw.control, "--root-certificates", "certificates/ca.crt",
			"--token-file", "ci.token"}, args[1:]...)...)
	}
	r = ctl("register", fed.key(1, true), fed.key(2, true))
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `already-registered SHA256:\S+  node \d+  `+regexp.QuoteMeta(fed.key(1, true)), r.stdout)
	assert.Contains(t, r.stdout, "0 registered, 1 already registered, 1 held by other accounts", r.stdout)
	// The token unregisters its node (apply --prune with a folder holding
	// bob's key alone); registering that key again is refused as burned.
	only2 := filepath.Join(fed.dir, "only2")
	require.NoError(t, os.Mkdir(only2, 0o700))
	b, err := os.ReadFile(fed.key(2, true))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(only2, "supernode_credentials_2.pub"), b, 0o600))
	r = ctl("apply", "--dir", only2, "--prune")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "unregistered", r.stdout)
	assert.Contains(t, r.stdout, "other-account", r.stdout)
	r = ctl("register", fed.key(1, true))
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "burned ", r.stdout)
	assert.Contains(t, r.stdout, "Flower never registers a key again", r.stdout)
	step("nodekeys register: already registered, another account's, burned")
}

// TestFlowerCSVEra runs a Flower 1.22 SuperLink, the last that reads the
// CSV allowlist (--auth-list-public-keys), on nodekeys keygen's CSV, with
// SuperNodes given both halves of their keys as 1.22 needs: directly and
// behind the gateway (which reads the same CSV), a run to completion, and
// a key the CSV lacks refused with Flower's own message (directly) or the
// gateway's. Long form only (NODEKEYS_LONG=1): a second Flower version.
func TestFlowerCSVEra(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("Flower 1.22 (the CSV era) runs in the long form, NODEKEYS_LONG=1")
	}
	f := flowerpeer.Require(t, flowerpeer.V122)
	for _, via := range []string{"direct", "gateway"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, args := range [][]string{{"certgen"}, {"keygen", "--clients", "2"}, {"keygen", "--clients", "1", "--out", "unknown"}} {
				r := nk(t, dir, "", args...)
				require.Equal(t, 0, r.code, r.stderr)
			}
			c := filepath.Join(dir, "certificates")
			tls := &flowerpeer.TLS{CACert: filepath.Join(c, "ca.crt"), ServerCert: filepath.Join(c, "server.pem"), ServerKey: filepath.Join(c, "server.key")}
			sl := f.StartSuperLink(t, flowerpeer.SuperLinkOptions{TLS: tls, AuthList: filepath.Join(dir, "keys", "client_public_keys.csv")})
			sl.WaitReady(t)
			sl.WaitOutput(t, "Node authentication enabled with 2 known public keys", 10*time.Second)
			fleet, control := sl.Fleet, sl.Control
			if via == "gateway" {
				// Without account login the gateway passes Control calls on as they are.
				gw := startFlowerGateway(t, dir, sl.Fleet, sl.Control, "")
				fleet, control = gw.fleet, gw.control
			}
			node := func(keys string, i int) *flowerpeer.SuperNode {
				k := filepath.Join(dir, keys, fmt.Sprintf("client_credentials_%d", i))
				return f.StartSuperNode(t, flowerpeer.SuperNodeOptions{SuperLink: fleet, CA: tls.CACert, PrivateKey: k, PublicKey: k + ".pub"})
			}
			stranger := node("unknown", 1)
			node("keys", 1)
			node("keys", 2)
			cli := f.NewCLI(t, via, control, tls.CACert)
			flwrRun(t, cli, 1)

			// Flower 1.22's SuperNode prints the refusal and exits (with
			// status 0) at its first call.
			select {
			case <-stranger.Done():
			case <-time.After(flwrTimeout):
				t.Fatalf("the SuperNode with an unknown key still runs:\n%s", stranger.Output())
			}
			out := stranger.Output()
			assert.Contains(t, out, "StatusCode.UNAUTHENTICATED", out)
			if via == "direct" {
				assert.Contains(t, out, `details = "Public key not recognized"`, out)
			}
			assert.NoError(t, stranger.Err(), "Flower 1.22's SuperNode exits with status 0 after the refusal")
		})
	}
}
