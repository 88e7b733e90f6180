// Package redistest starts a real redis-server (Debian's package) on a
// free loopback port for tests, with no persistence, and stops it at the
// end of the test. A test without redis-server installed is skipped, or
// fails under NODEKEYS_REQUIRE_PEERS, as CI sets it.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server on 127.0.0.1 and a free port.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := peer.Command(t, "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), bin: bin}
	ln.Close()
	s.start(t)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--loglevel", "warning", "--databases", "1")
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("redis-server exited at start on %s", s.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("redis-server did not answer on %s", s.Addr)
}

// Stop kills the server at once (as a crash would) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same address, empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}
