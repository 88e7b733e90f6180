package control_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
)

func TestDialRefusesOptionsThatCannotWork(t *testing.T) {
	t.Parallel()
	_, err := control.Dial(control.Options{Address: "127.0.0.1:9093"})
	assert.ErrorIs(t, err, control.ErrNoTransport)
	_, err = control.Dial(control.Options{Address: "127.0.0.1:9093", Insecure: true, RootCertificates: "ca.crt"})
	assert.ErrorIs(t, err, control.ErrTLSAndInsecure)
	_, err = control.Dial(control.Options{Address: "127.0.0.1:9093", Insecure: true, Token: "t"})
	assert.ErrorIs(t, err, control.ErrTokenNeedsTLS)
	_, err = control.Dial(control.Options{Address: "127.0.0.1:9093", RootCertificates: "ca.crt", Token: "t", LoginFile: "login.json"})
	assert.ErrorIs(t, err, control.ErrTwoCredentials)
	for _, addr := range []string{"localhost", "https://localhost:9093", "localhost:"} {
		_, err = control.Dial(control.Options{Address: addr, Insecure: true})
		assert.ErrorIs(t, err, control.ErrNoPort, addr)
	}
	for _, err := range []error{control.ErrNoTransport, control.ErrTLSAndInsecure, control.ErrTokenNeedsTLS, control.ErrTwoCredentials, control.ErrNoPort} {
		assert.NotContains(t, err.Error(), "--", "options, not flags")
	}
	var le *control.LoginError
	_, err = control.Dial(control.Options{Address: "127.0.0.1:9093", Insecure: true, LoginFile: filepath.Join(t.TempDir(), "none.json")})
	require.ErrorAs(t, err, &le)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// server is a Control API on loopback that answers ListNodes, records the
// tokens each call carried, and sends a refreshed pair back when told to.
type server struct {
	flwrpb.UnimplementedControlServer
	seen    chan metadata.MD
	refresh [2]string
}

func (s *server) ListNodes(ctx context.Context, _ *flwrpb.ListNodesRequest) (*flwrpb.ListNodesResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.seen <- md
	if s.refresh[0] != "" {
		grpc.SetHeader(ctx, metadata.Pairs(control.HeaderAccessToken, s.refresh[0], control.HeaderRefreshToken, s.refresh[1]))
	}
	return &flwrpb.ListNodesResponse{Now: "now"}, nil
}

func serve(t *testing.T, s *server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	flwrpb.RegisterControlServer(g, s)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// dialServed serves a server that answers ListNodes and dials it in
// plaintext; both end with the test, as does the context.
func dialServed(t *testing.T) (context.Context, *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	conn, err := control.Dial(control.Options{Address: serve(t, &server{seen: make(chan metadata.MD, 1)}), Insecure: true})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ctx, conn
}

func TestReach(t *testing.T) {
	t.Parallel()
	ctx, conn := dialServed(t)
	require.NoError(t, control.Reach(ctx, conn))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := ln.Addr().String()
	ln.Close()
	conn, err = control.Dial(control.Options{Address: gone, Insecure: true})
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	err = control.Reach(ctx, conn)
	var ue *control.UnreachableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "cannot reach "+gone+": connect: connection refused", err.Error())
	assert.Less(t, time.Since(start), 5*time.Second, "at the first failed attempt, not at the deadline")
}

// The tokens of a login file go with every call, and a pair the server
// sends back replaces them in the file, in the file's own format, keeping
// the rest of it.
func TestLoginTokensSentAndRefreshed(t *testing.T) {
	t.Parallel()
	s := &server{seen: make(chan metadata.MD, 1), refresh: [2]string{"access-2", "refresh-2"}}
	addr := serve(t, s)
	for _, tc := range []struct {
		name, file, content string
		check               func(t *testing.T, b string)
	}{
		{"nodekeys", "login.json", `{"access_token": "access-1", "refresh_token": "refresh-1"}`, func(t *testing.T, b string) {
			assert.JSONEq(t, `{"access_token": "access-2", "refresh_token": "refresh-2"}`, b)
		}},
		{"flwr 1.25", ".flwr/.credentials/fed.json", flwr125, func(t *testing.T, b string) {
			assert.JSONEq(t, `{"authn-type": "oidc", "flwr-oidc-access-token": "access-2", "flwr-oidc-refresh-token": "refresh-2"}`, b)
		}},
		{"flwr 1.27", "credentials.yaml", strings.ReplaceAll(flwr127, "127.0.0.1:9093", addr), func(t *testing.T, b string) {
			assert.Contains(t, b, "flower.account-auth."+addr+".oidc-access-token: YWNjZXNzLTI=\n") // base64("access-2")
			assert.Contains(t, b, "flower.account-auth."+addr+".oidc-refresh-token: cmVmcmVzaC0y\n")
			assert.Contains(t, b, "flower.account-auth."+addr+".authn-type: b2lkYw==\n", "the rest is kept")
			assert.Contains(t, b, "flower.account-auth.other.example:9093.oidc-access-token: T1RIRVI=\n", "another login is kept")
		}},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, tc.file)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
		conn, err := control.Dial(control.Options{Address: addr, Insecure: true, LoginFile: path})
		require.NoError(t, err, tc.name)
		_, err = flwrpb.NewControlClient(conn).ListNodes(context.Background(), &flwrpb.ListNodesRequest{})
		require.NoError(t, err, tc.name)
		conn.Close()
		md := <-s.seen
		assert.Equal(t, []string{"access-1"}, md.Get(control.HeaderAccessToken), tc.name)
		assert.Equal(t, []string{"refresh-1"}, md.Get(control.HeaderRefreshToken), tc.name)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		tc.check(t, string(b))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), tc.name)
	}
}

// The bytes Flower's own CLI writes (produced by OidcCliPlugin.store_tokens
// of Flower 1.25.0 and 1.27.0 with the tokens access-1 and refresh-1; the
// long form of TestFlowerCLIStores makes them with real Flower again).
const (
	flwr125 = "{\n    \"authn-type\": \"oidc\",\n    \"flwr-oidc-access-token\": \"access-1\",\n    \"flwr-oidc-refresh-token\": \"refresh-1\"\n}"
	flwr127 = "flower.account-auth.127.0.0.1:9093.authn-type: b2lkYw==\n" +
		"flower.account-auth.127.0.0.1:9093.oidc-access-token: YWNjZXNzLTE=\n" +
		"flower.account-auth.127.0.0.1:9093.oidc-refresh-token: cmVmcmVzaC0x\n" +
		"flower.account-auth.other.example:9093.authn-type: b2lkYw==\n" +
		"flower.account-auth.other.example:9093.oidc-access-token: T1RIRVI=\n" +
		"flower.account-auth.other.example:9093.oidc-refresh-token: T1RIRVI=\n"
)

func TestReadLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	home := filepath.Join(dir, "flwrhome")
	write("flwrhome/credentials.yaml", flwr127)
	project := filepath.Join(dir, "project")
	write("project/.flwr/.credentials/my-federation.json", flwr125)

	for _, path := range []string{home, filepath.Join(home, "credentials.yaml")} {
		l, err := control.ReadLogin(path, "127.0.0.1:9093")
		require.NoError(t, err)
		assert.Equal(t, control.FlwrHome, l.Format)
		assert.Equal(t, control.Tokens{Access: "access-1", Refresh: "refresh-1"}, l.Tokens)
		assert.Equal(t, filepath.Join(home, "credentials.yaml"), l.Path)
	}
	_, err := control.ReadLogin(home, "localhost:9093")
	assert.EqualError(t, err, filepath.Join(home, "credentials.yaml")+" holds no flwr login for localhost:9093 "+
		"(no key flower.account-auth.localhost:9093.oidc-access-token); it holds logins for: 127.0.0.1:9093, other.example:9093")

	for _, path := range []string{project, filepath.Join(project, ".flwr/.credentials/my-federation.json")} {
		l, err := control.ReadLogin(path, "127.0.0.1:9093")
		require.NoError(t, err)
		assert.Equal(t, control.FlwrProject, l.Format)
		assert.Equal(t, control.Tokens{Access: "access-1", Refresh: "refresh-1"}, l.Tokens)
	}
	write("project/.flwr/.credentials/other.json", flwr125)
	_, err = control.ReadLogin(project, "127.0.0.1:9093")
	assert.ErrorContains(t, err, "holds the logins of several federations (my-federation.json, other.json): name the file of one")

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o700))
	_, err = control.ReadLogin(empty, "127.0.0.1:9093")
	assert.EqualError(t, err, empty+" holds no login: looked for "+filepath.Join(empty, "credentials.yaml")+
		" (flwr 1.26 and later) and "+filepath.Join(empty, ".flwr/.credentials/FEDERATION.json")+" (flwr 1.25 and earlier)")

	_, err = control.ReadLogin(write("bad.json", `{"token": "x"}`), "127.0.0.1:9093")
	assert.ErrorContains(t, err, "bad.json: not a login file with an access_token")
	_, err = control.ReadLogin(write("notes.txt", "hello: world\n"), "127.0.0.1:9093")
	assert.ErrorContains(t, err, "notes.txt: not a login file")
	_, err = control.ReadLogin(write("b64.yaml", "flower.account-auth.h:1.oidc-access-token: '%%%'\n"), "h:1")
	assert.ErrorContains(t, err, "is not base64")
	assert.False(t, errors.Is(err, os.ErrNotExist))
}

// A server that refuses the tokens: the call fails with its status, and
// the file is left alone.
func TestRefusedLoginLeavesFile(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer(grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.Unauthenticated, "run flwr login")
	}))
	flwrpb.RegisterControlServer(g, &server{})
	go g.Serve(ln)
	defer g.Stop()
	path := filepath.Join(t.TempDir(), "login.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"access_token": "a", "refresh_token": "r"}`), 0o600))
	conn, err := control.Dial(control.Options{Address: ln.Addr().String(), Insecure: true, LoginFile: path})
	require.NoError(t, err)
	defer conn.Close()
	_, err = flwrpb.NewControlClient(conn).ListNodes(context.Background(), &flwrpb.ListNodesRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	b, _ := os.ReadFile(path)
	assert.Equal(t, `{"access_token": "a", "refresh_token": "r"}`, string(b))
}

// Over TLS: a server whose certificate the named CA does not sign cannot
// be reached, and Reach says why; with its own CA the call goes through
// and a bearer token goes with it.
func TestTLS(t *testing.T) {
	t.Parallel()
	now := time.Now()
	dir := t.TempDir()
	ca := func(name string) *certs.CA {
		k, err := certs.GenerateKey(certs.ECDSAP256)
		require.NoError(t, err)
		c, err := certs.NewCA(k, 2, now)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), certs.MarshalCertificate(c.Cert), 0o644))
		return c
	}
	mine, _ := ca("mine.crt"), ca("other.crt")
	k, err := certs.GenerateKey(certs.ECDSAP256)
	require.NoError(t, err)
	cert, err := mine.Issue(k.Public(), []string{"127.0.0.1"}, 1, now)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{seen: make(chan metadata.MD, 1)}
	g := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: k})))
	flwrpb.RegisterControlServer(g, s)
	go g.Serve(ln)
	defer g.Stop()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn, err := control.Dial(control.Options{Address: addr, RootCertificates: filepath.Join(dir, "other.crt")})
	require.NoError(t, err)
	defer conn.Close()
	err = control.Reach(ctx, conn)
	var ue *control.UnreachableError
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, err.Error(), "cannot reach "+addr+": ")
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")

	conn, err = control.Dial(control.Options{Address: addr, RootCertificates: filepath.Join(dir, "mine.crt"), Token: "nk_secret"})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, control.Reach(ctx, conn))
	_, err = flwrpb.NewControlClient(conn).ListNodes(ctx, &flwrpb.ListNodesRequest{})
	require.NoError(t, err)
	assert.Equal(t, []string{"Bearer nk_secret"}, (<-s.seen).Get("authorization"))
}

// A call the server answers with an error status reads as its method,
// message and code, not as gRPC's "rpc error: code = … desc = …"; the
// status stays readable as it came.
func TestCallErrorsNameTheMethod(t *testing.T) {
	t.Parallel()
	ctx, conn := dialServed(t)
	c := flwrpb.NewControlClient(conn)
	_, err := c.ListNodes(ctx, &flwrpb.ListNodesRequest{})
	require.NoError(t, err)

	_, err = c.RegisterNode(ctx, &flwrpb.RegisterNodeRequest{PublicKey: []byte("k")})
	var ce *control.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "RegisterNode", ce.Method)
	assert.Equal(t, "RegisterNode: method RegisterNode not implemented (Unimplemented)", err.Error())
	assert.Equal(t, codes.Unimplemented, status.Code(fmt.Errorf("registering: %w", err)), "seen through a wrapping")
	st, ok := status.FromError(err)
	require.True(t, ok)
	assert.Equal(t, "method RegisterNode not implemented", st.Message(), "the server's message as it came")

	empty := &control.CallError{Method: "StopRun", Status: status.New(codes.PermissionDenied, "")}
	assert.Equal(t, "StopRun: PermissionDenied", empty.Error())
}
