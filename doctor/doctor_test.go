package doctor_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/doctor"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/internal/tlstest"
	"github.com/nodekeys/nodekeys/keyset"
)

type fed struct {
	dir   string
	certs *certs.Result
	keys  *keyset.Result
}

func newFed(t *testing.T, opts ...func(*certs.Options)) fed {
	t.Helper()
	dir := t.TempDir()
	co := certs.Options{Dir: filepath.Join(dir, "certificates")}
	for _, o := range opts {
		o(&co)
	}
	c, err := certs.Write(co)
	require.NoError(t, err)
	k, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Prefix: "supernode_credentials", Count: 2})
	require.NoError(t, err)
	return fed{dir, c, k}
}

func (f fed) check(names ...string) []doctor.Finding {
	return doctor.Files([]string{filepath.Join(f.dir, "certificates"), filepath.Join(f.dir, "keys")}, names, "", time.Now()).Findings
}

func checks(fs []doctor.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Check)
	}
	return out
}

func TestCleanFederationHasNoFindings(t *testing.T) {
	f := newFed(t)
	assert.Empty(t, f.check("localhost", "127.0.0.1"))
}

// One test per planted problem: each is found, with a fix.
func TestPlantedProblems(t *testing.T) {
	key1 := func(f fed) string { return f.keys.Pairs[0].Private }
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, f fed)
		names []string
		want  string
	}{
		{"PKCS#8 key", func(t *testing.T, f fed) {
			peer.Run(t, nil, "ssh-keygen", "-p", "-N", "", "-m", "PKCS8", "-f", key1(f))
		}, nil, "key-format"},
		{"SEC 1 key", func(t *testing.T, f fed) {
			peer.Run(t, nil, "ssh-keygen", "-p", "-N", "", "-m", "PEM", "-f", key1(f))
		}, nil, "key-format"},
		{"encrypted key", func(t *testing.T, f fed) {
			peer.Run(t, nil, "ssh-keygen", "-p", "-N", "secret passphrase", "-f", key1(f))
		}, nil, "key-format"},
		{"RSA key", func(t *testing.T, f fed) {
			os.Remove(key1(f))
			os.Remove(key1(f) + ".pub")
			peer.Run(t, nil, "ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", key1(f))
		}, nil, "key-format"},
		{"Ed25519 key", func(t *testing.T, f fed) {
			os.Remove(key1(f))
			os.Remove(key1(f) + ".pub")
			peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key1(f))
		}, nil, "key-format"},
		{"P-256 key", func(t *testing.T, f fed) {
			os.Remove(key1(f))
			os.Remove(key1(f) + ".pub")
			peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", key1(f))
		}, nil, "key-type"},
		{".pub of another key", func(t *testing.T, f fed) {
			b, _ := os.ReadFile(f.keys.Pairs[1].Public)
			require.NoError(t, os.WriteFile(f.keys.Pairs[0].Public, b, 0o644))
		}, nil, "pub-mismatch"},
		{"name SuperNodes dial", func(t *testing.T, f fed) {}, []string{"superlink.example"}, "certificate-name"},
		{"another CA", func(t *testing.T, f fed) {
			other := t.TempDir()
			o, err := certs.Write(certs.Options{Dir: other})
			require.NoError(t, err)
			b, _ := os.ReadFile(o.ServerCert)
			k, _ := os.ReadFile(o.ServerKey)
			require.NoError(t, os.WriteFile(f.certs.ServerCert, b, 0o644))
			require.NoError(t, os.WriteFile(f.certs.ServerKey, k, 0o600))
		}, nil, "certificate-chain"},
		{"server key of another certificate", func(t *testing.T, f fed) {
			other := t.TempDir()
			o, err := certs.Write(certs.Options{Dir: other})
			require.NoError(t, err)
			k, _ := os.ReadFile(o.ServerKey)
			require.NoError(t, os.WriteFile(f.certs.ServerKey, k, 0o600))
		}, nil, "certificate-key"},
		{"expiring certificate", func(t *testing.T, f fed) {
			_, err := certs.Write(certs.Options{Dir: filepath.Dir(f.certs.ServerCert), Days: 10, Force: true})
			require.NoError(t, err)
		}, nil, "expiry"},
		{"readable private key", func(t *testing.T, f fed) {
			require.NoError(t, os.Chmod(key1(f), 0o644))
		}, nil, "file-mode"},
		{"allowlist with a trailing comma", func(t *testing.T, f fed) {
			b, _ := os.ReadFile(f.keys.CSV)
			require.NoError(t, os.WriteFile(f.keys.CSV, append(b[:len(b)-1], ",\n"...), 0o644))
		}, nil, "allowlist"},
		{"PKCS#8 key under another name", func(t *testing.T, f fed) {
			peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-m", "PKCS8", "-f", filepath.Join(f.dir, "keys", "node7"))
		}, nil, "key-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFed(t)
			tc.plant(t, f)
			got := f.check(tc.names...)
			require.Contains(t, checks(got), tc.want, "%+v", got)
			for _, g := range got {
				assert.NotEmpty(t, g.Fix)
				assert.NotEmpty(t, g.File)
			}
		})
	}
}

// A real TLS handshake against a server whose certificate lacks the name
// dialled, one of another CA, and one that is not TLS.
func TestTLSHandshake(t *testing.T) {
	f := newFed(t, func(o *certs.Options) { o.Hosts = []string{"superlink.example"} })
	addr := tlstest.ServeHandshakes(t, f.certs.ServerCert, f.certs.ServerKey)
	ctx := context.Background()
	got := doctor.TLS(ctx, addr, f.certs.CACert)
	require.Equal(t, []string{"tls-name"}, checks(got), "%+v", got)
	assert.Contains(t, got[0].Fix, "--add-san 127.0.0.1")

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer plain.Close()
	go func() {
		c, err := plain.Accept()
		if err == nil {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	got = doctor.TLS(ctx, plain.Addr().String(), f.certs.CACert)
	assert.Equal(t, []string{"tls-protocol"}, checks(got), "%+v", got)

	good := newFed(t)
	ok := tlstest.ServeHandshakes(t, good.certs.ServerCert, good.certs.ServerKey)
	assert.Empty(t, doctor.TLS(ctx, ok, good.certs.CACert))
	// The right name, another CA than the one SuperNodes were given.
	got = doctor.TLS(ctx, ok, f.certs.CACert)
	assert.Equal(t, []string{"tls-authority"}, checks(got), "%+v", got)
}

// The clock is measured against a server that says its time: a gateway's
// HTTP Date, a SuperLink's ListNodes "now".
func TestClockSkew(t *testing.T) {
	ahead := 0 * time.Second
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Date", time.Now().Add(-ahead).UTC().Format(http.TimeFormat))
	}))
	defer srv.Close()
	ctx := context.Background()
	off, err := doctor.SkewHTTP(ctx, srv.URL)
	require.NoError(t, err)
	assert.Less(t, off.Abs(), 1500*time.Millisecond)
	assert.Empty(t, doctor.Skew(off, srv.URL))
	ahead = 10 * time.Second // this machine 10 s ahead of the server
	off, err = doctor.SkewHTTP(ctx, srv.URL)
	require.NoError(t, err)
	assert.InDelta(t, 10, off.Seconds(), 1.5)
	got := doctor.Skew(off, srv.URL)
	require.Len(t, got, 1)
	assert.Equal(t, doctor.Error, got[0].Severity)
	assert.Equal(t, doctor.Warning, doctor.Skew(3*time.Second, "x")[0].Severity)
	assert.Equal(t, doctor.Error, doctor.Skew(-301*time.Second, "x")[0].Severity)

	up, err := standin.Listen()
	require.NoError(t, err)
	defer up.Stop()
	conn, err := grpc.NewClient(up.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	off, err = doctor.SkewControl(ctx, conn)
	require.NoError(t, err)
	assert.Less(t, off.Abs(), 200*time.Millisecond)
}

// Files says what it checked, and which CA it judged the chains by.
func TestFilesSaysWhatItChecked(t *testing.T) {
	f := newFed(t)
	rep := doctor.Files([]string{filepath.Join(f.dir, "certificates"), filepath.Join(f.dir, "keys")}, nil, "", time.Now())
	assert.Empty(t, rep.Findings)
	assert.Equal(t, doctor.Checked{SuperNodeKeys: 2, TLSKeys: 2, PublicKeys: 2, Allowlists: 1, Certificates: 2}, rep.Checked)
	assert.Equal(t, "2 SuperNode keys, 2 public keys, 1 allowlist, 2 certificates, 2 TLS keys", rep.Checked.String())
	assert.Equal(t, f.certs.CACert, rep.CA)

	empty := t.TempDir()
	rep = doctor.Files([]string{empty}, nil, "", time.Now())
	assert.Equal(t, []string{"nothing-checked"}, checks(rep.Findings))
	assert.Equal(t, "no files", rep.Checked.String())
}

// An expired server certificate is one finding, not two: its chain is
// judged within its validity.
func TestExpiredCertificateIsSaidOnce(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700)) // as certgen makes it: no file-mode finding
	_, err := certs.Write(certs.Options{Dir: dir, Days: 10, Now: time.Now().AddDate(0, 0, -100)})
	require.NoError(t, err)
	rep := doctor.Files([]string{dir}, nil, "", time.Now())
	assert.Equal(t, []string{"expiry"}, checks(rep.Findings), "%+v", rep.Findings)
	// Another CA still breaks the chain.
	other := t.TempDir()
	o, err := certs.Write(certs.Options{Dir: other})
	require.NoError(t, err)
	rep = doctor.Files([]string{filepath.Join(dir, "server.pem")}, nil, o.CACert, time.Now())
	assert.ElementsMatch(t, []string{"expiry", "certificate-chain"}, checks(rep.Findings), "%+v", rep.Findings)
}

// Inspect reads files by content: a PEM private key named like anything.
func TestInspectByContent(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "node")
	peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-m", "PKCS8", "-f", key)
	i := doctor.Inspect(key, time.Now())
	assert.Equal(t, "PEM private key", i.Kind)
	assert.Equal(t, "ECDSA P-384", i.Algorithm)
	assert.Equal(t, []string{key + ".pub"}, i.Matches)
	assert.False(t, i.Failed())
}

// A damaged OpenSSH key is named for what is wrong with it, in keys' own
// words without the package's prefix (the finding names the file).
func TestDamagedKeyReason(t *testing.T) {
	f := newFed(t)
	path := f.keys.Pairs[0].Private
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	lines[1] = "AAAA" + lines[1][4:len(lines[1])-8] // valid base64, a broken key
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	var problem string
	for _, g := range f.check() {
		if g.Check == "key-format" && g.File == path {
			problem = g.Problem
		}
	}
	require.NotEmpty(t, problem, "the damaged key is reported")
	assert.True(t, strings.HasPrefix(problem, "not a key a SuperNode can load: "), problem)
	assert.NotContains(t, problem, "keys:")
}
