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

// TestGatewayCommand runs `nodekeys gateway` as an operator would, with a
// config file and a flag that wins over it, in front of a stand-in
// SuperLink: ready, a signed call passes, an unknown node is refused,
// metrics answer, SIGTERM stops it with exit 0.
func TestGatewayCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2").code)
	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	fleet, control, metrics := freePort(t), freePort(t), freePort(t)
	conf := fmt.Sprintf("listen_fleet: %s\nlisten_control: %s\nupstream: 127.0.0.1:1\nupstream_control: %s\n"+
		"upstream_insecure: true\nallowlist: [keys/client_public_keys.csv]\nmetrics: %s\nlog_format: json\n",
		fleet, control, up.Addr, metrics)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(conf), 0o600))

	cmd := exec.Command(bin, "gateway", "--config", "gateway.yaml", "--upstream", up.Addr)
	cmd.Dir = dir
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond, stderr.String())

	ca, err := os.ReadFile(filepath.Join(dir, "certificates", "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	signer, err := sign.ReadKey(filepath.Join(dir, "keys", "client_credentials_1"))
	require.NoError(t, err)
	conn, err := grpc.NewClient(fleet,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		grpc.WithPerRPCCredentials(signer.PerRPCCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, out := []byte("echo:hi"), []byte{}
	require.NoError(t, conn.Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out), stderr.String())
	assert.Equal(t, "echo:hi", string(out))

	resp, err := http.Get("http://" + metrics + "/readyz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "2 keys")

	// An unsigned call is refused with Flower's message; the log is JSON.
	plain, err := grpc.NewClient(fleet,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())))
	require.NoError(t, err)
	defer plain.Close()
	err = plain.Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out)
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Equal(t, 1, up.Count())

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop on SIGTERM")
	}
	logs := stderr.String()
	assert.Contains(t, logs, `"msg":"refused a node call"`)
	assert.Contains(t, logs, `"msg":"gateway stopped"`)
	assert.NotContains(t, logs, string(signer.PublicKeyPEM()[30:60]), "no key material in the logs")
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
