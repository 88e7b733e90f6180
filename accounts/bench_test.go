package accounts

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchSite is a provider whose account file has alice with the default
// argon2id parameters, as nodekeys account add writes it.
func benchSite(b *testing.B) *Provider {
	dir := b.TempDir()
	file := filepath.Join(dir, "accounts.json")
	if _, err := Add(file, "alice", []string{"admin"}, "", alicePassword, DefaultParams); err != nil {
		b.Fatal(err)
	}
	p, err := New(b.Context(), Config{Issuer: "https://127.0.0.1:9095", File: file}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func serve(p *Provider, req *http.Request) int {
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	return rec.Code
}

// The baseline: the discovery document, in the same run.
func BenchmarkDiscovery(b *testing.B) {
	p := benchSite(b)
	for b.Loop() {
		if serve(p, httptest.NewRequest(http.MethodGet, "https://127.0.0.1:9095/.well-known/openid-configuration", nil)) != 200 {
			b.Fatal("discovery")
		}
	}
}

// The sign-in page as flwr login's address opens it.
func BenchmarkSignInPage(b *testing.B) {
	p := benchSite(b)
	for b.Loop() {
		if serve(p, httptest.NewRequest(http.MethodGet, "https://127.0.0.1:9095/device?user_code=BCDF-GHJK", nil)) != 200 {
			b.Fatal("page")
		}
	}
}

// A posted sign-in with a wrong password, from ever new addresses (no
// lockout): what one guess costs the gateway, and bounds the guesses a
// second before any lockout.
func BenchmarkSignInPost(b *testing.B) {
	p := benchSite(b)
	get := httptest.NewRecorder()
	p.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "https://127.0.0.1:9095/device", nil))
	cookie := get.Result().Cookies()[0]
	body := get.Body.String()
	i := strings.Index(body, `name="csrf" value="`) + len(`name="csrf" value="`)
	code := p.userCodeForBench(b)
	n := 0
	for b.Loop() {
		n++
		form := url.Values{"csrf": {body[i : i+43]}, "user_code": {code}, "name": {"alice"}, "password": {"a guess"}}
		req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:9095/device", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		req.RemoteAddr = "10." + itoa(n>>16&255) + "." + itoa(n>>8&255) + "." + itoa(n&255) + ":1"
		p.kv.del(b.Context(), lockKey("name", "alice")) // measure the check, not the lock
		if c := serve(p, req); c != http.StatusUnauthorized {
			b.Fatalf("HTTP %d", c)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func (p *Provider) userCodeForBench(b *testing.B) string {
	s := &storage{p}
	if err := s.StoreDeviceAuthorization(b.Context(), GatewayClient, "device-code-for-bench", "BCDF-GHJK", p.now().Add(DefaultDeviceCodeLifetime), nil); err != nil {
		b.Fatal(err)
	}
	return "BCDF-GHJK"
}
