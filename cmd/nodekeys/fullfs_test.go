package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// smallFS mounts a tmpfs of the given size (and options) for the test. It
// needs root; where it cannot mount, the test is skipped, and fails under
// NODEKEYS_REQUIRE_PEERS.
func smallFS(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if peer.Required() {
			t.Fatalf("cannot mount a small file system (NODEKEYS_REQUIRE_PEERS is set): %v: %s", err, out)
		}
		t.Skipf("cannot mount a small file system: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestFullDisk(t *testing.T) {
	fs := smallFS(t, "size=64k")
	r := nk(t, fs, "", "keygen", "--clients", "300")
	assert.Equal(t, 1, r.code)
	// The error names the file as the operator knows it, not a temporary
	// name: a private key or a .pub, whichever the disk ran out on.
	assert.Regexp(t, `^nodekeys: error: keyset: \w+ keys/client_credentials_\d+(\.pub)?: no space left on device\n$`, r.stderr)
	assert.Empty(t, entries(t, fs), "nothing half-written is left")

	// An existing folder survives a failed --append whole.
	r = nk(t, fs, "", "keygen", "--clients", "3", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	before := snapshot(t, filepath.Join(fs, "keys"))
	r = nk(t, fs, "", "keygen", "--clients", "300", "--append")
	assert.Equal(t, 1, r.code)
	assert.Regexp(t, `^nodekeys: error: keyset: \w+ keys/client_credentials_\d+(\.pub)?: no space left on device\n$`, r.stderr)
	assert.Equal(t, before, snapshot(t, filepath.Join(fs, "keys")), "old keys and CSV unchanged, no temporary files")

	r = nk(t, smallFS(t, "size=4k"), "", "certgen", "--key-type", "rsa-4096")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no space left on device")
}

func TestReadOnlyOutput(t *testing.T) {
	fs := smallFS(t, "size=1m,ro")
	for _, args := range [][]string{{"keygen"}, {"certgen"}, {"fixtures", "--out", "f", "--seed", "00112233445566778899aabbccddeeff"}} {
		r := nk(t, fs, "", args...)
		assert.Equal(t, 1, r.code, args)
		assert.Contains(t, r.stderr, "read-only file system", args)
	}
	assert.Empty(t, entries(t, fs))
}
