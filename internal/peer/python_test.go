package peer_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
)

func TestMain(m *testing.M) { os.Exit(peer.Main(m)) }

// Scripts see their own args, stdin and namespace, in one process; a
// failure comes back with its stderr and exit status.
func TestPythonRunsScriptsInOneProcess(t *testing.T) {
	out := peer.Python(t, []byte("héllo\n"), `
import os, sys
x = 1
sys.stdout.write(sys.stdin.read().upper())
print(sys.argv[1:], __name__)
sys.stdout.buffer.write(b"\xff\n")
`, "a", "b c")
	assert.Equal(t, "HÉLLO\n['a', 'b c'] __main__\n\xff\n", string(out))
	pid := peer.Python(t, nil, "import os; print(os.getpid())")
	assert.Equal(t, string(pid), string(peer.Python(t, nil, "import os; print(os.getpid())")), "the same process")

	assert.Equal(t, "fresh\n", string(peer.Python(t, nil, "print('fresh' if 'x' not in globals() else 'x leaked')")))

	out, err := peer.TryPython(t, nil, "import sys; print('partial'); sys.exit('not EC')")
	require.EqualError(t, err, "exit status 1")
	assert.Equal(t, "partial\nnot EC\n", string(out))
	out, err = peer.TryPython(t, nil, "import sys; sys.exit(3)")
	require.EqualError(t, err, "exit status 3")
	assert.Empty(t, out)
	out, err = peer.TryPython(t, nil, "raise ValueError('boom')")
	require.EqualError(t, err, "exit status 1")
	assert.Contains(t, string(out), "ValueError: boom")
	assert.Equal(t, "ok\n", string(peer.Python(t, nil, "print('ok')")), "still serving after failures")
}
