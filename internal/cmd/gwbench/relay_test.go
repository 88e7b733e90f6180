//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// The bare relay is the yardstick the gateway is measured against, so it
// must do the one thing it stands for: a call whose signature verifies
// reaches the upstream and its answer comes back, over TLS and HTTP/2;
// one from a key not in the allowlist, or with a signature of another
// key, is answered by the relay with Flower's status and not relayed.
func TestBareRelayVerifiesAndRelays(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	up := standin.Start(upLn, standin.Forgetful())
	t.Cleanup(up.Stop)

	dir := t.TempDir()
	res, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "certificates")})
	require.NoError(t, err)
	pair, err := tls.LoadX509KeyPair(res.ServerCert, res.ServerKey)
	require.NoError(t, err)
	caPEM, err := os.ReadFile(res.CACert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	signer := func() *sign.Signer {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		require.NoError(t, err)
		s, err := sign.New(k)
		require.NoError(t, err)
		return s
	}
	admitted, stranger := signer(), signer()
	pub, err := keys.ParsePEMPublicKey(admitted.PublicKeyPEM())
	require.NoError(t, err)
	list, err := verify.NewAllowlist([]*keys.PublicKey{pub})
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	_, err = startRelay(ln, upLn.Addr().String(), list, pair)
	require.NoError(t, err)

	dial := func(creds credentials.PerRPCCredentials) *grpc.ClientConn {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec()))}
		if creds != nil {
			opts = append(opts, grpc.WithPerRPCCredentials(creds))
		}
		cc, err := grpc.NewClient(ln.Addr().String(), opts...)
		require.NoError(t, err)
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	call := func(cc *grpc.ClientConn, body string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, resp := []byte(body), []byte{}
		err := cc.Invoke(ctx, method, &req, &resp)
		return string(resp), err
	}

	// Calls of an admitted key, 32 at once over 4 connections, each a
	// body of its own: each answer is its own call's (the stand-in
	// answers a call with its request).
	conns := []*grpc.ClientConn{dial(admitted.PerRPCCredentials()), dial(admitted.PerRPCCredentials()),
		dial(admitted.PerRPCCredentials()), dial(admitted.PerRPCCredentials())}
	var wg sync.WaitGroup
	answers := make([]string, 32)
	errs := make([]error, 32)
	for i := range answers {
		wg.Go(func() { answers[i], errs[i] = call(conns[i%len(conns)], fmt.Sprintf("echo:call-%d", i)) })
	}
	wg.Wait()
	for i := range answers {
		require.NoError(t, errs[i], "a signed call of an admitted key is relayed and answered")
		assert.Equal(t, fmt.Sprintf("echo:call-%d", i), answers[i])
	}
	require.Equal(t, 32, up.Count())

	// Refused by the relay with Flower's status, and not relayed: a key
	// not in the allowlist, an admitted key with another key's signature
	// (which the stand-in would refuse with the same status, hence the
	// count), and no authentication headers at all.
	for _, tc := range []struct {
		creds credentials.PerRPCCredentials
		want  verify.Reason
	}{
		{stranger.PerRPCCredentials(), verify.UnknownKey},
		{forgedCreds{admitted.PublicKeyPEM(), stranger}, verify.BadSignature},
		{nil, verify.MissingMetadata},
	} {
		_, err := call(dial(tc.creds), "echo:refused")
		assert.Equal(t, codes.Unauthenticated, status.Code(err), "%s: %v", tc.want, err)
		assert.Equal(t, tc.want.FlowerMessage(), status.Convert(err).Message(), tc.want)
	}
	assert.Equal(t, 32, up.Count(), "no refused call reached the upstream")
}

// forgedCreds sends the admitted key's PEM with a signature by another.
type forgedCreds struct {
	pem    []byte
	signer *sign.Signer
}

func (f forgedCreds) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	md, err := f.signer.PerRPCCredentials().GetRequestMetadata(ctx, uri...)
	if err != nil {
		return nil, err
	}
	md[sign.HeaderPublicKey] = string(f.pem)
	return md, nil
}

func (forgedCreds) RequireTransportSecurity() bool { return true }
