// Package flowerpeer runs real Flower from tests: SuperLinks, SuperNodes
// and the flwr CLI of Flower 1.22, 1.25 and 1.27, as
// ../shared/peers/flower/setup.sh makes them runnable (its DEST/VERSION/bin
// folders). It looks for them in $NODEKEYS_FLOWER, else in .peers/flower
// at the module root; where they are missing the test is skipped, and
// fails under NODEKEYS_REQUIRE_PEERS.
//
// Every process listens on 127.0.0.1 only, on free ports, with its own
// FLWR_HOME under the test's temporary folder, and runs in a process group
// of its own that is killed when the test ends (Flower's SuperLink and
// SuperNode start helper processes of their own). Every CLI command runs
// under a timeout: the 1.25 CLI can hang at exit after a gRPC error.
package flowerpeer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

// The Flower versions setup.sh makes runnable.
const (
	// V122 is the last SuperLink that reads the CSV allowlist
	// (--auth-list-public-keys).
	V122 = "1.22"
	// V125 is the last CLI that takes the project folder and federation
	// (flwr login . NAME, the connection in pyproject.toml).
	V125 = "1.25"
	// V127 keeps its connections in $FLWR_HOME/config.toml.
	V127 = "1.27"
)

// ProcessLife bounds how long a SuperLink or SuperNode may run: it is
// killed then even if the test is still running.
const ProcessLife = 10 * time.Minute

// StartTimeout bounds a SuperLink's start (a Python process importing
// Flower takes seconds on a loaded two-core machine).
const StartTimeout = 60 * time.Second

//go:embed testdata/fedapp
var app embed.FS

// Flower is one version's commands.
type Flower struct {
	Version string
	// Bin holds flwr, flower-superlink, flower-supernode, ...
	Bin string
}

// Dir returns the folder setup.sh filled: $NODEKEYS_FLOWER, or
// .peers/flower at the module root.
func Dir() string {
	if d := os.Getenv("NODEKEYS_FLOWER"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".peers", "flower")
}

// Require returns the commands of a Flower version, or skips the test
// (fails it under NODEKEYS_REQUIRE_PEERS) when they are missing.
func Require(t testing.TB, version string) *Flower {
	t.Helper()
	peer.Short(t)
	bin := filepath.Join(Dir(), version, "bin")
	if _, err := os.Stat(filepath.Join(bin, "flower-superlink")); err != nil {
		peer.Missing(t, "Flower %s not found in %s (run ../shared/peers/flower/setup.sh %s, or set NODEKEYS_FLOWER)", version, bin, Dir())
	}
	return &Flower{Version: version, Bin: bin}
}

// pycache is where the Python processes keep their compiled modules:
// without it every process compiles Flower again (a second of CPU each).
func pycache() string {
	if d := os.Getenv("NODEKEYS_FLOWER_PYCACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "nodekeys", "flower-pycache")
}

// env is the environment of a Flower process with home as FLWR_HOME.
func (f *Flower) env(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "FLWR_HOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "BROWSER", "COLUMNS", "NO_COLOR", "HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		// SuperLinks and SuperNodes start flower-superexec, flwr-serverapp
		// and flwr-clientapp by name.
		"PATH="+f.Bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FLWR_HOME="+home,
		// Flower writes to ~/.flwr in places FLWR_HOME does not cover.
		"HOME="+home,
		"PYTHONPYCACHEPREFIX="+pycache(),
		// flwr login opens the sign-in page in a browser: the test signs in.
		"BROWSER=/bin/true",
		// Rich's tables are cut to the terminal's width; no colour codes.
		"COLUMNS=200", "NO_COLOR=1",
	)
}

// Process is a running Flower process and its process group.
type Process struct {
	Name string
	// Log is the file of its output (stdout and stderr): a file, not a
	// pipe, so that its exit is seen when it exits, not when the last
	// helper it started closes the pipe.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs name from f.Bin in dir, in a process group of its own that is
// killed when the test ends or after ProcessLife.
func (f *Flower) start(t testing.TB, dir, home, name string, args ...string) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ProcessLife)
	p := &Process{Name: name, Log: filepath.Join(home, name+".log"), done: make(chan struct{})}
	p.cmd = f.command(ctx, dir, home, name, args...)
	log, err := os.Create(p.Log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer log.Close()
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() { // what each Flower process said, for the failure
			t.Logf("%s %s wrote:\n%s", name, strings.Join(args, " "), tail(p.Output(), 8<<10))
		}
	})
	return p
}

// tail is the last max bytes of s.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "...\n" + s[len(s)-max:]
}

// command is name from f.Bin, in a process group of its own, killed as a
// group when ctx ends.
func (f *Flower) command(ctx context.Context, dir, home, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(f.Bin, name), args...)
	cmd.Dir, cmd.Env = dir, f.env(home)
	ownGroup(cmd)
	cmd.Cancel = func() error { killGroup(cmd.Process); return nil }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Output returns what the process wrote so far (stdout and stderr).
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Process) Err() error { return p.err }

// Stop kills the process group (Flower keeps nothing a test needs to
// shut down gracefully) and waits for the process.
func (p *Process) Stop() {
	killGroup(p.cmd.Process)
	<-p.done
}

// WaitOutput waits until the process has written want, and fails the test
// if it exits first or timeout passes.
func (p *Process) WaitOutput(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.Output(), want) {
		select {
		case <-p.done:
			if strings.Contains(p.Output(), want) {
				return
			}
			t.Fatalf("%s exited (%v) without writing %q:\n%s", p.Name, p.err, want, p.Output())
		case <-deadline:
			t.Fatalf("%s did not write %q in %s:\n%s", p.Name, want, timeout, p.Output())
		case <-tick.C:
		}
	}
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening waits until every address accepts connections, or fails
// the test when p exits or the start takes longer than StartTimeout.
func waitListening(t testing.TB, p *Process, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(StartTimeout)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("%s exited (%v) before listening on %s:\n%s", p.Name, p.err, a, p.Output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is not listening on %s after %s:\n%s", p.Name, a, StartTimeout, p.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TLS is the files of a SuperLink's TLS: a CA and a server certificate
// with its key, as certs.Write makes them.
type TLS struct {
	CACert, ServerCert, ServerKey string
}

// SuperLinkOptions configure a SuperLink.
type SuperLinkOptions struct {
	// TLS is required for node authentication; nil means --insecure.
	TLS *TLS
	// SupernodeAuth admits only registered keys (--enable-supernode-auth,
	// Flower 1.23 and later).
	SupernodeAuth bool
	// AuthList is the CSV allowlist (--auth-list-public-keys, up to 1.22).
	AuthList string
}

// SuperLink is a running flower-superlink.
type SuperLink struct {
	*Process
	// Fleet, Control and ServerAppIo are its addresses (127.0.0.1:PORT).
	Fleet, Control, ServerAppIo string
}

// WaitReady waits until the SuperLink's Fleet and Control APIs listen, and
// fails the test if it exits first or takes longer than StartTimeout.
func (s *SuperLink) WaitReady(t testing.TB) {
	t.Helper()
	waitListening(t, s.Process, s.Control, s.Fleet)
}

// StartSuperLink starts a SuperLink on free loopback ports; WaitReady
// waits for it (a start takes seconds: start other peers meanwhile).
func (f *Flower) StartSuperLink(t testing.TB, o SuperLinkOptions) *SuperLink {
	t.Helper()
	home := t.TempDir()
	s := &SuperLink{Fleet: FreeAddr(t), Control: FreeAddr(t), ServerAppIo: FreeAddr(t)}
	args := []string{
		"--fleet-api-address", s.Fleet, "--control-api-address", s.Control,
		"--serverappio-api-address", s.ServerAppIo,
		"--storage-dir", filepath.Join(home, "ffs"),
	}
	if o.TLS != nil {
		args = append(args, "--ssl-ca-certfile", o.TLS.CACert, "--ssl-certfile", o.TLS.ServerCert, "--ssl-keyfile", o.TLS.ServerKey)
	} else {
		args = append(args, "--insecure")
	}
	if o.SupernodeAuth {
		args = append(args, "--enable-supernode-auth")
	}
	if o.AuthList != "" {
		args = append(args, "--auth-list-public-keys", o.AuthList)
	}
	s.Process = f.start(t, home, home, "flower-superlink", args...)
	return s
}

// SuperNodeOptions configure a SuperNode.
type SuperNodeOptions struct {
	// SuperLink is the Fleet API's address (a SuperLink's or a gateway's).
	SuperLink string
	// CA verifies its certificate; empty means --insecure.
	CA string
	// PrivateKey is the node's OpenSSH private key; PublicKey its .pub,
	// which Flower 1.22 needs too (later versions derive it).
	PrivateKey, PublicKey string
}

// SuperNode is a running flower-supernode.
type SuperNode struct {
	*Process
	// ClientAppIo is its ClientAppIo API's address.
	ClientAppIo string
}

// StartSuperNode starts a SuperNode; it connects to the SuperLink on its own.
func (f *Flower) StartSuperNode(t testing.TB, o SuperNodeOptions) *SuperNode {
	t.Helper()
	home := t.TempDir()
	n := &SuperNode{ClientAppIo: FreeAddr(t)}
	args := []string{"--superlink", o.SuperLink, "--clientappio-api-address", n.ClientAppIo}
	if o.CA != "" {
		args = append(args, "--root-certificates", o.CA)
	} else {
		args = append(args, "--insecure")
	}
	if o.PrivateKey != "" {
		args = append(args, "--auth-supernode-private-key", o.PrivateKey)
	}
	if o.PublicKey != "" {
		args = append(args, "--auth-supernode-public-key", o.PublicKey)
	}
	n.Process = f.start(t, home, home, "flower-supernode", args...)
	return n
}

// CLI is the flwr CLI with a connection to one SuperLink (or gateway)
// named Name: from Flower 1.26 in $FLWR_HOME/config.toml
// ([superlink.NAME]), before that in the app project's pyproject.toml
// ([tool.flwr.federations.NAME]). Project is a copy of the test app
// (testdata/fedapp: FedAvg of small numpy arrays), where commands run.
type CLI struct {
	f       *Flower
	Name    string
	Home    string
	Project string
}

// NewCLI writes a connection named name to address, verified with the CA
// in caFile (empty: insecure), and a copy of the test app.
func (f *Flower) NewCLI(t testing.TB, name, address, caFile string) *CLI {
	t.Helper()
	c := &CLI{f: f, Name: name, Home: t.TempDir(), Project: filepath.Join(t.TempDir(), "fedapp")}
	if err := copyApp(c.Project); err != nil {
		t.Fatal(err)
	}
	conn := fmt.Sprintf("address = %q\n", address)
	if caFile != "" {
		conn += fmt.Sprintf("root-certificates = %q\n", caFile)
	} else {
		conn += "insecure = true\n"
	}
	var file, text string
	if f.ConfigInHome() {
		file = filepath.Join(c.Home, "config.toml")
		text = fmt.Sprintf("[superlink]\ndefault = %q\n\n[superlink.%s]\n%s", name, name, conn)
	} else {
		file = filepath.Join(c.Project, "pyproject.toml")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text = string(b) + fmt.Sprintf("\n[tool.flwr.federations]\ndefault = %q\n\n[tool.flwr.federations.%s]\n%s", name, name, conn)
	}
	f.writeFile(t, file, text)
	return c
}

// EnableAccountAuth makes the CLI log in: up to 1.25 the federation's
// table needs enable-account-auth = true (enable-user-auth in 1.22; else
// flwr login answers "Account authentication is not enabled for the
// federation"); from 1.26 the CLI asks the SuperLink.
func (c *CLI) EnableAccountAuth(t testing.TB) {
	t.Helper()
	if c.f.ConfigInHome() {
		return
	}
	key := "enable-account-auth"
	if c.f.Version < "1.23" {
		key = "enable-user-auth"
	}
	file := filepath.Join(c.Project, "pyproject.toml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The federation's table is the file's last.
	c.f.writeFile(t, file, string(b)+key+" = true\n")
}

func (f *Flower) writeFile(t testing.TB, file, text string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ConfigInHome reports whether this version's CLI keeps its connections
// in $FLWR_HOME/config.toml (1.26 and later).
func (f *Flower) ConfigInHome() bool { return f.Version >= "1.26" }

func copyApp(dst string) error {
	root := "testdata/fedapp"
	return fs.WalkDir(app, root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		to := filepath.Join(dst, filepath.FromSlash(strings.TrimPrefix(path, root)))
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := app.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// Target returns the arguments that name the connection for a flwr
// command: from 1.26 the connection's name (after the app folder for
// run), before that the project folder and the federation's name.
func (c *CLI) Target(command string) []string {
	if c.f.ConfigInHome() && command != "run" {
		return []string{c.Name}
	}
	return []string{".", c.Name}
}

// Result is what a CLI command did.
type Result struct {
	Stdout, Stderr string
	// Code is the exit status; -1 when it was killed at its timeout.
	Code     int
	TimedOut bool
}

// String shows the result for a test's failure message.
func (r Result) String() string {
	return fmt.Sprintf("exit %d (timed out: %v)\nstdout:\n%s\nstderr:\n%s", r.Code, r.TimedOut, r.Stdout, r.Stderr)
}

// Flwr runs flwr with args in the project folder, killed after timeout.
// The caller adds the connection's arguments (see Target).
func (c *CLI) Flwr(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	cmd := c.Command(timeout, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("flwr: %v", err)
	}
	return cmd.Wait()
}

// Command is a flwr command for a test that reads its output while it
// runs (flwr login).
type Command struct {
	*exec.Cmd
	Stdout, Stderr *syncbuf.Buffer
	ctx            context.Context
	cancel         context.CancelFunc
}

// Command prepares flwr with args in the project folder, killed after
// timeout; the caller starts it and calls Wait.
func (c *CLI) Command(timeout time.Duration, args ...string) *Command {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	x := &Command{Cmd: c.f.command(ctx, c.Project, c.Home, "flwr", args...), Stdout: &syncbuf.Buffer{}, Stderr: &syncbuf.Buffer{}, ctx: ctx, cancel: cancel}
	x.Cmd.Stdout, x.Cmd.Stderr = x.Stdout, x.Stderr
	return x
}

// Wait waits for the command and returns its result.
func (x *Command) Wait() Result {
	defer x.cancel()
	err := x.Cmd.Wait()
	r := Result{Stdout: x.Stdout.String(), Stderr: x.Stderr.String(), TimedOut: x.ctx.Err() != nil}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && !r.TimedOut:
		r.Code = ee.ExitCode()
	default:
		r.Code = -1
	}
	return r
}

// Line returns the first line of s that contains want, or "".
func Line(s, want string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, want) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
