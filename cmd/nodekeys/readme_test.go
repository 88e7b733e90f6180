package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeCommands returns the command lines of README.md's ```sh blocks, in
// order, with continuation lines joined.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	defer f.Close()
	var cmds []string
	in, cont := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && strings.HasSuffix(line, "\\"):
			cont += strings.TrimSuffix(line, "\\")
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			cmds = append(cmds, cont+line)
			cont = ""
		}
	}
	require.NoError(t, sc.Err())
	return cmds
}

// TestREADMECommands runs every command the README shows, in order, in one
// folder as a reader would, and requires each to succeed. The performance
// commands (benchmarks and bench scripts) measure rather than check and
// take most of a minute: they run when NODEKEYS_BENCH=1 is set, as CI does
// in a step of its own.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	work := t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	cmds := readmeCommands(t)
	require.Greater(t, len(cmds), 15)
	ran, skipped := 0, 0
	benchmarks := os.Getenv("NODEKEYS_BENCH") == "1"
	for _, c := range cmds {
		dir := work
		if isBenchmark(c) && !benchmarks {
			skipped++
			continue
		}
		switch {
		case c == "go test ./...":
			continue // the command running this test
		case strings.HasPrefix(c, "go run ./cmd/nodekeys "):
			c = "nodekeys " + strings.TrimPrefix(c, "go run ./cmd/nodekeys ")
		case strings.HasPrefix(c, "nodekeys "):
		case strings.HasPrefix(c, "scripts/"), strings.HasPrefix(c, "go test "):
			if testing.Short() {
				continue
			}
			dir = root
		default:
			t.Fatalf("README command of an unknown kind: %q", c)
		}
		cmd := exec.Command("bash", "-c", c)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", c, out)
		ran++
	}
	t.Logf("ran %d README commands; %d performance commands left for NODEKEYS_BENCH=1", ran, skipped)
}

// isBenchmark reports whether a README command measures performance.
func isBenchmark(c string) bool {
	return strings.HasPrefix(c, "scripts/bench") || strings.HasPrefix(c, "nodekeys bench") ||
		strings.HasPrefix(c, "go test") && strings.Contains(c, "-bench")
}
