// Package accountstest signs in at the gateway's own sign-in page (package
// accounts) as a person's browser would: it loads the page at the address
// flwr login prints, and posts its form with the CSRF token the page
// carries and the cookies it set.
package accountstest

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Browser is a client with a cookie jar of its own.
type Browser struct {
	Client *http.Client
}

// NewBrowser returns a Browser using tr (which must trust the gateway's
// certificate), with an empty cookie jar.
func NewBrowser(tr http.RoundTripper) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Client: &http.Client{Transport: tr, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

var (
	csrfRe   = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	actionRe = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	codeRe   = regexp.MustCompile(`name="user_code" value="([^"]*)"`)
)

// Result is the page a sign-in ended on.
type Result struct {
	Status int
	Page   string
}

// SignedIn reports whether the page says the sign-in succeeded.
func (r Result) SignedIn() bool {
	return r.Status == http.StatusOK && regexp.MustCompile(`<h1>Signed in</h1>`).MatchString(r.Page)
}

// SignIn opens uri (verification_uri_complete) and signs in as name with
// password and, if not empty, the one-time code otp.
func (b *Browser) SignIn(t testing.TB, uri, name, password, otp string) Result {
	t.Helper()
	resp, err := b.Client.Get(uri)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in page %s: HTTP %d: %.300s", uri, resp.StatusCode, page)
	}
	csrf, action, code := csrfRe.FindStringSubmatch(page), actionRe.FindStringSubmatch(page), codeRe.FindStringSubmatch(page)
	if csrf == nil || action == nil || code == nil {
		t.Fatalf("sign-in page %s: no form: %.300s", uri, page)
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(action[1]))
	if err != nil {
		t.Fatal(err)
	}
	return b.Post(t, target.String(), url.Values{"csrf": {html.UnescapeString(csrf[1])}, "user_code": {html.UnescapeString(code[1])},
		"name": {name}, "password": {password}, "otp": {otp}})
}

// Post posts form to the sign-in page at target, as its form does.
func (b *Browser) Post(t testing.TB, target string, form url.Values) Result {
	t.Helper()
	u, _ := url.Parse(target)
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Result{Status: resp.StatusCode, Page: string(body)}
}
