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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// Resource is the audience of the provider's access tokens.
const Resource = "https://flower-control"

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
	// Accounts maps account names to their groups.
	Accounts map[string][]string `json:"accounts,omitempty"`
	// Opaque issues opaque access tokens (checked at userinfo), not JWTs.
	Opaque bool `json:"opaque,omitempty"`
}

// Provider is a running provider.
type Provider struct {
	Issuer string
	// CAFile verifies the provider's certificate.
	CAFile string
	addr   string
	cert   *certs.Result
	cmd    *exec.Cmd
	client *http.Client
}

func providerDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "provider")
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if peer.Required() {
		t.Fatalf("OIDC provider unavailable (NODEKEYS_REQUIRE_PEERS is set): "+format, args...)
	}
	t.Skipf("OIDC provider unavailable: "+format, args...)
}

// Start starts a provider on a free loopback port; it stops with the test.
func Start(t testing.TB, st State) *Provider {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{addr: ln.Addr().String(), cert: res, CAFile: res.CACert}
	ln.Close()
	pem, _ := os.ReadFile(res.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	p.client = &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p.start(t, node, st)
	t.Cleanup(p.Stop)
	return p
}

func (p *Provider) start(t testing.TB, node string, st State) {
	t.Helper()
	_, port, _ := net.SplitHostPort(p.addr)
	stj, _ := json.Marshal(st)
	cmd := exec.Command(node, filepath.Join(providerDir(), "server.mjs"), port, p.cert.ServerCert, p.cert.ServerKey, string(stj))
	cmd.Dir = providerDir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		issuer, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			cmd.Process.Kill()
			t.Fatalf("the OIDC provider did not start: %q", line)
		}
		p.Issuer = issuer
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the OIDC provider did not start in 20 s")
	}
	p.cmd = cmd
}

// Stop stops the provider (it is down until Restart).
func (p *Provider) Stop() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// Restart starts the provider again on the same address with new keys and
// an empty store: a key rotation (earlier logins and refresh tokens are
// gone, as its store is in memory).
func (p *Provider) Restart(t testing.TB, st State) {
	t.Helper()
	p.Stop()
	node, _ := exec.LookPath("node")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provider's port stays busy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.start(t, node, st)
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
