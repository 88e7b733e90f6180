//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
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

	call := func(creds credentials.PerRPCCredentials) error {
		cc, err := grpc.NewClient(ln.Addr().String(),
			grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())), grpc.WithPerRPCCredentials(creds))
		require.NoError(t, err)
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, resp := []byte{}, []byte{}
		return cc.Invoke(ctx, method, &req, &resp)
	}
	for range 3 { // one connection each: the upstream's streams go on
		require.NoError(t, call(admitted.PerRPCCredentials()), "a signed call of an admitted key is relayed and answered")
	}
	err = call(stranger.PerRPCCredentials())
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "a key not in the allowlist: %v", err)
	assert.Equal(t, verify.UnknownKey.FlowerMessage(), status.Convert(err).Message())

	forged := forgedCreds{admitted.PublicKeyPEM(), stranger}
	err = call(forged)
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "an admitted key with another key's signature: %v", err)
	assert.Equal(t, verify.BadSignature.FlowerMessage(), status.Convert(err).Message())
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
