package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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

func TestCertgenEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "certgen")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "new CA: certificates/ca.crt")
	assert.Contains(t, r.stdout, "flower-superlink --ssl-ca-certfile certificates/ca.crt --ssl-certfile certificates/server.pem --ssl-keyfile certificates/server.key")
	assert.Contains(t, r.stdout, "flower-supernode --root-certificates certificates/ca.crt")
	// Flower's CLI reads the plural key; the singular fails its handshake.
	assert.Contains(t, r.stdout, `root-certificates = "`+filepath.Join(dir, "certificates/ca.crt")+`"`)
	assert.NotContains(t, r.stdout, "root-certificate =")
	assert.Contains(t, r.stdout, "[superlink.<name>]")
	assert.Contains(t, r.stdout, "[tool.flwr.federations.<name>]")
	peer.Run(t, nil, "openssl", "verify", "-CAfile", filepath.Join(dir, "certificates/ca.crt"), filepath.Join(dir, "certificates/server.pem"))

	ca, _ := os.ReadFile(filepath.Join(dir, "certificates/ca.crt"))
	r = nk(t, dir, "", "certgen")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: refusing to overwrite certificates/server.pem\nhint: use --force to renew the server certificate (the CA is kept)\n", r.stderr)

	r = nk(t, dir, "", "certgen", "--force", "--san", "superlink.example", "--san", "192.0.2.7", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res struct {
		CACreated bool     `json:"ca_created"`
		SANs      []string `json:"sans"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.False(t, res.CACreated)
	assert.Equal(t, []string{"superlink.example", "192.0.2.7"}, res.SANs)
	after, _ := os.ReadFile(filepath.Join(dir, "certificates/ca.crt"))
	assert.Equal(t, ca, after, "renewal keeps the CA")

	r = nk(t, dir, "", "inspect", "certificates/server.pem", "certificates/server.key", "certificates/ca.crt")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "certificates/server.pem: certificate, ECDSA P-384")
	assert.Contains(t, r.stdout, "SANs:        superlink.example, 192.0.2.7")
	assert.Contains(t, r.stdout, "matches:     certificates/server.key")
	assert.Contains(t, r.stdout, "certificates/ca.crt: CA certificate")
	assert.Regexp(t, `\(36[45] days left\)`, r.stdout)
}

func TestCertgenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"certgen", "--days", "398"}, 2, "nodekeys: error: --days must be 1 to 397 (the longest validity browsers accept for a server certificate), got 398\n"},
		{[]string{"certgen", "--days", "0"}, 2, "nodekeys: error: --days must be 1 to 397"},
		{[]string{"certgen", "--san", "not a name"}, 2, `nodekeys: error: certs: invalid SAN "not a name"`},
		{[]string{"certgen", "--key-type", "dsa"}, 2, "nodekeys: error: --key-type must be ecdsa-p384, ecdsa-p256 or rsa-4096"},
		{[]string{"certgen", "--ca-cert", "x.crt"}, 2, "nodekeys: error: --ca-cert and --ca-key go together\nhint: run 'nodekeys certgen --help'\n"},
		{[]string{"certgen", "--ca-cert", "x.crt", "--ca-key", "x.key", "--new-ca"}, 2, "nodekeys: error: --new-ca and --ca-cert do not go together\n"},
		{[]string{"certgen", "--ca-cert", "x.crt", "--ca-key", "x.key"}, 1, "nodekeys: error: certs: open x.crt: no such file or directory\n"},
	} {
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, tc.code, r.code, tc.args)
		assert.True(t, strings.HasPrefix(r.stderr, tc.want), "%v: %q", tc.args, r.stderr)
	}
	ents, _ := os.ReadDir(dir)
	assert.Empty(t, ents, "errors write nothing")
}

func TestInspectKeysAndCSV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "-q").code)
	r := nk(t, dir, "", "inspect", "--json", "keys/client_credentials_1", "keys/client_credentials_1.pub", "keys/client_public_keys.csv")
	require.Equal(t, 0, r.code, r.stderr)
	var got []struct {
		Kind, Algorithm, Fingerprint string
		Keys                         *int
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got, 3)
	assert.Equal(t, "OpenSSH private key", got[0].Kind)
	assert.Equal(t, "OpenSSH public key", got[1].Kind)
	assert.Equal(t, got[0].Fingerprint, got[1].Fingerprint)
	assert.Equal(t, "ECDSA P-384", got[1].Algorithm)
	require.NotNil(t, got[2].Keys)
	assert.Equal(t, 2, *got[2].Keys)
	assert.NotContains(t, r.stdout, "OPENSSH PRIVATE KEY", "no key material in the output")

	// A key and its .pub match once; an allowlist named beside keys says
	// of each whether it holds it.
	require.Equal(t, 0, nk(t, dir, "", "keygen", "-q", "--clients", "3", "--out", "k3").code)
	r = nk(t, dir, "", "csv", "remove", "k3/client_public_keys.csv", "k3/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "inspect", "k3/client_credentials_1", "k3/client_credentials_1.pub", "k3/client_credentials_2.pub", "k3/client_public_keys.csv")
	require.Equal(t, 0, r.code, r.stderr)
	fp := func(n string) string {
		return regexp.MustCompile(`(?m)^k3/client_credentials_` + n + `\.pub: [^\n]*\n  fingerprint: +(\S+)`).FindStringSubmatch(r.stdout)[1]
	}
	assert.Equal(t, "k3/client_credentials_1: OpenSSH private key, ECDSA P-384\n"+
		"  fingerprint: "+fp("1")+"\n"+
		"  matches:     k3/client_credentials_1.pub\n"+
		"  listed in:   k3/client_public_keys.csv\n"+
		"k3/client_credentials_1.pub: OpenSSH public key, ECDSA P-384\n"+
		"  fingerprint: "+fp("1")+"\n"+
		"  matches:     k3/client_credentials_1\n"+
		"  listed in:   k3/client_public_keys.csv\n"+
		"k3/client_credentials_2.pub: OpenSSH public key, ECDSA P-384\n"+
		"  fingerprint: "+fp("2")+"\n"+
		"  NOT listed in: k3/client_public_keys.csv\n"+
		"k3/client_public_keys.csv: Flower allowlist CSV\n"+
		"  keys:        2\n", r.stdout)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "junk"), []byte("\x00\x01"), 0o644))
	r = nk(t, dir, "", "inspect", "junk", "missing", "keys")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: junk: not a text file, nor a DER certificate or key\n"+
		"nodekeys: error: missing: no such file or directory\n"+
		"nodekeys: error: keys: is a folder, not a regular file\n", r.stderr)
}

// inspect recognises files by content: a CSV named anything, a chain with
// every certificate, DER from openssl; it says whether a private key
// matches its .pub and whether certificates chain to a CA; one fingerprint
// format (ssh-keygen's) for keys and certificates alike.
func TestInspectByContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
	copyFile := func(from, to string) {
		b, err := os.ReadFile(filepath.Join(dir, from))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, to), b, 0o600))
	}
	copyFile("keys/client_public_keys.csv", "allowlist.txt")
	server, _ := os.ReadFile(filepath.Join(dir, "certificates/server.pem"))
	ca, _ := os.ReadFile(filepath.Join(dir, "certificates/ca.crt"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.pem"), append(server, ca...), 0o644))
	peer.Run(t, nil, "openssl", "x509", "-in", filepath.Join(dir, "certificates/server.pem"), "-outform", "DER", "-out", filepath.Join(dir, "server.der"))
	// A .pub that is not the private key's.
	copyFile("keys/client_credentials_2.pub", "keys/client_credentials_1.pub")

	r := nk(t, dir, "", "inspect", "--json", "--ca", "certificates/ca.crt", "allowlist.txt", "chain.pem", "server.der", "keys/client_credentials_1", "certificates/server.key")
	require.Equal(t, 0, r.code, r.stderr)
	var got []struct {
		Kind, Fingerprint string
		ChainsTo          string `json:"chains_to"`
		Keys              *int
		Matches, Warnings []string
		Certificates      []struct {
			Subject, Fingerprint string
			KeyPrint             string `json:"key_fingerprint"`
			DaysLeft             int    `json:"days_left"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got, 5)
	assert.Equal(t, "Flower allowlist CSV", got[0].Kind)
	require.NotNil(t, got[0].Keys)
	assert.Equal(t, 2, *got[0].Keys)

	assert.Equal(t, "certificate chain of 2", got[1].Kind)
	require.Len(t, got[1].Certificates, 2)
	assert.Contains(t, got[1].Certificates[1].Subject, "CA")
	assert.Equal(t, "certificates/ca.crt", got[1].ChainsTo)
	assert.Equal(t, 365, got[1].Certificates[0].DaysLeft, "as certgen counts")
	// openssl's digest of the same DER, in ssh-keygen's form.
	hexFP := strings.TrimSpace(strings.SplitN(string(peer.Run(t, nil, "openssl", "x509", "-in", filepath.Join(dir, "chain.pem"), "-noout", "-fingerprint", "-sha256")), "=", 2)[1])
	raw, err := hex.DecodeString(strings.ReplaceAll(hexFP, ":", ""))
	require.NoError(t, err)
	assert.Equal(t, "SHA256:"+base64.RawStdEncoding.EncodeToString(raw), got[1].Certificates[0].Fingerprint)
	assert.True(t, strings.HasPrefix(got[1].Certificates[0].KeyPrint, "SHA256:"))

	assert.Equal(t, "DER certificate", got[2].Kind)
	assert.Equal(t, got[1].Certificates[0].Fingerprint, got[2].Fingerprint)
	assert.Equal(t, "certificates/ca.crt", got[2].ChainsTo)

	assert.Equal(t, "OpenSSH private key", got[3].Kind)
	require.NotEmpty(t, got[3].Warnings)
	assert.Contains(t, got[3].Warnings[0], "does NOT match keys/client_credentials_1.pub")
	// The server key matches both certificate files, by key.
	assert.ElementsMatch(t, []string{"chain.pem", "server.der"}, got[4].Matches)

	// A leaf that does not chain to the given CA is said so.
	require.Equal(t, 0, nk(t, dir, "", "certgen", "--out", "other").code)
	r = nk(t, dir, "", "inspect", "--ca", "other/ca.crt", "certificates/server.pem")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stderr, "does not chain to other/ca.crt")
	// A private key and its own .pub: "matches", no warning.
	r = nk(t, dir, "", "inspect", "keys/client_credentials_2")
	assert.Contains(t, r.stdout, "matches:     keys/client_credentials_2.pub")
	assert.Empty(t, r.stderr)
}

func TestFixtures(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	seed := "00112233445566778899aabbccddeeff"
	for _, d := range []string{a, b} {
		r := nk(t, d, "", "fixtures", "--out", "fed", "--clients", "5", "--seed", seed)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "for tests only")
	}
	for _, f := range []string{"keys/client_credentials_1", "keys/client_credentials_5.pub", "keys/client_public_keys.csv", "certificates/ca.key", "certificates/server.key"} {
		x, err := os.ReadFile(filepath.Join(a, "fed", f))
		require.NoError(t, err)
		y, err := os.ReadFile(filepath.Join(b, "fed", f))
		require.NoError(t, err)
		assert.Equal(t, string(x), string(y), "the same seed gives the same %s", f)
	}
	peer.Run(t, nil, "openssl", "verify", "-CAfile", filepath.Join(a, "fed/certificates/ca.crt"), filepath.Join(a, "fed/certificates/server.pem"))
	var m struct {
		Seed string
		Keys struct {
			Pairs []struct{ Private, Fingerprint string }
		}
		Certificates struct {
			CACert string `json:"ca_cert"`
		}
	}
	b2, err := os.ReadFile(filepath.Join(a, "fed/manifest.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b2, &m))
	assert.Equal(t, seed, m.Seed)
	require.Len(t, m.Keys.Pairs, 5)
	assert.Equal(t, "fed/keys/client_credentials_1", m.Keys.Pairs[0].Private)
	assert.Equal(t, "fed/certificates/ca.crt", m.Certificates.CACert)

	r := nk(t, a, "", "fixtures", "--out", "fed", "--seed", seed)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite fed")
	r = nk(t, a, "", "fixtures", "--out", "fed", "--seed", seed, "--force", "-q")
	assert.Equal(t, 0, r.code, r.stderr)
}

func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "version")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, "nodekeys dev\n", r.stdout)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r = nk(t, dir, "", "completion", sh)
		assert.Equal(t, 0, r.code, sh)
		assert.Contains(t, r.stdout, "nodekeys", sh)
	}
	// The words bash completion offers.
	r = nk(t, dir, "", "--generate-bash-completion")
	assert.Contains(t, r.stdout, "keygen\n")
	assert.Contains(t, r.stdout, "certgen\n")
	r = nk(t, dir, "", "completion", "tcsh")
	assert.Equal(t, 2, r.code)
}

func TestInspectWarnsBeforeExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen", "--days", "10").code)
	r := nk(t, dir, "", "inspect", "certificates/server.pem")
	assert.Equal(t, 0, r.code)
	assert.Regexp(t, `nodekeys: warning: certificates/server\.pem: the certificate expires in (9|10) days: renew it with 'nodekeys certgen --force'`, r.stderr)
	r = nk(t, dir, "", "inspect", "certificates/ca.crt")
	assert.Empty(t, r.stderr, "the CA has years left")
}

// On a terminal, a long keygen draws a progress bar on stderr; elsewhere
// it draws none.
func TestKeygenProgressBar(t *testing.T) {
	t.Parallel()
	script := peer.Command(t, "script")
	dir := t.TempDir()
	out, err := exec.Command(script, "-q", "-c", bin+" keygen --clients 200 --out "+filepath.Join(dir, "k"), "/dev/null").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "keygen")
	assert.Regexp(t, `\(\d+/200`, string(out), "a bar from 200 keys on")
	r := nk(t, dir, "", "keygen", "--clients", "200", "--out", "k2")
	require.Equal(t, 0, r.code)
	assert.NotContains(t, r.stderr, "/200", "no bar when stderr is not a terminal")
}
