package accounts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/internal/accountstest"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// testParams keep the tests quick: the hash's parameters are read from
// each hash, so the checks are the same as with DefaultParams.
var testParams = Params{Time: 1, MemoryKiB: 1024, Threads: 1}

const alicePassword = "correct horse battery"

// clock is a settable clock for the provider.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// site is a provider served over TLS on loopback.
type site struct {
	p    *Provider
	srv  *httptest.Server
	auth *oidcauth.Authenticator
	file string
	logs *syncbuf.Buffer
	clk  *clock
}

func writeAccounts(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "accounts.json")
	_, err := Add(file, "alice", []string{"admin"}, "alice@example.org", alicePassword, testParams)
	require.NoError(t, err)
	_, err = Add(file, "bob", []string{"member"}, "", "bob's long password", testParams)
	require.NoError(t, err)
	return file
}

func startSite(t *testing.T, file string, shared *Shared, tweak ...func(*Config)) *site {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := Config{Issuer: "https://" + ln.Addr().String(), File: file}
	for _, f := range tweak {
		f(&cfg)
	}
	s := &site{file: file, logs: &syncbuf.Buffer{}, clk: &clock{t: time.Now()}}
	s.p, err = newProvider(context.Background(), cfg, shared, slog.New(slog.NewTextHandler(s.logs, nil)), s.clk.now)
	require.NoError(t, err)
	s.srv = httptest.NewUnstartedServer(s.p.Handler())
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	oc := s.p.OIDCConfig()
	oc.ProviderBurstPerClient = 100
	s.auth, err = oidcauth.New(context.Background(), oc)
	require.NoError(t, err)
	return s
}

func (s *site) browser() *accountstest.Browser {
	return accountstest.NewBrowser(s.srv.Client().Transport)
}

// login runs a device login as the gateway does, signing in at the page
// with b as name.
func (s *site) login(t *testing.T, b *accountstest.Browser, name, password, otp string) *oidcauth.Tokens {
	t.Helper()
	ctx := context.Background()
	d, err := s.auth.StartLogin(ctx)
	require.NoError(t, err)
	tok, err := s.auth.PollLogin(ctx, d.DeviceCode)
	require.NoError(t, err)
	require.Nil(t, tok, "pending until the sign-in")
	res := b.SignIn(t, d.VerificationURIComplete, name, password, otp)
	require.True(t, res.SignedIn(), "HTTP %d: %s", res.Status, res.Page)
	tok, err = s.auth.PollLogin(ctx, d.DeviceCode)
	require.NoError(t, err)
	require.NotNil(t, tok)
	_, err = s.auth.PollLogin(ctx, d.DeviceCode)
	require.Error(t, err, "a device code gives tokens once")
	return tok
}

// refresh uses a refresh token at the token endpoint, over HTTPS, as the
// gateway's client.
func (s *site) refresh(t *testing.T, rt string) (access, refresh, errCode string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(GatewayClient, s.p.secret)
	resp, err := s.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		Error   string `json:"error"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Access, out.Refresh, out.Error
}

func TestDeviceSignInRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	tok := s.login(t, s.browser(), "alice", alicePassword, "")
	acct, next, err := s.auth.Authenticate(context.Background(), tok.Access, "")
	require.NoError(t, err)
	assert.Nil(t, next)
	f, _ := ReadFile(s.file)
	assert.Equal(t, authz.Principal{Kind: authz.KindUser, Subject: f.Account("alice").ID}, acct.Principal)
	assert.Equal(t, "alice", acct.Name)
	assert.Equal(t, "alice@example.org", acct.Email)
	assert.Equal(t, []string{"admin"}, acct.Groups)
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.Access, ".")[0])
	assert.Contains(t, string(hdr), `"alg":"ES256"`)
	assert.NotContains(t, s.logs.String(), alicePassword)

	// Rotation: each refresh gives a new refresh token; the old one,
	// used again, is refused and revokes the family, so the new one dies
	// too.
	a2, r2, e := s.refresh(t, tok.Refresh)
	require.Empty(t, e)
	require.NotEqual(t, tok.Refresh, r2)
	_, _, err = s.auth.Authenticate(context.Background(), a2, "")
	require.NoError(t, err, "the refreshed access token is valid")
	a3, r3, e := s.refresh(t, r2)
	require.Empty(t, e)
	require.NotEmpty(t, a3)
	_, _, e = s.refresh(t, tok.Refresh)
	assert.Equal(t, "invalid_grant", e, "a refresh token used twice")
	_, _, e = s.refresh(t, r3)
	assert.Equal(t, "invalid_grant", e, "the reuse revoked the family")
	assert.Contains(t, s.logs.String(), "a refresh token was used again")
	_, _, e = s.refresh(t, "nkr_never-issued")
	assert.Equal(t, "invalid_grant", e)

	// Another sign-in's family is not touched.
	tokB := s.login(t, s.browser(), "bob", "bob's long password", "")
	_, _, e = s.refresh(t, tokB.Refresh)
	assert.Empty(t, e)
}

func TestSessionsEndWhenTheAccountChanges(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	for _, change := range []struct {
		name string
		do   func() error
	}{
		{"disable", func() error { return SetDisabled(s.file, "alice", true) }},
		{"passwd", func() error { return SetPassword(s.file, "alice", alicePassword, testParams) }},
	} {
		tok := s.login(t, s.browser(), "alice", alicePassword, "")
		require.NoError(t, change.do())
		_, _, e := s.refresh(t, tok.Refresh)
		assert.Equal(t, "invalid_grant", e, "after %s, at once", change.name)
		require.NoError(t, SetDisabled(s.file, "alice", false))
	}
	tok := s.login(t, s.browser(), "bob", "bob's long password", "")
	require.NoError(t, Remove(s.file, "bob"))
	_, _, e := s.refresh(t, tok.Refresh)
	assert.Equal(t, "invalid_grant", e, "after remove")
	res := s.browser().SignIn(t, s.startURI(t), "bob", "bob's long password", "")
	assert.Equal(t, http.StatusUnauthorized, res.Status, "a removed account cannot sign in")
}

func (s *site) startURI(t *testing.T) string {
	t.Helper()
	d, err := s.auth.StartLogin(context.Background())
	require.NoError(t, err)
	return d.VerificationURIComplete
}

func TestNoUserEnumeration(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	require.NoError(t, SetDisabled(s.file, "bob", true))
	var pages []string
	for _, try := range [][2]string{{"alice", "wrong password"}, {"nobody", "wrong password"}, {"bob", "bob's long password"}} {
		res := s.browser().SignIn(t, s.startURI(t), try[0], try[1], "")
		assert.Equal(t, http.StatusUnauthorized, res.Status)
		// The page repeats the name typed; past it, the same.
		pages = append(pages, strings.ReplaceAll(res.Page, `value="`+try[0]+`"`, ""))
	}
	for _, p := range pages[1:] {
		assert.Equal(t, csrfless(pages[0]), csrfless(p))
	}
	assert.Contains(t, pages[0], msgFailed)
}

func csrfless(page string) string {
	i := strings.Index(page, `name="csrf"`)
	j := strings.Index(page, `<label for="name">`)
	return page[:i] + page[j:]
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	uri := s.startURI(t)
	code := strings.TrimPrefix(uri[strings.Index(uri, "user_code="):], "user_code=")
	form := url.Values{"user_code": {code}, "name": {"alice"}, "password": {alicePassword}}
	// No token, no cookie: refused.
	res := s.browser().Post(t, s.srv.URL+signInPath, form)
	assert.Equal(t, http.StatusForbidden, res.Status)
	// A token of another browser's cookie: refused.
	other := s.browser()
	resp, err := other.Client.Get(uri)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := strings.Index(string(page), `name="csrf" value="`) + len(`name="csrf" value="`)
	form.Set("csrf", string(page[i:i+43]))
	res = s.browser().Post(t, s.srv.URL+signInPath, form)
	assert.Equal(t, http.StatusForbidden, res.Status)
	// The right token, from a cross-site page: refused.
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+signInPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = other.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	// The right token and cookie, same origin: signed in.
	res = other.Post(t, s.srv.URL+signInPath, form)
	assert.True(t, res.SignedIn(), res.Page)
}

// post signs in through the handler in this process, from addr, so that
// the test can pick the client address.
func (s *site) post(t *testing.T, addr string, cookies []*http.Cookie, userCode, name, password string) (*httptest.ResponseRecorder, []*http.Cookie) {
	t.Helper()
	get := httptest.NewRequest(http.MethodGet, s.srv.URL+signInPath, nil)
	get.RemoteAddr = addr + ":1234"
	for _, c := range cookies {
		get.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	s.p.ServeHTTP(rec, get)
	cookies = append(cookies, rec.Result().Cookies()...)
	body := rec.Body.String()
	i := strings.Index(body, `name="csrf" value="`) + len(`name="csrf" value="`)
	form := url.Values{"csrf": {body[i : i+43]}, "user_code": {userCode}, "name": {name}, "password": {password}}
	req := httptest.NewRequest(http.MethodPost, s.srv.URL+signInPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = addr + ":1234"
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	s.p.ServeHTTP(rec, req)
	return rec, append(cookies, rec.Result().Cookies()...)
}

func (s *site) userCode(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(s.startURI(t))
	require.NoError(t, err)
	return u.Query().Get("user_code")
}

func TestLockout(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	code := s.userCode(t)

	// A browser that signed in to alice before holds a device cookie.
	rec, trusted := s.post(t, "10.0.0.1", nil, code, "alice", alicePassword)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	code = s.userCode(t)

	// An attacker, from addresses of its own, fails FreeAccountFailures
	// times: then alice's name is locked, the right password included.
	for i := range FreeAccountFailures {
		rec, _ := s.post(t, "10.1.0."+string(rune('1'+i)), nil, code, "alice", "guess")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	rec, _ = s.post(t, "10.2.0.1", nil, code, "alice", alicePassword)
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Contains(t, rec.Body.String(), "try again in 1 s")
	// A name that does not exist locks alike (no enumeration).
	for range FreeAccountFailures {
		s.post(t, "10.3.0.1", nil, code, "nobody", "guess")
	}
	rec, _ = s.post(t, "10.3.0.2", nil, code, "nobody", "guess")
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)

	// alice, from her own browser, is not locked out.
	rec, _ = s.post(t, "10.0.0.1", trusted, code, "alice", alicePassword)
	assert.Equal(t, http.StatusOK, rec.Code, "the device cookie skips the name's lockout")
	code = s.userCode(t)

	// Each further failure doubles the lock, up to MaxLockout; a lock
	// ends, at its instant, so the name is never locked for good.
	s.clk.add(time.Second - time.Nanosecond)
	rec, _ = s.post(t, "10.1.1.1", nil, code, "alice", "guess")
	assert.Equal(t, http.StatusTooManyRequests, rec.Code, "1 ns before the lock ends")
	s.clk.add(time.Nanosecond)
	rec, _ = s.post(t, "10.1.1.1", nil, code, "alice", "guess")
	require.Equal(t, http.StatusUnauthorized, rec.Code, "the lock has ended: the guess is checked")
	rec, _ = s.post(t, "10.1.1.2", nil, code, "alice", alicePassword)
	assert.Contains(t, rec.Body.String(), "try again in 2 s")
	s.clk.add(2*time.Second - time.Nanosecond)
	rec, _ = s.post(t, "10.1.1.3", nil, code, "alice", alicePassword)
	assert.Equal(t, http.StatusTooManyRequests, rec.Code, "1 ns before the doubled lock ends")
	s.clk.add(time.Nanosecond)
	rec, _ = s.post(t, "10.1.1.3", nil, code, "alice", alicePassword)
	assert.Equal(t, http.StatusOK, rec.Code, "after the lock, the right password signs in")

	// The brute-force rate a name allows: attempts checked in an hour by
	// an attacker who tries again the moment each lock ends.
	assert.Equal(t, time.Duration(0), lockout(FreeAccountFailures-1, FreeAccountFailures))
	assert.Equal(t, MaxLockout, lockout(100, FreeAccountFailures))
	n, elapsed := 0, time.Duration(0)
	for f := int64(1); elapsed < time.Hour; f++ {
		n++
		elapsed += lockout(f, FreeAccountFailures)
	}
	t.Logf("a name allows %d guesses in its first hour under attack, then %d an hour", n, int(time.Hour/MaxLockout))
	assert.Less(t, n, 20)

	// An address is locked after FreeAddressFailures, whatever the names.
	for i := range FreeAddressFailures {
		s.post(t, "10.9.9.9", nil, code, "user"+string(rune('a'+i)), "guess")
	}
	rec, _ = s.post(t, "10.9.9.9", nil, code, "someone-else", "guess")
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
}

func TestTOTP(t *testing.T) {
	t.Parallel()
	file := writeAccounts(t, t.TempDir())
	secret, uri, err := TOTPKey("nodekeys", "alice")
	require.NoError(t, err)
	assert.Contains(t, uri, "otpauth://totp/")
	require.NoError(t, Change(file, "alice", func(a *Account) error { a.TOTP = secret; return nil }))
	s := startSite(t, file, nil)

	res := s.browser().SignIn(t, s.startURI(t), "alice", alicePassword, "")
	assert.Equal(t, http.StatusUnauthorized, res.Status, "the code is needed")
	assert.Contains(t, res.Page, msgFailed, "and its lack is told as any failure")
	res = s.browser().SignIn(t, s.startURI(t), "alice", alicePassword, "000000")
	assert.Equal(t, http.StatusUnauthorized, res.Status)
	code, err := totp.GenerateCode(secret, s.clk.now())
	require.NoError(t, err)
	tok := s.login(t, s.browser(), "alice", alicePassword, code)
	acct, _, err := s.auth.Authenticate(context.Background(), tok.Access, "")
	require.NoError(t, err)
	assert.Equal(t, "alice", acct.Name)
	res = s.browser().SignIn(t, s.startURI(t), "alice", alicePassword, code)
	assert.Equal(t, http.StatusUnauthorized, res.Status, "a code works once")
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	info, err := os.Stat(s.p.cfg.KeysFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the keys file is 0600")
	old := s.login(t, s.browser(), "alice", alicePassword, "")
	kid, err := RotateKeyFile(s.p.cfg.KeysFile)
	require.NoError(t, err)
	s.clk.add(time.Second - time.Nanosecond)
	ring, err := s.p.keys(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, kid, ring.current().ID, "keys are read again once a second, not sooner")
	s.clk.add(time.Nanosecond)
	fresh := s.login(t, s.browser(), "alice", alicePassword, "")
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(fresh.Access, ".")[0])
	assert.Contains(t, string(hdr), `"kid":"`+kid+`"`, "the new key signs")
	// A gateway started now knows both keys: the old token stays valid to
	// its expiry.
	auth, err := oidcauth.New(context.Background(), s.p.OIDCConfig())
	require.NoError(t, err)
	for _, tok := range []string{old.Access, fresh.Access} {
		_, _, err := auth.Authenticate(context.Background(), tok, "")
		assert.NoError(t, err)
	}
	ring, err = s.p.keys(context.Background())
	require.NoError(t, err)
	assert.Len(t, ring.published(s.clk.now()), 2)
	assert.Len(t, ring.published(s.clk.now().Add(RetiredKeyKept)), 1, "the old key is dropped after RetiredKeyKept")
}

func TestServiceClientCredentials(t *testing.T) {
	t.Parallel()
	file := writeAccounts(t, t.TempDir())
	secret, err := AddClient(file, "ci", []string{"member"})
	require.NoError(t, err)
	s := startSite(t, file, nil)
	token := func(id, secret string) (string, int) {
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := s.srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct {
			Access string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		return out.Access, resp.StatusCode
	}
	tok, status := token("ci", secret)
	require.Equal(t, http.StatusOK, status)
	acct, _, err := s.auth.Authenticate(context.Background(), tok, "")
	require.NoError(t, err)
	assert.Equal(t, authz.Principal{Kind: authz.KindClient, Subject: "ci"}, acct.Principal)
	assert.Equal(t, []string{"member"}, acct.Groups)
	_, status = token("ci", secret+"x")
	assert.Equal(t, http.StatusUnauthorized, status)
	_, status = token(GatewayClient, "guess")
	assert.Equal(t, http.StatusUnauthorized, status)
	require.NoError(t, SetDisabled(file, "ci", true))
	_, status = token("ci", secret)
	assert.Equal(t, http.StatusUnauthorized, status, "a disabled client gets no token")
	_, _, err = s.auth.Authenticate(context.Background(), tok, "")
	assert.Error(t, err, "and its tokens are refused")
}
