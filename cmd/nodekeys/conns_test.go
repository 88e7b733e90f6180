//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/sign"
)

// TestGatewayStalledHandshakes is the review's case: `nodekeys gateway`
// with its default settings, under an open-file limit of 1,024 (soft and
// hard, as `ulimit -n 1024` sets them), takes 2,000 stalled handshakes
// from one address (TCP connected, nothing sent); a SuperNode from another
// address is then served (in milliseconds; the bound is 3 s for a loaded
// machine). Without caps, the gateway stopped accepting at 1,025 and held
// them for gRPC's 120 s handshake timeout.
func TestGatewayStalledHandshakes(t *testing.T) {
	t.Parallel()
	const n = 2000
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "1").code)
	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	fleet, metrics := freePort(t), freePort(t)
	cmd := exec.Command("sh", "-c", `ulimit -n 1024 && exec "$0" "$@"`, bin, "gateway", "--listen-fleet", fleet, "--listen-control", "-",
		"--upstream", up.Addr, "--upstream-insecure", "--allowlist", "keys/client_public_keys.csv", "--metrics", metrics)
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

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	var stalled []net.Conn
	closeAll := func() {
		for _, c := range stalled {
			c.Close()
		}
		stalled = nil
	}
	defer closeAll()
	reset := 0
	for range n {
		c, err := d.Dial("tcp", fleet)
		if errors.Is(err, syscall.ECONNRESET) {
			reset++ // refused as soon as it was accepted
			continue
		}
		require.NoError(t, err)
		stalled = append(stalled, c)
	}

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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, out := []byte("echo:served"), []byte{}
	start := time.Now()
	require.NoError(t, conn.Invoke(ctx, "/flwr.proto.Fleet/PullMessages", &req, &out),
		"a SuperNode after %d stalled handshakes (%d reset at once)", n, reset)
	assert.Equal(t, "echo:served", string(out))
	t.Logf("a SuperNode served in %s after %d stalled handshakes (%d reset at once)", time.Since(start).Round(time.Millisecond), n, reset)

	// 768 connections in all (3/4 of 1,024), 384 from one address.
	assert.Contains(t, stderr.String(), "max_connections lowered to three quarters of the open-file limit")
	assert.Contains(t, stderr.String(), "open_files=1024 max_connections=768 max_connections_per_address=384")
	resp, err := http.Get("http://" + metrics + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), fmt.Sprintf(`nodekeys_gateway_connections_refused_total{reason="max_connections_per_address"} %d`, n-384))

	closeAll() // a handshake in progress holds up the shutdown until its timeout
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop on SIGTERM")
	}
}
