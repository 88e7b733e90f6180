package main

import (
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

// doctor never gives an all-clear for a run that checked nothing: a file
// named on the command line is read by its content whatever its name, a
// folder with nothing to check or a path it cannot read is an error with
// the fix, and every run says what it checked.
func TestDoctorNeverClearsWhatItDidNotCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	// A key Flower's SuperNode cannot load, under a name that is not a
	// SuperNode key's.
	peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-m", "PKCS8", "-f", filepath.Join(dir, "pkcs8_node"))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "etc"), 0o755))
	for name, body := range map[string]string{"hosts": "127.0.0.1 localhost\n", "fstab": "# no file systems\n", "ld.so.cache": "\x00\x01\x02"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", name), []byte(body), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("the SuperLink is at superlink.example\n"), 0o644))

	for _, tc := range []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"pkcs8_node"}, `error   pkcs8_node: a PEM "PRIVATE KEY" key: a SuperNode loads OpenSSH private keys only`},
		{[]string{"empty"}, "error   empty: no key, certificate or allowlist here\n        fix: name the folders or files that hold them"},
		{[]string{"etc"}, "error   etc: no key, certificate or allowlist here (3 other files)"},
		{[]string{"notes.txt"}, "error   notes.txt: not a key, a certificate or an allowlist"},
		{[]string{"missing"}, "error   missing: no such file or folder\n        fix: check the path"},
	} {
		r := nk(t, dir, "", append([]string{"doctor"}, tc.args...)...)
		assert.Equal(t, 1, r.code, "%v: %s", tc.args, r.stdout)
		assert.Contains(t, r.stdout, tc.want, tc.args)
		assert.NotContains(t, r.stdout, "nothing wrong found", tc.args)
	}
	r := nk(t, dir, "", "doctor", "pkcs8_node")
	assert.Contains(t, r.stdout, "\nchecked: 1 SuperNode key\n")

	r = nk(t, dir, "", "doctor")
	require.Equal(t, 0, r.code, r.stdout)
	assert.Equal(t, "checked: 2 SuperNode keys, 2 public keys, 1 allowlist, 2 certificates, 2 TLS keys\nnothing wrong found\n", r.stdout)
	r = nk(t, dir, "", "doctor", "--json", "keys")
	require.Equal(t, 0, r.code, r.stdout)
	assert.Equal(t, "[]\n", r.stdout)
	assert.Equal(t, "nodekeys: checked: 2 SuperNode keys, 2 public keys, 1 allowlist\n", r.stderr)
}

// doctor --superlink with a folder named checks the handshake against that
// folder's CA, and says which CA it trusted.
func TestDoctorSuperlinkUsesTheNamedFoldersCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, dir, "", "certgen", "--out", "other/certificates").code)
	// The server presents ./certificates' certificate, which other's CA
	// did not issue.
	addr := tlstest.ServeHandshakes(t, filepath.Join(dir, "certificates/server.pem"), filepath.Join(dir, "certificates/server.key"))
	r := nk(t, dir, "", "doctor", "--superlink", addr, "other/certificates")
	assert.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stdout, "error   "+addr+": the server's certificate was not issued by the CA given")
	assert.Contains(t, r.stdout, "the TLS handshake with "+addr+" trusting other/certificates/ca.crt\n")
	r = nk(t, dir, "", "doctor", "--superlink", addr, "certificates")
	assert.Equal(t, 0, r.code, r.stdout)
	assert.Contains(t, r.stdout, "trusting certificates/ca.crt\nnothing wrong found\n")
}

// An expired certificate is an error in inspect and in doctor, said once,
// not again as a chain that fails with the wrong fix; a certificate not
// yet valid is said to be so.
func TestCertificateOutOfItsValidity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	_, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "old"), Now: now.AddDate(0, 0, -400), Days: 10})
	require.NoError(t, err)
	_, err = certs.Write(certs.Options{Dir: filepath.Join(dir, "future"), Now: now.Add(48 * time.Hour)})
	require.NoError(t, err)

	r := nk(t, dir, "", "inspect", "old/server.pem")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "old/server.pem: certificate, ECDSA P-384\n")
	assert.Regexp(t, `^nodekeys: error: old/server\.pem: the certificate has EXPIRED \(\d{4}-\d\d-\d\d\): renew it: nodekeys certgen --force \(keeps the CA\)\n$`, r.stderr)
	r = nk(t, dir, "", "inspect", "--ca", "old/ca.crt", "old/server.pem")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr, "does not chain")
	assert.Contains(t, r.stdout, "chains to:   old/ca.crt")

	r = nk(t, dir, "", "doctor", "old")
	assert.Equal(t, 1, r.code)
	assert.Regexp(t, `^error   old/server\.pem: the certificate expired on \d{4}-\d\d-\d\d\n        fix: renew it: nodekeys certgen --force \(keeps the CA\)\nchecked: 2 certificates, 2 TLS keys\n$`, r.stdout)

	r = nk(t, dir, "", "inspect", "future/server.pem")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "nodekeys: error: future/server.pem: the certificate is not valid until ")
	r = nk(t, dir, "", "doctor", "future")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "error   future/ca.crt: the CA certificate is not valid until ")
	assert.Contains(t, r.stdout, "error   future/server.pem: the certificate is not valid until ")
	assert.NotContains(t, r.stdout, "chain")
	assert.Equal(t, 2, strings.Count(r.stdout, "error "), r.stdout)
}

// A key folder others can list is flagged, once, beside its keys, with
// the mode nodekeys gives it; a folder others can write to is an error,
// once however many keys it holds.
func TestDoctorKeyFolderMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	require.NoError(t, os.Chmod(filepath.Join(dir, "keys"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(dir, "keys/supernode_credentials_1"), 0o644))
	require.NoError(t, os.Chmod(filepath.Join(dir, "certificates"), 0o777))
	r := nk(t, dir, "", "doctor", "keys", "certificates")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Equal(t, "error   certificates: others can write to the folder of a private key (mode 0777): they can replace the key\n"+
		"        fix: chmod 700 certificates\n"+
		"warning keys: others can list the folder of a private key (mode 0755); nodekeys makes it 0700\n"+
		"        fix: chmod 700 keys\n"+
		"warning keys/supernode_credentials_1: others can read this private key (mode 0644)\n"+
		"        fix: chmod 600 keys/supernode_credentials_1\n"+
		"checked: 2 SuperNode keys, 2 public keys, 1 allowlist, 2 certificates, 2 TLS keys\n", r.stdout)
}
