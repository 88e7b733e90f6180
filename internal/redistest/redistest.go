// Package redistest starts a real redis-server (Debian's package) on a
// free loopback port for tests, with no persistence unless asked, and
// stops it at the end of the test. A test without redis-server installed
// is skipped, or fails under NODEKEYS_REQUIRE_PEERS, as CI sets it.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	bin  string
	args []string
	dir  string // the data of a persistent server
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server on 127.0.0.1 and a free port, with extra
// arguments (directives, as "--cluster-enabled", "yes").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := peer.Command(t, "redis-server")
	s := &Server{Addr: freeAddr(t), bin: bin, args: extra}
	s.start(t)
	t.Cleanup(s.Stop)
	return s
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--loglevel", "warning"}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
		}
		s.cmd.Wait()
		close(s.done)
	}()
	waitPong(t, s)
}

// Stop kills the server at once (as a crash would) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
}

// StartPersistent is Start with an append-only file, written through
// before each answer (appendfsync always), so that Stop, which kills the
// server, loses nothing and Restart brings the data back.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
	s.dir = dir
	return s
}

// Restart starts the server again on the same address: empty, or with
// its data if it was started by StartPersistent.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// RestartEmpty starts the server again on the same address, without the
// data a persistent server kept.
func (s *Server) RestartEmpty(t testing.TB) {
	t.Helper()
	s.Stop()
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.start(t)
}

// StartSentinel starts a Sentinel (redis-server --sentinel) watching
// master under the name "nodekeys", and returns its address.
func StartSentinel(t testing.TB, master *Server) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	addr := freeAddr(t)
	_, sport, _ := net.SplitHostPort(addr)
	text := fmt.Sprintf("port %s\nbind 127.0.0.1\nsentinel monitor nodekeys %s %s 1\nsentinel down-after-milliseconds nodekeys 5000\n", sport, host, port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: addr, bin: master.bin}
	s.cmd = exec.Command(s.bin, conf, "--sentinel", "--loglevel", "warning")
	s.done = make(chan struct{})
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	waitPong(t, s)
	// Sentinel answers before it knows the master: wait until it does.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(command(s.Addr, "SENTINEL get-master-addr-by-name nodekeys"), port) {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sentinel on %s does not know its master", addr)
	return ""
}

// StartCluster starts n redis-servers in cluster mode, makes them one
// cluster of n primaries with redis-cli --cluster create, and returns
// their addresses once the cluster is ok.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	cli := peer.Command(t, "redis-cli")
	dir := t.TempDir()
	var addrs []string
	for range n {
		_, bus, _ := net.SplitHostPort(freeAddr(t)) // not port+10000, which may pass 65535
		s := Start(t, "--cluster-enabled", "yes", "--cluster-port", bus, "--dir", dir,
			"--cluster-config-file", "nodes-"+strconv.Itoa(len(addrs))+".conf", "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, a := range addrs {
			ok = ok && strings.Contains(command(a, "CLUSTER INFO"), "cluster_state:ok")
		}
		if ok {
			return addrs
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the cluster of %v did not become ok", addrs)
	return nil
}

// command sends one inline command and returns what comes back within a
// short while.
func command(addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprint(c, cmd+"\r\n")
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil || n < len(buf) {
			return b.String()
		}
	}
}

func waitPong(t testing.TB, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.HasPrefix(command(s.Addr, "PING"), "+PONG") {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("redis-server exited at start on %s", s.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("redis-server did not answer on %s", s.Addr)
}
