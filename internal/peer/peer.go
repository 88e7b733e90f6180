// Package peer runs the real programs that nodekeys must agree with
// (ssh-keygen, openssl, Python's cryptography) from tests.
//
// go test -short is the tier that starts no peer program: every test that
// needs one is skipped (Short), and not counted as missing. It runs the
// project's own code alone, on loopback.
//
// A test whose peer is missing is skipped, unless NODEKEYS_REQUIRE_PEERS is
// set (CI sets it), in which case it fails: a peer test never passes by not
// running. A skip stays visible: a package's TestMain that runs its tests
// with Main ends with one line counting the tests skipped for a missing
// peer.
package peer

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	skipped  atomic.Int64
	firstMu  sync.Mutex
	firstWhy string
)

// Skipped counts a test skipped (or failed, under NODEKEYS_REQUIRE_PEERS)
// for a missing peer, with why; Missing calls it, and so must any other
// skip for a missing peer.
func Skipped(why string) {
	if skipped.Add(1) == 1 {
		firstMu.Lock()
		firstWhy = why
		firstMu.Unlock()
	}
}

// Missing skips t for a missing peer (fails it under
// NODEKEYS_REQUIRE_PEERS), and counts it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	missing(t, format, args...)
}

// Main runs a test binary's tests, as TestMain does with m.Run, and then,
// if any was skipped for a missing peer, prints one line counting them.
// go test shows a passing package's output only with -v, so the line goes
// to the terminal too when there is one. Use it as os.Exit(peer.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if line := report(); line != "" {
		fmt.Println(line)
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil && !testing.Verbose() {
			fmt.Fprintln(tty, line)
			tty.Close()
		}
	}
	return code
}

// report is the line Main prints, or "" when no peer test was skipped.
func report() string {
	n := skipped.Load()
	if n == 0 {
		return ""
	}
	firstMu.Lock()
	defer firstMu.Unlock()
	pkg := "this package"
	if exe, err := os.Executable(); err == nil {
		pkg = strings.TrimSuffix(exe[strings.LastIndexAny(exe, `/\`)+1:], ".test")
	}
	return fmt.Sprintf("peer: %d test(s) of %s skipped for a missing peer (%s); NODEKEYS_REQUIRE_PEERS=1 makes them fail", n, pkg, firstWhy)
}

// Long reports whether tests run their long forms (more trials and
// samples of the same checks): NODEKEYS_LONG=1, as CI sets it. The default
// forms keep every check and keep go test ./... quick.
func Long() bool { return os.Getenv("NODEKEYS_LONG") == "1" }

// Required reports whether missing peers fail tests instead of skipping them.
func Required() bool { return os.Getenv("NODEKEYS_REQUIRE_PEERS") != "" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	Skipped(fmt.Sprintf(format, args...))
	if Required() {
		t.Fatalf("peer missing (NODEKEYS_REQUIRE_PEERS is set): "+format, args...)
	}
	t.Skipf("peer missing: "+format, args...)
}

// Short skips t under go test -short, whose tier starts no peer program.
// Command, Python, Flower and the OIDC and Redis test servers call it.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("go test -short starts no peer program")
	}
}

// Command returns the path of the named program, or skips (fails under
// NODEKEYS_REQUIRE_PEERS) when it is not installed. It skips under -short.
func Command(t testing.TB, name string) string {
	t.Helper()
	Short(t)
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found", name)
	}
	return p
}

// Run runs a peer program with stdin and returns its stdout; it fails the
// test if the program fails.
func Run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := Try(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// Try runs a peer program and returns its stdout, or its combined output
// and the error when it fails.
func Try(t testing.TB, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(Command(t, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// Parallel sets go test's -parallel to n when the command line did not
// set it, for a package whose tests spend their time waiting (on peers,
// other processes, timeouts and the network) rather than computing: the
// default, one test per core, would run those waits one after another.
// Call it first in TestMain.
func Parallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if f := flag.Lookup("test.parallel"); f != nil && !set {
		f.Value.Set(strconv.Itoa(n))
	}
}
