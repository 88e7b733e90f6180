//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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
	t.Parallel()
	fs := smallFS(t, "size=64k")
	r := nk(t, fs, "", "keygen", "--clients", "300")
	assert.Equal(t, 1, r.code)
	// The error names the file as the operator knows it, not a temporary
	// name: a private key or a .pub, whichever the disk ran out on.
	assert.Regexp(t, `^nodekeys: error: \w+ keys/client_credentials_\d+(\.pub)?: no space left on device\n$`, r.stderr)
	assert.Empty(t, entries(t, fs), "nothing half-written is left")

	// An existing folder survives a failed --append whole.
	r = nk(t, fs, "", "keygen", "--clients", "3", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	before := snapshot(t, filepath.Join(fs, "keys"))
	r = nk(t, fs, "", "keygen", "--clients", "300", "--append")
	assert.Equal(t, 1, r.code)
	assert.Regexp(t, `^nodekeys: error: \w+ keys/client_credentials_\d+(\.pub)?: no space left on device\n$`, r.stderr)
	assert.Equal(t, before, snapshot(t, filepath.Join(fs, "keys")), "old keys and CSV unchanged, no temporary files")

	r = nk(t, smallFS(t, "size=4k"), "", "certgen")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no space left on device")
}

func TestReadOnlyOutput(t *testing.T) {
	t.Parallel()
	fs := smallFS(t, "size=1m,ro")
	for _, args := range [][]string{{"keygen"}, {"certgen"}, {"fixtures", "--out", "f", "--seed", "00112233445566778899aabbccddeeff"}} {
		r := nk(t, fs, "", args...)
		assert.Equal(t, 1, r.code, args)
		assert.Contains(t, r.stderr, "read-only file system", args)
	}
	assert.Empty(t, entries(t, fs))
}

// csv add and remove: success is printed only once the file is written; a
// symbolic link is written through to its target, which keeps its mode and
// owner; the link stays a link.
func TestCSVEditsWriteThrough(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "3", "-q").code)
	real := filepath.Join(dir, "keys", "client_public_keys.csv")
	require.NoError(t, os.Chmod(real, 0o640))
	require.NoError(t, os.Chown(real, 1234, 5678))
	require.NoError(t, os.Symlink(real, filepath.Join(dir, "allow.csv")))

	r := nk(t, dir, "", "csv", "remove", "allow.csv", "keys/client_credentials_2.pub")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "removed SHA256:")
	fi, err := os.Lstat(filepath.Join(dir, "allow.csv"))
	require.NoError(t, err)
	assert.True(t, fi.Mode()&os.ModeSymlink != 0, "the link is still a link")
	fi, err = os.Stat(real)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	st := fi.Sys().(*syscall.Stat_t)
	assert.Equal(t, []uint32{1234, 5678}, []uint32{st.Uid, st.Gid})
	r = nk(t, dir, "", "csv", "check", "keys/client_public_keys.csv")
	assert.Contains(t, r.stdout, "2 keys")

	// A failed write prints no success.
	full := smallFS(t, "size=4k")
	b, err := os.ReadFile(real)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(full, "allow.csv"), b, 0o644))
	r = nk(t, dir, "", "csv", "add", filepath.Join(full, "allow.csv"), "keys/client_credentials_2.pub")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stdout, "added")
	assert.Contains(t, r.stderr, "no space left on device")
	got, _ := os.ReadFile(filepath.Join(full, "allow.csv"))
	assert.Equal(t, b, got, "the allowlist is as it was")
}
