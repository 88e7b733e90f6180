package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/sign"
)

// parallelUnlessLong marks a load test parallel in the default run; in
// the long forms (NODEKEYS_LONG=1) it runs alone, before the parallel
// tests, so that its thousands of calls do not starve their deadlines.
func parallelUnlessLong(t *testing.T) {
	if !peer.Long() {
		t.Parallel()
	}
}

// rig is a gateway in front of a stand-in SuperLink, on loopback.
type rig struct {
	dir      string
	tls      *certs.Result
	keys     *keyset.Result
	up       *standin.Server
	gw       *gateway.Gateway
	fleet    string
	control  string
	metrics  string
	accounts string // the accounts listener's address, with accounts:
	logs     *syncbuf.Buffer
	cancel   context.CancelFunc
	done     chan error
	caPool   *x509.CertPool
	upstream string
	cfg      gateway.Config
}

// testLog is a logger that writes to the test's output (shown with -v or
// on a failure), for a gateway made without a rig.
func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func newRig(t *testing.T, nodes int, tweak ...func(*gateway.Config)) *rig {
	t.Helper()
	dir, tlsRes, ks := federation(t, nodes)
	up, err := standin.Listen()
	require.NoError(t, err)
	t.Cleanup(up.Stop)
	r := &rig{dir: dir, tls: tlsRes, keys: ks, up: up, logs: &syncbuf.Buffer{}, upstream: up.Addr}
	t.Cleanup(func() {
		if t.Failed() { // the refusals' details are in the gateway's log
			t.Logf("the gateway's log:\n%s", r.logs.String())
		}
	})
	cfg := gateway.Config{
		Upstream: up.Addr, UpstreamControl: up.Addr, UpstreamInsecure: true,
		TLSCert: tlsRes.ServerCert, TLSKey: tlsRes.ServerKey,
		Allowlist:      []string{ks.CSV},
		DrainTimeout:   5 * time.Second,
		ReloadInterval: 50 * time.Millisecond,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	if (cfg.OIDC != nil || cfg.Accounts != nil || cfg.TokenList != "") && cfg.StateFile == "" && cfg.Redis == nil {
		cfg.StateFile = filepath.Join(dir, "state.db")
		require.NoError(t, owners.Create(cfg.StateFile))
	}
	r.start(t, cfg)
	pem, err := os.ReadFile(tlsRes.CACert)
	require.NoError(t, err)
	r.caPool = x509.NewCertPool()
	r.caPool.AppendCertsFromPEM(pem)
	return r
}

// fixtures are federations (a CA, its server certificate, node keys and
// their CSV), one per node count, made once per test binary in root: the
// rigs of a package's tests ask for the same few dozen times.
var fixtures struct {
	sync.Mutex
	root string
	made map[int]*fixture
}

type fixture struct {
	dir  string
	tls  *certs.Result
	keys *keyset.Result
}

// removeFixtures removes what federation made; TestMain calls it.
func removeFixtures() {
	if fixtures.root != "" {
		os.RemoveAll(fixtures.root)
	}
}

// federation returns a folder of the test's own holding a federation of
// nodes keys (certificates/ and keys/), and what is in it: a copy of the
// binary's fixture, which the test may change.
func federation(t *testing.T, nodes int) (string, *certs.Result, *keyset.Result) {
	t.Helper()
	fixtures.Lock()
	f, ok := fixtures.made[nodes]
	if !ok {
		var err error
		if fixtures.root == "" {
			fixtures.root, err = os.MkdirTemp("", "nodekeys-gateway-fixtures-")
			require.NoError(t, err)
			fixtures.made = map[int]*fixture{}
		}
		f = &fixture{dir: filepath.Join(fixtures.root, strconv.Itoa(nodes))}
		f.tls, err = certs.Write(certs.Options{Dir: filepath.Join(f.dir, "certificates")})
		require.NoError(t, err)
		f.keys, err = keyset.Write(keyset.Options{Dir: filepath.Join(f.dir, "keys"), Count: nodes})
		require.NoError(t, err)
		fixtures.made[nodes] = f
	}
	fixtures.Unlock()
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(f.dir)))
	// os.CopyFS makes files 0644 or 0755; keys stay private.
	require.NoError(t, filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(filepath.Join(dir, strings.TrimPrefix(p, f.dir)), fi.Mode().Perm())
	}))
	at := func(p string) string { return filepath.Join(dir, strings.TrimPrefix(p, f.dir)) }
	tlsRes := *f.tls
	tlsRes.Dir, tlsRes.CACert, tlsRes.CAKey, tlsRes.ServerCert, tlsRes.ServerKey = at(tlsRes.Dir), at(tlsRes.CACert), at(tlsRes.CAKey), at(tlsRes.ServerCert), at(tlsRes.ServerKey)
	ks := *f.keys
	ks.Dir, ks.CSV, ks.Pairs = at(ks.Dir), at(ks.CSV), slices.Clone(ks.Pairs)
	for i := range ks.Pairs {
		ks.Pairs[i].Private, ks.Pairs[i].Public = at(ks.Pairs[i].Private), at(ks.Pairs[i].Public)
	}
	return dir, &tlsRes, &ks
}

func (r *rig) start(t *testing.T, cfg gateway.Config) {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return ln
	}
	var accounts net.Listener
	if cfg.Accounts != nil {
		accounts = listen()
		if cfg.Accounts.Issuer == "" { // the issuer names its port
			cfg.Accounts.Issuer = "https://" + accounts.Addr().String()
		}
	}
	r.cfg = cfg
	var h slog.Handler = slog.NewTextHandler(r.logs, nil)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(r.logs, nil)
	}
	gw, err := gateway.New(context.Background(), cfg, slog.New(h))
	require.NoError(t, err)
	ls := &gateway.Listeners{Fleet: listen(), Control: listen(), Metrics: listen(), Accounts: accounts}
	if accounts != nil {
		r.accounts = accounts.Addr().String()
	}
	r.gw, r.fleet, r.control, r.metrics = gw, ls.Fleet.Addr().String(), ls.Control.Addr().String(), ls.Metrics.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- gw.Serve(ctx, ls) }()
	t.Cleanup(func() { r.stop(t) })
}

func (r *rig) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
		r.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not stop")
	}
}

func tlsCreds(r *rig) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{RootCAs: r.caPool, ServerName: "localhost"})
}

// dial connects to addr over TLS with the federation's CA; creds may be nil.
func (r *rig) dial(t *testing.T, addr string, creds credentials.PerRPCCredentials) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: r.caPool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())),
	}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds))
	}
	c, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func (r *rig) signer(t *testing.T, i int, opts ...sign.Option) *sign.Signer {
	t.Helper()
	s, err := sign.ReadKey(r.keys.Pairs[i].Private, opts...)
	require.NoError(t, err)
	return s
}

func call(c *grpc.ClientConn, method, body string, md ...string) (string, metadata.MD, metadata.MD, error) {
	// Generous: the long forms load two cores with thousands of calls.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	req, out := []byte(body), []byte{}
	var header, trailer metadata.MD
	err := c.Invoke(ctx, method, &req, &out, grpc.Header(&header), grpc.Trailer(&trailer))
	return string(out), header, trailer, err
}

func headerPairs(h sign.Headers) []string {
	return []string{sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature)}
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	require.Error(t, err)
	st, _ := status.FromError(err)
	assert.Equal(t, code, st.Code(), err.Error())
	if msg != "" {
		assert.Equal(t, msg, st.Message())
	}
}

const heartbeat = "/flwr.proto.Fleet/SendNodeHeartbeat"

func TestAllowedNodePassesWithHeadersIntact(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	s := r.signer(t, 0)
	h, err := s.Sign()
	require.NoError(t, err)
	c := r.dial(t, r.fleet, nil)
	out, header, trailer, err := call(c, heartbeat, "echo:hello", append(headerPairs(h), "x-node-extra", "kept")...)
	require.NoError(t, err)
	assert.Equal(t, "echo:hello", out)
	assert.Equal(t, []string{heartbeat}, header.Get("standin-method"))
	assert.Equal(t, []string{"done"}, trailer.Get("standin-trailer"))

	calls := r.up.Calls()
	require.Len(t, calls, 1)
	got := calls[0]
	assert.Equal(t, heartbeat, got.Method)
	assert.Equal(t, []string{string(h.PublicKey)}, got.Metadata.Get(sign.HeaderPublicKey))
	assert.Equal(t, []string{h.Timestamp}, got.Metadata.Get(sign.HeaderTimestamp))
	assert.Equal(t, []string{string(h.Signature)}, got.Metadata.Get(sign.HeaderSignature))
	assert.Equal(t, []string{"kept"}, got.Metadata.Get("x-node-extra"))
	assert.Equal(t, "echo:hello", string(got.Request))

	// Call credentials, as a Go SuperNode uses them, every Fleet method.
	signed := r.dial(t, r.fleet, s.PerRPCCredentials())
	for _, m := range standin.FleetMethods {
		out, _, _, err := call(signed, "/flwr.proto.Fleet/"+m, "echo:"+m)
		require.NoError(t, err, m)
		assert.Equal(t, "echo:"+m, out)
	}
}

func TestRefusedCallsNeverReachUpstream(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	s := r.signer(t, 0)
	c := r.dial(t, r.fleet, nil)
	stranger, err := keys.Generator{}.Pair(0)
	require.NoError(t, err)
	strangerSigner, err := sign.New(stranger.Private)
	require.NoError(t, err)
	now := time.Now()
	at := func(signer *sign.Signer, t0 time.Time) sign.Headers {
		h, err := signer.SignTimestamp(flwr.FormatTimestamp(t0))
		require.NoError(t, err)
		return h
	}
	good := at(s, now)
	tampered := at(s, now)
	tampered.Signature = bytes.Clone(tampered.Signature)
	tampered.Signature[len(tampered.Signature)-1] ^= 1
	other := at(r.signer(t, 1), now)
	crlf := at(s, now)
	crlf.PublicKey = []byte(strings.ReplaceAll(string(crlf.PublicKey), "\n", "\r\n"))

	_, _, _, err = call(c, heartbeat, "x", headerPairs(good)...)
	require.NoError(t, err)
	base := r.up.Count()
	for _, tc := range []struct {
		name string
		md   []string
		msg  string
	}{
		{"unknown key", headerPairs(at(strangerSigner, now)), "Public key not recognized"},
		{"PEM variant Flower would not match", headerPairs(crlf), "Public key not recognized"},
		{"stale", headerPairs(at(s, now.Add(-306*time.Second))), "Invalid timestamp"},
		{"future", headerPairs(at(s, now.Add(60*time.Second))), "Invalid timestamp"},
		{"tampered", headerPairs(tampered), "Invalid signature"},
		{"replayed", headerPairs(good), "Invalid timestamp"},
		{"duplicated key header", append(headerPairs(good), sign.HeaderPublicKey, string(other.PublicKey)), "Invalid signature"},
		{"duplicated signature", append(headerPairs(at(s, now.Add(-time.Second))), sign.HeaderSignature, string(good.Signature)), "Invalid signature"},
		{"missing metadata", []string{sign.HeaderTimestamp, good.Timestamp}, "Missing authentication metadata"},
		{"no metadata", nil, "Missing authentication metadata"},
	} {
		_, _, _, err := call(c, heartbeat, "x", tc.md...)
		wantStatus(t, err, codes.Unauthenticated, tc.msg)
	}
	assert.Equal(t, base, r.up.Count(), "no refused call reached the upstream")
	// Only Fleet methods are served on the Fleet port.
	_, _, _, err = call(c, "/flwr.proto.Control/ListRuns", "x", headerPairs(at(s, now.Add(-2*time.Second)))...)
	wantStatus(t, err, codes.Unimplemented, "")
	assert.Equal(t, base, r.up.Count())
	logs := r.logs.String()
	for _, reason := range []string{"unknown-key", "stale-timestamp", "future-timestamp", "bad-signature", "replayed", "malformed", "missing-metadata"} {
		assert.Contains(t, logs, "reason="+reason)
	}
	assert.NotContains(t, logs, string(good.Signature), "no header value in the logs")
}

func TestControlStatusesStreamsAndDeadlines(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c := r.dial(t, r.control, nil)
	out, header, trailer, err := call(c, "/flwr.proto.Control/ListRuns", "echo:runs", "x-cli", "1")
	require.NoError(t, err)
	assert.Equal(t, "echo:runs", out)
	assert.Equal(t, []string{"/flwr.proto.Control/ListRuns"}, header.Get("standin-method"))
	assert.Equal(t, []string{"done"}, trailer.Get("standin-trailer"))
	calls := r.up.Calls()
	assert.Equal(t, []string{"1"}, calls[len(calls)-1].Metadata.Get("x-cli"))

	// A status with details and trailers comes back whole.
	_, _, trailer, err = call(c, "/flwr.proto.Control/StopRun", "fail")
	wantStatus(t, err, codes.NotFound, "no such run")
	st, _ := status.FromError(err)
	require.Len(t, st.Details(), 1)
	info, ok := st.Details()[0].(*errdetails.ErrorInfo)
	require.True(t, ok)
	assert.Equal(t, "RUN_NOT_FOUND", info.Reason)
	assert.Equal(t, []string{"done"}, trailer.Get("standin-trailer"))

	// A streamed response arrives whole, in order.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := c.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/flwr.proto.Control/StreamLogs")
	require.NoError(t, err)
	req := []byte("stream:200")
	require.NoError(t, cs.SendMsg(&req))
	require.NoError(t, cs.CloseSend())
	var got []string
	for {
		var m []byte
		if err := cs.RecvMsg(&m); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		got = append(got, string(m))
	}
	require.Len(t, got, 200)
	assert.Equal(t, "log-1", got[0])
	assert.Equal(t, "log-200", got[199])
	assert.Equal(t, []string{"done"}, cs.Trailer().Get("standin-trailer"))

	// The caller's deadline reaches the upstream, and cancels the call there.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	req, resp := []byte("sleep:5000"), []byte{}
	start := time.Now()
	err = c.Invoke(ctx2, "/flwr.proto.Control/ListRuns", &req, &resp)
	wantStatus(t, err, codes.DeadlineExceeded, "")
	assert.Less(t, time.Since(start), 2*time.Second)
}

// A unary method's call that ends without its request is refused at the
// gateway with Internal, the code gRPC's servers answer it with
// ("cardinality violation"), and never reaches the upstream.
func TestUnaryCallWithoutRequest(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c := r.dial(t, r.control, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/flwr.proto.Control/ListRuns")
	require.NoError(t, err)
	require.NoError(t, cs.CloseSend())
	var out []byte
	err = cs.RecvMsg(&out)
	wantStatus(t, err, codes.Internal, "the call ended without its request, and the method is unary")
	assert.Zero(t, r.up.Count())
	assert.Equal(t, 1.0, metricValue(t, r, `nodekeys_gateway_calls_total{method="ListRuns",result="refused",service="flwr.proto.Control"}`))
	assert.Equal(t, -1.0, metricValue(t, r, `nodekeys_gateway_upstream_errors_total{code="Internal",service="flwr.proto.Control"}`), "not the upstream's failure")
}

// A signed Fleet call ends at max_stream_age wherever it waits: for its
// request (never forwarded), or for the upstream's answer.
func TestFleetCallsEndAtMaxStreamAge(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, func(c *gateway.Config) { c.MaxStreamAge = 300 * time.Millisecond })
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	ctx, cancel := context.WithCancel(context.Background()) // no deadline of the client's
	defer cancel()
	ended := func(f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("the call was still open 20 s after it began")
			return nil
		}
	}

	cs, err := c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, heartbeat)
	require.NoError(t, err)
	err = ended(func() error { var out []byte; return cs.RecvMsg(&out) })
	wantStatus(t, err, codes.DeadlineExceeded, "")
	assert.Zero(t, r.up.Count(), "no request, nothing forwarded")

	req, out := []byte("sleep:5000"), []byte{}
	err = ended(func() error { return c.Invoke(ctx, heartbeat, &req, &out) })
	wantStatus(t, err, codes.DeadlineExceeded, "")
	assert.Equal(t, 1, r.up.Count())
}

func TestUpstreamDownIsUnavailable(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	takeDown(t, r) // holds the port: another test's stand-in cannot take it and answer
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	start := time.Now()
	_, _, _, err := call(c, heartbeat, "x")
	wantStatus(t, err, codes.Unavailable, "")
	assert.Less(t, time.Since(start), 4*time.Second, "no hang")
	resp, err := http.Get("http://" + r.metrics + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestAllowlistChangesWithoutRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	one := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	three := r.dial(t, r.fleet, r.signer(t, 2).PerRPCCredentials())
	_, _, _, err := call(three, heartbeat, "x")
	require.NoError(t, err)

	l, err := csvlist.ReadFile(r.keys.CSV)
	require.NoError(t, err)
	all := l.Keys()
	require.NoError(t, os.WriteFile(r.keys.CSV, csvlist.Marshal(all[:2]), 0o600))
	require.Eventually(t, func() bool {
		_, _, _, err := call(three, heartbeat, "x")
		return status.Code(err) == codes.Unauthenticated
	}, 5*time.Second, 50*time.Millisecond, "a removed key is refused")
	_, _, _, err = call(one, heartbeat, "x")
	require.NoError(t, err)

	// A broken file keeps the last good list.
	require.NoError(t, os.WriteFile(r.keys.CSV, []byte("not a key\n"), 0o600))
	require.Error(t, r.gw.Reload())
	_, _, _, err = call(one, heartbeat, "x")
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(r.keys.CSV, csvlist.Marshal(all), 0o600))
	require.Eventually(t, func() bool { _, _, _, err := call(three, heartbeat, "x"); return err == nil },
		5*time.Second, 50*time.Millisecond, "an added key is accepted")

	// The gauge is set just after the new list is in force.
	require.Eventually(t, func() bool { return strings.Contains(metricsText(t, r), "nodekeys_gateway_allowlist_keys 3") },
		5*time.Second, 20*time.Millisecond)
	body := metricsText(t, r)
	for _, want := range []string{
		"nodekeys_gateway_allowlist_keys 3",
		`nodekeys_gateway_calls_total{method="SendNodeHeartbeat",result="ok",service="flwr.proto.Fleet"}`,
		`nodekeys_gateway_refusals_total{reason="unknown-key"}`,
		"nodekeys_gateway_verify_seconds_count",
		"nodekeys_gateway_certificate_not_after_timestamp_seconds",
	} {
		assert.Contains(t, body, want)
	}
	// The broken file failed at least once (the watcher may also have
	// caught it half-written).
	assert.Regexp(t, `nodekeys_gateway_allowlist_reload_errors_total [1-9]`, body)
}

func TestRenewedCertificateServedWithoutRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	serial := func() string {
		conn, err := tls.Dial("tcp", r.fleet, &tls.Config{RootCAs: r.caPool, ServerName: "localhost", NextProtos: []string{"h2"}})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	_, err := certs.Write(certs.Options{Dir: filepath.Dir(r.tls.ServerCert), Force: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return serial() != before }, 5*time.Second, 100*time.Millisecond)
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err = call(c, heartbeat, "x")
	require.NoError(t, err, "the renewed certificate chains to the same CA")
}

func TestShutdownDrainsCallsInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err := call(c, heartbeat, "warm")
	require.NoError(t, err)
	res := make(chan error, 1)
	go func() {
		out, _, _, err := call(c, heartbeat, "sleep:700")
		if err == nil && out != "sleep:700" {
			err = fmt.Errorf("got %q", out)
		}
		res <- err
	}()
	require.Eventually(t, func() bool { return r.up.Count() == 2 }, 5*time.Second, 10*time.Millisecond)
	r.cancel()
	require.NoError(t, <-res, "the call in flight finished")
	select {
	case err := <-r.done:
		require.NoError(t, err)
		r.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("no stop after the drain")
	}
	_, _, _, err = call(r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials()), heartbeat, "x")
	require.Error(t, err, "a stopped gateway takes no calls")
}

// The per-key rate limit is charged for calls whose signature verifies:
// forged signatures under a node's key never spend its allowance, and a
// node past its own allowance is refused on its own.
func TestKeyRateLimitAfterSignature(t *testing.T) {
	t.Parallel()
	noDelay := time.Duration(0)
	r := newRig(t, 2, func(c *gateway.Config) { c.KeyRate, c.KeyBurst, c.RefusalDelay = 0.01, 5, &noDelay })
	forger := r.dial(t, r.fleet, nil)
	for _, h := range forged(t, r.signer(t, 0), 12) {
		_, _, _, err := call(forger, heartbeat, "x", h...)
		require.Error(t, err)
		assert.NotEqual(t, codes.OK, status.Code(err))
	}
	node := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	for i := range 5 {
		_, _, _, err := call(node, heartbeat, "x")
		require.NoError(t, err, "call %d: within the node's own burst, whatever the forger sent", i)
	}
	_, _, _, err := call(node, heartbeat, "x")
	wantStatus(t, err, codes.ResourceExhausted, "")
	other := r.dial(t, r.fleet, r.signer(t, 1).PerRPCCredentials())
	_, _, _, err = call(other, heartbeat, "x")
	require.NoError(t, err, "another key has its own bucket")
	assert.Equal(t, 6, r.up.Count())
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "gateway.yaml")
	require.NoError(t, os.WriteFile(p, []byte("upstream: 127.0.0.1:7000\nallowlist: [a.csv, pubs/]\nkey_rate: 5\nmax_stream_age: 10m\nreplay_guard: false\n"), 0o600))
	c, err := gateway.LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7000", c.Upstream)
	assert.Equal(t, []string{"a.csv", "pubs/"}, c.Allowlist)
	assert.Equal(t, 10*time.Minute, c.MaxStreamAge)
	require.NotNil(t, c.ReplayGuard)
	assert.False(t, *c.ReplayGuard)
	c.Defaults()
	assert.Equal(t, "127.0.0.1:7001", c.UpstreamControl)
	assert.Equal(t, gateway.DefaultListenFleet, c.ListenFleet)

	require.NoError(t, os.WriteFile(p, []byte("upstream: x:1\nreplay_gaurd: false\n"), 0o600))
	_, err = gateway.LoadConfig(p)
	require.ErrorContains(t, err, "replay_gaurd", "a misspelt protection is an error, not a default")

	_, err = gateway.New(context.Background(), gateway.Config{TLSCert: "c", TLSKey: "k", Allowlist: []string{"a"}}, testLog(t))
	require.ErrorContains(t, err, "upstream_insecure")
}

// A refused call is answered after the refusal delay, for as many calls
// as there are slots; past that, at once. Accepted calls are not delayed.
func TestRefusalDelay(t *testing.T) {
	t.Parallel()
	delay := time.Second
	r := newRig(t, 1, func(c *gateway.Config) { c.RefusalDelay, c.RefusalDelaySlots = &delay, 1 })
	c := r.dial(t, r.fleet, nil)
	signed := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err := call(signed, heartbeat, "x") // connected: the handshakes are not what is timed
	require.NoError(t, err)
	_, _, _, err = call(c, "/flwr.proto.Control/ListRuns", "x")
	wantStatus(t, err, codes.Unimplemented, "")
	start := time.Now()
	_, _, _, err = call(signed, heartbeat, "x")
	require.NoError(t, err)
	assert.Less(t, time.Since(start), delay)

	took := make(chan time.Duration, 2)
	for range 2 {
		go func() {
			t0 := time.Now()
			_, _, _, err := call(c, heartbeat, "x")
			wantStatus(t, err, codes.Unauthenticated, "Missing authentication metadata")
			took <- time.Since(t0)
		}()
	}
	a, b := <-took, <-took
	fast, slow := min(a, b), max(a, b)
	assert.GreaterOrEqual(t, slow, delay, "one refusal held back")
	assert.Less(t, fast, delay, "no slot left: the other answered at once")
}

// With register_nodes, the upstream's registrations follow the allowlist:
// registered on start, after a reload, and again after the SuperLink
// restarts and forgets them.
func TestGatewayRegistersTheAllowlist(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, func(c *gateway.Config) { c.RegisterNodes, c.RegisterInterval = true, 100*time.Millisecond })
	require.Eventually(t, func() bool { return r.up.Registered() == 3 }, 5*time.Second, 20*time.Millisecond, "registered on start")

	r.up.Restart() // an in-memory SuperLink restarted: every registration lost
	require.Equal(t, 0, r.up.Registered())
	require.Eventually(t, func() bool { return r.up.Registered() == 3 }, 5*time.Second, 20*time.Millisecond, "registered again")

	extra, err := keys.Generator{}.Pair(0)
	require.NoError(t, err)
	l, err := csvlist.ReadFile(r.keys.CSV)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(r.keys.CSV, csvlist.Marshal(append(l.Keys(), extra.Public)), 0o600))
	require.Eventually(t, func() bool { return r.up.Registered() == 4 }, 5*time.Second, 20*time.Millisecond, "a reloaded key is registered")

	// The upstream holds the key a moment before the gateway counts it.
	assert.Eventually(t, func() bool {
		return strings.Contains(metricsText(t, r), `nodekeys_gateway_registrations_total{action="registered"} 7`)
	}, 5*time.Second, 20*time.Millisecond)
}

// An upstream SuperLink over TLS, verified with its CA, as when the
// SuperLink keeps its own certificate behind the gateway.
func TestTLSUpstream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upTLS, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "upstream")})
	require.NoError(t, err)
	pair, err := tls.LoadX509KeyPair(upTLS.ServerCert, upTLS.ServerKey)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	up := standin.Start(ln, standin.WithTLS(pair))
	t.Cleanup(up.Stop)
	r := newRig(t, 1, func(c *gateway.Config) {
		c.Upstream, c.UpstreamControl, c.UpstreamInsecure, c.UpstreamCA = up.Addr, up.Addr, false, upTLS.CACert
	})
	_, _, _, err = call(r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials()), heartbeat, "echo:tls")
	require.NoError(t, err)
	assert.Equal(t, 1, up.Count())

	// An upstream whose certificate the CA did not issue is not spoken to.
	other, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "other")})
	require.NoError(t, err)
	r2 := newRig(t, 1, func(c *gateway.Config) {
		c.Upstream, c.UpstreamControl, c.UpstreamInsecure, c.UpstreamCA = up.Addr, up.Addr, false, other.CACert
	})
	_, _, _, err = call(r2.dial(t, r2.fleet, r2.signer(t, 0).PerRPCCredentials()), heartbeat, "x")
	wantStatus(t, err, codes.Unavailable, "")
	assert.Equal(t, 1, up.Count())
}

// Metadata over the cap is refused at the transport, before any check.
func TestMetadataCap(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	c := r.dial(t, r.fleet, r.signer(t, 0).PerRPCCredentials())
	_, _, _, err := call(c, heartbeat, "x", "x-padding", strings.Repeat("a", 20<<10))
	require.Error(t, err)
	assert.Zero(t, r.up.Count())
	_, _, _, err = call(c, heartbeat, "x")
	require.NoError(t, err, "the connection still serves calls within the cap")
}
