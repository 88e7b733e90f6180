package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodekeys/nodekeys/internal/flowerpeer"
	"github.com/nodekeys/nodekeys/internal/peer"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

// readmeFiles are the documents whose commands the tests run or parse, in
// the order they run: README.md first, then the docs it moved reference
// material to, which use the files its commands made (docs/commands.md
// signs with the quick start's keys).
var readmeFiles = []string{"README.md", "docs/commands.md", "docs/accounts.md", "docs/gateway.md", "docs/go.md", "docs/benchmarks.md", "docs/development.md", "docs/protocol.md"}

// readmeCommands returns the command lines of the ```sh blocks of
// readmeFiles, in order, with continuation lines joined.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	for _, d := range docs {
		require.Contains(t, readmeFiles, "docs/"+filepath.Base(d), "a document whose commands no test runs")
	}
	var cmds []string
	for _, name := range readmeFiles {
		cmds = append(cmds, shCommands(t, name)...)
	}
	return cmds
}

// shCommands returns the command lines of one document's ```sh blocks.
func shCommands(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", filepath.FromSlash(name)))
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
			// What the README warns of, it does not show.
			require.NotRegexp(t, ` --seed[ =]`, c, "a seed on the command line shows in the process list: use --seed-file")
		case strings.HasPrefix(c, "echo "): // a file the next command reads
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

// TestREADMEShownCommandsParse parses every nodekeys command the README
// and its docs (readmeFiles) show in a code block other than ```sh (which
// TestREADMECommands runs):
// those need a SuperLink or a cluster, so each is read by nodekeys' own
// flag parsing, with every command's action replaced by one that does
// nothing. An unknown flag, a bad value or a missing required flag fails.
func TestREADMEShownCommandsParse(t *testing.T) {
	t.Parallel()
	var cmds []string
	for _, name := range readmeFiles {
		cmds = append(cmds, shownCommands(t, name)...)
	}
	require.NotEmpty(t, cmds)
	for _, c := range cmds {
		if i := strings.Index(c, "  #"); i > 0 {
			c = c[:i]
		}
		var stdout, stderr strings.Builder
		app := newApp(strings.NewReader(""), &stdout, &stderr)
		var noop func(cmds []*cli.Command)
		noop = func(cmds []*cli.Command) {
			for _, cmd := range cmds {
				if len(cmd.Subcommands) == 0 {
					cmd.Action = func(c *cli.Context) error {
						for _, a := range c.Args().Slice() {
							if strings.HasPrefix(a, "-") {
								return fmt.Errorf("%s was read as an argument, not a flag", a)
							}
						}
						return nil
					}
				}
				noop(cmd.Subcommands)
			}
		}
		noop(app.Commands)
		args := strings.Fields(c)
		require.NotNil(t, findCommand(app.Commands, args[1]), "%s: no such command", c)
		assert.NoError(t, app.Run(flagsFirst(app.Commands, args)), "README: %s\n%s", c, stderr.String())
	}
	t.Logf("parsed %d nodekeys commands shown in the README and its docs", len(cmds))
}

// shownCommands returns the nodekeys commands of one document's code
// blocks other than ```sh, with continuation lines joined.
func shownCommands(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", filepath.FromSlash(name)))
	require.NoError(t, err)
	defer f.Close()
	var cmds []string
	open, in, cont := false, false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			open = !open
			in = open && !strings.HasPrefix(line, "```sh")
		case in && strings.HasSuffix(line, "\\"):
			cont += strings.TrimSuffix(line, "\\")
		case in:
			if l := cont + line; strings.HasPrefix(l, "nodekeys ") {
				cmds = append(cmds, l)
			}
			cont = ""
		}
	}
	require.NoError(t, sc.Err())
	return cmds
}

// TestREADMEFlowerCommands checks the Flower commands the README and its
// docs show (flower-superlink, flower-supernode, flwr) against the real
// Flower they name: each command exists in that version, and each --flag
// the line gives is one its --help lists. A line whose second word is "."
// is Flower 1.25's project form; the rest are Flower 1.27's.
func TestREADMEFlowerCommands(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("real Flower runs in the long form: NODEKEYS_LONG=1")
	}
	var lines []string
	for _, name := range readmeFiles {
		lines = append(lines, flowerLines(t, name)...)
	}
	require.NotEmpty(t, lines)
	helps := map[string]string{}
	help := func(f *flowerpeer.Flower, args ...string) string {
		key := f.Version + " " + strings.Join(args, " ")
		if h, ok := helps[key]; ok {
			return h
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, filepath.Join(f.Bin, args[0]), append(args[1:], "--help")...)
		cmd.Dir, cmd.Env = home, append(os.Environ(), "HOME="+home, "FLWR_HOME="+home, "COLUMNS=200", "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s %s --help:\n%s", f.Version, strings.Join(args, " "), out)
		helps[key] = string(out)
		return helps[key]
	}
	for _, line := range lines {
		words := strings.Fields(line)
		version := flowerpeer.V127
		if len(words) > 2 && words[2] == "." {
			version = flowerpeer.V125
		}
		f := flowerpeer.Require(t, version)
		args := words[:1]
		if words[0] == "flwr" {
			args = words[:2]
		}
		h := help(f, args...)
		for _, w := range words {
			if flag, ok := strings.CutPrefix(w, "--"); ok {
				flag, _, _ = strings.Cut(flag, "=")
				assert.Contains(t, h, "--"+flag, "Flower %s: %s has no --%s", version, strings.Join(args, " "), flag)
			}
		}
	}
	t.Logf("checked %d Flower command lines against real Flower", len(lines))
}

// flowerLines returns the Flower command lines (flower-*, flwr) of one
// document's code blocks, continuation lines joined and comments cut.
func flowerLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", name))
	require.NoError(t, err)
	var out []string
	in, cont := false, ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			in, cont = !in, ""
			continue
		}
		if !in {
			continue
		}
		line = cont + strings.TrimSpace(line)
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cont = s + " "
			continue
		}
		cont = ""
		if i := strings.Index(line, " #"); i > 0 {
			line = strings.TrimSpace(line[:i])
		}
		if strings.HasPrefix(line, "flwr ") || strings.HasPrefix(line, "flower-super") {
			out = append(out, line)
		}
	}
	return out
}

// The README's list of packages for Go programs names every package
// outside internal/ and cmd/, and no other.
func TestREADMEPackageList(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n## In a Go SuperLink or SuperNode\n")
	require.True(t, ok, "README.md has no section \"In a Go SuperLink or SuperNode\"")
	section, _, _ = strings.Cut(section, "\n## ")
	listed := map[string]bool{}
	for _, f := range strings.Split(section, "`")[1:] {
		if f != "" && strings.Trim(f, "abcdefghijklmnopqrstuvwxyz0123456789/") == "" {
			listed[f] = true
		}
	}
	tree := map[string]bool{}
	require.NoError(t, filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../..", path)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "internal" || name == "cmd" ||
				name == "testdata" || name == "node_modules" || name == "docs" || name == "scripts") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") && filepath.Dir(rel) != "." {
			tree[filepath.ToSlash(filepath.Dir(rel))] = true
		}
		return nil
	}))
	assert.Equal(t, tree, listed, "the packages README.md lists (left: in the tree)")
}
