// Package accounts is the gateway's own OpenID Connect provider, for
// federations with no identity provider of their own: accounts and
// service clients kept in a file the operator edits with nodekeys account
// (never self-registered), a sign-in page, and the endpoints the gateway's
// account login (package oidcauth) uses with any provider: discovery,
// JWKS, device authorization (RFC 8628), and the token endpoint with the
// device-code, refresh-token and client-credentials grants.
//
// The OAuth 2.0 and OpenID Connect protocol is github.com/zitadel/oidc's
// op package (an OpenID Foundation certified implementation); this
// package is its storage, the sign-in page and the account file.
//
// Tokens: access tokens are ES256 JWTs (access_token_lifetime, 5 minutes
// by default) carrying the account's roles in "groups"; refresh tokens
// are opaque, 256 random bits, rotated at each use. A refresh token used
// twice revokes its whole family (every token descended from the same
// sign-in). Disabling or removing an account, or changing its password or
// one-time codes, refuses its refresh tokens at once: the account file is
// looked at (one stat) before each refresh and each sign-in.
//
// Sign-in abuse: see signin.go. With Redis, device authorizations,
// refresh-token families, failed sign-ins and lockouts, and the signing
// keys are kept there, shared by every replica.
package accounts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/nodekeys/nodekeys/internal/filewatch"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// Config is the accounts: section of a gateway's config.
type Config struct {
	// Issuer is the provider's public address, as the browsers of the
	// people signing in reach the gateway's accounts listener, e.g.
	// "https://gateway.example.org:9095". It is in every token.
	Issuer string `yaml:"issuer"`
	// Listen is the address of the sign-in page and the provider's
	// endpoints, served over TLS with the gateway's certificate (default
	// ":9095").
	Listen string `yaml:"listen"`
	// File is the account file that nodekeys account writes; it is looked
	// at before each sign-in and refresh, so a change applies at once.
	File string `yaml:"file"`
	// KeysFile keeps the signing keys (0600), made at first start
	// (default: accounts-keys.json beside File). With redis, the keys are
	// kept there instead.
	KeysFile string `yaml:"keys_file"`
	// AccessTokenLifetime is how long an access token is valid (default
	// 5m, at most 1h): the longest an account disabled or removed keeps
	// working.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// RefreshTokenLifetime is how long an unused refresh token stays
	// valid (default 168h), and SessionLifetime how long a sign-in lasts
	// through refreshes (default 720h), after which flwr login is needed.
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	SessionLifetime      time.Duration `yaml:"session_lifetime"`
	// DeviceCodeLifetime is how long a flwr login's code can be entered
	// (default 10m), and PollInterval how often the CLI may ask (5s).
	DeviceCodeLifetime time.Duration `yaml:"device_code_lifetime"`
	PollInterval       time.Duration `yaml:"poll_interval"`

	// Now is the provider's clock (default time.Now), never from a file:
	// tokens' times, codes' and sessions' lifetimes, and lockouts are kept
	// by it, and so are the checks of OIDCConfig. A test can stop it.
	Now func() time.Time `yaml:"-"`
}

// Defaults of a Config.
const (
	DefaultListen               = ":9095"
	DefaultAccessTokenLifetime  = 5 * time.Minute
	DefaultRefreshTokenLifetime = 7 * 24 * time.Hour
	DefaultSessionLifetime      = 30 * 24 * time.Hour
	DefaultDeviceCodeLifetime   = 10 * time.Minute
	DefaultPollInterval         = 5 * time.Second
)

// GatewayClient is the client_id, and the audience, of the gateway's own
// client: the one flwr login signs in through.
const GatewayClient = "nodekeys-gateway"

// Defaults fills the zero fields of c.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.KeysFile == "" && c.File != "" {
		c.KeysFile = strings.TrimSuffix(c.File, ".json") + "-keys.json"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AccessTokenLifetime, DefaultAccessTokenLifetime)
	def(&c.RefreshTokenLifetime, DefaultRefreshTokenLifetime)
	def(&c.SessionLifetime, DefaultSessionLifetime)
	def(&c.DeviceCodeLifetime, DefaultDeviceCodeLifetime)
	def(&c.PollInterval, DefaultPollInterval)
}

// Validate says what is missing or contradictory, after Defaults.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("accounts: issuer must be the https:// address people reach the accounts listener at")
	case c.File == "":
		return errors.New("accounts: file is needed: the account file nodekeys account writes")
	case c.AccessTokenLifetime > time.Hour:
		return fmt.Errorf("accounts: access_token_lifetime must be at most 1h, got %s", c.AccessTokenLifetime)
	case c.SessionLifetime < c.RefreshTokenLifetime:
		return errors.New("accounts: session_lifetime must be at least refresh_token_lifetime")
	case c.DeviceCodeLifetime > 30*time.Minute || c.DeviceCodeLifetime < 30*time.Second:
		return fmt.Errorf("accounts: device_code_lifetime must be 30s to 30m, got %s", c.DeviceCodeLifetime)
	case c.PollInterval < time.Second:
		return fmt.Errorf("accounts: poll_interval must be at least 1s, got %s", c.PollInterval)
	}
	return nil
}

// Shared is the Redis the replicas share.
type Shared struct {
	Client redis.UniversalClient
	Prefix string
}

// Provider is a running provider: its HTTP handler serves the endpoints
// and the sign-in page.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	kv     kv
	keySrc keySource
	op     *op.Provider
	mux    *http.ServeMux
	secret string // the gateway client's, made at each start
	csrf   *http.CrossOriginProtection

	ringMu   sync.Mutex
	ring     *keyRing
	ringRead time.Time

	fileMu   sync.Mutex
	file     *File
	fileSeen stamp
}

// New makes a provider: it reads the account file and the signing keys
// (making them at first start). shared may be nil.
func New(ctx context.Context, cfg Config, shared *Shared, log *slog.Logger) (*Provider, error) {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return newProvider(ctx, cfg, shared, log, now)
}

func newProvider(ctx context.Context, cfg Config, shared *Shared, log *slog.Logger, now func() time.Time) (*Provider, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Provider{cfg: cfg, log: log, now: now, secret: randomID("", 32), csrf: http.NewCrossOriginProtection()}
	if shared != nil {
		p.kv = &redisKV{rdb: shared.Client, prefix: shared.Prefix}
		p.keySrc = kvKeys{p.kv}
	} else {
		p.kv = newMemKV(now)
		p.keySrc = fileKeys{cfg.KeysFile}
	}
	if _, err := p.accounts(); err != nil {
		return nil, err
	}
	if _, err := p.keys(ctx); err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	opCfg := &op.Config{
		CryptoKey:             cryptoKey,
		GrantTypeRefreshToken: true,
		SupportedScopes:       []string{"openid", "offline_access", "profile", "email"},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: cfg.DeviceCodeLifetime, PollInterval: cfg.PollInterval, UserFormPath: signInPath,
			// 8 characters of 20 (no vowels, no look-alikes): 34.6 bits,
			// as RFC 8628, section 6.1, recommends; guessing is bounded
			// by the sign-in page's failure limits.
			UserCode: op.UserCodeBase20,
		},
	}
	var err error
	if p.op, err = op.NewProvider(opCfg, &storage{p}, op.StaticIssuer(cfg.Issuer)); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	p.mux = http.NewServeMux()
	p.mux.Handle("/", p.op)
	p.mux.HandleFunc(signInPath, p.signIn)
	return p, nil
}

// Handler serves the provider's endpoints and the sign-in page.
func (p *Provider) Handler() http.Handler { return p }

// ServeHTTP implements http.Handler, with headers every answer carries.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	// For LogHandler: what op logs of this request is this provider's.
	p.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), providerLog{}, p.log)))
}

// OIDCConfig is the oidcauth configuration that checks this provider's
// tokens: the same checks as for any provider, with the provider's
// endpoints reached in this process rather than over the network.
func (p *Provider) OIDCConfig() oidcauth.Config {
	return oidcauth.Config{
		Issuer: p.cfg.Issuer, ClientID: GatewayClient, ClientSecret: p.secret,
		Scopes: []string{"profile", "email"}, Algorithms: []string{"ES256"}, OpaqueTokens: oidcauth.OpaqueRefuse,
		// Keys are fetched in this process: a new key is seen at once.
		JWKSMinRefresh: time.Second, JWKSMaxAge: time.Minute,
		Transport: inProcess{p}, ClientAllowed: p.serviceClient, Now: p.now,
	}
}

// serviceClient reports whether id is a service client of the file, not
// disabled.
func (p *Provider) serviceClient(id string) bool {
	f, err := p.accounts()
	if err != nil {
		return false
	}
	c := f.Client(id)
	return c != nil && !c.Disabled
}

// inProcess is an http.RoundTripper that hands requests to the provider's
// handler in this process.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close() // as a RoundTripper must
	}
	sreq := req.Clone(req.Context())
	sreq.Host = req.URL.Host
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "in-process"
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	t.h.ServeHTTP(rec, sreq)
	return &http.Response{Status: http.StatusText(rec.status), StatusCode: rec.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req}, nil
}

type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if r.body.Len()+len(b) > 1<<20 {
		return 0, errors.New("accounts: an answer over 1 MiB")
	}
	return r.body.Write(b)
}

type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// accounts returns the account file in force, reading it again if it
// changed. A file that fails to read keeps the last one, and says so.
func (p *Provider) accounts() (*File, error) {
	p.fileMu.Lock()
	defer p.fileMu.Unlock()
	fi, err := os.Stat(p.cfg.File)
	if err != nil {
		if p.file != nil {
			p.log.Error("account file unreadable; the accounts last read stay in force", "error", err)
			return p.file, nil
		}
		return nil, fmt.Errorf("accounts: %w (make it with nodekeys account add)", err)
	}
	st := stamp{size: fi.Size(), mtime: fi.ModTime(), ino: filewatch.FileID(fi)}
	if p.file != nil && st == p.fileSeen {
		return p.file, nil
	}
	f, err := ReadFile(p.cfg.File)
	if err != nil {
		if p.file != nil {
			p.log.Error("account file not reloaded; the accounts last read stay in force", "error", err)
			return p.file, nil
		}
		return nil, err
	}
	if p.file != nil {
		p.log.Info("account file reloaded", "path", p.cfg.File, "accounts", len(f.Accounts), "clients", len(f.Clients))
	}
	p.file, p.fileSeen = f, st
	return f, nil
}

// keys returns the key ring, read again at most once a second (so a
// rotation is used within a second).
func (p *Provider) keys(ctx context.Context) (*keyRing, error) {
	p.ringMu.Lock()
	defer p.ringMu.Unlock()
	if p.ring != nil && p.now().Sub(p.ringRead) < time.Second {
		return p.ring, nil
	}
	r, err := p.keySrc.load(ctx)
	if err != nil {
		if p.ring != nil {
			p.log.Error("signing keys not read again; the keys held are kept", "error", err)
			return p.ring, nil
		}
		return nil, err
	}
	p.ring, p.ringRead = r, p.now()
	return r, nil
}

// digest names a secret (a refresh token, a device code) in the store;
// the secret itself is never kept.
func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
