package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/oidcauth"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// Config is what a gateway serves and where it forwards. The zero value of
// a field takes its default (see Defaults); LoadConfig reads it from YAML,
// with the field names given in the yaml tags.
type Config struct {
	// ListenFleet and ListenControl are the public addresses, Flower's
	// ports by default: ":9092" and ":9093". An empty ListenControl after
	// defaults means no Control listener ("-" in the file or flag).
	ListenFleet   string `yaml:"listen_fleet"`
	ListenControl string `yaml:"listen_control"`
	// Upstream is the SuperLink's Fleet API, UpstreamControl its Control
	// API (default: Upstream's host, port 9093 moved by the same offset).
	Upstream        string `yaml:"upstream"`
	UpstreamControl string `yaml:"upstream_control"`
	// UpstreamCA verifies an upstream that speaks TLS; UpstreamInsecure
	// speaks plaintext to it, for a SuperLink on loopback. One is needed.
	UpstreamCA       string `yaml:"upstream_ca"`
	UpstreamInsecure bool   `yaml:"upstream_insecure"`
	// UpstreamServerName overrides the name checked in the upstream's
	// certificate (default: the host of the upstream address).
	UpstreamServerName string `yaml:"upstream_server_name"`

	// TLSCert and TLSKey are the PEM certificate (chain) and key served to
	// SuperNodes and the CLI; they are reloaded when their files change.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`

	// Allowlist lists the allowed keys' sources: CSV files and folders of
	// .pub files, reloaded on change and on SIGHUP. AllowEmpty accepts an
	// empty allowlist (which refuses every node) at start and on reload.
	Allowlist  []string `yaml:"allowlist"`
	AllowEmpty bool     `yaml:"allow_empty"`
	// ReloadInterval is how often the allowlist's files are looked at for
	// changes (default 1s; a look is a stat per file).
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// RegisterNodes makes the upstream's registrations (Flower 1.23 and
	// later, RegisterNode on its Control API) follow the allowlist: the
	// gateway registers the allowed keys the SuperLink lacks on start,
	// after each reload, and every RegisterInterval (default 10s), which
	// also re-registers them after a SuperLink with in-memory state
	// restarts. RegisterPrune also unregisters keys the allowlist no
	// longer holds; Flower never registers those again, so it is off by
	// default.
	RegisterNodes    bool          `yaml:"register_nodes"`
	RegisterPrune    bool          `yaml:"register_prune"`
	RegisterInterval time.Duration `yaml:"register_interval"`
	// OIDC turns on account login for the Control API (see package
	// oidcauth): flwr login against this provider, and every other
	// Control call refused without a valid login.
	OIDC *oidcauth.Config `yaml:"oidc"`
	// Accounts turns on account login with the gateway's own OpenID
	// Connect provider instead of an external one (see package accounts):
	// accounts and service clients from a file that nodekeys account
	// writes, and a sign-in page on its own TLS listener.
	Accounts *accounts.Config `yaml:"accounts"`
	// TokenList is the file of machine tokens' hashes that nodekeys token
	// new writes (see package tokens). Its tokens are accepted on Control
	// calls as "authorization: Bearer nkt_...", each with the role written
	// beside it. It is reloaded on change, SIGHUP and SIGUSR1.
	TokenList string `yaml:"token_list"`
	// FleetTokenRole, if set, makes every Fleet call also carry a bearer
	// token of this role from TokenList, besides its signature.
	FleetTokenRole string `yaml:"fleet_token_role"`
	// Policy says which roles may call which Control methods, and which
	// see every account's runs and nodes (see package authz). Without it,
	// account login and tokens get authz.Default: admin and member.
	Policy *authz.Policy `yaml:"policy"`
	// StateFile is the embedded state store (see package gateway/owners): who
	// started each run and registered each node. Needed with oidc or
	// token_list; made once with nodekeys state init.
	StateFile string `yaml:"state_file"`
	// Redis shares state among several gateway replicas (see package
	// gateway/shared): the replay guard, the per-key rate limits, run
	// and node owners (instead of StateFile), and revoked tokens.
	Redis *shared.Config `yaml:"redis"`
	// FlowerVersion picks the timestamp window of a SuperLink version
	// ("1.19"); the default is Flower's current window.
	FlowerVersion string `yaml:"flower_version"`

	// ReplayGuard refuses a signed timestamp seen before; on by default.
	ReplayGuard *bool `yaml:"replay_guard"`
	// ReplayEntries and ReplayKeyQuota size the guard: calls tracked in
	// all, and per key.
	ReplayEntries  int `yaml:"replay_entries"`
	ReplayKeyQuota int `yaml:"replay_key_quota"`
	// KeyRate and KeyBurst are the per-key token bucket charged for each
	// call whose signature verifies (calls a second, and the bucket's
	// size); a KeyRate below 0 turns it off. Forged signatures under a
	// node's key (public keys are not secret) never spend its allowance.
	KeyRate  float64 `yaml:"key_rate"`
	KeyBurst int     `yaml:"key_burst"`
	// MaxBadSignaturesPerConn bounds the Fleet calls whose signature does
	// not verify that one connection may send (default 16; a SuperNode
	// sends none); past it, the connection's calls are refused before any
	// verification, until it reconnects. Below 0 turns it off.
	MaxBadSignaturesPerConn int `yaml:"max_bad_signatures_per_conn"`
	// MaxVerifications bounds the signature verifications running at once
	// (default: 4 per core).
	MaxVerifications int `yaml:"max_verifications"`
	// HotKeyBytes bounds the memory of the precomputed tables of the
	// P-384 keys that call often (default 64 MiB: 7,281 keys of 9,216
	// bytes); a key gets one after 8 verified calls, which makes its
	// verifications about twice as fast, and when the tables fill up the
	// key not verified for longest makes room. Below 0 turns it off.
	HotKeyBytes int `yaml:"hot_key_bytes"`
	// MaxHeaderBytes caps a call's metadata (default 16 KiB; Flower's
	// three headers take about 1 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxStreamAge ends a Fleet stream this long after it opened: streams
	// are authenticated when they open, so a removed key keeps a stream
	// only this long (default 1h; Flower's Fleet methods are unary).
	MaxStreamAge time.Duration `yaml:"max_stream_age"`
	// MaxMessageBytes bounds one message either way (default 512 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxStreamsPerConn bounds the calls one connection may have open at
	// once (default 1000; a SuperNode has a few).
	MaxStreamsPerConn int `yaml:"max_streams_per_conn"`
	// HandshakeTimeout closes a new connection that has not finished its
	// TLS handshake and HTTP/2 preface this long after it was accepted
	// (default 10s; a handshake takes two round trips).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes a connection that has had no call open this long
	// (default 60s; a SuperNode calls every few seconds, and a gRPC client
	// whose idle connection was closed connects again for its next call).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds the client connections open at once on the
	// Fleet and Control listeners together, handshakes included (default
	// 10,000), and MaxConnectionsPerAddress those from one client address
	// or IPv6 /64 (default 512: a SuperNode keeps one connection, and many
	// may share a NAT's address). A connection past either is closed as
	// soon as it is accepted. MaxConnections is lowered to three quarters
	// of the process's open-file limit, and MaxConnectionsPerAddress to
	// half of MaxConnections. Below 0 turns a cap off; behind a proxy or a
	// load balancer that hides the clients' addresses, turn the
	// per-address cap off.
	MaxConnections           int `yaml:"max_connections"`
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// MaxResetsPerSecond closes a connection that resets more of its calls
	// before they are answered than this many a second, on average, in
	// bursts of as many (HTTP/2 "rapid reset"; default 100; a client
	// cancels a call now and then). Below 0 turns it off.
	MaxResetsPerSecond int `yaml:"max_resets_per_second"`
	// RefusalDelay holds a refused Fleet call this long before answering
	// (default 100ms; "0s" answers at once), for at most RefusalDelaySlots
	// calls at once (default 4096; past that, refusals are answered at
	// once). A flooder that waits for answers, as gRPC clients do, is
	// slowed to its number of calls in flight per delay, at no CPU cost; a
	// SuperNode with a real problem learns it a moment later.
	RefusalDelay      *time.Duration `yaml:"refusal_delay"`
	RefusalDelaySlots int            `yaml:"refusal_delay_slots"`

	// Metrics is the address of /metrics, /healthz and /readyz (default
	// 127.0.0.1:9190, loopback only, clear of Flower's 9091-9096); "-"
	// turns it off.
	Metrics string `yaml:"metrics"`
	// LogFormat is "text" (default) or "json"; LogLevel "info" (default),
	// "debug", "warn" or "error".
	LogFormat string `yaml:"log_format"`
	LogLevel  string `yaml:"log_level"`
	// RefusalLogsPerSecond bounds the refusal log lines (default 10).
	RefusalLogsPerSecond int `yaml:"refusal_logs_per_second"`
	// DrainTimeout is how long SIGTERM waits for calls in flight (30 s).
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Defaults of a Config, also shown by nodekeys gateway --help.
const (
	DefaultListenFleet    = ":9092"
	DefaultListenControl  = ":9093"
	DefaultUpstream       = "127.0.0.1:19092"
	DefaultMetrics        = "127.0.0.1:9190"
	DefaultKeyRate        = 100
	DefaultKeyBurst       = 1000
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxStreamAge   = time.Hour
	DefaultMaxMessage     = 512 << 20
	DefaultDrainTimeout   = 30 * time.Second
	DefaultStreamsPerConn = 1000
	DefaultBadSignatures  = 16
	DefaultResetsPerSec   = 100
	DefaultRefusalDelay   = 100 * time.Millisecond
	DefaultRefusalSlots   = 4096
	DefaultReplayEntries  = 1_000_000
)

// Defaults of the connection limits.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultMaxConnections   = 10_000
	DefaultMaxConnsPerAddr  = 512
)

// Off is the value that turns an address off.
const Off = "-"

// MaxConfigSize bounds a config file.
const MaxConfigSize = 1 << 20

// LoadConfig reads a YAML config file. Unknown keys are errors, so a typo
// does not silently leave a protection at its default.
func LoadConfig(path string) (*Config, error) {
	b, err := safefile.ReadRegular(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("gateway: %s: %w", path, err)
	}
	return c, nil
}

// Defaults fills the zero fields.
func (c *Config) Defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ListenFleet, DefaultListenFleet)
	def(&c.ListenControl, DefaultListenControl)
	def(&c.Upstream, DefaultUpstream)
	def(&c.Metrics, DefaultMetrics)
	def(&c.LogFormat, "text")
	def(&c.LogLevel, "info")
	if c.UpstreamControl == "" {
		if host, port, err := net.SplitHostPort(c.Upstream); err == nil {
			var p int
			fmt.Sscan(port, &p)
			c.UpstreamControl = net.JoinHostPort(host, fmt.Sprint(p+1))
		}
	}
	if c.ReplayGuard == nil {
		on := true
		c.ReplayGuard = &on
	}
	if c.ReplayEntries <= 0 {
		c.ReplayEntries = DefaultReplayEntries
	}
	if c.ReplayKeyQuota <= 0 {
		c.ReplayKeyQuota = replay.DefaultKeyQuota
	}
	if c.KeyRate == 0 {
		c.KeyRate = DefaultKeyRate
	}
	if c.KeyBurst <= 0 {
		c.KeyBurst = DefaultKeyBurst
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.HotKeyBytes == 0 {
		c.HotKeyBytes = verify.DefaultHotKeyBytes
	}
	if c.MaxStreamAge <= 0 {
		c.MaxStreamAge = DefaultMaxStreamAge
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessage
	}
	if c.RegisterInterval <= 0 {
		c.RegisterInterval = 10 * time.Second
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = time.Second
	}
	if c.MaxStreamsPerConn <= 0 {
		c.MaxStreamsPerConn = DefaultStreamsPerConn
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConnectionsPerAddress == 0 {
		c.MaxConnectionsPerAddress = DefaultMaxConnsPerAddr
	}
	if c.MaxBadSignaturesPerConn == 0 {
		c.MaxBadSignaturesPerConn = DefaultBadSignatures
	}
	if c.MaxResetsPerSecond == 0 {
		c.MaxResetsPerSecond = DefaultResetsPerSec
	}
	if c.RefusalDelay == nil {
		d := DefaultRefusalDelay
		c.RefusalDelay = &d
	}
	if c.RefusalDelaySlots <= 0 {
		c.RefusalDelaySlots = DefaultRefusalSlots
	}
	if c.RefusalLogsPerSecond <= 0 {
		c.RefusalLogsPerSecond = 10
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
}

// Validate says what is missing or contradictory, after Defaults.
func (c *Config) Validate() error {
	switch {
	case c.TLSCert == "" || c.TLSKey == "":
		return errors.New("gateway: a TLS certificate and key are needed (tls_cert, tls_key); SuperNodes authenticate only over TLS")
	case len(c.Allowlist) == 0:
		return errors.New("gateway: no allowlist: name a CSV file or a folder of .pub files")
	case c.UpstreamCA == "" && !c.UpstreamInsecure:
		return errors.New("gateway: say how to reach the upstream: upstream_ca for TLS, or upstream_insecure for plaintext on loopback")
	case c.UpstreamCA != "" && c.UpstreamInsecure:
		return errors.New("gateway: upstream_ca and upstream_insecure contradict each other")
	case c.HotKeyBytes > 0 && c.HotKeyBytes < int(verify.HotKeyBytesPerKey):
		return fmt.Errorf("gateway: hot_key_bytes %d holds no key's table (%d bytes); -1 turns the tables off", c.HotKeyBytes, verify.HotKeyBytesPerKey)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("gateway: log_format must be text or json, got %q", c.LogFormat)
	case *c.RefusalDelay < 0 || *c.RefusalDelay > 10*time.Second:
		return fmt.Errorf("gateway: refusal_delay must be 0 to 10s, got %s", *c.RefusalDelay)
	case c.OIDC != nil && c.ListenControl == Off:
		return errors.New("gateway: oidc needs the Control listener (listen_control is off)")
	case c.Accounts != nil && c.OIDC != nil:
		return errors.New("gateway: accounts and oidc contradict each other: account login uses one provider")
	case c.Accounts != nil && c.ListenControl == Off:
		return errors.New("gateway: accounts needs the Control listener (listen_control is off)")
	case c.TokenList != "" && c.ListenControl == Off && c.FleetTokenRole == "":
		return errors.New("gateway: token_list is for the Control listener (listen_control is off) unless fleet_token_role is set")
	case c.FleetTokenRole != "" && c.TokenList == "":
		return errors.New("gateway: fleet_token_role needs a token_list")
	case c.authenticatesControl() && c.StateFile == "" && c.Redis == nil:
		return ErrNoStateStore
	case c.StateFile != "" && c.Redis != nil:
		return errors.New("gateway: state_file and redis contradict each other: with redis, the owners are kept there")
	case c.RegisterNodes && c.ListenControl == Off:
		return errors.New("gateway: register_nodes needs the Control upstream (listen_control is off)")
	case c.HandshakeTimeout < 0 || c.HandshakeTimeout > 2*time.Minute:
		return fmt.Errorf("gateway: handshake_timeout must be positive and at most 2m, got %s", c.HandshakeTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("gateway: idle_timeout must be positive, got %s", c.IdleTimeout)
	case c.MaxHeaderBytes < 4096:
		return fmt.Errorf("gateway: max_header_bytes must be at least 4096, got %d", c.MaxHeaderBytes)
	}
	for _, a := range []string{c.ListenFleet, c.ListenControl, c.Upstream, c.UpstreamControl, c.Metrics} {
		if a == Off {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("gateway: %q is not a HOST:PORT address", a)
		}
	}
	if c.FlowerVersion != "" {
		if _, err := flwr.WindowOf(c.FlowerVersion); err != nil {
			return err
		}
	}
	if c.Redis != nil {
		c.Redis.Defaults()
		if err := c.Redis.Validate(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if c.OIDC != nil {
		c.OIDC.Defaults()
		if err := c.OIDC.Validate(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if c.Accounts != nil {
		c.Accounts.Defaults()
		if err := c.Accounts.Validate(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if c.Policy != nil {
		if err := c.Policy.Validate(); err != nil {
			return fmt.Errorf("gateway: policy: %w", err)
		}
	}
	return nil
}

// ErrNoStateStore: account login or tokens, and nowhere to keep owners.
var ErrNoStateStore = errors.New("gateway: oidc and token_list need a state_file, where the owner of each run and node is kept (made once, empty), or redis")

// EffectivePolicy is the policy the gateway holds Control calls to: the
// config's policy:, or authz.Default if it has none.
func (c *Config) EffectivePolicy() *authz.Policy {
	if c.Policy != nil {
		return c.Policy
	}
	return authz.Default()
}

// authenticatesControl reports whether Control calls need a login or a
// token, and so roles and owners.
func (c *Config) authenticatesControl() bool {
	return c.ListenControl != Off && (c.OIDC != nil || c.Accounts != nil || c.TokenList != "")
}
