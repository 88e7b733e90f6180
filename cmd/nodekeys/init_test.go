//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/composetest"
	"github.com/nodekeys/nodekeys/internal/k8stest"
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

// export k8s writes a folder that kubectl apply -f takes as it is (every
// file in it a manifest that validates strictly), values files apart that
// name only objects it defines, private keys 0600 in a 0700 folder, and
// the object names the README gives.
func TestExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q", "--add-san", "superlink.example").code)
	r := nk(t, dir, "", "export", "k8s", "--namespace", "flower")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "apply:     kubectl apply -n flower -f k8s/\n")
	assert.Contains(t, r.stdout, "SuperNode: helm install supernode-credentials-2 CHART -n flower -f k8s/values/supernode-credentials-2.yaml --set-file global.nodeAuth.authSupernodePrivateKey=keys/supernode_credentials_2\n")
	fi, err := os.Stat(filepath.Join(dir, "k8s"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	again := nk(t, dir, "", "export", "k8s", "--namespace", "flower")
	assert.Equal(t, 1, again.code)
	assert.Equal(t, "nodekeys: error: create k8s/superlink.yaml: file already exists\nhint: use --force to replace it, or another --out\n", again.stderr)
	// What kubectl apply -f k8s/ reads: the files directly in the folder.
	ents, err := os.ReadDir(filepath.Join(dir, "k8s"))
	require.NoError(t, err)
	names := map[string]bool{}
	manifests := 0
	for _, e := range ents {
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(e.Name())) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "k8s", e.Name()))
		require.NoError(t, err)
		k8stest.RequireValid(t, e.Name(), b)
		manifests++
		for _, m := range regexp.MustCompile(`(?m)^\s+name: (\S+)$`).FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	assert.Equal(t, 2, manifests)
	fi, err = os.Stat(filepath.Join(dir, "k8s/superlink.yaml"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "it holds the server key")
	for _, v := range []string{"superlink.yaml", "supernode-credentials-1.yaml", "supernode-credentials-2.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, "k8s/values", v))
		require.NoError(t, err)
		for _, ref := range regexp.MustCompile(`existingSecret: (\S+)`).FindAllStringSubmatch(string(b), -1) {
			assert.True(t, names[ref[1]], "%s names %s, which k8s/ defines", v, ref[1])
		}
	}
	// Every object name the README's Kubernetes section gives is one the
	// output defines.
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	section := string(readme)[strings.Index(string(readme), "## Kubernetes and Docker Compose"):]
	section = section[:strings.Index(section, "`export compose` writes")]
	r = nk(t, dir, "", "export", "k8s", "--namespace", "flower", "--cert-manager", "--out", "k8s-cm")
	require.Equal(t, 0, r.code, r.stderr)
	for _, f := range []string{"superlink.yaml", "supernodes.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, "k8s-cm", f))
		require.NoError(t, err)
		k8stest.RequireValid(t, f, b)
		for _, m := range regexp.MustCompile(`(?m)^\s+(?:name|secretName): (\S+)$`).FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
	}
	named := regexp.MustCompile("`(flower-[a-z-]+)`").FindAllStringSubmatch(section, -1)
	require.NotEmpty(t, named)
	for _, m := range named {
		assert.True(t, names[m[1]], "the README names %s", m[1])
	}

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
	assert.Contains(t, r.stdout, "nodekeys register --superlink 127.0.0.1:9093 --root-certificates "+
		filepath.Join(dir, "certificates/ca.crt")+" --dir "+filepath.Join(dir, "keys")+"\n", "absolute: it runs in Flower's folder")
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
	assert.Equal(t, "checked: 2 SuperNode keys, 2 public keys, 1 allowlist, 2 certificates, 2 TLS keys\nnothing wrong found\n", r.stdout)
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

// A count of 0 would write an allowlist with no key, which csv check calls
// an error and which makes a Flower 1.22 SuperLink refuse every node; init
// and fixtures refuse it at the flag, as keygen does: exit 2, no file.
// (init --accounts takes 0: its gateway starts with no node,
// TestInitAccounts.)
func TestInitFixturesRefuseZeroKeyPairs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--supernodes", "0"}, "nodekeys: error: --supernodes must be between 1 and 1000000, got 0\n" +
			"hint: --supernodes N writes N SuperNode key pairs and their allowlist (default 2); the certificates alone: nodekeys certgen --out certificates\n"},
		{[]string{"init", "-n", "-1", "--accounts"}, "nodekeys: error: --supernodes must be between 0 and 1000000, got -1\n" +
			"hint: --supernodes N writes N SuperNode key pairs and their allowlist (default 2); 0 starts the gateway with no node\n"},
		{[]string{"fixtures", "--out", "fed", "--seed-file", "seed", "--clients", "0"}, "nodekeys: error: --clients must be between 1 and 1000000, got 0\n" +
			"hint: --clients N writes N SuperNode key pairs and their allowlist (default 2)\n"},
		{[]string{"fixtures", "--out", "fed", "--seed-file", "seed", "-n", "-1"}, "nodekeys: error: --clients must be between 1 and 1000000, got -1\n" +
			"hint: --clients N writes N SuperNode key pairs and their allowlist (default 2)\n"},
	} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed"), []byte("00112233445566778899aabbccddeeff\n"), 0o600))
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, 2, r.code, tc.args)
		assert.Equal(t, tc.want, r.stderr, tc.args)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "%v writes nothing: only the seed is there", tc.args)
	}
}

// keygen --append and rotate in a folder init wrote take its prefix,
// supernode_credentials, where they would have written or read
// client_credentials_N beside it; --prefix still decides.
func TestAppendAndRotateTakeInitsPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "--supernodes", "2", "-q").code)
	r := nk(t, dir, "", "keygen", "--append", "--clients", "1", "--out", "keys", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, filepath.Join(dir, "keys/supernode_credentials_3"))
	assert.NoFileExists(t, filepath.Join(dir, "keys/client_credentials_1"))
	r = nk(t, dir, "", "rotate", "2", "--dir", "keys", "--no-register")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, filepath.Join(dir, "keys/supernode_credentials_2.new"))
	r = nk(t, dir, "", "keygen", "--append", "--clients", "1", "--out", "keys", "--prefix", "client_credentials", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, filepath.Join(dir, "keys/client_credentials_1"))
}
