package gateway

import (
	"crypto/tls"
	"strings"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus series. Method labels are Flower's
// method names; any other method is counted as "other", so a client
// cannot grow the series without bound.
type metrics struct {
	reg            *prometheus.Registry
	calls          *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	keyQuota       prometheus.Counter
	verifySeconds  prometheus.Histogram
	allowlistKeys  prometheus.Gauge
	allowlistTime  prometheus.Gauge
	reloadErrors   prometheus.Counter
	upstreamErrors *prometheus.CounterVec
	certNotAfter   prometheus.Gauge
	inflight       *prometheus.GaugeVec
	registrations  *prometheus.CounterVec
	conns          *prometheus.GaugeVec
	connRefusals   *prometheus.CounterVec

	stateErrors       prometheus.Counter
	sharedErrors      *prometheus.CounterVec
	tokens            prometheus.Gauge
	tokenReloadErrors prometheus.Counter
	jwksFetches       *prometheus.CounterVec

	// What connections cost without a valid call to show (see conns.go).
	resets, resetCloses, badSignatureConns prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_calls_total",
			Help: "Calls by service, method and result (ok, refused, or the upstream's gRPC code).",
		}, []string{"service", "method", "result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_refusals_total",
			Help: "Calls refused by the gateway, by reason (Fleet: the verifier's reasons and token; Control: login, login_rate, role, owner).",
		}, []string{"reason"}),
		keyQuota: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_replay_key_quota_refusals_total",
			Help: "Calls refused because their key had used its share of the replay guard (the log names the key).",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_resets_total",
			Help: "Calls their client reset (cancelled) before the gateway answered them.",
		}),
		resetCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_reset_closes_total",
			Help: "Connections closed for resetting more calls a second than max_resets_per_second allows (HTTP/2 rapid reset; the log names the peer).",
		}),
		badSignatureConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_bad_signature_conns_total",
			Help: "Connections whose calls are refused before verification, for sending max_bad_signatures_per_conn calls whose signature does not verify (the log names the peer).",
		}),
		verifySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nodekeys_gateway_verify_seconds",
			Help:    "Time to check a Fleet call's authentication, refusals included.",
			Buckets: []float64{1e-6, 1e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2, 0.1},
		}),
		stateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_state_errors_total",
			Help: "Control calls refused or left unrecorded because the state store failed.",
		}),
		sharedErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_shared_state_errors_total",
			Help: "Round trips to the shared state (Redis) that failed, by kind: replay and rate (then the configured fallback applies), owners and revoked (then the call is refused).",
		}, []string{"kind"}),
		tokens: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_tokens",
			Help: "Bearer tokens in the token file in force.",
		}),
		tokenReloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_token_reload_errors_total",
			Help: "Token file reloads that failed and left the tokens last read in force.",
		}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_jwks_fetches_total",
			Help: "Fetches of the identity provider's key set (for an unknown key id, or as the keys aged), by result: ok or error.",
		}, []string{"result"}),
		allowlistKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_allowlist_keys",
			Help: "Keys in the allowlist in force.",
		}),
		allowlistTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_allowlist_last_reload_timestamp_seconds",
			Help: "When the allowlist in force was loaded (Unix time).",
		}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nodekeys_gateway_allowlist_reload_errors_total",
			Help: "Allowlist reloads that failed and left the old list serving.",
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_upstream_errors_total",
			Help: "Forwarded calls that the upstream could not be reached for, or that failed in transit, by gRPC code.",
		}, []string{"service", "code"}),
		certNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_certificate_not_after_timestamp_seconds",
			Help: "When the served certificate expires (Unix time).",
		}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_calls_in_flight",
			Help: "Calls being forwarded now.",
		}, []string{"service"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_registrations_total",
			Help: "Keys the gateway registered or unregistered at the upstream (register_nodes), by outcome.",
		}, []string{"action"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nodekeys_gateway_connections",
			Help: "Client connections open now, by listener (fleet, control), handshakes included.",
		}, []string{"listener"}),
		connRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nodekeys_gateway_connections_refused_total",
			Help: "Client connections closed as soon as accepted, by the cap they met: max_connections or max_connections_per_address.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.conns, m.connRefusals, m.registrations, m.stateErrors, m.sharedErrors, m.tokens, m.tokenReloadErrors, m.jwksFetches, m.calls, m.refusals, m.keyQuota, m.verifySeconds, m.allowlistKeys, m.allowlistTime,
		m.reloadErrors, m.upstreamErrors, m.certNotAfter, m.inflight, m.resets, m.resetCloses, m.badSignatureConns,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) certLoaded(c *tls.Certificate) {
	if c.Leaf != nil {
		m.certNotAfter.Set(float64(c.Leaf.NotAfter.Unix()))
	}
}

// labels returns the service and method labels of a full method name.
func labels(fullMethod string) (service, method string) {
	if _, ok := flwr.Lookup(fullMethod); !ok {
		return "other", "other"
	}
	s, m, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return s, m
}
