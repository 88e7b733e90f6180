//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/composetest"
	"github.com/nodekeys/nodekeys/internal/peer"
)

const pyLoadOpenSSH = `
import sys
from cryptography.hazmat.primitives import serialization as s
for p in sys.argv[1:]:
    k = s.load_ssh_private_key(open(p, "rb").read(), password=None)
    print(k.curve.name)
`

// init writes what generate_creds.py writes, in forms ssh-keygen, openssl
// and Python's cryptography load; a second run replaces nothing.
func TestInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "init", "--supernodes", "3", "--add-san", "superlink.example")
	require.Equal(t, 0, r.code, r.stderr)
	for _, f := range []string{"certificates/ca.crt", "certificates/ca.key", "certificates/server.pem", "certificates/server.key",
		"keys/supernode_credentials_1", "keys/supernode_credentials_3.pub", "keys/client_public_keys.csv"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	fi, err := os.Stat(filepath.Join(dir, "keys/supernode_credentials_2"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	peer.Run(t, nil, "openssl", "verify", "-CAfile", filepath.Join(dir, "certificates/ca.crt"), filepath.Join(dir, "certificates/server.pem"))
	pub := peer.Run(t, nil, "ssh-keygen", "-y", "-f", filepath.Join(dir, "keys/supernode_credentials_1"))
	want, _ := os.ReadFile(filepath.Join(dir, "keys/supernode_credentials_1.pub"))
	assert.Equal(t, string(want[:len(want)-2]), string(pub[:len(pub)-1]), "the .pub is ssh-keygen's")
	out := peer.Python(t, nil, pyLoadOpenSSH, filepath.Join(dir, "keys/supernode_credentials_1"), filepath.Join(dir, "keys/supernode_credentials_3"))
	assert.Equal(t, "secp384r1\nsecp384r1\n", string(out))

	before := snapshot(t, dir)
	r = nk(t, dir, "", "init")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite certificates/ca.crt")
	assert.Equal(t, before, snapshot(t, dir))

	// The drop-in for generate_creds.py.
	example := t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "generate_creds.sh"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(example, "generate_creds.sh"), b, 0o755))
	rs := script(t, example, []string{"NODEKEYS=" + bin}, "generate_creds.sh", "--supernodes", "2")
	require.Equal(t, 0, rs.code, rs.stdout)
	assert.FileExists(t, filepath.Join(example, "keys/supernode_credentials_2"))
	assert.FileExists(t, filepath.Join(example, "certificates/server.pem"))
}

// export writes 0600 files in a 0700 folder; compose gives private keys to
// Flower's container user, readable by it alone.
func TestExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	r := nk(t, dir, "", "export", "k8s", "--namespace", "flower")
	require.Equal(t, 0, r.code, r.stderr)
	fi, err := os.Stat(filepath.Join(dir, "k8s"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(dir, "k8s/secrets.yaml"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	r = nk(t, dir, "", "export", "k8s")
	assert.Equal(t, 1, r.code, "no file replaced without --force")
	r = nk(t, dir, "", "export", "k8s", "--force", "--cert-manager")
	require.Equal(t, 0, r.code, r.stderr)

}

// export compose follows its own hint to a certificate that names the
// service, and the command it prints, run in Flower's folder, loads with
// compose-go (the loader docker compose uses) into a federation with TLS,
// node authentication and a SuperNode per key pair; the private keys stay
// the user's, 0600, readable by Flower's container user alone.
func TestExportComposeDeploys(t *testing.T) {
	t.Parallel()
	complete := composetest.FlowerComplete(t, "1.27.0")
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q", "--supernodes", "3").code)
	r := nk(t, dir, "", "export", "compose")
	require.Equal(t, 1, r.code, "the certificate lacks the service name")
	fix := regexp.MustCompile(`hint: renew it with the name: nodekeys (.*) \(`).FindStringSubmatch(r.stderr)
	require.NotNil(t, fix, r.stderr)
	r = nk(t, dir, "", strings.Fields(fix[1])...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "kept the names of the certificate it replaces: localhost, 127.0.0.1, ::1")

	r = nk(t, dir, "", "export", "compose")
	require.Equal(t, 0, r.code, r.stderr)
	m := regexp.MustCompile(`(?m)^  docker compose -f compose.yml -f (\S+) up -d$`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	assert.Contains(t, r.stdout, "nodekeys register --superlink 127.0.0.1:9093 --root-certificates certificates/ca.crt --dir keys\n")
	p := composetest.Load(t, filepath.Join(complete, "compose.yml"), m[1])
	keys := composetest.Check(t, p, composetest.Want{Nodes: 3, Registration: true, CACert: filepath.Join(dir, "certificates/ca.crt")})
	for _, f := range []string{keys["supernode-3"], filepath.Join(dir, "compose/secrets/server.key")} {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Zero(t, fi.Mode().Perm()&0o007, "%s: others read nothing", f)
		assert.EqualValues(t, os.Geteuid(), fi.Sys().(*syscall.Stat_t).Uid, "%s stays the user's", f)
		assert.True(t, composetest.ReadableBy(t, f, 49999), "%s: Flower's container user reads it", f)
		assert.False(t, composetest.ReadableBy(t, f, 1000), "%s: no other user does", f)
	}
}

// doctor finds nothing on a fresh init, and exits 1 with each finding
// (in JSON for scripts) once something is wrong.
func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	r := nk(t, dir, "", "doctor")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Equal(t, "nothing wrong found\n", r.stdout)
	require.NoError(t, os.Chmod(filepath.Join(dir, "keys/supernode_credentials_1"), 0o644))
	r = nk(t, dir, "", "doctor", "--json", "--name", "superlink.example")
	assert.Equal(t, 1, r.code)
	var findings []struct{ Check, Severity, File, Problem, Fix string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &findings), r.stdout)
	got := map[string]string{}
	for _, f := range findings {
		got[f.Check] = f.File
	}
	assert.Equal(t, "keys/supernode_credentials_1", got["file-mode"])
	assert.Equal(t, "certificates/server.pem", got["certificate-name"])
}
