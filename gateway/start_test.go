package gateway_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/redistest"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// startConfig is a valid gateway config on files of its own, with account
// login at issuer (and a CA file for it).
func startConfig(t *testing.T, issuer string) gateway.Config {
	t.Helper()
	dir := t.TempDir()
	tlsRes, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "certificates")})
	require.NoError(t, err)
	ks, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Count: 1})
	require.NoError(t, err)
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("s\n"), 0o600))
	return gateway.Config{Upstream: "127.0.0.1:9", UpstreamControl: "127.0.0.1:9", UpstreamInsecure: true,
		TLSCert: tlsRes.ServerCert, TLSKey: tlsRes.ServerKey, Allowlist: []string{ks.CSV},
		OIDC:      &oidcauth.Config{Issuer: issuer, ClientID: "c", ClientSecretFile: secret, Audience: "a", CAFile: tlsRes.CACert},
		StateFile: filepath.Join(dir, "state.db")}
}

// silent accepts connections and never answers: a provider or Redis that
// hangs.
func silent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// New's network I/O ends when its context does (SIGTERM during start-up),
// for an identity provider and a Redis that accept and never answer.
func TestNewEndsWithItsContext(t *testing.T) {
	t.Parallel()
	for name, tweak := range map[string]func(*gateway.Config, string){
		"provider": func(c *gateway.Config, addr string) { c.OIDC.Issuer = "https://" + addr },
		"redis": func(c *gateway.Config, addr string) {
			c.Redis, c.StateFile = &shared.Config{Addrs: []string{addr}, Timeout: time.Minute}, ""
		},
	} {
		cfg := startConfig(t, "https://127.0.0.1:9")
		tweak(&cfg, silent(t))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		done := make(chan error, 1)
		go func() {
			_, err := gateway.New(ctx, cfg, testLog(t))
			done <- err
		}()
		select {
		case err := <-done:
			require.Error(t, err, name)
			assert.True(t, errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "context canceled"), "%s: %v", name, err)
		case <-time.After(8 * time.Second):
			t.Fatalf("%s: New went on after its context was cancelled", name)
		}
	}
}

// A start-up that fails after Redis and the upstream connections were
// opened closes them: no connection stays open at Redis, and no gRPC or
// Redis goroutine is left behind.
func TestNewClosesWhatItOpenedOnError(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	clients := func() int {
		list, err := rdb.ClientList(context.Background()).Result()
		require.NoError(t, err)
		return strings.Count(strings.TrimSpace(list), "\n") // less this one
	}
	leftovers := func() int {
		buf := make([]byte, 1<<20)
		n := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "google.golang.org/grpc") || strings.Contains(g, "nodekeys/gateway/shared.") {
				n++
			}
		}
		return n
	}
	before := leftovers()
	for range 3 {
		// Redis answers; the provider's port is closed: New fails at the
		// login, after Redis and the upstream connections.
		cfg := startConfig(t, "https://127.0.0.1:9")
		cfg.Redis, cfg.StateFile = &shared.Config{Addrs: []string{srv.Addr}}, ""
		_, err := gateway.New(context.Background(), cfg, testLog(t))
		require.ErrorContains(t, err, "account login")
	}
	deadline := time.Now().Add(5 * time.Second)
	for (clients() > 0 || leftovers() > before) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Zero(t, clients(), "connections left open at Redis")
	assert.LessOrEqual(t, leftovers(), before, "gRPC or Redis goroutines left running")
}
