package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/flwr"
)

// Flags after a command's arguments are read as flags, across the CLI.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "1", "-q").code)
	r := nk(t, dir, "", "csv", "check", "keys/client_public_keys.csv", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"ok": true`)
	// register reads --insecure as a flag, not as a file to open.
	r = nk(t, dir, "", "register", "missing.pub", "--insecure", "--superlink", "127.0.0.1:1", "--timeout", "1s")
	assert.NotContains(t, r.stderr, "--insecure")
	assert.Contains(t, r.stderr, "missing.pub")
	// rotate's own example: N, then flags.
	r = nk(t, dir, "", "rotate", "3", "--superlink", "127.0.0.1:1", "--insecure", "--timeout", "1s")
	assert.NotContains(t, r.stderr, "takes the node's number")
	// "--" still ends the flags.
	r = nk(t, dir, "", "csv", "check", "--", "--json")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "--json")
}

// The bash completion script completes flags: it sends the word being
// completed, and a word starting with '-' gets the command's flags.
func TestCompletionCompletesFlags(t *testing.T) {
	t.Parallel()
	script := nk(t, t.TempDir(), "", "completion", "bash").stdout
	cmd := exec.Command("bash", "-c", script+`
COMP_WORDS=(nodekeys csv check --js); COMP_CWORD=3; _nodekeys_complete; echo "${COMPREPLY[@]}"
COMP_WORDS=(nodekeys csv ch); COMP_CWORD=2; _nodekeys_complete; echo "${COMPREPLY[@]}"
COMP_WORDS=(nodekeys export compose --flo); COMP_CWORD=3; _nodekeys_complete; echo "${COMPREPLY[@]}"`)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "--json\ncheck\n--flower-version\n", string(out))
}

// nodekeys with no command shows the help and fails; init prints a
// command the shell can run as it is; one pair is "1 key pair".
func TestSmallCLIFixes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stdout, "COMMANDS:")
	assert.Empty(t, r.stderr)

	r = nk(t, dir, "", "init", "--supernodes", "1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "|")
	m := regexp.MustCompile(`then: (nodekeys register .*)\n`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	assert.Equal(t, "nodekeys register --superlink 127.0.0.1:9093 --root-certificates certificates/ca.crt --dir keys", m[1])
	assert.Contains(t, r.stdout, "1 SuperNode key pair (")
	r = nk(t, dir, "", "keygen", "--clients", "1", "--out", "k1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "wrote 1 key pair in k1/")
}

// The gateway's metrics address is clear of Flower's ports, and
// --max-verifications shows one default.
func TestGatewayHelpDefaults(t *testing.T) {
	t.Parallel()
	r := nk(t, t.TempDir(), "", "gateway", "--help")
	require.Equal(t, 0, r.code, r.stderr)
	m := regexp.MustCompile(`--metrics ADDR\s.*\(default: "([^"]+)"\)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	_, port, err := net.SplitHostPort(m[1])
	require.NoError(t, err)
	for _, p := range []int{flwr.PortServerAppIo, flwr.PortFleet, flwr.PortControl, flwr.PortClientAppIo, flwr.PortFleetREST, flwr.PortSimulationIo} {
		assert.NotEqual(t, strconv.Itoa(p), port, "Flower uses %d", p)
	}
	line := regexp.MustCompile(`(?m)^.*--max-verifications.*$`).FindString(r.stdout)
	assert.Equal(t, 1, strings.Count(line, "default"), line)
	assert.Contains(t, line, "(default: 4 per core)")
}

// token new --out writes the token 0600 itself, never over a file.
func TestTokenOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "token", "new", "--file", "tokens.txt", "--name", "ci", "--role", "member", "--out", "ci.token")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout, "the token is in the file only")
	fi, err := os.Stat(filepath.Join(dir, "ci.token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(dir, "ci.token"))
	require.NoError(t, err)
	assert.Regexp(t, `^nkt_\S+\n$`, string(b))
	r = nk(t, dir, "", "token", "new", "--file", "tokens.txt", "--name", "ci2", "--role", "member", "--out", "ci.token")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite ci.token")
	r = nk(t, dir, "", "token", "list", "--file", "tokens.txt")
	assert.NotContains(t, r.stdout, "ci2", "nothing added when the file is in the way")
}

// account client add --out writes the secret 0600 itself, never over a
// file, as token new --out does.
func TestClientSecretOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "account", "client", "add", "ci", "--role", "member", "--out", "ci.secret")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout, "the secret is in the file only")
	assert.Contains(t, r.stderr, "ci.secret (0600)")
	fi, err := os.Stat(filepath.Join(dir, "ci.secret"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(dir, "ci.secret"))
	require.NoError(t, err)
	assert.Regexp(t, `^\S{40,}\n$`, string(b))
	r = nk(t, dir, "", "account", "client", "add", "ci2", "--role", "member", "--out", "ci.secret")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "refusing to overwrite ci.secret")
	r = nk(t, dir, "", "account", "list")
	assert.NotContains(t, r.stdout, "ci2", "nothing added when the file is in the way")
}

// A role the default policy does not know is warned about, for accounts,
// clients and tokens alike; the command still succeeds.
func TestUnknownRoleWarns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"account", "add", "bob", "--role", "membr"},
		{"account", "client", "add", "ci", "--role", "membr"},
		{"token", "new", "--name", "x", "--role", "membr", "--out", "x.token"},
	} {
		r := nk(t, dir, "bob's long password\n", args...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, `warning: role "membr" is not in the default policy (roles: admin, member)`, args)
	}
	r := nk(t, dir, "carol's long password\n", "account", "add", "carol", "--role", "member", "--role", "admin")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "warning")
}

// export without certificates names the missing file, the flag that
// points at them and the command that makes them; the hint's command
// makes what export wants.
func TestExportWithoutCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "-q").code)
	for _, kind := range []string{"k8s", "compose"} {
		r := nk(t, dir, "", "export", kind)
		assert.Equal(t, 1, r.code, kind)
		assert.Equal(t, "nodekeys: error: certificates/ca.crt: no such file or directory\n"+
			"hint: pass the certificate folder with --certs-dir, or make one: nodekeys certgen --out certificates\n", r.stderr, kind)
	}
	r := nk(t, dir, "", "export", "k8s", "--certs-dir", "my certs")
	assert.Contains(t, r.stderr, "hint: pass the certificate folder with --certs-dir, or make one: nodekeys certgen --out 'my certs'\n")
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	r = nk(t, dir, "", "export", "k8s")
	assert.Equal(t, 0, r.code, r.stderr)
}

// keygen --append says which pairs stay out of the allowlist, in
// agreement with their number.
func TestKeygenAppendNotInAllowlist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "-q", "--clients", "3").code)
	r := nk(t, dir, "", "csv", "remove", "keys/client_public_keys.csv", "keys/client_credentials_1.pub")
	require.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "keygen", "-q", "--append", "--clients", "1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "nodekeys: note: 1 key pair in keys is not in the allowlist, and stays out: keys/client_credentials_1.pub\n", r.stderr)
	r = nk(t, dir, "", "csv", "remove", "keys/client_public_keys.csv", "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "keygen", "-q", "--append", "--clients", "1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "nodekeys: note: 2 key pairs in keys are not in the allowlist, and stay out: keys/client_credentials_1.pub, keys/client_credentials_2.pub\n", r.stderr)
}

// Every command a user runs (each leaf of the command tree) shows an
// example of itself in its --help.
func TestEveryCommandHelpHasAnExample(t *testing.T) {
	t.Parallel()
	var walk func(path string, cmds []*cli.Command)
	n := 0
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" {
				continue
			}
			full := path + " " + c.Name
			if len(c.Subcommands) > 0 {
				walk(full, c.Subcommands)
				continue
			}
			n++
			assert.Regexp(t, `(?m)^\s*(\S.*\| |source <\()?`+regexp.QuoteMeta(full)+`(\s|$|\))`, c.Description, "%s --help has no example", full)
		}
	}
	walk("nodekeys", newApp(nil, io.Discard, io.Discard).Commands)
	assert.Greater(t, n, 30, "the tree was walked")
}
