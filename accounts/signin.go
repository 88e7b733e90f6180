package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// The sign-in page: where flwr login sends the person, with the user code
// in the address. It is plain server-rendered HTML with its style inline
// (allowed by hash in its Content-Security-Policy; no script, no external
// asset), and a form posted to itself.
//
// CSRF: a post must come from this origin (Go's CrossOriginProtection,
// which reads Sec-Fetch-Site and Origin) and carry a token that is an
// HMAC of a random cookie (__Host-, Secure, HttpOnly, SameSite=Strict)
// made when the page was shown.
//
// No user enumeration: an unknown name, a disabled account, a wrong
// password and a wrong or missing one-time code get the same answer, and
// the same argon2id work (an unknown name is checked against a dummy hash
// of the same parameters); lockouts apply to any name typed, known or
// not.
//
// Failed sign-ins are counted per name typed and per client address (an
// IPv4 address, an IPv6 /64). Past FreeAccountFailures failures of a name
// (FreeAddressFailures of an address), it is locked for a second, and each
// further failure doubles that, up to MaxLockout; attempts while locked
// are refused unchecked and uncounted, and the count is forgotten an hour
// after the last failure. A name's lockout cannot keep its owner out: a
// browser that has signed in to the account before holds a signed device
// cookie (30 days), and sign-ins with it skip the name's lockout, with a
// count and lockout of the cookie's own instead (OWASP's device cookies).
// A wrong user code counts against the address, which bounds guessing
// codes (RFC 8628, section 5.1).
const (
	FreeAccountFailures = 5
	FreeAddressFailures = 20
	MaxLockout          = 15 * time.Minute
	failureMemory       = time.Hour
	lockRecordMargin    = time.Minute
	deviceCookieAge     = 30 * 24 * time.Hour
)

const (
	signInPath   = "/device"
	csrfCookie   = "__Host-nk_csrf"
	deviceCookie = "__Host-nk_device"
)

const pageStyle = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f6;color:#111}` +
	`main{max-width:24rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:.5rem}` +
	`label{display:block;margin-top:1rem;font-weight:600}input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}` +
	`button{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem}.error{color:#a00;font-weight:600}.hint{font-weight:400;color:#555}`

var pageCSP = func() string {
	h := sha256.Sum256([]byte(pageStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) +
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var page = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Done}}Signed in{{else}}Sign in{{end}} · Flower federation</title>
<style>` + pageStyle + `</style>
</head>
<body>
<main>
{{if .Done}}<h1>Signed in</h1>
<p role="status">You are signed in as {{.Name}}. You can close this page and go back to the terminal.</p>
{{else}}<h1>Sign in</h1>
<p>to finish <code>flwr login</code> for this Flower federation.</p>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
<form method="post" action="` + signInPath + `"{{if .Error}} aria-describedby="error"{{end}}>
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="user_code">Code shown by flwr login</label>
<input id="user_code" name="user_code" value="{{.UserCode}}" required autocomplete="off" autocapitalize="characters" spellcheck="false">
<label for="name">Name</label>
<input id="name" name="name" value="{{.Name}}" required autocomplete="username" autocapitalize="none" spellcheck="false" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required autocomplete="current-password">
<label for="otp">One-time code <span class="hint">(if your account has them)</span></label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" maxlength="8">
<button type="submit">Sign in</button>
</form>
{{end}}</main>
</body>
</html>
`))

type pageData struct {
	Done                 bool
	Error                string
	CSRF, UserCode, Name string
}

// Messages of the sign-in page; the failures' are alike whatever failed.
const (
	msgFailed   = "The sign-in failed: the name, password or one-time code is not right."
	msgBadCode  = "That code is not right or has expired: run flwr login again for a new one."
	msgCSRF     = "The form had expired: please sign in again."
	msgLocked   = "Too many failed sign-ins for this name or from this address: try again in %s."
	msgInternal = "The sign-in cannot be completed now: try again in a minute."
)

// signIn serves the sign-in page.
func (p *Provider) signIn(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.render(w, r, http.StatusOK, pageData{UserCode: r.URL.Query().Get("user_code")})
	case http.MethodPost:
		p.signInPost(w, r)
	default:
		h.Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// render shows the page, with a CSRF token for the browser's cookie (set
// now if it has none).
func (p *Provider) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	if !d.Done {
		ring, err := p.keys(r.Context())
		if err != nil {
			http.Error(w, msgInternal, http.StatusServiceUnavailable)
			return
		}
		c, err := r.Cookie(csrfCookie)
		val := ""
		if err == nil && len(c.Value) >= 32 {
			val = c.Value
		} else {
			val = randomID("", 32)
			http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: val, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		d.CSRF = mac(ring.Secret, "csrf", val)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	page.Execute(w, d)
}

func mac(secret []byte, parts ...string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *Provider) signInPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form does not parse", http.StatusBadRequest)
		return
	}
	d := pageData{UserCode: strings.TrimSpace(r.PostForm.Get("user_code")), Name: strings.TrimSpace(r.PostForm.Get("name"))}
	ring, err := p.keys(ctx)
	if err != nil {
		p.render(w, r, http.StatusServiceUnavailable, pageData{Error: msgInternal})
		return
	}
	c, cerr := r.Cookie(csrfCookie)
	if p.csrf.Check(r) != nil || cerr != nil ||
		!hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(mac(ring.Secret, "csrf", c.Value))) {
		d.Error = msgCSRF
		p.render(w, r, http.StatusForbidden, d)
		return
	}
	fail := func(status int, msg string) {
		d.Error = msg
		p.render(w, r, status, d)
	}
	addr := clientAddress(r)
	device, hasDevice := p.deviceCookieFor(r, ring.Secret, d.Name)
	// The name's own lockout, or, from a browser that signed in to it
	// before, the cookie's.
	nameKind, nameKey := "name", d.Name
	if hasDevice {
		nameKind, nameKey = "device", device
	}
	for _, l := range [][2]string{{"addr", addr}, {nameKind, nameKey}} {
		left, err := p.lockedFor(ctx, l[0], l[1])
		if err != nil {
			fail(http.StatusServiceUnavailable, msgInternal)
			return
		}
		if left > 0 {
			fail(http.StatusTooManyRequests, fmt.Sprintf(msgLocked, roundUp(left)))
			return
		}
	}
	if _, _, err := p.pendingDevice(ctx, d.UserCode); err != nil {
		if errors.Is(err, errBadUserCode) {
			p.failed(ctx, "addr", addr, FreeAddressFailures)
			fail(http.StatusUnauthorized, msgBadCode)
		} else {
			fail(http.StatusServiceUnavailable, msgInternal)
		}
		return
	}
	acct, amr, err := p.check(ctx, d.Name, r.PostForm.Get("password"), strings.TrimSpace(r.PostForm.Get("otp")))
	if err != nil {
		p.failed(ctx, "addr", addr, FreeAddressFailures)
		free := FreeAccountFailures
		p.failed(ctx, nameKind, nameKey, free)
		p.log.Warn("a sign-in failed", "peer", addr)
		fail(http.StatusUnauthorized, msgFailed)
		return
	}
	if err := p.completeDevice(ctx, d.UserCode, acct.ID, amr); err != nil {
		fail(http.StatusUnauthorized, msgBadCode)
		return
	}
	p.kv.del(ctx, failKey(nameKind, nameKey))
	p.setDeviceCookie(w, ring.Secret, acct.Name)
	p.log.Info("signed in", "name", acct.Name, "sub", acct.ID, "peer", addr)
	p.render(w, r, http.StatusOK, pageData{Done: true, Name: acct.Name})
}

func roundUp(d time.Duration) string {
	if d < time.Minute {
		return strconv.Itoa(int((d+time.Second-1)/time.Second)) + " s"
	}
	return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " min"
}

// hashSlots bounds the argon2id checks running at once (each takes 64 MiB
// with the default parameters).
var hashSlots = make(chan struct{}, min(4, max(1, runtime.GOMAXPROCS(0))))

var (
	dummyMu     sync.Mutex
	dummyHashes = map[Params]string{}
)

// dummyHash is a hash of params to check an unknown name's password
// against, so that it costs what a known name's does.
func dummyHash(p Params) string {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	h, ok := dummyHashes[p]
	if !ok {
		h, _ = p.Hash(randomID("", 16))
		dummyHashes[p] = h
	}
	return h
}

// check verifies a name, password and one-time code, with the same work
// whichever is wrong. It returns the account and its authentication
// methods (RFC 8176).
func (p *Provider) check(ctx context.Context, name, password, code string) (*Account, []string, error) {
	f, err := p.accounts()
	if err != nil {
		return nil, nil, err
	}
	a := f.Account(name)
	hash := ""
	if a != nil {
		hash = a.Password
	} else {
		params := DefaultParams
		if len(f.Accounts) > 0 {
			if h, err := parseHash(f.Accounts[0].Password); err == nil {
				params = h.p
			}
		}
		hash = dummyHash(params)
	}
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	ok := verifyPassword(hash, password)
	<-hashSlots
	if a == nil || a.Disabled || !ok {
		return nil, nil, errors.New("refused")
	}
	if a.TOTP == "" {
		return a, []string{"pwd"}, nil
	}
	valid, _ := totp.ValidateCustom(code, a.TOTP, p.now(), totpOpts)
	if !valid {
		return nil, nil, errors.New("refused")
	}
	// A code works once: one seen in the last 90 s (the window) is
	// refused.
	fresh, err := p.kv.setNX(ctx, totpUsedKey(a.ID, code), []byte{1}, 90*time.Second)
	if err != nil || !fresh {
		return nil, nil, errors.New("refused")
	}
	return a, []string{"pwd", "otp", "mfa"}, nil
}

// totpOpts are RFC 6238's defaults, as authenticator apps use them: six
// digits, 30-second steps, HMAC-SHA1, and one step of clock skew either
// way.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// lockedFor returns how long kind/key stays locked.
func (p *Provider) lockedFor(ctx context.Context, kind, key string) (time.Duration, error) {
	b, err := p.kv.get(ctx, lockKey(kind, key))
	if err != nil || b == nil {
		return 0, err
	}
	until, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, nil
	}
	return until.Sub(p.now()), nil
}

// failed counts a failure of kind/key, and locks it past free ones.
func (p *Provider) failed(ctx context.Context, kind, key string, free int) {
	n, err := p.kv.incr(ctx, failKey(kind, key), failureMemory)
	if err != nil {
		p.log.Error("cannot count a failed sign-in", "error", err)
		return
	}
	if lock := lockout(n, free); lock > 0 {
		// The time in the record ends the lock, on the provider's clock.
		// The record is kept a minute longer, so that a stalled check
		// still finds it, and no longer: with replicas whose clocks
		// differ, a lock lasts at most that minute more on the one behind.
		until := p.now().Add(lock)
		p.kv.set(ctx, lockKey(kind, key), []byte(until.Format(time.RFC3339Nano)), lock+lockRecordMargin)
	}
}

// lockout is the lock after the n-th failure: none for the first free-1,
// then 1 s, doubling, up to MaxLockout.
func lockout(n int64, free int) time.Duration {
	if n < int64(free) {
		return 0
	}
	shift := min(n-int64(free), 20)
	return min(time.Second<<shift, MaxLockout)
}

// deviceCookieFor returns the browser's device cookie if it is valid
// and for name.
func (p *Provider) deviceCookieFor(r *http.Request, secret []byte, name string) (string, bool) {
	c, err := r.Cookie(deviceCookie)
	if err != nil {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", false
	}
	who, err := base64.RawURLEncoding.DecodeString(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || err2 != nil || string(who) != name || p.now().Unix() > exp {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(mac(secret, "device", string(who), parts[1]))) {
		return "", false
	}
	return c.Value, true
}

func (p *Provider) setDeviceCookie(w http.ResponseWriter, secret []byte, name string) {
	exp := strconv.FormatInt(p.now().Add(deviceCookieAge).Unix(), 10)
	v := base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + exp + "." + mac(secret, "device", name, exp)
	http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: v, Path: "/", MaxAge: int(deviceCookieAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// clientAddress is what failures are counted by: the peer's IPv4
// address, or its IPv6 /64.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// TOTPKey makes a new TOTP secret for the account named name and returns
// it with its otpauth:// address (for an authenticator app's QR code).
func TOTPKey(issuer, name string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: name, Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}
