package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

// bin is the nodekeys binary the end-to-end tests run: this test binary
// itself, under the name nodekeys, which runs the command instead of the
// tests when NODEKEYS_AS_CLI is set (saving a second build and link).
var bin string

func TestMain(m *testing.M) {
	switch os.Getenv("NODEKEYS_AS_CLI") {
	case "1":
		os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
	case "serve":
		os.Exit(serveCommands())
	}
	dir, err := os.MkdirTemp("", "nodekeys-bin-")
	if err != nil {
		panic(err)
	}
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "nodekeys")
	if err := os.Symlink(self, bin); err != nil {
		panic(err)
	}
	os.Setenv("NODEKEYS_AS_CLI", "1") // for every process the tests start
	code := peer.Main(m)              // with a line counting tests skipped for a missing peer
	for _, r := range runners.all {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// nk runs nodekeys with args in dir, with stdin. With NODEKEYS_LONG=1 (as
// CI runs) each command is a process of its own; otherwise commands run in
// a few long-lived nodekeys processes, one command at a time each (see
// serveCommands), which spares the tests some 300 process starts of 30 ms
// each. Tests of signals, terminals and servers start processes
// themselves.
func nk(t *testing.T, dir string, stdin string, args ...string) result {
	t.Helper()
	if !peer.Long() {
		return runners.run(t, dir, stdin, args)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	}))
	return files
}

func TestKeygenEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := nk(t, dir, "", "keygen")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "wrote 2 key pairs in keys/")
	assert.Contains(t, r.stdout, "--auth-list-public-keys keys/client_public_keys.csv")
	for _, f := range []string{"client_credentials_1", "client_credentials_1.pub", "client_credentials_2", "client_credentials_2.pub", "client_public_keys.csv"} {
		assert.FileExists(t, filepath.Join(dir, "keys", f))
	}
	before := snapshot(t, dir)

	r = nk(t, dir, "", "keygen")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: refusing to overwrite keys/client_credentials_1\n"+
		"hint: use --force to replace it, --append to add keys after the existing ones, or another --out\n", r.stderr)
	assert.Equal(t, before, snapshot(t, dir), "nothing changed")

	r = nk(t, dir, "", "keygen", "--append", "--clients", "3", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res struct {
		Pairs []struct {
			Index       int
			Private     string
			Fingerprint string
		}
		CSVKeys int `json:"csv_keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Len(t, res.Pairs, 3)
	assert.Equal(t, 3, res.Pairs[0].Index)
	assert.Equal(t, 5, res.CSVKeys)
	assert.True(t, strings.HasPrefix(res.Pairs[0].Fingerprint, "SHA256:"))

	before = snapshot(t, dir)
	r = nk(t, dir, "", "keygen", "--force", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	after := snapshot(t, dir)
	assert.NotEqual(t, before[filepath.Join(dir, "keys/client_credentials_1")], after[filepath.Join(dir, "keys/client_credentials_1")])
	assert.Equal(t, before[filepath.Join(dir, "keys/client_credentials_3")], after[filepath.Join(dir, "keys/client_credentials_3")], "--force replaces only what it writes")
}

func TestKeygenSeedIsReproducible(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	seed := "00112233445566778899aabbccddeeff"
	ra := nk(t, a, "", "keygen", "--clients", "4", "--seed", seed, "--prefix", "supernode_credentials", "--server-key")
	rb := nk(t, b, "", "keygen", "--clients", "4", "--seed", seed, "--prefix", "supernode_credentials", "--server-key")
	require.Equal(t, 0, ra.code, ra.stderr)
	require.Equal(t, 0, rb.code, rb.stderr)
	assert.Contains(t, ra.stderr, "for tests only")
	sa, sb := snapshot(t, a), snapshot(t, b)
	require.Len(t, sa, 11)
	for p, content := range sa {
		assert.Equal(t, content, sb[strings.Replace(p, a, b, 1)], p)
	}
}

func TestKeygenUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keygen", "--bogus"}, "nodekeys: error: flag provided but not defined: -bogus\nhint: run 'nodekeys keygen --help'\n"},
		{[]string{"keygen", "--clients", "x"}, "nodekeys: error: invalid value \"x\" for flag -clients: parse error\nhint: run 'nodekeys keygen --help'\n"},
		{[]string{"keygen", "--clients", "-1"}, "nodekeys: error: --clients must be between 1 and 1000000, got -1\nhint: --clients N writes N SuperNode key pairs and their allowlist (default 2)\n"},
		{[]string{"keygen", "--clients", "0"}, "nodekeys: error: --clients must be between 1 and 1000000, got 0\nhint: --clients N writes N SuperNode key pairs and their allowlist (default 2)\n"},
		{[]string{"keygen", "--seed", "zz"}, "nodekeys: error: the seed must be hexadecimal: encoding/hex: invalid byte: U+007A 'z'\nhint: run 'nodekeys keygen --help'\n"},
		{[]string{"keygen", "--seed", "00ff"}, "nodekeys: error: the seed must be at least 16 bytes (32 hex digits), got 2 bytes\nhint: run 'nodekeys keygen --help'\n"},
		{[]string{"keygen", "--append", "--force"}, "nodekeys: error: --append and --force do not go together: --append never replaces a key\nhint: run 'nodekeys keygen --help'\n"},
		{[]string{"keygen", "extra"}, "nodekeys: error: keygen takes no arguments, got \"extra\"\nhint: run 'nodekeys keygen --help'\n"},
	} {
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, 2, r.code, tc.args)
		assert.Equal(t, tc.want, r.stderr, tc.args)
	}
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries, "bad usage writes nothing")
}

func TestKeygenOutputInTheWay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys"), []byte("a file"), 0o644))
	r := nk(t, dir, "", "keygen")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: keys: is a regular file, not a folder\n", r.stderr)
}

func TestCSVCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "3", "-q").code)
	csv := "keys/client_public_keys.csv"

	r := nk(t, dir, "", "csv", "check", csv)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, csv+": 3 keys, 0 errors, 0 warnings: ok")

	r = nk(t, dir, "", "csv", "remove", csv, "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, csv+": 2 keys")
	r = nk(t, dir, "", "csv", "remove", csv, "keys/client_credentials_2.pub")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: keys/client_credentials_2.pub is not in "+csv+"; nothing was changed\n", r.stderr)

	r = nk(t, dir, "", "csv", "add", csv, "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, "", "csv", "add", csv, "keys/client_credentials_1.pub")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "is already in "+csv)

	var fp struct {
		Keys []struct{ Fingerprint string }
	}
	r = nk(t, dir, "", "csv", "check", "--json", csv)
	require.Equal(t, 0, r.code)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &fp))
	require.Len(t, fp.Keys, 3)
	r = nk(t, dir, "", "csv", "remove", csv, fp.Keys[0].Fingerprint)
	require.Equal(t, 0, r.code, r.stderr)

	// A file Flower would fail on: check says where and exits 1.
	b, err := os.ReadFile(filepath.Join(dir, csv))
	require.NoError(t, err)
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, append([]byte("\ufeff"), bytes.Replace(b, []byte("\n"), []byte(",\nssh-rsa AAAA\n"), 1)...), 0o644))
	r = nk(t, dir, "", "csv", "check", "bad.csv")
	assert.Equal(t, 1, r.code)
	// What Flower fails on is an error, in the words as in the exit status.
	assert.Regexp(t, "^nodekeys: error: bad.csv:1:1: UTF-8 byte order mark: Flower's SuperLink fails on it\n"+
		"nodekeys: error: bad.csv:1:[0-9]+: trailing comma: Flower's SuperLink fails on it\n"+
		"nodekeys: error: bad.csv:2:1: not an EC key: the type is \"ssh-rsa\"\n$", r.stderr)
	assert.Contains(t, r.stdout, "bad.csv: 2 keys, 3 errors, 0 warnings: NOT OK")
	r = nk(t, dir, "", "csv", "check", "--json", "bad.csv")
	assert.Equal(t, 1, r.code)
	var res struct {
		OK               bool
		Warnings, Errors []struct{ Message string }
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.False(t, res.OK)
	assert.Len(t, res.Errors, 3)
	assert.Empty(t, res.Warnings)

	before, _ := os.ReadFile(bad)
	r = nk(t, dir, "", "csv", "add", "bad.csv", "keys/client_credentials_1.pub")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "hint: run 'nodekeys csv check bad.csv' to see every problem; nothing was changed")
	after, _ := os.ReadFile(bad)
	assert.Equal(t, before, after)

	r = nk(t, dir, "", "csv", "check", "missing.csv")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: open missing.csv: no such file or directory\n", r.stderr)
}

// One rule for exit codes, for every command: 0 success (and --help), 1 a
// failure or a rejected input, 2 bad usage (an unknown command or flag, a
// bad flag value, the wrong arguments).
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	var walk func(prefix []string, cmds []*cli.Command)
	// In the test's own process: these touch no file, and a command per
	// process start would cost a second of CPU.
	inProcess := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"nodekeys"}, args...), strings.NewReader(""), &stdout, &stderr)
		return code, stderr.String()
	}
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			args := append(append([]string{}, prefix...), c.Name)
			code, _ := inProcess(append(args, "--help")...)
			assert.Equal(t, 0, code, "%v --help", args)
			code, stderr := inProcess(append(args, "--no-such-flag")...)
			assert.Equal(t, 2, code, "%v --no-such-flag: %s", args, stderr)
			assert.Equal(t, 1, strings.Count(stderr, "nodekeys: error:"), "%v: one error line", args)
			walk(args, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"no-such-command"}, 2},
		{[]string{"help", "keygen"}, 0},
		{[]string{"help", "no-such-command"}, 2},
		{[]string{"csv", "no-such-subcommand"}, 2},
		{[]string{"certgen", "--san", "10.0.0.256"}, 2},
		{[]string{"fixtures", "--out", "f", "--seed", "00112233445566778899aabbccddeeff", "--san", "10.0.0.256"}, 2},
		{[]string{"certgen", "--san", "a.example", "--san", "a.example"}, 2}, // given twice
		{[]string{"keygen", "extra-argument"}, 2},
		{[]string{"inspect"}, 2},
		{[]string{"inspect", "missing-file"}, 1},
		{[]string{"csv", "check", "missing-file"}, 1},
		{[]string{"sign", "-k", "missing-file"}, 1},
		{[]string{"gateway", "--allowlist", "missing.csv", "--upstream-insecure"}, 1},
	} {
		r := nk(t, dir, "", tc.args...)
		assert.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
	}
	r := nk(t, dir, "", "certgen", "--san", strings.Repeat("a", 100_000))
	assert.Equal(t, 2, r.code)
	assert.Less(t, len(r.stderr), 300, "a huge value is cut in the message")
}

// A command for a serving process, and its answer.
type (
	cliRequest struct {
		Dir, Stdin string
		Args       []string
	}
	cliResponse struct {
		Stdout, Stderr string
		Code           int
	}
)

// serveCommands is a nodekeys process (NODEKEYS_AS_CLI=serve) that runs
// commands one after another: each request, a JSON line on descriptor 3,
// is run by the same run function as the command line, in the request's
// folder, and answered on descriptor 4.
func serveCommands() int {
	dec := json.NewDecoder(os.NewFile(3, "requests"))
	enc := json.NewEncoder(os.NewFile(4, "responses"))
	for {
		var req cliRequest
		if err := dec.Decode(&req); err != nil {
			return 0
		}
		resp := cliResponse{Code: -1}
		if err := os.Chdir(req.Dir); err != nil {
			resp.Stderr = err.Error()
		} else {
			var out, errb bytes.Buffer
			resp.Code = run(append([]string{"nodekeys"}, req.Args...), strings.NewReader(req.Stdin), &out, &errb)
			resp.Stdout, resp.Stderr = out.String(), errb.String()
			// Leave the folder: a test may unmount or remove it.
			os.Chdir("/")
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
}

// runner is one serving process.
type runner struct {
	cmd    *exec.Cmd
	enc    *json.Encoder
	dec    *json.Decoder
	stderr *syncbuf.Buffer
}

// runnerPool keeps idle serving processes; a command takes one, or starts
// one when none is idle, so that parallel tests never wait for each other.
type runnerPool struct {
	mu   sync.Mutex
	idle []*runner
	all  []*runner
}

var runners runnerPool

func (p *runnerPool) run(t *testing.T, dir, stdin string, args []string) result {
	t.Helper()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	r, err := p.get()
	require.NoError(t, err)
	if err := r.enc.Encode(cliRequest{Dir: abs, Stdin: stdin, Args: args}); err != nil {
		t.Fatalf("nodekeys %v: the serving process is gone: %v\n%s", args, err, r.stderr.String())
	}
	var resp cliResponse
	if err := r.dec.Decode(&resp); err != nil {
		t.Fatalf("nodekeys %v: the serving process died: %v\n%s", args, err, r.stderr.String())
	}
	p.put(r)
	require.NotEqual(t, -1, resp.Code, resp.Stderr)
	return result{resp.Stdout, resp.Stderr, resp.Code}
}

func (p *runnerPool) get() (*runner, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		r := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return r, nil
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	r := &runner{cmd: exec.Command(bin), stderr: &syncbuf.Buffer{}}
	r.cmd.Env = append(os.Environ(), "NODEKEYS_AS_CLI=serve")
	r.cmd.ExtraFiles = []*os.File{reqR, respW}
	r.cmd.Stdout, r.cmd.Stderr = r.stderr, r.stderr
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	reqR.Close()
	respW.Close()
	r.enc, r.dec = json.NewEncoder(reqW), json.NewDecoder(respR)
	p.all = append(p.all, r)
	return r, nil
}

func (p *runnerPool) put(r *runner) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, r)
}
