package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/sign"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// gatewayProc is a `nodekeys gateway` process a test runs, in a folder
// with a development CA and node keys, in front of a stand-in SuperLink.
type gatewayProc struct {
	dir, metrics string
	up           *standin.Server
	cmd          *exec.Cmd
	stderr       syncbuf.Buffer
	exited       chan error
	pool         *x509.CertPool
	signer       *sign.Signer // node 1's key
}

// startGateway makes the federation's files in a new folder (certgen,
// keygen with clients keys) and a stand-in SuperLink, then runs `nodekeys
// gateway ARGS...` there, ARGS from args(folder, stand-in address), with
// prefix (a shell line that ends by running "$0" "$@", e.g. `ulimit -n
// 1024 && exec "$0" "$@"`; "" for none), and waits until /healthz at
// metrics answers.
func startGateway(t *testing.T, clients int, metrics, prefix string, args func(dir, upstream string) []string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{dir: t.TempDir(), metrics: metrics, exited: make(chan error, 1)}
	require.Equal(t, 0, nk(t, g.dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, g.dir, "", "keygen", "--clients", fmt.Sprint(clients)).code)
	up, err := standin.Listen()
	require.NoError(t, err)
	t.Cleanup(up.Stop)
	g.up = up
	argv := append([]string{"gateway"}, args(g.dir, up.Addr)...)
	if prefix != "" {
		g.cmd = exec.Command("sh", append([]string{"-c", prefix, bin}, argv...)...)
	} else {
		g.cmd = exec.Command(bin, argv...)
	}
	g.cmd.Dir = g.dir
	g.cmd.Stderr = &g.stderr
	require.NoError(t, g.cmd.Start())
	go func() { g.exited <- g.cmd.Wait() }()
	t.Cleanup(func() { g.cmd.Process.Kill() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond, g.stderr.String())
	ca, err := os.ReadFile(filepath.Join(g.dir, "certificates", "ca.crt"))
	require.NoError(t, err)
	g.pool = x509.NewCertPool()
	g.pool.AppendCertsFromPEM(ca)
	g.signer, err = sign.ReadKey(filepath.Join(g.dir, "keys", "client_credentials_1"))
	require.NoError(t, err)
	return g
}

// dial connects to the gateway's Fleet address addr over TLS, signing
// each call with node 1's key when signed.
func (g *gatewayProc) dial(t *testing.T, addr string, signed bool) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: g.pool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())),
	}
	if signed {
		opts = append(opts, grpc.WithPerRPCCredentials(g.signer.PerRPCCredentials()))
	}
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// get returns the status and body of the metrics server's path.
func (g *gatewayProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + g.metrics + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// stop sends SIGTERM and wants exit status 0 within 10 s.
func (g *gatewayProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, g.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-g.exited:
		require.NoError(t, err, g.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop on SIGTERM")
	}
}

// TestGatewayCommand runs `nodekeys gateway` as an operator would, with a
// config file and a flag that wins over it, in front of a stand-in
// SuperLink: ready, a signed call passes, an unknown node is refused,
// metrics answer, SIGTERM stops it with exit 0.
func TestGatewayCommand(t *testing.T) {
	t.Parallel()
	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	g := startGateway(t, 2, metrics, "", func(dir, upstream string) []string {
		conf := fmt.Sprintf("listen_fleet: %s\nlisten_control: %s\nupstream: 127.0.0.1:1\nupstream_control: %s\n"+
			"upstream_insecure: true\nallowlist: [keys/client_public_keys.csv]\nmetrics: %s\nlog_format: json\n",
			fleet, control, upstream, metrics)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(conf), 0o600))
		return []string{"--config", "gateway.yaml", "--upstream", upstream}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, out := []byte("echo:hi"), []byte{}
	require.NoError(t, g.dial(t, fleet, true).Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out), g.stderr.String())
	assert.Equal(t, "echo:hi", string(out))

	code, body := g.get(t, "/readyz")
	assert.Equal(t, 200, code, body)
	assert.Contains(t, body, "2 keys")

	// An unsigned call is refused with Flower's message; the log is JSON.
	err := g.dial(t, fleet, false).Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out)
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Equal(t, 1, g.up.Count())

	g.stop(t)
	logs := g.stderr.String()
	assert.Contains(t, logs, `"msg":"refused a node call"`)
	assert.Contains(t, logs, `"msg":"gateway stopped"`)
	assert.NotContains(t, logs, string(g.signer.PublicKeyPEM()[30:60]), "no key material in the logs")
}

func TestGatewayUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gateway"}, "no allowlist"},
		{[]string{"gateway", "--allowlist", "a.csv"}, "upstream_insecure"},
		{[]string{"gateway", "--allowlist", "a.csv", "--upstream-insecure", "--upstream", "nohost"}, `"nohost" is not a HOST:PORT address`},
		{[]string{"gateway", "--allowlist", "a.csv", "--upstream-insecure", "--log-format", "xml"}, "log_format must be text or json"},
		{[]string{"gateway", "extra"}, "takes no arguments"},
	} {
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		assert.Contains(t, r.stderr, tc.want, tc.args)
		assert.Equal(t, 1, strings.Count(r.stderr, "nodekeys: error:"))
	}
	// A missing allowlist is a failure (exit 1), named.
	r := nk(t, dir, "", "gateway", "--allowlist", "missing.csv", "--upstream-insecure", "--tls-cert", "x", "--tls-key", "y")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "missing.csv")
}
