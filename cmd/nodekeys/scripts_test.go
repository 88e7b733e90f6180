package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// flowerConf is the certificate.conf of Flower's authentication example,
// with one more DNS name.
const flowerConf = `[req]
default_bits = 4096
prompt = no
default_md = sha256
req_extensions = req_ext
distinguished_name = dn

[dn]
C = DE
ST = HH
O = Flower
CN = localhost

[req_ext]
subjectAltName = @alt_names

[alt_names]
DNS.1 = localhost
DNS.2 = superlink.example # a comment
IP.1 = ::1
IP.2 = 127.0.0.1
`

// script runs a drop-in script copied into an example folder.
func script(t *testing.T, dir string, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, name), args...)
	cmd.Dir = dir // as an operator runs ./generate_cert.sh in the example
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout: string(out), code: code}
}

// TestDropInScripts puts the scripts in a Flower example folder, as copies
// with nodekeys installed, and checks they write what Flower's do.
func TestDropInScripts(t *testing.T) {
	t.Parallel()
	example := t.TempDir()
	for _, name := range []string{"generate_auth_keys.sh", "generate_cert.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "scripts", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(example, name), b, 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(example, "certificate.conf"), []byte(flowerConf), 0o644))
	env := []string{"NODEKEYS=" + bin}

	r := script(t, example, env, "generate_auth_keys.sh", "3")
	require.Equal(t, 0, r.code, r.stdout)
	for i := 1; i <= 3; i++ {
		assert.FileExists(t, filepath.Join(example, "keys", "client_credentials_"+string(rune('0'+i))))
	}
	l, err := csvlist.ReadFile(filepath.Join(example, "keys/client_public_keys.csv"))
	require.NoError(t, err)
	assert.Len(t, l.Entries, 3)

	r = script(t, example, env, "generate_cert.sh")
	require.Equal(t, 0, r.code, r.stdout)
	cert, err := certs.ReadCertificate(filepath.Join(example, "certificates/server.pem"))
	require.NoError(t, err)
	assert.Equal(t, []string{"localhost", "superlink.example"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 2)
	peer.Run(t, nil, "openssl", "verify", "-CAfile", filepath.Join(example, "certificates/ca.crt"), filepath.Join(example, "certificates/server.pem"))

	// A second run deletes nothing; NODEKEYS_FORCE=1 renews, keeping the CA.
	ca, _ := os.ReadFile(filepath.Join(example, "certificates/ca.crt"))
	r = script(t, example, env, "generate_cert.sh")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "refusing to overwrite certificates/server.pem")
	r = script(t, example, append(env, "NODEKEYS_FORCE=1"), "generate_cert.sh")
	require.Equal(t, 0, r.code, r.stdout)
	after, _ := os.ReadFile(filepath.Join(example, "certificates/ca.crt"))
	assert.Equal(t, ca, after)
	r = script(t, example, env, "generate_auth_keys.sh")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "refusing to overwrite keys/client_credentials_1")

	// An explicit config, and a missing one.
	conf := filepath.Join(t.TempDir(), "other.conf")
	require.NoError(t, os.WriteFile(conf, []byte("[alt_names]\nDNS.1 = flower.internal\n"), 0o644))
	r = script(t, example, append(env, "NODEKEYS_FORCE=1"), "generate_cert.sh", conf)
	require.Equal(t, 0, r.code, r.stdout)
	cert, err = certs.ReadCertificate(filepath.Join(example, "certificates/server.pem"))
	require.NoError(t, err)
	assert.Equal(t, []string{"flower.internal"}, cert.DNSNames)
	r = script(t, example, env, "generate_cert.sh", "/nonexistent.conf")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "no such file")

	// Run from another folder: still written beside the script, and the
	// paths printed are right from where it was run.
	elsewhere := t.TempDir()
	cmd := exec.Command(filepath.Join(example, "generate_auth_keys.sh"), "1")
	cmd.Dir = elsewhere
	cmd.Env = append(os.Environ(), append(env, "NODEKEYS_FLAGS=--append")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	rel, _ := filepath.Rel(elsewhere, filepath.Join(example, "keys", "client_credentials_4"))
	assert.Contains(t, string(out), rel)
	assert.FileExists(t, filepath.Join(example, "keys", "client_credentials_4"))
	ents, _ := os.ReadDir(elsewhere)
	assert.Empty(t, ents, "nothing written where it was run")

	// An inline subjectAltName, as many openssl configs have it.
	require.NoError(t, os.WriteFile(conf, []byte("[req_ext]\nsubjectAltName = DNS:inline.example, IP:192.0.2.9, email:x@y\n"), 0o644))
	r = script(t, example, append(env, "NODEKEYS_FORCE=1"), "generate_cert.sh", conf)
	require.Equal(t, 0, r.code, r.stdout)
	cert, err = certs.ReadCertificate(filepath.Join(example, "certificates/server.pem"))
	require.NoError(t, err)
	assert.Equal(t, []string{"inline.example"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 1)
	assert.Equal(t, "192.0.2.9", cert.IPAddresses[0].String())

	// --help says what the script does.
	for _, name := range []string{"generate_auth_keys.sh", "generate_cert.sh"} {
		r = script(t, example, env, name, "--help")
		assert.Equal(t, 0, r.code)
		assert.True(t, strings.HasPrefix(r.stdout, "Drop-in for Flower's"), r.stdout)
		assert.Contains(t, r.stdout, "Usage: "+name)
	}
	r = script(t, example, env, "generate_auth_keys.sh", "many")
	assert.Equal(t, 2, r.code)

	// Without nodekeys anywhere, the copied script says how to get it.
	r = script(t, example, []string{"PATH=/usr/bin:/bin", "NODEKEYS="}, "generate_auth_keys.sh")
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.HasPrefix(r.stdout, "nodekeys not found"), r.stdout)
}

// From the checkout, the scripts build nodekeys themselves, once.
func TestDropInScriptsBuild(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("builds and links nodekeys: run with NODEKEYS_LONG=1, as CI does")
	}
	cache := t.TempDir()
	src, err := filepath.Abs(filepath.Join("..", "..", "scripts", "generate_auth_keys.sh"))
	require.NoError(t, err)
	example := t.TempDir()
	require.NoError(t, os.Symlink(src, filepath.Join(example, "generate_auth_keys.sh")))
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	require.NoError(t, err)
	// A fresh cache for nodekeys, the usual one for Go's builds.
	env := []string{"XDG_CACHE_HOME=" + cache, "GOCACHE=" + strings.TrimSpace(string(gocache))}
	// Hide any installed nodekeys.
	env = append(env, "PATH="+filepath.Dir(goTool(t))+":/usr/bin:/bin")
	r := script(t, example, env, "generate_auth_keys.sh", "2")
	require.Equal(t, 0, r.code, r.stdout)
	assert.FileExists(t, filepath.Join(cache, "nodekeys", "nodekeys"))
	assert.FileExists(t, filepath.Join(example, "keys/client_credentials_2"))
}

func goTool(t *testing.T) string {
	p, err := exec.LookPath("go")
	require.NoError(t, err)
	return p
}
