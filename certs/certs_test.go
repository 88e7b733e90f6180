package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/tlstest"
)

func write(t *testing.T, opts certs.Options) *certs.Result {
	t.Helper()
	res, err := certs.Write(opts)
	require.NoError(t, err)
	return res
}

func TestOpenSSLVerifiesAndShowsExtensions(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSAP384, certs.ECDSAP256, certs.RSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			if kt == certs.RSA4096 && !peer.Long() {
				t.Skip("RSA-4096 key generation takes seconds: run with NODEKEYS_LONG=1, as CI does")
			}
			dir := t.TempDir()
			res := write(t, certs.Options{Dir: dir, KeyType: kt})
			out := peer.Run(t, nil, "openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", res.CACert, res.ServerCert)
			assert.Equal(t, res.ServerCert+": OK\n", string(out))

			ca := string(peer.Run(t, nil, "openssl", "x509", "-in", res.CACert, "-noout", "-text"))
			assert.Regexp(t, `X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0`, ca)
			assert.Regexp(t, `X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign`, ca)
			assert.Contains(t, ca, "X509v3 Subject Key Identifier")

			srv := string(peer.Run(t, nil, "openssl", "x509", "-in", res.ServerCert, "-noout", "-text"))
			if kt == certs.RSA4096 {
				assert.Regexp(t, `X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\n`, srv)
			} else {
				assert.Regexp(t, `X509v3 Key Usage: critical\s+Digital Signature\n`, srv)
			}
			assert.Regexp(t, `X509v3 Extended Key Usage: \s+TLS Web Server Authentication\n`, srv)
			assert.Contains(t, srv, "X509v3 Subject Key Identifier")
			assert.Contains(t, srv, "X509v3 Authority Key Identifier")
			assert.Regexp(t, `DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`, srv)
			assert.NotContains(t, srv, "CA:TRUE")

			cert, err := certs.ReadCertificate(res.ServerCert)
			require.NoError(t, err)
			assert.Equal(t, 16, len(cert.SerialNumber.Bytes())+boolInt(cert.SerialNumber.BitLen() <= 120), "a 128-bit serial")
			assert.LessOrEqual(t, cert.NotAfter.Sub(cert.NotBefore), (certs.MaxServerDays*24+1)*time.Hour)

			for _, f := range []string{res.CAKey, res.ServerKey} {
				fi, err := os.Stat(f)
				require.NoError(t, err)
				assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), f)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// serveTLS runs a TLS 1.3 server with the certificate on a loopback port
// and returns its address; every connection gets "hello\n".
func serveTLS(t *testing.T, network, addr string, res *certs.Result) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(res.ServerCert, res.ServerKey)
	require.NoError(t, err)
	addr, err = tlstest.Serve(t, network, addr, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13},
		func(c *tls.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if err := c.Handshake(); err == nil {
				c.Write([]byte("hello\n"))
			}
		})
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	return addr
}

func goClient(caFile, addr, name string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13})
	if err != nil {
		return err
	}
	defer c.Close()
	if c.ConnectionState().Version != tls.VersionTLS13 {
		return errors.New("not TLS 1.3")
	}
	return nil
}

// pyClient connects with Python's ssl module trusting only the CA, checking
// the host name (or IP) against the SANs, and prints the TLS version.
const pyClient = `
import socket, ssl, sys
ca, host, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
with socket.create_connection((host, port), timeout=5) as s:
    with ctx.wrap_socket(s, server_hostname=name) as t:
        print(t.version(), t.recv(6).decode().strip())
`

func TestTLSHandshakes(t *testing.T) {
	dir := t.TempDir()
	res := write(t, certs.Options{Dir: dir})
	v4 := serveTLS(t, "tcp4", "127.0.0.1:0", res)
	_, port, _ := net.SplitHostPort(v4)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		addr := v4
		host := "127.0.0.1"
		if name == "::1" {
			addr = serveTLS(t, "tcp6", "[::1]:0", res)
			host = "::1"
			_, port, _ = net.SplitHostPort(addr)
		}
		require.NoError(t, goClient(res.CACert, addr, name), name)
		out := peer.Python(t, nil, pyClient, res.CACert, host, port, name)
		assert.Equal(t, "TLSv1.3 hello\n", string(out), name)
		_, port, _ = net.SplitHostPort(v4)
	}
	// A name that is not a SAN fails, in Go and in Python.
	err := goClient(res.CACert, v4, "flower.example")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate is valid for localhost")
	out, err := peer.TryPython(t, nil, pyClient, res.CACert, "127.0.0.1", port, "flower.example")
	require.Error(t, err)
	assert.Contains(t, string(out), "CERTIFICATE_VERIFY_FAILED")
	// Another CA is not trusted.
	other := write(t, certs.Options{Dir: t.TempDir()})
	require.Error(t, goClient(other.CACert, v4, "localhost"))
}

func TestRenewKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	first := write(t, certs.Options{Dir: dir})
	caBefore, err := os.ReadFile(first.CACert)
	require.NoError(t, err)
	keyBefore, err := os.ReadFile(first.CAKey)
	require.NoError(t, err)

	_, err = certs.Write(certs.Options{Dir: dir})
	var ee *certs.ExistError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, first.ServerCert, ee.Path)
	assert.Equal(t, certs.ServerExists, ee.Why)
	_, err = certs.Write(certs.Options{Dir: dir, CACert: first.CACert})
	assert.ErrorIs(t, err, certs.ErrCAPair)
	_, err = certs.Write(certs.Options{Dir: dir, CACert: first.CACert, CAKey: first.CAKey, NewCA: true})
	assert.ErrorIs(t, err, certs.ErrNewCAWithCA)

	renewed := write(t, certs.Options{Dir: dir, Force: true, Hosts: []string{"superlink.example", "10.0.0.5"}})
	assert.False(t, renewed.CACreated)
	assert.NotEqual(t, first.ServerFingerprint, renewed.ServerFingerprint)
	caAfter, _ := os.ReadFile(first.CACert)
	keyAfter, _ := os.ReadFile(first.CAKey)
	assert.Equal(t, caBefore, caAfter, "the CA is untouched")
	assert.Equal(t, keyBefore, keyAfter)
	out := peer.Run(t, nil, "openssl", "verify", "-CAfile", first.CACert, renewed.ServerCert)
	assert.Equal(t, renewed.ServerCert+": OK\n", string(out))

	// A new CA must be asked for, and forced over an existing one.
	_, err = certs.Write(certs.Options{Dir: dir, NewCA: true, Force: false})
	require.ErrorIs(t, err, fs.ErrExist)
	fresh := write(t, certs.Options{Dir: dir, NewCA: true, Force: true})
	assert.True(t, fresh.CACreated)
	assert.NotEqual(t, renewed.CAFingerprint, fresh.CAFingerprint)
}

// Renewal (Force, no Hosts) keeps the names of the certificate it
// replaces, says which it kept, and adds AddHosts to them; Hosts replaces
// them. A name already there is not "given twice".
func TestRenewKeepsNames(t *testing.T) {
	dir := t.TempDir()
	first := write(t, certs.Options{Dir: dir, AddHosts: []string{"superlink.example", "localhost"}})
	assert.Equal(t, []string{"localhost", "127.0.0.1", "::1", "superlink.example"}, first.Hosts)
	assert.Empty(t, first.KeptHosts)

	renewed := write(t, certs.Options{Dir: dir, Force: true})
	want := []string{"localhost", "superlink.example", "127.0.0.1", "::1"}
	assert.Equal(t, want, renewed.Hosts)
	assert.Equal(t, want, renewed.KeptHosts)
	assert.Equal(t, renewed.ServerCert, renewed.KeptFrom)
	cert, err := certs.ReadCertificate(renewed.ServerCert)
	require.NoError(t, err)
	require.NoError(t, cert.VerifyHostname("superlink.example"), "the renewed certificate still serves the name")

	added := write(t, certs.Options{Dir: dir, Force: true, AddHosts: []string{"superlink", "superlink.example"}})
	assert.Equal(t, append(append([]string{}, want...), "superlink"), added.Hosts)

	replaced := write(t, certs.Options{Dir: dir, Force: true, Hosts: []string{"other.example"}})
	assert.Equal(t, []string{"other.example"}, replaced.Hosts)
	assert.Empty(t, replaced.KeptHosts)

	_, err = certs.Write(certs.Options{Dir: t.TempDir(), Hosts: []string{"a.example", "a.example"}})
	assert.ErrorContains(t, err, "given twice")
}

func TestExternalCA(t *testing.T) {
	caDir := t.TempDir()
	ca := write(t, certs.Options{Dir: caDir})
	dir := filepath.Join(t.TempDir(), "out")
	res := write(t, certs.Options{Dir: dir, CACert: ca.CACert, CAKey: ca.CAKey})
	assert.False(t, res.CACreated)
	assert.Equal(t, ca.CAFingerprint, res.CAFingerprint)
	_, err := os.Stat(filepath.Join(dir, "ca.key"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "the CA key is never copied")
	peer.Run(t, nil, "openssl", "verify", "-CAfile", filepath.Join(dir, "ca.crt"), res.ServerCert)
}

// A CA made by Flower's generate_cert.sh (openssl, RSA, no key usage) can
// issue the server certificate.
func TestFlowerScriptCA(t *testing.T) {
	dir := t.TempDir()
	key, crt := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	peer.Run(t, nil, "openssl", "genrsa", "-out", key, "2048")
	peer.Run(t, nil, "openssl", "req", "-new", "-x509", "-key", key, "-sha256", "-subj", "/C=DE/ST=HH/O=CA, Inc.", "-days", "365", "-out", crt)
	_, err := certs.Write(certs.Options{Dir: dir})
	assert.ErrorContains(t, err, "before the 365 days asked for", "a leaf never outlives its CA")
	res := write(t, certs.Options{Dir: dir, Days: 300})
	assert.False(t, res.CACreated)
	peer.Run(t, nil, "openssl", "verify", "-CAfile", crt, res.ServerCert)
}

func TestBadInput(t *testing.T) {
	good := write(t, certs.Options{Dir: t.TempDir()})
	other := write(t, certs.Options{Dir: t.TempDir()})
	dir := t.TempDir()
	encKey := filepath.Join(dir, "enc.key")
	peer.Run(t, nil, "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-aes256", "-pass", "pass:secret", "-out", encKey)
	garbage := filepath.Join(dir, "garbage.key")
	require.NoError(t, os.WriteFile(garbage, []byte("garbage"), 0o600))
	onlyCert := t.TempDir()
	data, _ := os.ReadFile(good.CACert)
	require.NoError(t, os.WriteFile(filepath.Join(onlyCert, "ca.crt"), data, 0o644))

	for _, tc := range []struct {
		name string
		opts certs.Options
		want string
	}{
		{"mismatched CA key", certs.Options{CACert: good.CACert, CAKey: other.CAKey}, "the key does not match the certificate"},
		{"encrypted CA key", certs.Options{CACert: good.CACert, CAKey: encKey}, "the private key is encrypted"},
		{"garbage CA key", certs.Options{CACert: good.CACert, CAKey: garbage}, "no PEM private key found"},
		{"missing CA key", certs.Options{CACert: good.CACert, CAKey: filepath.Join(dir, "nope")}, "no such file"},
		{"server cert as CA", certs.Options{CACert: good.ServerCert, CAKey: good.ServerKey}, "not a CA"},
		{"half a CA", certs.Options{CACert: good.CACert}, "CACert and CAKey go together"},
		{"only ca.crt in the folder", certs.Options{Dir: onlyCert}, "ca.crt is there but"},
		{"invalid SAN", certs.Options{Hosts: []string{"bad_name!"}}, `invalid SAN "bad_name!"`},
		{"SAN with a space", certs.Options{Hosts: []string{"a b"}}, "invalid SAN"},
		{"days too many", certs.Options{Days: 398}, "Days must be 1 to 397"},
		{"days negative", certs.Options{Days: -1}, "Days must be 1 to 397"},
		{"CA days", certs.Options{CADays: 100000}, "CA validity must be"},
		{"key type", certs.Options{KeyType: "dsa"}, "unknown key type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Dir == "" {
				tc.opts.Dir = filepath.Join(t.TempDir(), "out")
			}
			_, err := certs.Write(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
			_, statErr := os.Stat(filepath.Join(tc.opts.Dir, "server.pem"))
			assert.ErrorIs(t, statErr, fs.ErrNotExist, "nothing written")
		})
	}
}

func TestParseSAN(t *testing.T) {
	for _, ok := range []string{"localhost", "a.b.c", "*.example.com", "x-1.example", "10.0.0.1", "::1", "fe80::1", "Example.COM"} {
		_, err := certs.ParseSAN(ok)
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "-a.com", "a-.com", "a..b", "*", "*.com", "a.*.com", "a_b", "1.2.3.4:80", "ex ample", strings.Repeat("a", 64) + ".com", "\x00"} {
		_, err := certs.ParseSAN(bad)
		assert.Error(t, err, fmt.Sprintf("%q", bad))
	}
}
