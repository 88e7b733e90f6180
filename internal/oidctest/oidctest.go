// Package oidctest runs a real OpenID Connect provider for tests: the
// oidc-provider package from the npm registry (a certified implementation),
// under the machine's Node, on loopback over HTTPS with a certificate of
// nodekeys' own CA. It drives the provider's device-confirmation and login
// pages with plain HTTP requests, as a person's browser would.
//
// The provider needs Node and `npm ci` in internal/oidctest/provider
// (.ci/run does it). Where they are missing the test is skipped, and fails
// under NODEKEYS_REQUIRE_PEERS.
package oidctest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// Resource is the audience of the provider's access tokens.
const Resource = "https://flower-control"

// RolesURLClaim is a claim of the provider's JWT access tokens named by a
// URL, holding the same as groups.
const RolesURLClaim = "https://nodekeys.example/roles"

// The provider's clients.
const (
	ClientID      = "flwr-gateway"
	ClientSecret  = "gateway-secret-for-tests"
	ServiceID     = "flwr-service"
	ServiceSecret = "service-secret-for-tests"
)

// State configures a provider run.
type State struct {
	// Keys is "rsa", "ec" or "both" (default): the signing keys, made
	// afresh at each start (so a restart is a key rotation).
	Keys string `json:"keys,omitempty"`
	// AccessAlg signs access tokens: "RS256" (default) or "ES256".
	AccessAlg string `json:"accessAlg,omitempty"`
	// AccessTTL is the access tokens' lifetime in seconds (default 60).
	AccessTTL int `json:"accessTTL,omitempty"`
	// RefreshedAccessTTL is the lifetime of access tokens a refresh issues
	// (default AccessTTL): a test can let the first token expire soon and
	// still use the refreshed one on a slow machine.
	RefreshedAccessTTL int `json:"refreshedAccessTTL,omitempty"`
	// Accounts maps account names to their groups.
	Accounts map[string][]string `json:"accounts,omitempty"`
	// Opaque issues opaque access tokens (checked at userinfo), not JWTs.
	Opaque bool `json:"opaque,omitempty"`
	// Clients are further applications registered at the provider. Their
	// access tokens are opaque unless they ask for a resource.
	Clients []Client `json:"clients,omitempty"`
	// NoIntrospection turns the introspection endpoint off.
	NoIntrospection bool `json:"noIntrospection,omitempty"`
	// HoldKey adds to the provider's keys one the test holds too, for
	// Provider.Mint (the key is made by Start).
	HoldKey bool            `json:"-"`
	HeldKey json.RawMessage `json:"heldKey,omitempty"`
}

// Client is an application registered at the provider.
type Client struct {
	ID         string   `json:"client_id"`
	Secret     string   `json:"client_secret"`
	GrantTypes []string `json:"grant_types"`
}

// The grant types of a Client.
const (
	GrantDevice            = "urn:ietf:params:oauth:grant-type:device_code"
	GrantRefresh           = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// startTimeout bounds a provider's start: Node loading oidc-provider
// takes seconds of CPU, and the tests run on loaded two-core machines
// (20 s was missed there with real Flower running beside).
const startTimeout = 60 * time.Second

// Provider is a running provider.
type Provider struct {
	Issuer string
	// CAFile verifies the provider's certificate.
	CAFile string
	id     int64
	port   string
	cert   *certs.Result
	up     bool
	client *http.Client
	held   *ecdsa.PrivateKey
}

func providerDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "provider")
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	peer.Skipped("OIDC provider: " + fmt.Sprintf(format, args...))
	if peer.Required() {
		t.Fatalf("OIDC provider unavailable (NODEKEYS_REQUIRE_PEERS is set): "+format, args...)
	}
	t.Skipf("OIDC provider unavailable: "+format, args...)
}

// Start starts a provider on a free loopback port; it stops with the test.
// Every provider of a test binary is served by one Node process (started
// by the first Start, ended when the binary exits), each on a port and
// with a store and keys of its own.
func Start(t testing.TB, st State) *Provider {
	t.Helper()
	peer.Short(t)
	if _, err := exec.LookPath("node"); err != nil {
		missing(t, "node not found")
	}
	if _, err := os.Stat(filepath.Join(providerDir(), "node_modules", "oidc-provider")); err != nil {
		missing(t, "run npm ci in %s", providerDir())
	}
	dir := t.TempDir()
	res, err := certs.Write(certs.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{cert: res, CAFile: res.CACert, port: "0", id: nextID.Add(1)}
	pem, _ := os.ReadFile(res.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	// Idle connections are dropped well before Node's 5 s keep-alive
	// timeout, as the gateway's are: a request sent on a connection Node
	// is closing fails with EOF, and a POST is not retried.
	p.client = &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, IdleConnTimeout: 2 * time.Second}}
	if st.HoldKey {
		p.held, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if st.HeldKey, err = (&jose.JSONWebKey{Key: p.held, KeyID: HeldKeyID, Algorithm: "ES256", Use: "sig"}).MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	}
	p.start(t, st)
	t.Cleanup(p.Stop)
	return p
}

// HeldKeyID is the key id of the key a test holds (State.HoldKey).
const HeldKeyID = "held-by-the-test"

// Mint signs claims as an ES256 JWT access token with the key the test
// holds (State.HoldKey), which the provider publishes: a token the
// provider could have issued, with whatever times and names the test
// wants. Unset iss, aud, client_id, iat and exp are filled as the
// provider's own tokens for the gateway's client would have them.
func (p *Provider) Mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	if p.held == nil {
		t.Fatal("oidctest: Mint needs State.HoldKey")
	}
	now := time.Now().Unix()
	full := map[string]any{"iss": p.Issuer, "aud": Resource, "client_id": ClientID, "iat": now, "exp": now + 60,
		"scope": "openid offline_access email profile"}
	for k, v := range claims {
		if v == nil {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.held},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", HeldKeyID))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(full)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var nextID atomic.Int64

// node is the Node process that serves the providers of this binary.
var node struct {
	mu      sync.Mutex
	stdin   io.WriteCloser
	waiting map[string]chan string // "ready 3", "stopped 3" -> the answer
	dead    chan struct{}
}

// send sends cmd to the Node process (starting it if it is not running)
// and returns the answer that starts with prefix, e.g. "ready 3".
func send(cmd map[string]any, prefixes ...string) (string, error) {
	b, _ := json.Marshal(cmd)
	ch := make(chan string, 1)
	node.mu.Lock()
	if node.stdin == nil {
		if err := startNode(); err != nil {
			node.mu.Unlock()
			return "", err
		}
	}
	for _, p := range prefixes {
		node.waiting[p] = ch
	}
	dead := node.dead
	_, err := node.stdin.Write(append(b, '\n'))
	node.mu.Unlock()
	if err != nil {
		return "", err
	}
	select {
	case line := <-ch:
		return line, nil
	case <-dead:
		return "", fmt.Errorf("the provider process ended")
	case <-time.After(startTimeout):
		return "", fmt.Errorf("no answer from the provider process in %s", startTimeout)
	}
}

// startNode starts the Node process; node.mu is held.
func startNode() error {
	bin, err := exec.LookPath("node")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, filepath.Join(providerDir(), "server.mjs"))
	cmd.Dir = providerDir()
	cmd.Stderr = io.Discard
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	node.stdin, node.waiting, node.dead = in, map[string]chan string{}, make(chan struct{})
	dead := node.dead
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			f := strings.SplitN(line, " ", 3)
			if len(f) < 2 {
				continue
			}
			// An answer is "ready ID ISSUER", "error ID MESSAGE" or
			// "stopped ID".
			key := f[0] + " " + f[1]
			node.mu.Lock()
			if ch, ok := node.waiting[key]; ok {
				delete(node.waiting, key)
				ch <- line
			}
			node.mu.Unlock()
		}
		cmd.Wait()
		node.mu.Lock()
		node.stdin = nil
		node.mu.Unlock()
		close(dead)
	}()
	return nil
}

func (p *Provider) start(t testing.TB, st State) {
	t.Helper()
	id := strconv.FormatInt(p.id, 10)
	line, err := send(map[string]any{"op": "start", "id": p.id, "port": p.port, "cert": p.cert.ServerCert, "key": p.cert.ServerKey, "state": st},
		"ready "+id, "error "+id)
	if err != nil {
		t.Fatalf("the OIDC provider did not start: %v", err)
	}
	issuer, ok := strings.CutPrefix(line, "ready "+id+" ")
	if !ok {
		t.Fatalf("the OIDC provider did not start: %q", line)
	}
	node.mu.Lock()
	for _, k := range []string{"ready " + id, "error " + id} {
		delete(node.waiting, k)
	}
	node.mu.Unlock()
	p.Issuer, p.up = issuer, true
	if u, err := url.Parse(issuer); err == nil {
		p.port = u.Port()
	}
}

// Stop stops the provider (it is down until Restart): its port is closed
// and every connection to it ended.
func (p *Provider) Stop() {
	if !p.up {
		return
	}
	p.up = false
	send(map[string]any{"op": "stop", "id": p.id}, "stopped "+strconv.FormatInt(p.id, 10))
}

// Restart starts the provider again on the same address with new keys and
// an empty store: a key rotation (earlier logins and refresh tokens are
// gone).
func (p *Provider) Restart(t testing.TB, st State) {
	t.Helper()
	p.Stop()
	p.start(t, st)
}

var (
	formRe   = regexp.MustCompile(`(?is)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	inputRe  = regexp.MustCompile(`(?is)<input([^>]*)>`)
	attrRe   = regexp.MustCompile(`(?is)(name|value|type)="([^"]*)"`)
	buttonRe = regexp.MustCompile(`(?is)<button[^>]*name="([^"]*)"[^>]*value="([^"]*)"`)
)

// CompleteDeviceLogin confirms a device login at verificationURI as the
// given account, through the provider's own pages: the user-code
// confirmation, the login form and the consent form.
func (p *Provider) CompleteDeviceLogin(t testing.TB, verificationURI, account string) {
	t.Helper()
	// A browser of its own: another account's session is not reused.
	browser := *p.client
	browser.Jar, _ = cookiejar.New(nil)
	resp, err := browser.Get(verificationURI)
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 10; step++ {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if strings.Contains(strings.ToLower(page), "sign-in success") || strings.Contains(page, "Sign-in Success") {
			return
		}
		m := formRe.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("device login: no form on the provider's page (step %d, HTTP %d): %.300s", step, resp.StatusCode, page)
		}
		action, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{}
		for _, in := range inputRe.FindAllStringSubmatch(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(in[1], -1) {
				attrs[strings.ToLower(a[1])] = html.UnescapeString(a[2])
			}
			switch attrs["name"] {
			case "":
			case "login":
				form.Set("login", account)
			case "password":
				form.Set("password", "any password")
			default:
				form.Set(attrs["name"], attrs["value"])
			}
		}
		for _, b := range buttonRe.FindAllStringSubmatch(m[2], -1) {
			if b[1] != "abort" {
				form.Set(b[1], b[2])
			}
		}
		if _, ok := form["user_code"]; ok && form.Get("confirm") == "" && strings.Contains(m[2], "confirm") {
			form.Set("confirm", "yes")
		}
		if resp, err = browser.PostForm(action.String(), form); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal(fmt.Errorf("device login: no success page after 10 steps"))
}

// HTTPClient is a client that trusts the provider's certificate.
func (p *Provider) HTTPClient() *http.Client { return p.client }

// Counts returns how many requests the provider has served, by path
// ("/token", "/jwks", "/me", "/token/introspection", "/device/auth", ...).
func (p *Provider) Counts(t testing.TB) map[string]int {
	t.Helper()
	resp, err := p.client.Get(p.Issuer + "/__counts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Tokens are what the provider's token endpoint answered.
type Tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Error   string `json:"error"`
}

// tokenRequest posts form to endpoint as client c.
func (p *Provider) tokenRequest(t testing.TB, c Client, endpoint string, form url.Values) *Tokens {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.Issuer+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Tokens
		DeviceCode string `json:"device_code"`
		URI        string `json:"verification_uri_complete"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: HTTP %d: %v", endpoint, resp.StatusCode, err)
	}
	if out.DeviceCode != "" {
		return &Tokens{Access: out.DeviceCode, Refresh: out.URI}
	}
	return &out.Tokens
}

// ClientCredentials fetches a token for client c with the
// client-credentials grant; resource may be empty (an opaque token).
func (p *Provider) ClientCredentials(t testing.TB, c Client, resource string) string {
	t.Helper()
	form := url.Values{"grant_type": {GrantClientCredentials}}
	if resource != "" {
		form.Set("resource", resource)
	}
	tok := p.tokenRequest(t, c, "/token", form)
	if tok.Access == "" {
		t.Fatalf("client credentials for %s: %s", c.ID, tok.Error)
	}
	return tok.Access
}

// DeviceLogin signs account in to client c with the device flow, as that
// application would, and returns its tokens; resource may be empty (an
// opaque access token for extra clients).
func (p *Provider) DeviceLogin(t testing.TB, c Client, account, resource string) *Tokens {
	t.Helper()
	form := url.Values{"scope": {"openid offline_access email profile"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	start := p.tokenRequest(t, c, "/device/auth", form)
	if start.Access == "" {
		t.Fatalf("device login for %s: %s", c.ID, start.Error)
	}
	p.CompleteDeviceLogin(t, start.Refresh, account)
	form = url.Values{"grant_type": {GrantDevice}, "device_code": {start.Access}}
	if resource != "" {
		form.Set("resource", resource)
	}
	tok := p.tokenRequest(t, c, "/token", form)
	if tok.Access == "" {
		t.Fatalf("device login for %s: %s", c.ID, tok.Error)
	}
	return tok
}
