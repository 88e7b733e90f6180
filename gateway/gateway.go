package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/keyrate"
	"github.com/nodekeys/nodekeys/internal/ratelog"
	"github.com/nodekeys/nodekeys/internal/tlsconf"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/oidcauth"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/tokens"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// Gateway is a running front door: its verifier, upstream connections and
// servers. Make one with New, then Serve or Run it.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	v       *verify.Verifier
	reload  *allowlist.Reloader
	certs   *certReloader
	limiter *keyrate.Limiter
	m       *metrics
	refusal ratelog.Limiter
	connLog ratelog.Limiter // measures taken against connections
	tarpit  chan struct{}   // slots for refused calls held back
	oidc    *oidcauth.Authenticator
	accts   *accountsServer // nil without accounts
	tokens  *tokens.File    // nil without a token file
	policy  *authz.Policy
	store   owners.Store    // nil unless the Control API is authenticated
	shared  *shared.Backend // nil without redis
	reg     *registrar      // nil unless register_nodes
	conns   *connLimiter

	fleetUp, controlUp   *grpc.ClientConn
	fleetSrv, controlSrv *grpc.Server
	httpSrv              *http.Server
	closeOnce            sync.Once
	// closers close what New opened (Redis, the upstream connections,
	// the state file), in reverse order: on an error in New, and at
	// shutdown.
	closers []func()
}

var errKeyRate = &verify.Error{Reason: verify.RateLimited, Detail: "this key sent more calls than its rate limit allows"}

// New checks cfg, loads the allowlist and the certificate, connects to
// Redis and the identity provider where cfg has them, and connects
// (lazily) to the upstream. Its network I/O is bounded by ctx: a caller
// that cancels ctx (on SIGTERM) ends the start-up, and whatever New had
// opened is closed when it fails. log may be nil for slog.Default().
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Gateway, err error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{cfg: cfg, log: log, m: newMetrics(), refusal: ratelog.Limiter{PerSecond: cfg.RefusalLogsPerSecond},
		connLog: ratelog.Limiter{PerSecond: cfg.RefusalLogsPerSecond}, tarpit: make(chan struct{}, cfg.RefusalDelaySlots)}
	defer func() {
		if err != nil {
			g.closeAll()
		}
	}()
	for _, stage := range []func(context.Context) error{
		g.openShared,    // Redis (network)
		g.newVerifier,   // rate limits and replay guard, on Redis if shared
		g.loadFiles,     // allowlist and server certificate
		g.dialUpstreams, // lazy: no I/O until Serve or the first call
		g.openAccounts,  // the gateway's own provider, if accounts: is set
		g.openLogin,     // the identity provider's discovery (network)
		g.openTokens,    // the token file
		g.openState,     // last: it holds a lock on the state file
	} {
		if err := stage(ctx); err != nil {
			return nil, err
		}
	}
	g.newServers()
	return g, nil
}

// onClose adds f to what closeAll closes, last added first closed.
func (g *Gateway) onClose(f func()) { g.closers = append(g.closers, f) }

// closeAll closes what the stages of New opened, in reverse order.
func (g *Gateway) closeAll() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
	g.closers = nil
}

// openShared connects to Redis, if cfg has it.
func (g *Gateway) openShared(ctx context.Context) error {
	if g.cfg.Redis == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	if g.shared, err = shared.New(ctx, *g.cfg.Redis, g.sharedError); err != nil {
		return fmt.Errorf("gateway: shared state: %w", err)
	}
	g.onClose(func() { g.shared.Close() })
	g.shared.OnReset(g.sharedLost)
	return nil
}

// newVerifier makes the verifier of Fleet calls, with the per-key rate
// limit and the replay guard (shared through Redis if it is set).
func (g *Gateway) newVerifier(context.Context) error {
	cfg := g.cfg
	window := flwr.DefaultWindow
	if cfg.FlowerVersion != "" {
		window, _ = flwr.WindowOf(cfg.FlowerVersion)
	}
	maxVerify := cfg.MaxVerifications
	if maxVerify <= 0 {
		maxVerify = 4 * runtime.GOMAXPROCS(0)
	}
	opts := []verify.Option{verify.ExactPEM(), verify.WithWindow(window), verify.WithMaxConcurrent(maxVerify),
		verify.WithHotKeys(int64(max(cfg.HotKeyBytes, 0)), verify.DefaultPromoteAfter)}
	if cfg.KeyRate > 0 {
		g.limiter = keyrate.New(cfg.KeyRate, cfg.KeyBurst)
		check := func(k *verify.Key, now time.Time) error {
			if !g.limiter.Allow(k.PEM, now) {
				return errKeyRate
			}
			return nil
		}
		if g.shared != nil {
			shared := g.shared.Limiter(cfg.KeyRate, cfg.KeyBurst, g.limiter.Allow)
			check = func(k *verify.Key, now time.Time) error { return shared(k.PEM, now) }
		}
		opts = append(opts, verify.WithKeyCheck(check))
	}
	if *cfg.ReplayGuard {
		local := replay.NewGuard(cfg.ReplayEntries, replay.WithKeyQuota(cfg.ReplayKeyQuota), replay.OnKeyQuota(g.overQuota))
		if g.shared != nil {
			opts = append(opts, verify.WithReplay(g.shared.Replay(local)))
		} else {
			opts = append(opts, verify.WithReplay(local))
		}
	}
	g.v = verify.New(nil, opts...)
	return nil
}

// loadFiles loads the allowlist and the server certificate.
func (g *Gateway) loadFiles(context.Context) error {
	cfg := g.cfg
	reloadOpts := []allowlist.Option{allowlist.AlsoFrom(cfg.Allowlist[1:]...), allowlist.OnLoad(g.allowlistLoaded)}
	if cfg.AllowEmpty {
		reloadOpts = append(reloadOpts, allowlist.AllowEmpty())
	}
	var err error
	if g.reload, err = allowlist.NewReloader(g.v, cfg.Allowlist[0], g.log, reloadOpts...); err != nil {
		return fmt.Errorf("gateway: allowlist: %w", err)
	}
	if g.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, g.log, g.m.certLoaded); err != nil {
		return fmt.Errorf("gateway: server certificate: %w", err)
	}
	return nil
}

// dialUpstreams makes the upstream connections. They connect lazily:
// Serve asks them to, so New does no network I/O here.
func (g *Gateway) dialUpstreams(context.Context) error {
	cfg := g.cfg
	upCreds, err := upstreamCreds(cfg)
	if err != nil {
		return err
	}
	dial := func(addr string) (*grpc.ClientConn, error) {
		c, err := grpc.NewClient(addr, append(upstreamOptions(), grpc.WithTransportCredentials(upCreds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes)))...)
		if err != nil {
			return nil, fmt.Errorf("gateway: upstream %s: %w", addr, err)
		}
		g.onClose(func() { c.Close() })
		return c, nil
	}
	if g.fleetUp, err = dial(cfg.Upstream); err != nil {
		return err
	}
	if cfg.ListenControl != Off {
		if g.controlUp, err = dial(cfg.UpstreamControl); err != nil {
			return err
		}
	}
	return nil
}

// openAccounts starts the gateway's own OpenID provider, if cfg has
// accounts:. Its tokens are then checked by openLogin's authenticator
// exactly as an external provider's.
func (g *Gateway) openAccounts(ctx context.Context) error {
	if g.cfg.Accounts == nil {
		return nil
	}
	tlsConf := &tls.Config{GetCertificate: g.certs.get, MinVersion: tls.VersionTLS12}
	oc, err := g.newAccounts(ctx, tlsConf)
	if err != nil {
		return err
	}
	g.cfg.OIDC = oc
	return nil
}

// openLogin reads the identity provider's discovery document and keys, if
// cfg has account login.
func (g *Gateway) openLogin(ctx context.Context) error {
	if g.cfg.OIDC == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	if g.oidc, err = oidcauth.New(ctx, *g.cfg.OIDC); err != nil {
		return fmt.Errorf("gateway: account login: %w", err)
	}
	for _, w := range g.oidc.Warnings() {
		g.log.Warn("account login: " + w)
	}
	g.oidc.OnKeysFetched(func(err error) {
		result := "ok"
		if err != nil {
			result = "error"
			g.log.Warn("cannot fetch the identity provider's keys; the keys held are kept", "error", err)
		}
		g.m.jwksFetches.WithLabelValues(result).Inc()
	})
	return nil
}

// openTokens reads the token file, if cfg names one.
func (g *Gateway) openTokens(context.Context) error {
	if g.cfg.TokenList == "" {
		return nil
	}
	var err error
	g.tokens, err = tokens.Open(g.cfg.TokenList, g.log, func(n int, err error) {
		if err != nil {
			g.m.tokenReloadErrors.Inc()
			return
		}
		g.m.tokens.Set(float64(n))
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if g.shared != nil {
		// A token removed from this replica's file is revoked at every
		// replica, whatever their own files say yet, and asserted again
		// every check_interval while this replica runs: a revocation
		// made while Redis is down, or lost by a restart without
		// persistence, reaches Redis again.
		g.tokens.OnRemoved(func(gone []tokens.Entry) {
			hashes := make([][32]byte, len(gone))
			for i, e := range gone {
				hashes[i] = e.Hash
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.shared.Revoke(ctx, hashes); err != nil {
				g.log.Error("cannot share a token revocation yet; retrying every check_interval", "error", err)
			}
		})
	}
	return nil
}

// openState sets the policy and opens the owner store, if the Control API
// is authenticated: Redis when shared, else the state file (locked until
// the gateway closes).
func (g *Gateway) openState(context.Context) error {
	if !g.cfg.authenticatesControl() {
		return nil
	}
	g.policy = g.cfg.EffectivePolicy()
	for _, w := range g.policy.Warnings() {
		g.log.Warn("policy: " + w)
	}
	if g.shared != nil {
		g.store = g.shared
		return nil
	}
	store, err := owners.Open(g.cfg.StateFile, false)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.store = store
	g.onClose(func() { store.Close() })
	return nil
}

// newServers makes the gRPC servers and the metrics server; none listens
// before Serve.
func (g *Gateway) newServers() {
	cfg := g.cfg
	tlsConf := &tls.Config{GetCertificate: g.certs.get, MinVersion: tls.VersionTLS12}
	serverOpts := func(h grpc.StreamHandler) []grpc.ServerOption {
		return []grpc.ServerOption{
			grpc.Creds(accountedCreds{credentials.NewTLS(tlsConf)}),
			grpc.ForceServerCodec(rawCodec{}),
			grpc.UnknownServiceHandler(g.countResets(h)),
			grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)),
			grpc.MaxConcurrentStreams(uint32(cfg.MaxStreamsPerConn)),
			grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
			grpc.MaxSendMsgSize(cfg.MaxMessageBytes),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
			grpc.ConnectionTimeout(cfg.HandshakeTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout}),
			// Calls run on goroutines kept from call to call, whose stacks
			// have grown to what a call needs: a new goroutine a call grew
			// its stack twice, copying it, for about 8% of the gateway's
			// CPU time under load. Past this many calls at once, grpc-go
			// starts a goroutine for the call as before.
			grpc.NumStreamWorkers(uint32(streamWorkers * runtime.GOMAXPROCS(0))),
		}
	}
	g.conns = g.connLimits()
	// A Fleet stream's context ends max_stream_age after it opened, so a
	// call ends then wherever it waits: for its request, the upstream, or
	// the client. The child context is released when gRPC cancels the
	// stream's own, at the stream's end.
	maxAge := grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.MaxStreamAge)
		_ = cancel
		return ctx, nil
	})
	g.fleetSrv = grpc.NewServer(append(serverOpts(g.fleet), maxAge)...)
	if g.controlUp != nil {
		g.controlSrv = grpc.NewServer(serverOpts(g.control)...)
	}
	if cfg.RegisterNodes {
		g.reg = newRegistrar(g)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", g.ready)
	g.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

// streamWorkers is the goroutines a server keeps for calls, per core.
const streamWorkers = 16

// upstreamCreds returns the transport credentials for the upstream.
func upstreamCreds(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.UpstreamInsecure {
		return insecure.NewCredentials(), nil
	}
	conf, err := tlsconf.Client(cfg.UpstreamCA, cfg.UpstreamServerName)
	if err != nil {
		return nil, fmt.Errorf("gateway: upstream_ca: %w", err)
	}
	return credentials.NewTLS(conf), nil
}

// Verifier returns the gateway's verifier, whose allowlist is the one in
// force.
func (g *Gateway) Verifier() *verify.Verifier { return g.v }

// Reload reloads the allowlist and the token file now, as SIGHUP does.
func (g *Gateway) Reload() error {
	_, _, err := g.reload.Reload()
	if g.tokens != nil {
		err = errors.Join(err, g.tokens.Reload())
	}
	return err
}

func (g *Gateway) allowlistLoaded(keys int, err error) {
	if err != nil {
		g.m.reloadErrors.Inc()
		return
	}
	g.m.allowlistKeys.Set(float64(keys))
	g.m.allowlistTime.SetToCurrentTime()
	if g.reg != nil {
		g.reg.poke()
	}
}

// sharedError counts and logs a failed round trip to the shared state.
func (g *Gateway) sharedError(kind string, err error) {
	g.m.sharedErrors.WithLabelValues(kind).Inc()
	if ok, dropped := g.refusal.Allow(time.Now()); ok {
		g.log.Error("shared state unreachable", "kind", kind, "error", err, "suppressed", dropped)
	}
}

// overQuota counts and logs a call refused for its key's replay quota.
func (g *Gateway) overQuota(pemKey string) {
	g.m.keyQuota.Inc()
	if ok, dropped := g.refusal.Allow(time.Now()); ok {
		attrs := []any{"reason", string(verify.RateLimited), "detail", "replay-guard quota"}
		if k := g.v.Allowlist().Lookup([]byte(pemKey)); k != nil {
			attrs = append(attrs, "fingerprint", k.Fingerprint())
		}
		if dropped > 0 {
			attrs = append(attrs, "suppressed", dropped)
		}
		g.log.Warn("a node is over its replay-guard quota", attrs...)
	}
}

// fleet handles every call on the Fleet listener: Fleet methods are
// authenticated and forwarded; nothing else is served there.
func (g *Gateway) fleet(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	svc, name := labels(method)
	ctx := ss.Context()
	if !strings.HasPrefix(method, flwr.FleetPrefix) {
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		return status.Errorf(codes.Unimplemented, "unknown service: the Fleet port serves %s only", flwr.FleetService)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if err := g.fleetToken(ctx, md); err != nil {
		g.m.refusals.WithLabelValues("token").Inc()
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		g.logRefusal(ctx, method, sign.Headers{}, err)
		g.holdBack(ctx)
		return err
	}
	start := time.Now()
	h, _, err := grpcauth.Check(md, func(h sign.Headers) (*verify.Key, error) { return g.verifyOn(ctx, h, start) })
	g.m.verifySeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		reason := string(verify.ReasonOf(err))
		if err == errConnBadSignatures {
			reason = "connection-bad-signatures"
		}
		g.m.refusals.WithLabelValues(reason).Inc()
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		g.logRefusal(ctx, method, h, err)
		g.holdBack(ctx)
		return grpcauth.StatusOf(err).Err()
	}
	// The three headers go upstream exactly as verified.
	up := outgoing(md, metadata.MD{
		sign.HeaderPublicKey: {string(h.PublicKey)},
		sign.HeaderTimestamp: {h.Timestamp},
		sign.HeaderSignature: {string(h.Signature)},
	})
	delete(up, "authorization")
	// ctx ends at max_stream_age (the Fleet server's tap handle).
	return g.finish(svc, name, forward(ctx, ss, g.fleetUp, method, up, relay{}))
}

// fleetToken checks the bearer token a Fleet call must carry when
// fleet_token_role is set: one token, of that role.
func (g *Gateway) fleetToken(ctx context.Context, md metadata.MD) error {
	if g.cfg.FleetTokenRole == "" {
		return nil
	}
	v := md.Get("authorization")
	if len(v) == 1 {
		if tok, ok := cutBearer(v[0]); ok {
			e, err := g.lookupToken(ctx, tok)
			if err != nil {
				return err
			}
			if e != nil && e.Role == g.cfg.FleetTokenRole {
				return nil
			}
		}
	}
	return status.Error(codes.Unauthenticated, "this gateway needs a valid bearer token on Fleet calls")
}

// holdBack delays a refusal by the configured delay, if a slot is free.
func (g *Gateway) holdBack(ctx context.Context) {
	d := *g.cfg.RefusalDelay
	if d <= 0 {
		return
	}
	select {
	case g.tarpit <- struct{}{}:
	default:
		return // every slot is taken: answer now rather than hold more
	}
	defer func() { <-g.tarpit }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// control handles every call on the Control listener. Without account
// login or bearer tokens it forwards them unchanged. With them, it answers
// the login methods itself, and forwards the others only for a valid
// login or token (which it does not pass on), whose roles grant the
// method, keeping each account to its own runs and nodes.
func (g *Gateway) control(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	svc, name := labels(method)
	md, _ := metadata.FromIncomingContext(ss.Context())
	if g.store == nil {
		return g.finish(svc, name, forward(ss.Context(), ss, g.controlUp, method, outgoing(md, nil), relay{}))
	}
	if method == methodLoginDetails || method == methodAuthTokens {
		if g.oidc == nil {
			// Tokens only: Flower's own answer (no login needed).
			return g.finish(svc, name, forward(ss.Context(), ss, g.controlUp, method, outgoing(md, nil), relay{}))
		}
		err := g.login(ss, method)
		g.count(svc, name, err)
		return err
	}
	acct, up, err := g.authenticateControl(ss, method, md)
	if err != nil {
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		return err
	}
	d, err := g.policy.Decide(method, g.rolesOf(acct))
	if err != nil {
		g.m.refusals.WithLabelValues("role").Inc()
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		g.log.Warn("refused a Control call: no role grants it", append([]any{"method", method}, accountAttrs(acct)...)...)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	g.log.Info("control call", append([]any{"method", method}, accountAttrs(acct)...)...)
	return g.finish(svc, name, g.authorized(ss.Context(), ss, method, up, acct, d))
}

// count counts a call the gateway answered itself.
func (g *Gateway) count(svc, name string, err error) {
	result := "ok"
	if err != nil {
		result = status.Code(err).String()
	}
	g.m.calls.WithLabelValues(svc, name, result).Inc()
}

// finish counts a forwarded call by its result.
func (g *Gateway) finish(svc, name string, err error) error {
	switch {
	case err == nil:
		g.m.calls.WithLabelValues(svc, name, "ok").Inc()
		return nil
	case errors.Is(err, errNoRequest):
		g.m.calls.WithLabelValues(svc, name, "refused").Inc()
		return err
	}
	code, transport := transportFailure(err)
	g.m.calls.WithLabelValues(svc, name, code.String()).Inc()
	if transport {
		g.m.upstreamErrors.WithLabelValues(svc, code.String()).Inc()
	}
	return err
}

func (g *Gateway) logRefusal(ctx context.Context, method string, h sign.Headers, err error) {
	ok, dropped := g.refusal.Allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"method", method, "reason", string(verify.ReasonOf(err)), "detail", err.Error()}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if k := g.v.Allowlist().Lookup(h.PublicKey); k != nil {
		attrs = append(attrs, "fingerprint", k.Fingerprint())
	} else if k, err := keys.ParsePEMPublicKey(h.PublicKey); err == nil {
		// A key the allowlist lacks: its fingerprint once the header
		// parsed as a key, never the header's bytes.
		attrs = append(attrs, "fingerprint", k.Fingerprint())
	}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	g.log.Warn("refused a node call", attrs...)
}

// ready answers /readyz: 200 once the allowlist is loaded and the
// upstream connections are up. A connection that is not is asked to
// connect, and given up to a second.
func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) {
	var down []string
	for _, c := range []*grpc.ClientConn{g.fleetUp, g.controlUp} {
		if c == nil {
			continue
		}
		if s := upState(r.Context(), c); s != connectivity.Ready {
			down = append(down, fmt.Sprintf("upstream %s: %s", c.Target(), strings.ToLower(s.String())))
		}
	}
	if len(down) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(down, "\n"))
		return
	}
	fmt.Fprintf(w, "ok: %d keys\n", g.v.Allowlist().Len())
}

// upState connects c if it is idle and waits up to a second for it to be
// ready, returning the state it is in then.
func upState(ctx context.Context, c *grpc.ClientConn) connectivity.State {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		s := c.GetState()
		switch s {
		case connectivity.Ready, connectivity.TransientFailure, connectivity.Shutdown:
			return s
		case connectivity.Idle:
			c.Connect()
		}
		if !c.WaitForStateChange(ctx, s) {
			return s
		}
	}
}

// Listeners are where a gateway serves; a nil Control or Metrics listener
// serves nothing there.
type Listeners struct {
	Fleet, Control, Metrics net.Listener
	// Accounts serves the sign-in page and the provider of accounts:.
	Accounts net.Listener
}

// Listen opens the configured addresses.
func (g *Gateway) Listen() (*Listeners, error) {
	var ls Listeners
	var err error
	if ls.Fleet, err = net.Listen("tcp", g.cfg.ListenFleet); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if g.controlSrv != nil {
		if ls.Control, err = net.Listen("tcp", g.cfg.ListenControl); err != nil {
			ls.Fleet.Close()
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if g.cfg.Metrics != Off {
		if ls.Metrics, err = net.Listen("tcp", g.cfg.Metrics); err != nil {
			ls.Fleet.Close()
			if ls.Control != nil {
				ls.Control.Close()
			}
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if g.accts != nil {
		if ls.Accounts, err = net.Listen("tcp", g.cfg.Accounts.Listen); err != nil {
			for _, l := range []net.Listener{ls.Fleet, ls.Control, ls.Metrics} {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	return &ls, nil
}

// Serve serves on ls until ctx ends, then stops taking calls, waits up to
// the drain timeout for calls in flight, and returns. The allowlist is
// reloaded on SIGHUP and when its files change.
func (g *Gateway) Serve(ctx context.Context, ls *Listeners) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go g.reload.Watch(ctx, g.cfg.ReloadInterval)
	if g.reg != nil {
		go g.reg.run(ctx)
	}
	if g.tokens != nil {
		go g.tokens.Watch(ctx, g.cfg.ReloadInterval)
	}

	errs := make(chan error, 4)
	var wg sync.WaitGroup
	serve := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		})
	}
	serve(func() error { return g.fleetSrv.Serve(g.conns.wrap(ls.Fleet, "fleet")) })
	if ls.Control != nil && g.controlSrv != nil {
		serve(func() error { return g.controlSrv.Serve(g.conns.wrap(ls.Control, "control")) })
	}
	if ls.Metrics != nil {
		serve(func() error { return g.httpSrv.Serve(ls.Metrics) })
	}
	if ls.Accounts != nil && g.accts != nil {
		serve(func() error { return g.accts.srv.ServeTLS(g.conns.wrap(ls.Accounts, "accounts"), "", "") })
	}
	for _, c := range []*grpc.ClientConn{g.fleetUp, g.controlUp} {
		if c != nil {
			c.Connect() // be ready before the first call
		}
	}
	attrs := []any{"fleet", ls.Fleet.Addr().String()}
	if ls.Control != nil && g.controlSrv != nil {
		attrs = append(attrs, "control", ls.Control.Addr().String())
		if !g.cfg.authenticatesControl() {
			g.log.Warn("the Control API is forwarded unauthenticated: anyone who reaches it can start and stop runs; "+
				"set accounts:, oidc: or token_list to require a login", "control", ls.Control.Addr().String())
		}
	}
	if ls.Accounts != nil && g.accts != nil {
		attrs = append(attrs, "accounts", ls.Accounts.Addr().String())
	}
	g.log.Info("gateway serving", append(attrs, "upstream", g.cfg.Upstream,
		"keys", g.v.Allowlist().Len(), "replay_guard", *g.cfg.ReplayGuard, "key_rate", g.cfg.KeyRate)...)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	g.shutdown()
	wg.Wait()
	return err
}

// shutdown drains the servers: new calls are refused at once, calls in
// flight get up to the drain timeout.
func (g *Gateway) shutdown() {
	g.closeOnce.Do(func() {
		g.log.Info("gateway draining", "timeout", g.cfg.DrainTimeout.String())
		done := make(chan struct{})
		go func() {
			var wg sync.WaitGroup
			for _, s := range []*grpc.Server{g.fleetSrv, g.controlSrv} {
				if s != nil {
					wg.Go(s.GracefulStop)
				}
			}
			wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(g.cfg.DrainTimeout):
			g.log.Warn("drain timeout: ending the calls still in flight")
			g.fleetSrv.Stop()
			if g.controlSrv != nil {
				g.controlSrv.Stop()
			}
			<-done
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		g.httpSrv.Shutdown(ctx)
		if g.accts != nil {
			g.accts.srv.Shutdown(ctx)
		}
		g.closeAll()
		g.log.Info("gateway stopped")
	})
}

// Close releases what New holds (the state file's lock, the upstream
// connections) for a gateway that is not served; Serve does this itself
// when it returns.
func (g *Gateway) Close() { g.shutdown() }

// Run listens on the configured addresses and serves until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	ls, err := g.Listen()
	if err != nil {
		return err
	}
	return g.Serve(ctx, ls)
}
