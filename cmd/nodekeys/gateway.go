package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/verify"
)

func gatewayCommand() *cli.Command {
	return &cli.Command{
		Name:  "gateway",
		Usage: "serve an authenticating TLS front door before a Flower SuperLink",
		Description: "The gateway listens with TLS on Flower's ports, checks every Fleet call's\n" +
			"signed timestamp against the allowlist before it reaches the SuperLink, and\n" +
			"forwards what it accepts, and every Control call, to the SuperLink unchanged.\n\n" +
			"Run the SuperLink on loopback ports, and the gateway on the public ones:\n\n" +
			"   flower-superlink --fleet-api-address 127.0.0.1:19092 --control-api-address 127.0.0.1:19093 \\\n" +
			"     --ssl-ca-certfile certificates/ca.crt --ssl-certfile certificates/server.pem \\\n" +
			"     --ssl-keyfile certificates/server.key --enable-supernode-auth\n" +
			"   nodekeys gateway --allowlist keys/client_public_keys.csv --upstream-ca certificates/ca.crt\n\n" +
			"SuperNodes and the flwr CLI keep their addresses and CA.\n\n" +
			"On by default (see the flags to change them): the replay guard, which Flower\n" +
			"lacks (a signed timestamp is accepted once; each key may hold at most\n" +
			"--replay-key-quota entries, so one node cannot crowd out the rest); a per-key\n" +
			"rate limit charged once the signature verifies (--key-rate calls a second,\n" +
			"bursts of --key-burst); a bound on concurrent verifications, and on the bad\n" +
			"signatures and resets one connection may send; a cap on metadata size\n" +
			"and on calls per connection; caps on connections, in all and per client\n" +
			"address, and timeouts on handshakes and idle connections; refused calls\n" +
			"answered after --refusal-delay (which slows a flooder that waits for\n" +
			"answers); refusal logs at most --refusal-logs-per-second a second.\n\n" +
			"The allowlist (CSV files and folders of .pub files) reloads when its files\n" +
			"change and on SIGHUP; a broken file (a trailing comma, a file still being\n" +
			"written) keeps the last good list. The server certificate reloads when its\n" +
			"files change (certgen --force needs no restart).\n" +
			"SIGTERM or SIGINT stops taking calls and waits --drain-timeout for those in\n" +
			"flight. Metrics, /healthz and /readyz are served on --metrics (loopback).\n\n" +
			"Settings may come from a YAML file (--config; snake_case keys); flags win over the\n" +
			"file. These features are set there (some also by flag):\n" +
			"  oidc:            account login for the Control API, for the unmodified flwr CLI\n" +
			"                   (issuer, client_id, client_secret_file or client_secret_env,\n" +
			"                   audience, allowed_clients, scopes, groups_claim, ca_file,\n" +
			"                   leeway, opaque_tokens, provider rates; see the README)\n" +
			"  accounts:        account login with the gateway's own provider instead of oidc:\n" +
			"                   (issuer, listen (:9095, TLS with tls_cert), file (made by\n" +
			"                   nodekeys account), keys_file, access_token_lifetime (5m),\n" +
			"                   refresh_token_lifetime (168h), session_lifetime (720h),\n" +
			"                   device_code_lifetime (10m), poll_interval (5s); see the README)\n" +
			"  token_list:      bearer tokens for machines (--token-list; nodekeys token new)\n" +
			"  policy:          roles_claim, and roles: NAME: {methods: [StartRun, ...] or\n" +
			"                   [\"*\"], see_all: true|false}; default: admin (everything,\n" +
			"                   every account's runs and nodes) and member (its own)\n" +
			"  state_file:      where run and node owners are kept (--state-file; needed\n" +
			"                   with oidc or token_list; make it with nodekeys state init)\n" +
			"  fleet_token_role: Fleet calls must also carry a bearer token of this role\n" +
			"  redis:           state shared by several replicas (replay guard, rate limits,\n" +
			"                   owners, revoked tokens): addrs, master_name (Sentinel),\n" +
			"                   cluster, password_file or password_env, tls, ca_file,\n" +
			"                   prefix, timeout, replay_fallback and rate_fallback\n" +
			"                   (local, the default, or closed), check_interval (1s:\n" +
			"                   how often each replica checks that Redis kept its data\n" +
			"                   and asserts its revocations again); see the README\n" +
			"  register_nodes:  keep a Flower 1.23+ SuperLink's registrations equal to the\n" +
			"                   allowlist (--register-nodes; pruning with --register-prune)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML `FILE` with the settings below (snake_case keys: listen_fleet, upstream, allowlist, ...)"},
			&cli.StringFlag{Name: "listen-fleet", Value: gateway.DefaultListenFleet, Usage: "`ADDR` for SuperNodes (Fleet API)"},
			&cli.StringFlag{Name: "listen-control", Value: gateway.DefaultListenControl, Usage: "`ADDR` for the flwr CLI (Control API); - for none"},
			&cli.StringFlag{Name: "upstream", Value: gateway.DefaultUpstream, Usage: "the SuperLink's Fleet API `ADDR`"},
			&cli.StringFlag{Name: "upstream-control", Usage: "the SuperLink's Control API `ADDR` (default: --upstream's host, its port + 1)"},
			&cli.StringFlag{Name: "upstream-ca", Usage: "CA certificate `FILE` that the SuperLink's certificate chains to"},
			&cli.BoolFlag{Name: "upstream-insecure", Usage: "speak plaintext to the SuperLink (loopback only)"},
			&cli.StringFlag{Name: "upstream-server-name", Usage: "`NAME` to check in the SuperLink's certificate (default: its host)"},
			&cli.StringSliceFlag{Name: "allowlist", Aliases: []string{"a"}, Usage: "allowlist CSV `FILE` or folder of .pub files (repeat for several)"},
			&cli.BoolFlag{Name: "allow-empty", Usage: "accept an allowlist with no keys (it refuses every node)"},
			&cli.StringFlag{Name: "tls-cert", Value: "certificates/server.pem", Usage: "server certificate `FILE` (PEM, chain allowed)"},
			&cli.StringFlag{Name: "tls-key", Value: "certificates/server.key", Usage: "server key `FILE` (PEM)"},
			&cli.StringFlag{Name: "flower", Usage: "the SuperLink's Flower `VERSION`, for its timestamp window (default: current, -5 s < age < 305 s)"},
			&cli.BoolFlag{Name: "no-replay-guard", Usage: "accept a signed timestamp more than once, as Flower does"},
			&cli.IntFlag{Name: "replay-key-quota", Value: 32768, Usage: "replay-guard entries one key may hold (its calls inside the window)"},
			&cli.Float64Flag{Name: "key-rate", Value: gateway.DefaultKeyRate, Usage: "calls a second one key may make; -1 turns the limit off"},
			&cli.IntFlag{Name: "key-burst", Value: gateway.DefaultKeyBurst, Usage: "calls one key may make at once"},
			&cli.IntFlag{Name: "max-verifications", DefaultText: "4 per core", Usage: "signature verifications at once"},
			&cli.IntFlag{Name: "hot-key-bytes", Value: verify.DefaultHotKeyBytes, Usage: "memory for the precomputed tables of keys that call often (9,216 bytes a key); -1 turns them off"},
			&cli.IntFlag{Name: "max-header-bytes", Value: gateway.DefaultMaxHeaderBytes, Usage: "largest metadata a call may carry"},
			&cli.DurationFlag{Name: "max-stream-age", Value: gateway.DefaultMaxStreamAge, Usage: "end a Fleet stream this long after it opened"},
			&cli.DurationFlag{Name: "refusal-delay", Value: gateway.DefaultRefusalDelay, Usage: "hold a refused Fleet call this long before answering (0 answers at once)"},
			&cli.IntFlag{Name: "max-streams-per-conn", Value: gateway.DefaultStreamsPerConn, Usage: "calls one connection may have open at once"},
			&cli.IntFlag{Name: "max-connections", Value: gateway.DefaultMaxConnections, Usage: "client connections open at once, handshakes included (at most 3/4 of the open-file limit); -1 for no cap"},
			&cli.IntFlag{Name: "max-connections-per-address", Value: gateway.DefaultMaxConnsPerAddr, Usage: "connections open at once from one client address or IPv6 /64 (many SuperNodes may share a NAT's); -1 for no cap"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: gateway.DefaultHandshakeTimeout, Usage: "close a connection that has not finished its TLS and HTTP/2 handshake by then"},
			&cli.DurationFlag{Name: "idle-timeout", Value: gateway.DefaultIdleTimeout, Usage: "close a connection with no call open for this long (clients reconnect for their next call)"},
			&cli.IntFlag{Name: "max-bad-signatures-per-conn", Value: gateway.DefaultBadSignatures, Usage: "calls with a signature that does not verify one connection may send; past it, its calls are refused unverified (-1: no bound)"},
			&cli.IntFlag{Name: "max-resets-per-second", Value: gateway.DefaultResetsPerSec, Usage: "calls a second one connection may reset before they are answered; past it, it is closed (-1: no bound)"},
			&cli.StringFlag{Name: "token-list", Usage: "accept the bearer tokens whose hashes this `FILE` lists, on Control calls (made by nodekeys token new)"},
			&cli.StringFlag{Name: "state-file", Usage: "run and node owners are kept in this `FILE` (made once by nodekeys state init)"},
			&cli.BoolFlag{Name: "register-nodes", Usage: "keep the SuperLink's registrations (Flower 1.23+) equal to the allowlist"},
			&cli.BoolFlag{Name: "register-prune", Usage: "with --register-nodes, also unregister keys the allowlist drops (Flower never registers them again)"},
			&cli.StringFlag{Name: "metrics", Value: gateway.DefaultMetrics, Usage: "`ADDR` of /metrics, /healthz and /readyz; - for none"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.IntFlag{Name: "refusal-logs-per-second", Value: 10, Usage: "refused calls logged a second at most"},
			&cli.DurationFlag{Name: "drain-timeout", Value: gateway.DefaultDrainTimeout, Usage: "how long SIGTERM waits for calls in flight"},
		},
		Action: runGateway,
	}
}

// gatewayConfig reads --config, then lets every flag that was set win.
func gatewayConfig(c *cli.Context) (*gateway.Config, error) {
	cfg := &gateway.Config{}
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = gateway.LoadConfig(p); err != nil {
			return nil, err
		}
	}
	str := func(flag string, dst *string) {
		if c.IsSet(flag) || *dst == "" {
			*dst = c.String(flag)
		}
	}
	str("listen-fleet", &cfg.ListenFleet)
	str("listen-control", &cfg.ListenControl)
	str("upstream", &cfg.Upstream)
	str("upstream-control", &cfg.UpstreamControl)
	str("upstream-ca", &cfg.UpstreamCA)
	str("upstream-server-name", &cfg.UpstreamServerName)
	str("tls-cert", &cfg.TLSCert)
	str("tls-key", &cfg.TLSKey)
	str("flower", &cfg.FlowerVersion)
	str("metrics", &cfg.Metrics)
	str("log-format", &cfg.LogFormat)
	str("log-level", &cfg.LogLevel)
	str("token-list", &cfg.TokenList)
	str("state-file", &cfg.StateFile)
	if c.IsSet("upstream-insecure") {
		cfg.UpstreamInsecure = c.Bool("upstream-insecure")
	}
	if c.IsSet("allow-empty") {
		cfg.AllowEmpty = c.Bool("allow-empty")
	}
	if c.IsSet("register-nodes") {
		cfg.RegisterNodes = c.Bool("register-nodes")
	}
	if c.IsSet("register-prune") {
		cfg.RegisterPrune = c.Bool("register-prune")
	}
	if c.IsSet("allowlist") {
		cfg.Allowlist = c.StringSlice("allowlist")
	}
	if c.IsSet("no-replay-guard") {
		on := !c.Bool("no-replay-guard")
		cfg.ReplayGuard = &on
	}
	num := func(flag string, dst *int) {
		if c.IsSet(flag) || *dst == 0 {
			*dst = c.Int(flag)
		}
	}
	num("replay-key-quota", &cfg.ReplayKeyQuota)
	num("key-burst", &cfg.KeyBurst)
	num("max-verifications", &cfg.MaxVerifications)
	num("hot-key-bytes", &cfg.HotKeyBytes)
	num("max-header-bytes", &cfg.MaxHeaderBytes)
	num("refusal-logs-per-second", &cfg.RefusalLogsPerSecond)
	if c.IsSet("key-rate") || cfg.KeyRate == 0 {
		cfg.KeyRate = c.Float64("key-rate")
	}
	if c.IsSet("max-stream-age") || cfg.MaxStreamAge == 0 {
		cfg.MaxStreamAge = c.Duration("max-stream-age")
	}
	num("max-streams-per-conn", &cfg.MaxStreamsPerConn)
	num("max-connections", &cfg.MaxConnections)
	num("max-connections-per-address", &cfg.MaxConnectionsPerAddress)
	if c.IsSet("handshake-timeout") || cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = c.Duration("handshake-timeout")
	}
	if c.IsSet("idle-timeout") || cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = c.Duration("idle-timeout")
	}
	num("max-bad-signatures-per-conn", &cfg.MaxBadSignaturesPerConn)
	num("max-resets-per-second", &cfg.MaxResetsPerSecond)
	if c.IsSet("refusal-delay") || cfg.RefusalDelay == nil {
		d := c.Duration("refusal-delay")
		cfg.RefusalDelay = &d
	}
	if c.IsSet("drain-timeout") || cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = c.Duration("drain-timeout")
	}
	cfg.Defaults()
	if err := cfg.Validate(); errors.Is(err, gateway.ErrNoStateStore) {
		return nil, &cliError{err: err, code: exitUsage, hint: "make one with: nodekeys state init FILE, and name it in state_file (--state-file)"}
	} else if err != nil {
		return nil, &cliError{err: err, code: exitUsage}
	}
	return cfg, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func runGateway(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("gateway takes no arguments, got %q", c.Args().First())
	}
	cfg, err := gatewayConfig(c)
	if err != nil {
		return err
	}
	log, err := newLogger(c.App.ErrWriter, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	// zitadel's op logs only through slog.Default: route it to log.
	slog.SetDefault(slog.New(accounts.LogHandler(log.Handler())))
	// SIGTERM ends the start-up too (a provider or Redis that does not
	// answer), not only the serving.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	gw, err := gateway.New(ctx, *cfg, log)
	switch {
	case errors.Is(err, owners.ErrNotExist), errors.Is(err, owners.ErrDamaged):
		return withHint(err, "make it once with: nodekeys state init "+cfg.StateFile)
	case err != nil:
		return err
	}
	return gw.Run(ctx)
}
