package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// hostileDir holds a key pair, certificates and every kind of bad input.
func hostileDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	priv, err := os.ReadFile(filepath.Join(dir, "keys/client_credentials_1"))
	require.NoError(t, err)
	pub, err := os.ReadFile(filepath.Join(dir, "keys/client_credentials_1.pub"))
	require.NoError(t, err)
	put := func(name string, b []byte, mode os.FileMode) {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	garbage := make([]byte, 4096)
	rand.Read(garbage)
	garbage[0] = 0xff // not UTF-8 from the first byte, so every parser stops on line 1
	put("empty", nil, 0o600)
	put("truncated.key", priv[:200], 0o600)
	put("garbage.bin", garbage, 0o600)
	put("huge", bytes.Repeat([]byte("A"), 2<<20), 0o600)
	put("writable.key", priv, 0o666)
	put("readable.key", priv, 0o644)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "folder"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(dir, "keys/client_credentials_1"), filepath.Join(dir, "link.key")))
	for _, k := range []struct{ name, typ, bits string }{{"ed25519", "ed25519", ""}, {"rsa", "rsa", "2048"}, {"p256", "ecdsa", "256"}, {"p521", "ecdsa", "521"}} {
		args := []string{"-q", "-t", k.typ, "-N", "", "-C", "", "-f", filepath.Join(dir, k.name+".key")}
		if k.bits != "" {
			args = append(args, "-b", k.bits)
		}
		peer.Run(t, nil, "ssh-keygen", args...)
	}
	// Allowlists: off-curve point, identity point, duplicate, RSA, P-256.
	blob, _ := base64.StdEncoding.DecodeString(strings.Fields(string(pub))[1])
	off := append([]byte(nil), blob...)
	off[len(off)-1] ^= 1
	identity := append(append([]byte(nil), blob[:len(blob)-101]...), 0, 0, 0, 1, 0)
	line := func(b []byte) string { return "ecdsa-sha2-nistp384 " + base64.StdEncoding.EncodeToString(b) }
	put("offcurve.csv", []byte(line(off)+"\n"), 0o644)
	put("identity.csv", []byte(line(identity)+"\n"), 0o644)
	put("dup.csv", []byte(line(blob)+","+line(blob)+"\n"), 0o644)
	p256pub, _ := os.ReadFile(filepath.Join(dir, "p256.key.pub"))
	rsapub, _ := os.ReadFile(filepath.Join(dir, "rsa.key.pub"))
	put("p256.csv", p256pub, 0o644)
	put("rsa.csv", rsapub, 0o644)
	put("empty.csv", nil, 0o644)
	put("huge.csv", bytes.Repeat([]byte("garbage,"), 2<<20/8), 0o644)
	return dir
}

func TestHostileInputs(t *testing.T) {
	t.Parallel()
	dir := hostileDir(t)
	for _, tc := range []struct {
		args   []string
		stdin  string
		code   int
		stderr string // the first line of stderr, or "" for none
	}{
		// sign: private keys of every shape.
		{[]string{"sign", "-k", "empty"}, "", 1, "nodekeys: error: keys: empty: malformed key: no PEM private key found"},
		{[]string{"sign", "-k", "truncated.key"}, "", 1, "nodekeys: error: keys: truncated.key: malformed key: no PEM private key found"},
		{[]string{"sign", "-k", "garbage.bin"}, "", 1, "nodekeys: error: keys: garbage.bin: malformed key: no PEM private key found"},
		{[]string{"sign", "-k", "huge"}, "", 1, "nodekeys: error: keys: huge: file too large: larger than 64 KiB"},
		{[]string{"sign", "-k", "folder"}, "", 1, "nodekeys: error: keys: folder: is a folder, not a regular file"},
		{[]string{"sign", "-k", "missing"}, "", 1, "nodekeys: error: keys: stat missing: no such file or directory"},
		{[]string{"sign", "-k", "ed25519.key"}, "", 1, "nodekeys: error: keys: ed25519.key: not an EC key: the private key is Ed25519"},
		{[]string{"sign", "-k", "rsa.key"}, "", 1, "nodekeys: error: keys: rsa.key: not an EC key: the private key is RSA"},
		{[]string{"sign", "-k", "writable.key"}, "", 1, "nodekeys: error: keys: writable.key: others can write to this private key (mode 0666); chmod 600 it"},
		{[]string{"sign", "-k", "readable.key"}, "", 0, "nodekeys: warning: readable.key: others can read this private key (mode 0644); chmod 600 it"},
		{[]string{"sign", "-k", "p256.key"}, "", 0, ""},
		{[]string{"sign", "-k", "p521.key"}, "", 0, ""},
		{[]string{"sign", "-k", "link.key"}, "", 0, ""},
		// csv check: allowlists of every shape.
		{[]string{"csv", "check", "offcurve.csv"}, "", 1, "nodekeys: error: offcurve.csv:1:1: point not on the curve"},
		{[]string{"csv", "check", "identity.csv"}, "", 1, "nodekeys: error: identity.csv:1:1: the identity point is not a public key"},
		{[]string{"csv", "check", "dup.csv"}, "", 1, "nodekeys: error: dup.csv:1:"},
		{[]string{"csv", "check", "rsa.csv"}, "", 1, `nodekeys: error: rsa.csv:1:1: not an EC key: the type is "ssh-rsa"`},
		{[]string{"csv", "check", "p256.csv"}, "", 0, "nodekeys: warning: p256.csv:1:1: P-256 key: Flower accepts it, but its SuperNodes make P-384 keys"},
		{[]string{"csv", "check", "empty.csv"}, "", 1, "nodekeys: error: empty.csv: no keys: a SuperLink with this allowlist accepts no node"},
		{[]string{"csv", "check", "huge.csv"}, "", 1, "nodekeys: error: huge.csv:1:1: malformed key: no key data after the type"},
		{[]string{"csv", "check", "garbage.bin"}, "", 1, "nodekeys: error: garbage.bin:1:"},
		{[]string{"csv", "check", "folder"}, "", 1, "nodekeys: error: folder: is a folder, not a regular file"},
		{[]string{"csv", "add", "keys/client_public_keys.csv", "ed25519.key.pub"}, "", 1, `nodekeys: error: keys: ed25519.key.pub: not an EC key: the type is "ssh-ed25519"`},
		{[]string{"csv", "add", "keys/client_public_keys.csv", "keys/client_credentials_1"}, "", 1, "nodekeys: error: keys: keys/client_credentials_1: malformed key: this is PEM, not an OpenSSH public key line"},
		// verify: hostile stdin.
		{[]string{"verify", "-a", "keys/client_public_keys.csv"}, strings.Repeat("x", 4<<20), 1, ""},
		{[]string{"verify", "-a", "huge.csv"}, "{}", 1, "nodekeys: error: huge.csv:1:1: malformed key: no key data after the type (and 100 more problems)"},
		// certgen and inspect.
		{[]string{"certgen", "--out", "c2", "--ca-cert", "certificates/ca.crt", "--ca-key", "garbage.bin"}, "", 1, "nodekeys: error: certs: garbage.bin: no PEM private key found"},
		{[]string{"certgen", "--out", "c3", "--ca-cert", "certificates/server.pem", "--ca-key", "certificates/server.key"}, "", 1, "nodekeys: error: certs: certificates/server.pem: the certificate is not a CA"},
		{[]string{"inspect", "huge"}, "", 1, "nodekeys: error: huge: larger than 1 MiB and not an allowlist: not a key or a certificate"},
		{[]string{"inspect", "garbage.bin"}, "", 1, "nodekeys: error: garbage.bin: not a text file, nor a DER certificate or key"},
		{[]string{"inspect", "/dev/zero"}, "", 1, "nodekeys: error: /dev/zero: is a character device, not a regular file"},
		{[]string{"csv", "check", "/dev/zero"}, "", 1, "nodekeys: error: /dev/zero: is a character device, not a regular file"},
		{[]string{"inspect", "truncated.key"}, "", 1, "nodekeys: error: truncated.key: a PEM header without a readable block"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := nk(t, dir, tc.stdin, tc.args...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			if tc.stderr == "" {
				if tc.code == 0 {
					assert.Empty(t, r.stderr)
				}
			} else {
				assert.Regexp(t, "(?m)^"+regexp.QuoteMeta(tc.stderr), r.stderr)
			}
			assert.Less(t, len(r.stderr), 20_000, "bounded output")
			assert.NotContains(t, r.stdout+r.stderr, "OPENSSH PRIVATE KEY")
			assert.NotContains(t, r.stdout+r.stderr, "b3BlbnNzaC1rZXktdjE", "no private key material")
		})
	}
}

// keygen never writes through a symbolic link: without --force it stops,
// with --force it replaces the link itself and the file it pointed to is
// untouched.
func TestKeygenSymlinkInTheWay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "keys"), 0o700))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, "keys/client_credentials_1")))
	r := nk(t, dir, "", "keygen")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite keys/client_credentials_1")
	r = nk(t, dir, "", "keygen", "--force", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	b, _ := os.ReadFile(victim)
	assert.Equal(t, "precious", string(b))
	fi, err := os.Lstat(filepath.Join(dir, "keys/client_credentials_1"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// Secrets never appear in --json output or logs of any command.
func TestNoSecretsInOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out strings.Builder
	for _, args := range [][]string{
		{"keygen", "--json", "--seed", "00112233445566778899aabbccddeeff", "--server-key"},
		{"certgen", "--json"},
		{"inspect", "--json", "keys/client_credentials_1", "certificates/ca.key", "certificates/server.key"},
		{"sign", "-k", "keys/client_credentials_1"},
	} {
		r := nk(t, dir, "", args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		out.WriteString(r.stdout + r.stderr)
	}
	for _, f := range []string{"keys/client_credentials_1", "keys/server_credentials", "certificates/ca.key", "certificates/server.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, l := range lines[1 : len(lines)-1] {
			assert.NotContains(t, out.String(), l, "a line of %s", f)
		}
	}
	assert.NotContains(t, out.String(), "PRIVATE KEY")
}

// A seed may come from a file or the environment, out of the process
// list; on the command line it draws a warning; the same seed gives the
// same keys whichever way it came.
func TestSeedSources(t *testing.T) {
	t.Parallel()
	const seed = "00112233445566778899aabbccddeeff"
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "seed"), []byte(seed+"\n"), 0o600))
	fromFlag := nk(t, dir, "", "keygen", "--out", "a", "--seed", seed, "-q")
	require.Equal(t, 0, fromFlag.code, fromFlag.stderr)
	assert.Contains(t, fromFlag.stderr, "visible to other local users")
	fromFile := nk(t, dir, "", "keygen", "--out", "b", "--seed-file", "seed", "-q")
	require.Equal(t, 0, fromFile.code, fromFile.stderr)
	assert.NotContains(t, fromFile.stderr, "visible to other local users")

	cmd := exec.Command(bin, "keygen", "--out", "c", "-q")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "NODEKEYS_SEED="+seed)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.NotContains(t, string(out), "visible to other local users")
	for _, d := range []string{"b", "c"} {
		for _, f := range []string{"client_credentials_1", "client_credentials_2.pub"} {
			x, _ := os.ReadFile(filepath.Join(dir, "a", f))
			y, _ := os.ReadFile(filepath.Join(dir, d, f))
			assert.Equal(t, x, y, "%s/%s", d, f)
		}
	}
	r := nk(t, dir, "", "keygen", "--out", "d", "--seed", seed, "--seed-file", "seed")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "give the seed one way")
	r = nk(t, dir, "", "fixtures", "--out", "e")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "fixtures needs a seed")
	r = nk(t, dir, "", "fixtures", "--out", "e", "--seed-file", "seed", "-q")
	assert.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "keygen", "--out", "f", "--seed-file", "/dev/zero")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "not a regular file")
}
